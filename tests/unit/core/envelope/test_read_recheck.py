"""Read-path re-checks (issue #14 item 1): a cached intermediate key is confirmed in the
metastore once per ``check_interval``, with no query in between; a key deleted elsewhere
(shredded) stops decrypting, a revocation elsewhere is noticed, an unreachable metastore
does not stop reads."""

from __future__ import annotations

from typing import Any

import pytest

from asherah_django.core import CryptoPolicy, InMemoryMetastore
from asherah_django.core.errors import KeyNotFoundError, MetastoreError
from tests.unit.core.conftest import FakeClock


class CountingMetastore(InMemoryMetastore):
    """Counts loads (InMemoryMetastore does) and can be made unreachable."""

    down = False

    def load(self, key_id: str, created: int) -> Any:
        if self.down:
            self.loads += 1
            raise OSError("database unreachable")
        return super().load(key_id, created)


POLICY = CryptoPolicy(check_interval=60)


def test_one_query_per_interval_per_key(make_factory: Any, clock: FakeClock) -> None:
    store = CountingMetastore()
    writer, reader = make_factory(POLICY, metastore=store), make_factory(POLICY, metastore=store)
    records = [writer.get_session(p).encrypt(b"v") for p in ("a", "b")]
    sessions = [reader.get_session(p) for p in ("a", "b")]
    for session, record in zip(sessions, records, strict=True):
        assert session.decrypt(record) == b"v"  # cold: loads
    store.loads = 0
    for _ in range(100):
        clock.advance(0.5)  # 50 s in all: within the interval
        for session, record in zip(sessions, records, strict=True):
            assert session.decrypt(record) == b"v"
    assert store.loads == 0
    clock.advance(11)
    for _ in range(50):
        for session, record in zip(sessions, records, strict=True):
            assert session.decrypt(record) == b"v"
    assert store.loads == 2  # one re-check per key, then none until the next interval


def test_key_deleted_elsewhere_stops_decrypting_after_the_interval(
    make_factory: Any, metastore: InMemoryMetastore, clock: FakeClock
) -> None:
    writer, reader = make_factory(POLICY), make_factory(POLICY)
    record = writer.get_session("victim").encrypt(b"v")
    kept = writer.get_session("kept").encrypt(b"k")
    assert reader.get_session("victim").decrypt(record) == b"v"
    assert reader.get_session("kept").decrypt(kept) == b"k"
    metastore.delete_key_id(writer.intermediate_key_id("victim"))  # shredded by another process
    clock.advance(60)
    assert reader.get_session("victim").decrypt(record) == b"v"  # not yet re-checked
    clock.advance(1)
    with pytest.raises(KeyNotFoundError, match="shredded"):
        reader.get_session("victim").decrypt(record)
    assert reader._keys.intermediate_keys.cached() != []  # "kept" is still cached...
    assert all(
        k.key_id != writer.intermediate_key_id("victim")
        for k in reader._keys.intermediate_keys.cached()
    )
    assert reader.get_session("kept").decrypt(kept) == b"k"  # ...and still readable


def test_revocation_elsewhere_is_noticed_on_the_read_path(
    make_factory: Any, metastore: InMemoryMetastore, clock: FakeClock
) -> None:
    writer, reader = make_factory(POLICY), make_factory(POLICY)
    record = writer.get_session("p").encrypt(b"v")
    assert reader.get_session("p").decrypt(record) == b"v"
    ik_id = writer.intermediate_key_id("p")
    (cached,) = [k for k in reader._keys.intermediate_keys.cached() if k.key_id == ik_id]
    metastore.revoke(ik_id, cached.created)
    clock.advance(61)
    assert reader.get_session("p").decrypt(record) == b"v"  # revoked keys still decrypt
    assert cached.revoked


def test_unreachable_metastore_keeps_cached_keys_readable(
    make_factory: Any, clock: FakeClock
) -> None:
    store = CountingMetastore()
    writer, reader = make_factory(POLICY, metastore=store), make_factory(POLICY, metastore=store)
    record = writer.get_session("p").encrypt(b"v")
    assert reader.get_session("p").decrypt(record) == b"v"
    store.down = True
    clock.advance(61)
    store.loads = 0
    for _ in range(20):
        assert reader.get_session("p").decrypt(record) == b"v"
    assert store.loads == 1  # tried once, then waits RECHECK_RETRY seconds
    clock.advance(11)
    store.down = False
    assert reader.get_session("p").decrypt(record) == b"v"
    assert store.loads == 2
    with pytest.raises(MetastoreError):  # a cold load still reports the outage
        store.down = True
        make_factory(POLICY, metastore=store).get_session("p").decrypt(record)
