"""Live interoperability with the ``asherah`` wheel (the Rust core of Asherah).

Both implementations share one SQLite metastore file and the same static master key;
values and keys cross in both directions, whichever side created the keys first.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from asherah_django.core import (
    CryptoPolicy,
    PartitionMismatchError,
    SessionFactory,
    StaticKMS,
    parse_data_row,
)
from asherah_django.core.kms.static import TEST_MASTER_KEY_HEX
from tests.support import optional
from tests.support.sqlite_metastore import SqliteMetastore

# Required (fails, not skips, when missing) unless ASHERAH_DJANGO_REQUIRE_PEER=0.
asherah = optional.asherah_peer()

pytestmark = pytest.mark.interop
PAYLOADS = [b"", b"mySuperSecretPayload", bytes(range(256)), "héllo ✓".encode(), b"\x00" * 1000]
PARTITIONS = ["alice", "bob", "tenant_with_underscores", "42"]


def _rows(db_path: str) -> list[tuple[str, str, str]]:
    """The key rows in the shared file, read on a connection closed at once."""
    store = SqliteMetastore(db_path)
    try:
        return store.rows()
    finally:
        store.close()


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "metastore.sqlite3")


@pytest.fixture(params=["off", "sign"])
def ours(db_path: str, request: pytest.FixtureRequest) -> Iterator[SessionFactory]:
    """Ours with KEY_INTEGRITY off and sign (this metastore keeps no tags, as a table
    shared with other implementations may not: "sign" accepts untagged rows)."""
    metastore = SqliteMetastore(db_path)
    kms = StaticKMS.from_hex(TEST_MASTER_KEY_HEX)
    policy = CryptoPolicy(key_integrity=request.param)
    with SessionFactory("service", "product", kms, metastore, policy) as factory:
        yield factory
    metastore.close()


@pytest.fixture
def peer(db_path: str) -> Iterator[object]:
    factory = asherah.SessionFactory(
        {
            "ServiceName": "service",
            "ProductID": "product",
            "Metastore": "sqlite",
            "ConnectionString": db_path,
            "KMS": "static",
            "StaticMasterKeyHex": TEST_MASTER_KEY_HEX,
        }
    )
    yield factory
    factory.close()


def test_peer_encrypts_we_decrypt(peer, ours: SessionFactory, db_path: str) -> None:  # type: ignore[no-untyped-def]
    written = {
        (p, payload): peer.get_session(p).encrypt_bytes(payload)
        for p in PARTITIONS
        for payload in PAYLOADS
    }
    for (partition, payload), record in written.items():
        assert ours.get_session(partition).decrypt(record) == payload
    # The peer's bookkeeping row is in the table and disturbs nothing.
    ids = [row[0] for row in _rows(db_path)]
    assert any(i.startswith("__asherah_internal_config_drift_guard_v1__:") for i in ids)


def test_we_encrypt_peer_decrypts(peer, ours: SessionFactory) -> None:  # type: ignore[no-untyped-def]
    written = {
        (p, payload): ours.get_session(p).encrypt(payload)
        for p in PARTITIONS
        for payload in PAYLOADS
    }
    for (partition, payload), record in written.items():
        assert peer.get_session(partition).decrypt_bytes(record) == payload


def test_keys_we_created_are_reused_by_the_peer_and_vice_versa(  # type: ignore[no-untyped-def]
    peer, ours: SessionFactory, db_path: str
) -> None:
    # We create the SK and the IK of "first"; the peer creates the IK of "second".
    ours_first = ours.get_session("first").encrypt(b"ours")
    peer_first = peer.get_session("first").encrypt_bytes(b"peer")
    peer_second = peer.get_session("second").encrypt_bytes(b"peer")
    ours_second = ours.get_session("second").encrypt(b"ours")
    assert parse_data_row(peer_first).parent == parse_data_row(ours_first).parent
    assert parse_data_row(ours_second).parent == parse_data_row(peer_second).parent
    rows = _rows(db_path)
    sk_rows = [r for r in rows if r[0] == "_SK_service_product"]
    assert len(sk_rows) == 1
    assert len([r for r in rows if r[0] == "_IK_first_service_product"]) == 1
    assert len([r for r in rows if r[0] == "_IK_second_service_product"]) == 1
    for record, plaintext in [(ours_first, b"ours"), (peer_first, b"peer")]:
        assert ours.get_session("first").decrypt(record) == plaintext
        assert peer.get_session("first").decrypt_bytes(record) == plaintext
    for record, plaintext in [(ours_second, b"ours"), (peer_second, b"peer")]:
        assert ours.get_session("second").decrypt(record) == plaintext
        assert peer.get_session("second").decrypt_bytes(record) == plaintext


def test_rows_we_write_match_the_peers_layout(peer, ours: SessionFactory, db_path: str) -> None:  # type: ignore[no-untyped-def]
    ours.get_session("mine").encrypt(b"x")
    peer.get_session("theirs").encrypt_bytes(b"x")
    rows = {r[0]: r for r in _rows(db_path)}
    for key_id in ("_IK_mine_service_product", "_IK_theirs_service_product"):
        _, created, record = rows[key_id]
        parsed = json.loads(record)
        assert list(parsed) == ["Created", "Key", "ParentKeyMeta"]
        assert len(created) == 19 and created.endswith(":00")  # "YYYY-MM-DD HH:MM:00"
        assert parsed["Created"] % 60 == 0
    assert list(json.loads(rows["_SK_service_product"][2])) == ["Created", "Key"]


def test_partition_isolation_holds_across_implementations(peer, ours: SessionFactory) -> None:  # type: ignore[no-untyped-def]
    record = peer.get_session("alice").encrypt_bytes(b"alice only")
    with pytest.raises(PartitionMismatchError):
        ours.get_session("bob").decrypt(record)
    ours_record = ours.get_session("alice").encrypt(b"alice only")
    with pytest.raises(Exception, match=r"(?i)decrypt|partition"):
        peer.get_session("bob").decrypt_bytes(ours_record)
