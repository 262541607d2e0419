"""Key substitution by someone who can write the metastore but has no KMS access (issue #13).

The attacker edits key rows and DataRowRecords only; the master key stays out of reach.
Every test runs the pure-Python decrypt path and, when built, the C one.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from asherah_django.core import (
    CryptoPolicy,
    DecryptionError,
    EnvelopeKeyRecord,
    InMemoryMetastore,
    KeyMeta,
    SessionFactory,
    StaticKMS,
)
from asherah_django.core import session as session_module
from asherah_django.core.errors import KeyIntegrityError, KeyParentMismatchError
from asherah_django.core.kms.static import TEST_MASTER_KEY_HEX

PATHS = ["python"] + (["c"] if session_module.SPEEDUPS else [])
SECRET = b"tenant A's diagnosis"


def _decrypt(path: str) -> Callable[[session_module.Session, str], bytes]:
    if path == "python":
        return session_module.Session._decrypt_py
    return session_module.Session._decrypt_c  # type: ignore[no-any-return]


def _factory(service: str, store: InMemoryMetastore, mode: str = "off") -> SessionFactory:
    return SessionFactory(
        service,
        "prod",
        StaticKMS.from_hex(TEST_MASTER_KEY_HEX),
        store,
        CryptoPolicy(key_integrity=mode),
    )


def _retarget(value: str, ik_id: str, created: int) -> str:
    """The DataRowRecord ``value`` pointing at ``(ik_id, created)``, in Go's compact form."""
    row = json.loads(value)
    row["Key"]["ParentKeyMeta"] = {"KeyId": ik_id, "Created": created}
    return json.dumps(row, separators=(",", ":"))


def copy_tenant_key(
    store: InMemoryMetastore,
    source: KeyMeta,
    target_id: str,
    created: int,
    *,
    keep_tag: bool = True,
) -> None:
    """The attacker's INSERT ... SELECT: tenant A's IK row (its tag too, unless told
    otherwise) under tenant B's id."""
    r = store.load(*source)
    assert r is not None
    tag = r.tag if keep_tag else None
    store.store(
        target_id, created, EnvelopeKeyRecord(r.created, r.encrypted_key, r.parent, tag=tag)
    )


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("mode", ["off", "sign"])
def test_cross_tenant_copy_without_tags_still_decrypts(path: str, mode: str) -> None:
    """Attack (a), cross-tenant key substitution, where it still works: KEY_INTEGRITY off
    (and sign, once the attacker removes the tag of the copied row).

    Demonstration (main before issue #13, every mode): copy tenant A's ``_IK_A_svc_prod``
    row under ``_IK_B_svc_prod`` with a new ``created``, point one of tenant B's
    DataRowRecords at that copy; tenant B's session returns tenant A's plaintext. An
    intermediate key record carries no id, so nothing but an integrity tag can tell.
    """
    store = InMemoryMetastore()
    with _factory("svc", store, mode) as factory:
        a_value = factory.get_session("A").encrypt(SECRET)
        a_meta = KeyMeta(*json.loads(a_value)["Key"]["ParentKeyMeta"].values())
        b_session = factory.get_session("B")
        b_session.encrypt(b"tenant B's own value")
        copy_tenant_key(
            store, a_meta, b_session.intermediate_key_id, a_meta.created + 7, keep_tag=False
        )
        forged = _retarget(a_value, b_session.intermediate_key_id, a_meta.created + 7)
        assert _decrypt(path)(b_session, forged) == SECRET


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("drop_tag", [False, True])
def test_cross_tenant_copy_is_refused_with_require(path: str, drop_tag: bool) -> None:
    """Attack (a) with KEY_INTEGRITY="require": the copied row's tag was made for
    ``(_IK_A_..., created)`` and does not verify under ``(_IK_B_..., created')``; without
    its tag the row is refused as untagged. Either way a typed KeyIntegrityError."""
    store = InMemoryMetastore()
    with _factory("svc", store, "require") as factory:
        a_value = factory.get_session("A").encrypt(SECRET)
        a_meta = KeyMeta(*json.loads(a_value)["Key"]["ParentKeyMeta"].values())
        b_session = factory.get_session("B")
        copy_tenant_key(
            store, a_meta, b_session.intermediate_key_id, a_meta.created + 7, keep_tag=not drop_tag
        )
        forged = _retarget(a_value, b_session.intermediate_key_id, a_meta.created + 7)
        with pytest.raises(KeyIntegrityError) as raised:
            _decrypt(path)(b_session, forged)
        assert "_IK_B_svc_prod" in str(raised.value)
        assert SECRET.decode() not in str(raised.value)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("mode", ["off", "sign", "require"])
def test_cross_service_parent_is_refused_in_every_mode(path: str, mode: str) -> None:
    """Attack (b), cross-service key substitution.

    Demonstration (main before issue #13): services ``svc`` and ``other`` share the
    metastore and the master key. Copy ``other``'s IK row (ParentKeyMeta naming
    ``_SK_other_prod``) under ``_IK_B_svc_prod`` and point a value of ``other`` at it:
    ``svc``'s session unwrapped the IK with ``other``'s system key and returned
    ``other``'s plaintext. Now the IK's parent must be ``_SK_svc_prod``: a typed
    KeyParentMismatchError, whatever KEY_INTEGRITY says.
    """
    store = InMemoryMetastore()
    with _factory("other", store, mode) as other, _factory("svc", store, mode) as svc:
        o_value = other.get_session("B").encrypt(SECRET)
        o_meta = KeyMeta(*json.loads(o_value)["Key"]["ParentKeyMeta"].values())
        b_session = svc.get_session("B")
        copy_tenant_key(store, o_meta, b_session.intermediate_key_id, o_meta.created)
        forged = _retarget(o_value, b_session.intermediate_key_id, o_meta.created)
        with pytest.raises(KeyParentMismatchError) as raised:
            _decrypt(path)(b_session, forged)
        assert "_SK_other_prod" in str(raised.value) and "_SK_svc_prod" in str(raised.value)
        # The batch preload skips the row; decrypting afterwards still refuses it.
        with pytest.raises(KeyParentMismatchError):
            b_session.decrypt_many([forged])


@pytest.mark.parametrize("mode", ["off", "sign"])
def test_cross_service_system_key_copy_without_tags_still_decrypts(mode: str) -> None:
    """The other cross-service variant, where it still works without tags: copy ``other``'s
    SK row under ``_SK_svc_prod`` (with a new ``created``) and ``other``'s IK row under
    ``_IK_B_svc_prod`` re-parented to that copy. The KMS unwraps any system key made with
    the same master key, and an SK record carries no id. KEY_INTEGRITY="require" (next
    test) or one master key per service stops it."""
    store = InMemoryMetastore()
    with _factory("other", store, mode) as other, _factory("svc", store, mode) as svc:
        _, b_session, forged = _copy_system_and_intermediate(store, other, svc)
        assert _decrypt("python")(b_session, forged) == SECRET


@pytest.mark.parametrize("path", PATHS)
def test_cross_service_system_key_copy_is_refused_with_require(path: str) -> None:
    """The same with KEY_INTEGRITY="require": the copied SK row's tag names
    ``_SK_other_prod``, so the copy is refused after the KMS unwrap, before any use."""
    store = InMemoryMetastore()
    with _factory("other", store, "require") as other, _factory("svc", store, "require") as svc:
        _, b_session, forged = _copy_system_and_intermediate(store, other, svc)
        with pytest.raises(KeyIntegrityError):
            _decrypt(path)(b_session, forged)


def _copy_system_and_intermediate(
    store: InMemoryMetastore, other: SessionFactory, svc: SessionFactory
) -> tuple[str, session_module.Session, str]:
    o_value = other.get_session("B").encrypt(SECRET)
    o_meta = KeyMeta(*json.loads(o_value)["Key"]["ParentKeyMeta"].values())
    o_ik = store.load(*o_meta)
    assert o_ik is not None and o_ik.parent is not None
    o_sk = store.load(*o_ik.parent)
    assert o_sk is not None
    fake_sk = KeyMeta(svc.system_key_id, o_ik.parent.created + 11)
    # Under "sign" the attacker drops the tags (untagged rows are accepted); under
    # "require" they must keep them, and the tags name the other service's rows.
    keep = svc.policy.key_integrity == "require"
    copy = EnvelopeKeyRecord(fake_sk.created, o_sk.encrypted_key, tag=o_sk.tag if keep else None)
    store.store(fake_sk.key_id, fake_sk.created, copy)
    b_session = svc.get_session("B")
    ik_copy = EnvelopeKeyRecord(o_meta.created, o_ik.encrypted_key, parent=fake_sk)
    ik_copy.tag = o_ik.tag if keep else None
    store.store(b_session.intermediate_key_id, o_meta.created, ik_copy)
    forged = _retarget(o_value, b_session.intermediate_key_id, o_meta.created)
    return o_value, b_session, forged


def test_system_key_asked_under_another_id_is_refused() -> None:
    """An SK is only ever loaded under this factory's own id: asking the hierarchy for
    another service's SK (which a tampered record would make it do) is refused."""
    store = InMemoryMetastore()
    with _factory("other", store) as other, _factory("svc", store) as svc:
        other.get_session("p").encrypt(b"x")
        (sk_meta,) = [KeyMeta(k, c) for k, c, _ in store.items() if k.startswith("_SK_")]
        with pytest.raises(KeyParentMismatchError):
            svc._keys.system_key(sk_meta)


@pytest.mark.parametrize("mode", ["off", "sign", "require"])
def test_write_path_refuses_a_latest_key_with_a_foreign_parent(mode: str) -> None:
    """The latest IK row of a partition re-parented to another service's SK is refused on
    the write path too (no value is ever encrypted under it)."""
    store = InMemoryMetastore()
    with _factory("other", store, mode) as other, _factory("svc", store, mode) as svc:
        o_value = other.get_session("B").encrypt(SECRET)
        o_meta = KeyMeta(*json.loads(o_value)["Key"]["ParentKeyMeta"].values())
        session = svc.get_session("B")
        copy_tenant_key(store, o_meta, session.intermediate_key_id, o_meta.created)
        with pytest.raises(KeyParentMismatchError):
            session.encrypt(b"new value")


def test_errors_are_typed_decryption_errors() -> None:
    assert issubclass(KeyParentMismatchError, DecryptionError)
    assert issubclass(KeyIntegrityError, DecryptionError)


def test_colliding_key_ids_of_two_services_are_refused_not_read() -> None:
    """Partition ``a`` of service ``b_c`` and partition ``a_b`` of service ``c`` (product
    ``d``) share the key id ``_IK_a_b_c_d``. Each service's rows name its own system key,
    so neither reads the other's values: KeyParentMismatchError (before issue #13 they
    read each other's values)."""
    store = InMemoryMetastore()
    kms = StaticKMS.from_hex(TEST_MASTER_KEY_HEX)
    with (
        SessionFactory("b_c", "d", kms, store) as first,
        SessionFactory("c", "d", kms, store) as second,
    ):
        one, two = first.get_session("a"), second.get_session("a_b")
        assert one.intermediate_key_id == two.intermediate_key_id == "_IK_a_b_c_d"
        value = one.encrypt(b"b_c's value")
        with pytest.raises(KeyParentMismatchError):
            two.decrypt(value)
        with pytest.raises(KeyParentMismatchError):  # nor writes under b_c's key
            two.encrypt(b"c's value")


@pytest.mark.parametrize("path", PATHS)
def test_an_intermediate_key_of_the_wrong_length_is_a_typed_error(path: str) -> None:
    """An IK row that authenticates under the system key but holds 16 bytes (a writer who
    had the system key, or a foreign implementation's bug) is refused as a DecryptionError
    naming the key, never used as a key of another size."""
    from asherah_django.core import aead

    store = InMemoryMetastore()
    factory = _factory("svc", store)
    value = factory.get_session("t").encrypt(SECRET)
    ((sk_id, sk_created, sk_record),) = [i for i in store.items() if i[0].startswith("_SK_")]
    system_key = StaticKMS.from_hex(TEST_MASTER_KEY_HEX).decrypt_key(sk_record.encrypted_key)
    ik_id, ik_created = "_IK_t_svc_prod", sk_created + 10
    short = aead.Cipher(system_key).seal(bytes(16))
    store.store(ik_id, ik_created, EnvelopeKeyRecord(ik_created, short, KeyMeta(sk_id, sk_created)))
    cold = _factory("svc", store)
    with pytest.raises(DecryptionError, match=f"intermediate key '{ik_id}' is not 32 bytes"):
        _decrypt(path)(cold.get_session("t"), _retarget(value, ik_id, ik_created))
