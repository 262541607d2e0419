"""Integrity tags of key rows (asherah_django.core.integrity; issue #13)."""

from __future__ import annotations

import pytest

from asherah_django.core import (
    ConfigurationError,
    CryptoPolicy,
    EnvelopeKeyRecord,
    InMemoryMetastore,
    KeyMeta,
    SessionFactory,
    StaticKMS,
    integrity,
)
from asherah_django.core.errors import KeyIntegrityError
from asherah_django.core.kms.static import TEST_MASTER_KEY_HEX

KMS = StaticKMS.from_hex(TEST_MASTER_KEY_HEX)
SK_SECRET = bytes(range(32))
IK = EnvelopeKeyRecord(1700000000, bytes(60), KeyMeta("_SK_s_p", 1699999999))


def _copy(record: EnvelopeKeyRecord, **changes: object) -> EnvelopeKeyRecord:
    fields = {
        "created": record.created,
        "encrypted_key": record.encrypted_key,
        "parent": record.parent,
        "revoked": record.revoked,
        "tag": record.tag,
    }
    fields.update(changes)
    return EnvelopeKeyRecord(**fields)  # type: ignore[arg-type]


def test_every_field_but_revoked_is_covered() -> None:
    tag = integrity.make_tag(SK_SECRET, "child", "_IK_a_s_p", 1700000000, IK)
    signed = _copy(IK, tag=tag)
    assert integrity.status(SK_SECRET, "child", "_IK_a_s_p", 1700000000, signed) == "signed"
    # Revoked is flipped by plain SQL (revoke scripts, DjangoMetastore.revoke): not covered.
    assert integrity.status(SK_SECRET, "child", "_IK_a_s_p", 1700000000, signed.revoked_copy()) == (
        "signed"
    )
    for key_id, created, record in [
        ("_IK_b_s_p", 1700000000, signed),
        ("_IK_a_s_p", 1700000060, signed),
        ("_IK_a_s_p", 1700000000, _copy(signed, created=1700000001)),
        ("_IK_a_s_p", 1700000000, _copy(signed, encrypted_key=bytes([1]) + bytes(59))),
        ("_IK_a_s_p", 1700000000, _copy(signed, parent=KeyMeta("_SK_t_p", 1699999999))),
        ("_IK_a_s_p", 1700000000, _copy(signed, parent=KeyMeta("_SK_s_p", 1699999998))),
        ("_IK_a_s_p", 1700000000, _copy(signed, parent=None)),
    ]:
        assert integrity.status(SK_SECRET, "child", key_id, created, record) == "invalid"
    # Another key, or the other purpose, does not verify it either.
    assert integrity.status(bytes(32), "child", "_IK_a_s_p", 1700000000, signed) == "invalid"
    assert integrity.status(SK_SECRET, "self", "_IK_a_s_p", 1700000000, signed) == "invalid"
    assert integrity.status(SK_SECRET, "child", "_IK_a_s_p", 1700000000, _copy(IK, tag="x")) == (
        "invalid"
    )


def test_a_system_key_tag_survives_rewrapping_the_same_key() -> None:
    """``asherah_rotate --rewrap`` replaces a system key's wrapped bytes (same key inside):
    its tag stays valid. Bytes wrapping another key do not verify (the MAC key changes)."""
    record = EnvelopeKeyRecord(1700000000, KMS.encrypt_key(SK_SECRET))
    record.tag = integrity.make_tag(SK_SECRET, "self", "_SK_s_p", 1700000000, record)
    rewrapped = _copy(record, encrypted_key=KMS.encrypt_key(SK_SECRET))
    assert rewrapped.encrypted_key != record.encrypted_key
    secret = KMS.decrypt_key(rewrapped.encrypted_key)
    assert integrity.status(secret, "self", "_SK_s_p", 1700000000, rewrapped) == "signed"
    swapped = _copy(record, encrypted_key=KMS.encrypt_key(bytes(32)))
    secret = KMS.decrypt_key(swapped.encrypted_key)
    assert integrity.status(secret, "self", "_SK_s_p", 1700000000, swapped) == "invalid"


@pytest.mark.parametrize(
    ("mode", "tag", "refused"),
    [
        ("off", None, False),
        ("off", "v1:bogus", False),
        ("sign", None, False),
        ("sign", "v1:bogus", True),
        ("require", None, True),
        ("require", "v1:bogus", True),
    ],
)
def test_modes(mode: str, tag: str | None, refused: bool) -> None:
    record = _copy(IK, tag=tag)
    if refused:
        with pytest.raises(KeyIntegrityError) as raised:
            integrity.check(mode, SK_SECRET, "child", "_IK_a_s_p", 1700000000, record)
        assert "'_IK_a_s_p' created 1700000000" in str(raised.value)
    else:
        integrity.check(mode, SK_SECRET, "child", "_IK_a_s_p", 1700000000, record)


def test_policy_refuses_an_unknown_mode() -> None:
    with pytest.raises(ConfigurationError, match="key_integrity"):
        CryptoPolicy(key_integrity="verify")


@pytest.mark.parametrize("mode", ["sign", "require"])
def test_tags_are_checked_when_keys_load_never_per_value(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every row a factory writes carries a tag, each key is checked once when it is
    loaded, and warm encrypts and decrypts check nothing."""
    store = InMemoryMetastore()
    with SessionFactory("s", "p", KMS, store, CryptoPolicy(key_integrity=mode)) as writer:
        values = [writer.get_session("a").encrypt(b"%d" % n) for n in range(50)]
    assert all(record.tag for _, _, record in store.items())
    calls: list[str] = []
    real = integrity.check

    def counting(*args: object) -> None:
        calls.append(str(args[3]))
        real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(integrity, "check", counting)
    with SessionFactory("s", "p", KMS, store, CryptoPolicy(key_integrity=mode)) as reader:
        session = reader.get_session("a")
        assert [session.decrypt(v) for v in values] == [b"%d" % n for n in range(50)]
        assert sorted(calls) == ["_IK_a_s_p", "_SK_s_p"]  # once each, at load
        session.encrypt(b"first write: loads the latest key for writing (once)")
        loaded = len(calls)
        for _ in range(100):
            session.decrypt(session.encrypt(b"warm"))
        assert len(calls) == loaded <= 3


class _CountingKMS(StaticKMS):
    """The static KMS, counting the system keys it is asked to unwrap."""

    unwraps = 0

    def decrypt_key(self, encrypted_key: bytes) -> bytes:
        type(self).unwraps += 1
        return super().decrypt_key(encrypted_key)


def test_require_refuses_an_untagged_system_key_before_asking_the_kms() -> None:
    """A database writer who strips a system key row's tag (or inserts an untagged one) does
    not even get the KMS called with it under ``require``: no KMS traffic or audit entry of
    the writer's making, and the same typed refusal."""
    store = InMemoryMetastore()
    with SessionFactory("s", "p", KMS, store, CryptoPolicy(key_integrity="sign")) as writer:
        value = writer.get_session("a").encrypt(b"x")
    for key_id, created, record in store.items():
        if key_id.startswith("_SK_"):
            store.delete_key_id(key_id)
            store.store(key_id, created, _copy(record, tag=None))
    kms = _CountingKMS.from_hex(TEST_MASTER_KEY_HEX)
    assert isinstance(kms, _CountingKMS)
    _CountingKMS.unwraps = 0
    with SessionFactory("s", "p", kms, store, CryptoPolicy(key_integrity="require")) as reader:
        with pytest.raises(KeyIntegrityError, match="has no integrity tag"):
            reader.get_session("a").decrypt(value)
    assert _CountingKMS.unwraps == 0
