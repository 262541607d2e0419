"""Key expiry, revocation and rotation: the state matrix of Asherah's TestingApproach.md.

System key (SK) and intermediate key (IK) each in {absent, valid, expired, revoked},
with the writing factory's caches warm or cold. Old data always stays readable; a
write never uses an invalid key.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable

import pytest

from asherah_django.core import (
    CryptoPolicy,
    DataRowRecord,
    EnvelopeKeyRecord,
    InMemoryMetastore,
    KeyMeta,
    KeyNotFoundError,
    SessionFactory,
    StaticKMS,
    parse_data_row,
)
from asherah_django.core.aead import Cipher
from tests.unit.core.conftest import FakeClock

DAY = 86_400
T0 = 1_800_000_000 - 1_800_000_000 % 60
SK_ID, IK_ID = "_SK_service_product", "_IK_p_service_product"
STATES = ["absent", "valid", "expired", "revoked"]

MakeFactory = Callable[..., SessionFactory]


def _created_for(state: str) -> int:
    return T0 - (91 if state == "expired" else 1) * DAY


def _latest_created(metastore: InMemoryMetastore, key_id: str) -> int | None:
    record = metastore.load_latest(key_id)
    return None if record is None else record.created


def _count(metastore: InMemoryMetastore, key_id: str) -> int:
    return sum(1 for kid, _, _ in metastore.items() if kid == key_id)


def _store_keys(
    metastore: InMemoryMetastore, kms: StaticKMS, sk_state: str, ik_state: str
) -> str | None:
    """Write the SK and IK records for the given states; return a record under the IK."""
    if sk_state == "absent":
        return None
    sk_created, sk_secret = _created_for(sk_state), os.urandom(32)
    sk = EnvelopeKeyRecord(sk_created, kms.encrypt_key(sk_secret), revoked=sk_state == "revoked")
    metastore.store(SK_ID, sk_created, sk)
    if ik_state == "absent":
        return None
    ik_created, ik_secret = _created_for(ik_state), os.urandom(32)
    ik = EnvelopeKeyRecord(
        ik_created,
        Cipher(sk_secret).seal(ik_secret),
        parent=KeyMeta(SK_ID, sk_created),
        revoked=ik_state == "revoked",
    )
    metastore.store(IK_ID, ik_created, ik)
    data_key = os.urandom(32)
    return DataRowRecord(
        ik_created + 7,
        Cipher(ik_secret).seal(data_key),
        KeyMeta(IK_ID, ik_created),
        Cipher(data_key).seal(b"old value"),
    ).to_json()


@pytest.mark.parametrize("cached", [False, True], ids=["cold", "warm"])
@pytest.mark.parametrize(
    ("sk_state", "ik_state"),
    [
        (sk, ik)
        for sk, ik in itertools.product(STATES, STATES)
        if not (sk == "absent" and ik != "absent")
    ],
)
def test_state_matrix(
    make_factory: MakeFactory,
    metastore: InMemoryMetastore,
    kms: StaticKMS,
    clock: FakeClock,
    sk_state: str,
    ik_state: str,
    cached: bool,
) -> None:
    clock.now = T0
    old_record = _store_keys(metastore, kms, sk_state, ik_state)
    sk_before = _latest_created(metastore, SK_ID)
    ik_before = _latest_created(metastore, IK_ID)
    factory = make_factory()
    if cached and old_record is not None:
        assert factory.get_session("p").decrypt(old_record) == b"old value"  # warms caches

    record = factory.get_session("p").encrypt(b"new value")
    used_ik = parse_data_row(record).parent.created

    reuse_ik = ik_state == "valid" and sk_state == "valid"
    new_sk = sk_state != "valid"
    if reuse_ik:
        assert used_ik == ik_before
        assert _count(metastore, IK_ID) == 1
    else:
        assert used_ik != ik_before
        assert used_ik == _latest_created(metastore, IK_ID)
        ik_record = metastore.load(IK_ID, used_ik)
        assert ik_record is not None and ik_record.parent is not None
        assert not ik_record.revoked
        assert ik_record.parent.created == _latest_created(metastore, SK_ID)
    if new_sk:
        assert _latest_created(metastore, SK_ID) == T0
        assert _count(metastore, SK_ID) == (1 if sk_state == "absent" else 2)
    else:
        assert _latest_created(metastore, SK_ID) == sk_before

    # Everything stays readable, from warm and from cold caches.
    for reader in (factory, make_factory()):
        session = reader.get_session("p")
        assert session.decrypt(record) == b"new value"
        if old_record is not None:
            assert session.decrypt(old_record) == b"old value"


def test_revocation_is_noticed_after_the_check_interval(
    make_factory: MakeFactory, metastore: InMemoryMetastore, clock: FakeClock
) -> None:
    factory = make_factory(CryptoPolicy(check_interval=600))
    session = factory.get_session("p")
    first = parse_data_row(session.encrypt(b"1")).parent
    metastore.revoke(first.key_id, first.created)
    clock.advance(599)
    assert parse_data_row(session.encrypt(b"2")).parent == first  # still cached, as Asherah
    clock.advance(2)
    second = parse_data_row(session.encrypt(b"3")).parent
    assert second != first
    assert second.created > first.created


def test_system_key_revoked_by_another_process_is_noticed_after_the_check_interval(
    make_factory: MakeFactory, metastore: InMemoryMetastore, clock: FakeClock
) -> None:
    """Another process (or Asherah's revoke script) revokes the SK in the metastore; this
    process, which holds the SK and its IK in cache, must stop writing under that SK once
    ``check_interval`` has passed, and never sooner than it must."""
    factory = make_factory(CryptoPolicy(check_interval=600))
    session = factory.get_session("p")
    first = parse_data_row(session.encrypt(b"1")).parent
    first_record = metastore.load(first.key_id, first.created)
    assert first_record is not None and first_record.parent is not None
    revoked_sk = first_record.parent
    assert metastore.revoke(revoked_sk.key_id, revoked_sk.created)
    clock.advance(599)
    assert parse_data_row(session.encrypt(b"2")).parent == first  # still cached, as Asherah
    clock.advance(2)
    second = parse_data_row(session.encrypt(b"3")).parent
    second_record = metastore.load(second.key_id, second.created)
    assert second_record is not None and second_record.parent is not None
    assert second_record.parent != revoked_sk  # a new IK under a new SK
    new_sk = metastore.load(second_record.parent.key_id, second_record.parent.created)
    assert new_sk is not None and not new_sk.revoked
    # Every later write stays off the revoked SK, in this process and in a fresh one.
    for writer in (session, make_factory().get_session("p")):
        parent = parse_data_row(writer.encrypt(b"4")).parent
        record = metastore.load(parent.key_id, parent.created)
        assert record is not None and record.parent == second_record.parent


def test_a_key_found_revoked_is_marked_revoked_for_every_holder(
    make_factory: MakeFactory, metastore: InMemoryMetastore, clock: FakeClock
) -> None:
    """When a write finds the latest SK (or IK) revoked in the metastore, the cached key
    object itself is marked revoked, so code holding it sees it too."""
    factory = make_factory(CryptoPolicy(check_interval=600))
    first = parse_data_row(factory.get_session("p").encrypt(b"1")).parent
    old_ik = factory._keys.intermediate_keys.latest[IK_ID]
    old_sk = factory._keys.system_keys.latest[SK_ID]
    assert metastore.revoke(old_sk.key_id, old_sk.created)
    assert metastore.revoke(first.key_id, first.created)
    clock.advance(601)
    new_sk = factory._keys.latest_system_key()
    assert new_sk is not old_sk and new_sk.created > old_sk.created
    assert old_sk.revoked  # the object other holders have
    assert factory._keys.system_key(old_sk.meta).revoked
    second = parse_data_row(factory.get_session("p").encrypt(b"2")).parent
    assert second != first and old_ik.revoked


def test_revocation_then_write_in_the_same_minute_gets_a_new_valid_key(
    make_factory: MakeFactory, metastore: InMemoryMetastore, clock: FakeClock
) -> None:
    clock.now = T0 + 1
    factory = make_factory()
    first = parse_data_row(factory.get_session("p").encrypt(b"1")).parent
    assert first.created == T0
    metastore.revoke(IK_ID, T0)
    clock.now = T0 + 30  # same minute: the truncated time collides with the revoked key
    other = make_factory()
    second = parse_data_row(other.get_session("p").encrypt(b"2")).parent
    assert second.created == T0 + 1  # one second after the revoked key
    record = metastore.load(IK_ID, second.created)
    assert record is not None and not record.revoked
    # A third factory in the same minute finds the new key valid and reuses it.
    third = parse_data_row(make_factory().get_session("p").encrypt(b"3")).parent
    assert third == second


def test_revoked_system_key_in_the_same_minute(
    make_factory: MakeFactory, metastore: InMemoryMetastore, clock: FakeClock
) -> None:
    clock.now = T0 + 1
    make_factory().get_session("p").encrypt(b"1")
    metastore.revoke(SK_ID, T0)
    metastore.revoke(IK_ID, T0)
    record = make_factory().get_session("p").encrypt(b"2")
    ik = metastore.load(IK_ID, parse_data_row(record).parent.created)
    assert ik is not None and ik.parent is not None
    assert ik.parent.created == T0 + 1
    assert _count(metastore, SK_ID) == 2


def test_expiry_of_a_cached_key_rotates_without_metastore_help(
    make_factory: MakeFactory, metastore: InMemoryMetastore, clock: FakeClock
) -> None:
    policy = CryptoPolicy(expire_after=3600, check_interval=10 * DAY)
    factory = make_factory(policy)
    session = factory.get_session("p")
    first = parse_data_row(session.encrypt(b"1")).parent
    clock.advance(3601)
    second = parse_data_row(session.encrypt(b"2")).parent
    assert second.created > first.created
    assert _count(metastore, SK_ID) == 2  # the SK had expired too


def test_expired_or_revoked_keys_never_block_reads(
    make_factory: MakeFactory, metastore: InMemoryMetastore, clock: FakeClock
) -> None:
    factory = make_factory()
    record = factory.get_session("p").encrypt(b"kept")
    meta = parse_data_row(record).parent
    metastore.revoke(meta.key_id, meta.created)
    metastore.revoke(SK_ID, _latest_created(metastore, SK_ID))  # type: ignore[arg-type]
    clock.advance(400 * DAY)
    assert make_factory().get_session("p").decrypt(record) == b"kept"
    assert factory.get_session("p").decrypt(record) == b"kept"


def test_expiry_precision_clamp(make_factory: MakeFactory, clock: FakeClock) -> None:
    policy = CryptoPolicy(expire_after=30)  # shorter than the 60 s create-date precision
    factory = make_factory(policy)
    session = factory.get_session("p")
    first = parse_data_row(session.encrypt(b"1")).parent
    clock.advance(31)
    assert parse_data_row(session.encrypt(b"2")).parent != first


def test_caching_disabled_reads_the_metastore_every_time(
    make_factory: MakeFactory, metastore: InMemoryMetastore
) -> None:
    factory = make_factory(CryptoPolicy(cache_intermediate_keys=False, cache_system_keys=False))
    session = factory.get_session("p")
    record = session.encrypt(b"x")
    loads = metastore.loads
    assert session.decrypt(record) == b"x"
    session.encrypt(b"y")
    assert metastore.loads > loads
    assert len(factory._keys.intermediate_keys) == 0


def test_key_cache_is_bounded_and_evicted_keys_are_wiped(make_factory: MakeFactory) -> None:
    factory = make_factory(CryptoPolicy(intermediate_key_cache_size=3))
    records, held = {}, []
    for i in range(10):
        records[f"p{i}"] = factory.get_session(f"p{i}").encrypt(b"v")
        held += factory._keys.intermediate_keys.cached()
    assert len(factory._keys.intermediate_keys) == 3
    assert len(factory._keys.intermediate_keys.latest) <= 3
    kept = {id(key) for key in factory._keys.intermediate_keys.cached()}
    evicted = list({id(key): key for key in held if id(key) not in kept}.values())
    assert len(evicted) == 7
    for key in evicted:  # every byte zeroed and the key unusable, not merely dropped
        assert not key.usable
        assert key._secret is not None and len(key._secret) == 32 and not any(key._secret)
    assert all(any(key._secret or b"") for key in factory._keys.intermediate_keys.cached())
    for partition, record in records.items():
        assert factory.get_session(partition).decrypt(record) == b"v"
    assert len(factory._keys.intermediate_keys) == 3


def test_key_created_listener(make_factory: MakeFactory) -> None:
    factory = make_factory()
    events: list[tuple[str, str, int]] = []
    factory._keys.listeners.append(lambda *event: events.append(event))  # type: ignore[arg-type]
    factory._keys.listeners.append(lambda *event: 1 / 0)  # a broken hook never breaks writes
    factory.get_session("p").encrypt(b"x")
    assert [(e, k) for e, k, _ in events] == [("created", SK_ID), ("created", IK_ID)]


def test_revocation_seen_by_this_process_applies_at_once(
    make_factory: MakeFactory, metastore: InMemoryMetastore
) -> None:
    factory = make_factory(CryptoPolicy(check_interval=10 * DAY))
    session = factory.get_session("p")
    first = parse_data_row(session.encrypt(b"1")).parent
    metastore.revoke(first.key_id, first.created)
    factory._keys.key_revoked(first)  # what the Django layer does on the key_revoked signal
    second = parse_data_row(session.encrypt(b"2")).parent
    assert second != first


def test_system_key_revocation_seen_by_this_process_rotates_its_intermediate_keys(
    make_factory: MakeFactory, metastore: InMemoryMetastore
) -> None:
    factory = make_factory(CryptoPolicy(check_interval=10 * DAY))
    session = factory.get_session("p")
    first = parse_data_row(session.encrypt(b"1")).parent
    sk = metastore.load_latest(SK_ID)
    assert sk is not None
    metastore.revoke(SK_ID, sk.created)
    factory._keys.key_revoked(KeyMeta(SK_ID, sk.created))
    second = parse_data_row(session.encrypt(b"2")).parent
    assert second != first
    assert _count(metastore, SK_ID) == 2


def test_shredded_key_is_forgotten_and_wiped(
    make_factory: MakeFactory, metastore: InMemoryMetastore
) -> None:
    factory = make_factory()
    session = factory.get_session("p")
    record = session.encrypt(b"gone")
    cached = factory._keys.intermediate_keys.cached()
    metastore.delete_key_id(IK_ID)
    assert factory._keys.key_shredded(IK_ID) == 1
    assert all(not key.usable for key in cached)
    with pytest.raises(KeyNotFoundError):
        session.decrypt(record)


def test_transient_copies_of_key_bytes_are_zeroed(
    make_factory: MakeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bytes a key is made from (new, unwrapped by the KMS, unwrapped by the SK) are
    zeroed once the CryptoKey holds its own copy (best effort, as keys.py says)."""
    from asherah_django.core import envelope, key_rows

    handed: list[object] = []
    real = envelope.CryptoKey

    def capture(meta: KeyMeta, secret: bytearray, **options: object) -> object:
        handed.append(secret)
        return real(meta, secret, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(envelope, "CryptoKey", capture)
    monkeypatch.setattr(key_rows, "CryptoKey", capture)  # (system keys unwrapped by the KMS)
    record = make_factory().get_session("p").encrypt(b"x")  # SK and IK created
    assert make_factory().get_session("p").decrypt(record) == b"x"  # both unwrapped
    assert len(handed) == 4
    for secret in handed:
        assert isinstance(secret, bytearray) and len(secret) == 32 and not any(secret)


def test_decrypt_many_loads_the_keys_of_all_records_in_one_batch(
    make_factory: MakeFactory, metastore: InMemoryMetastore
) -> None:
    writer = make_factory()
    session = writer.get_session("p")
    records = []
    for index in range(3):  # three intermediate keys in one partition
        records.append(session.encrypt(f"v{index}".encode()))
        meta = parse_data_row(records[-1]).parent
        metastore.revoke(meta.key_id, meta.created)
        writer._keys.key_revoked(meta)
    assert len({parse_data_row(r).parent for r in records}) == 3
    before = metastore.loads
    cold = make_factory().get_session("p")
    assert cold.decrypt_many(records) == [b"v0", b"v1", b"v2"]
    assert metastore.loads - before == 2  # one batch of IKs, one of their SK
