"""Session round trips, partition isolation, input checking and factory lifecycle."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from asherah_django.core import (
    DecryptionError,
    InMemoryMetastore,
    InvalidPartitionError,
    KeyNotFoundError,
    KMSError,
    PartitionMismatchError,
    PayloadTooLargeError,
    Session,
    SessionClosedError,
    SessionFactory,
    StaticKMS,
    parse_data_row,
)
from asherah_django.core.session import MAX_PLAINTEXT_SIZE
from tests.support import optional


@pytest.mark.parametrize("payload", [b"", b"\x00", b"hello", bytes(range(256)) * 40])
def test_round_trip(factory: SessionFactory, payload: bytes) -> None:
    session = factory.get_session("tenant-1")
    record = session.encrypt(payload)
    assert session.decrypt(record) == payload
    assert session.decrypt(record.encode()) == payload


def test_text_helpers(factory: SessionFactory) -> None:
    session = factory.get_session("tenant-1")
    assert session.decrypt_text(session.encrypt_text("héllo ✓")) == "héllo ✓"
    with pytest.raises(DecryptionError, match="not UTF-8"):
        session.decrypt_text(session.encrypt(b"\xff\xfe"))


def test_record_shape_matches_asherah(factory: SessionFactory) -> None:
    record = factory.get_session("p1").encrypt(b"x" * 20)
    parsed = json.loads(record)
    assert list(parsed) == ["Key", "Data"]
    assert list(parsed["Key"]) == ["Created", "Key", "ParentKeyMeta"]
    assert parsed["Key"]["ParentKeyMeta"]["KeyId"] == "_IK_p1_service_product"
    assert parsed["Key"]["ParentKeyMeta"]["Created"] % 60 == 0  # minute-truncated IK
    assert " " not in record
    row = parse_data_row(record)
    assert len(row.encrypted_key) == 60
    assert len(row.data) == 20 + 16 + 12


@pytest.mark.parametrize("path", ["py", "c"])
def test_each_encrypt_uses_a_fresh_data_key(factory: SessionFactory, path: str) -> None:
    encrypt = Session._encrypt_py if path == "py" else Session._encrypt_c
    if path == "c":
        optional.c_path()
    session = factory.get_session("p1")
    rows = [parse_data_row(encrypt(session, b"same")) for _ in range(2)]
    ik = factory._keys.intermediate_key(rows[0].parent)
    data_keys = [ik.unwrap(row.encrypted_key) for row in rows]
    assert len(data_keys[0]) == 32 and data_keys[0] != data_keys[1]
    # Fresh nonces too (a fresh key alone would hide a constant nonce): tests/unit/core/aead/test_nonces.py
    assert rows[0].encrypted_key[-12:] != rows[1].encrypted_key[-12:]
    assert rows[0].data[-12:] != rows[1].data[-12:]
    assert rows[0].data != rows[1].data


@pytest.mark.parametrize(
    ("mine", "theirs"),
    [("alice", "bob"), ("al", "al_ice"), ("alice", "alicf"), ("p1", "p2"), ("ü1", "ü2")],
)
@pytest.mark.parametrize("path", ["py", "c"])
def test_other_partition_is_refused(
    factory: SessionFactory, mine: str, theirs: str, path: str
) -> None:
    """Ids of the same length reach the fast path's exact comparison; others (a prefix)
    are refused before it. Either way: PartitionMismatchError, not a key lookup."""
    decrypt = Session._decrypt_py if path == "py" else Session._decrypt_c
    if path == "c":
        optional.c_path()
    record = factory.get_session(mine).encrypt(b"secret")
    factory.get_session(theirs).encrypt(b"their own key, created in the same minute")
    with pytest.raises(PartitionMismatchError, match="another partition"):
        decrypt(factory.get_session(theirs), record)
    assert decrypt(factory.get_session(mine), record) == b"secret"


def test_other_service_is_refused(kms: StaticKMS, metastore: InMemoryMetastore) -> None:
    with (
        SessionFactory("service", "product", kms, metastore) as mine,
        SessionFactory("other", "product", kms, metastore) as theirs,
    ):
        record = theirs.get_session("p").encrypt(b"x")
        with pytest.raises(PartitionMismatchError):
            mine.get_session("p").decrypt(record)


def test_missing_intermediate_key_is_reported(factory: SessionFactory) -> None:
    session = factory.get_session("p1")
    record = session.encrypt(b"x")
    fresh = SessionFactory("service", "product", factory.kms, InMemoryMetastore())
    with pytest.raises(KeyNotFoundError, match="not in the metastore"):
        fresh.get_session("p1").decrypt(record)
    fresh.close()


def test_wrong_master_key_is_a_kms_error(
    factory: SessionFactory, metastore: InMemoryMetastore
) -> None:
    record = factory.get_session("p1").encrypt(b"x")
    with SessionFactory("service", "product", StaticKMS.random(), metastore) as other:
        with pytest.raises(KMSError, match="master key differs"):
            other.get_session("p1").decrypt(record)


@pytest.mark.parametrize("partition", ["", None, 5, "x" * 300, "tab\there"])
def test_bad_partition_ids(factory: SessionFactory, partition: object) -> None:
    with pytest.raises(InvalidPartitionError):
        factory.get_session(partition)  # type: ignore[arg-type]


def test_encrypt_checks_its_input(factory: SessionFactory) -> None:
    session = factory.get_session("p1")
    with pytest.raises(TypeError, match="takes bytes, not str"):
        session.encrypt("text")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="takes str"):
        session.encrypt_text(b"bytes")  # type: ignore[arg-type]
    assert session.decrypt(session.encrypt(bytearray(b"ba"))) == b"ba"
    assert session.decrypt(session.encrypt(memoryview(b"mv"))) == b"mv"


def test_payload_limit(factory: SessionFactory) -> None:
    too_big = memoryview(bytearray(MAX_PLAINTEXT_SIZE + 1))
    with pytest.raises(PayloadTooLargeError, match="64 MiB"):
        factory.get_session("p1").encrypt(too_big)


def test_the_payload_limit_is_asherahs_64_mib(factory: SessionFactory) -> None:
    """The limit is the Rust core's 64 MiB, not a smaller one: 2 MiB round-trips and the
    constant is exactly 64 MiB (a typo such as (64 + 1024) * 1024 would refuse it)."""
    assert MAX_PLAINTEXT_SIZE == 64 * 1024 * 1024
    session = factory.get_session("big")
    payload = bytes(range(256)) * (8 * 1024)  # 2 MiB
    assert session.decrypt(session.encrypt(payload)) == payload


def test_closed_factory_refuses_work_and_wipes_keys(factory: SessionFactory) -> None:
    session = factory.get_session("p1")
    record = session.encrypt(b"x")
    cached = factory._keys.intermediate_keys.cached() + factory._keys.system_keys.cached()
    assert cached
    factory.close()
    assert all(not key.usable for key in cached)
    assert all(not any(key._secret) for key in cached)
    with pytest.raises(SessionClosedError):
        session.encrypt(b"x")
    with pytest.raises(SessionClosedError):
        session.decrypt(record)
    with pytest.raises(SessionClosedError):
        factory.get_session("p2")
    factory.close()  # idempotent


def test_sessions_are_cached_and_bounded(kms: StaticKMS, metastore: InMemoryMetastore) -> None:
    from asherah_django.core import CryptoPolicy

    with SessionFactory(
        "service", "product", kms, metastore, CryptoPolicy(session_cache_size=2)
    ) as factory:
        first = factory.get_session("a")
        assert factory.get_session("a") is first
        factory.get_session("b")
        factory.get_session("c")
        assert len(factory._sessions) == 2
        assert factory.get_session("a") is not first


def test_reprs_hide_key_material(factory: SessionFactory) -> None:
    session = factory.get_session("p1")
    record = session.encrypt(b"super secret plaintext")
    row = parse_data_row(record)
    key = factory._keys.intermediate_keys.latest["_IK_p1_service_product"]
    texts = [repr(factory), repr(session), repr(row), repr(key), str(key), repr(factory.kms)]
    texts += [repr(factory._keys.intermediate_keys), repr(factory.metastore)]
    texts += [repr(r) for _, _, r in factory.metastore.items()]  # type: ignore[attr-defined]
    secrets = [row.encrypted_key.hex(), row.data.hex(), bytes(key._secret).hex()]
    b64 = json.loads(record)
    secrets += [b64["Data"], b64["Key"]["Key"], "super secret"]
    for text in texts:
        for secret in secrets:
            assert secret not in text, text
    with pytest.raises(TypeError, match="cannot be pickled"):
        import pickle

        pickle.dumps(key)


def test_core_never_imports_django() -> None:
    code = (
        "import sys, asherah_django.core, asherah_django.core.session, "
        "asherah_django.core.kms.static, asherah_django.core.metastore.memory\n"
        "try:\n    import asherah_django.core.kms.vault\nexcept ImportError:\n    pass\n"
        "bad = sorted(m for m in sys.modules if m == 'django' or m.startswith('django.'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("path", ["py", "c"])
def test_canonical_records_take_the_fast_path(
    factory: SessionFactory, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    """The compact layout every Asherah implementation writes is sliced, not JSON-parsed
    (the hot path); the parser is only for other spellings."""
    from asherah_django.core import session as session_module

    decrypt = Session._decrypt_py if path == "py" else Session._decrypt_c
    if path == "c":
        optional.c_path()
    session = factory.get_session("p1")
    record = session.encrypt(b"fast")
    respaced = json.dumps(json.loads(record), indent=1)

    def no_parsing(record: object) -> object:
        raise AssertionError("the JSON parser was used")

    monkeypatch.setattr(session_module, "parse_data_row", no_parsing)
    assert decrypt(session, record) == b"fast"
    with pytest.raises(AssertionError, match="parser was used"):
        decrypt(session, respaced)


def test_short_blobs_are_refused_saying_what_was_expected() -> None:
    from asherah_django.core.aead import Cipher, new_key

    cipher = Cipher(new_key())
    for size in (0, 11, 12, 27):
        with pytest.raises(DecryptionError, match=f"is {size} bytes; at least 28 expected"):
            cipher.open(bytes(size))
    with pytest.raises(DecryptionError, match="authentication failed"):
        cipher.open(bytes(28))


def test_a_wiped_key_fails_loudly_not_silently(factory: SessionFactory) -> None:
    factory.get_session("p1").encrypt(b"x")
    key = factory._keys.intermediate_keys.cached()[0]
    key.wipe()
    assert not key.usable and key.secret_bytes is None
    with pytest.raises(RuntimeError, match="wiped"):
        key.aead.encrypt(bytes(12), b"data", None)
    with pytest.raises(RuntimeError, match="wiped"):
        key.aead.decrypt(bytes(12), bytes(28), None)
    with pytest.raises(RuntimeError, match="wiped"):
        key.wrap(bytes(32), bytes(12))
