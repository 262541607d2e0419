"""The index key: generated once, wrapped by the system key, stored in the metastore in
Asherah's record format under an id no Asherah implementation mistakes for a key of its
own, cached, and never visible: not in settings, logs or the admin. The index is never a
plain (unkeyed) hash of the value."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import pickle
import time
import warnings
from typing import Any

import pytest
from django.conf import settings
from django.contrib.admin.utils import quote
from django.db import connection
from django.test import Client, override_settings
from django.utils.timezone import now

import asherah_django
from asherah_django.admin import keys as admin_keys
from asherah_django.blind_index import IndexKeys, KeyVersion, index_key_id, parse_index_key_id
from asherah_django.blind_index.options import normalise_text
from asherah_django.core.records import EnvelopeKeyRecord, KeyMeta
from asherah_django.models import EncryptionKey
from asherah_django.rotation import all_partitions
from tests.bidxapp.models import Customer, Subscriber

from .conftest import digest_of, factory, keys, raw_row

P = "bidx-keys"
GLOBAL_ID = "_BIDX__testsvc_testprod"
LIST = "/admin/asherah_django/encryptionkey/"


def forms_of(secret: bytes) -> list[str]:
    """How key bytes could show up in text."""
    return [
        secret.hex(),
        secret.hex().upper(),
        base64.b64encode(secret).decode()[:43],
        base64.urlsafe_b64encode(secret).decode()[:43],
        repr(secret)[2:22],
    ]


def secrets_of(version: KeyVersion, *contexts: str) -> list[bytes]:
    """A version's key bytes and the field keys derived from it."""
    stored = bytes(version._secret or b"")
    assert len(stored) == 32
    return [stored, *(version.field_key(c) for c in contexts)]


def index_key(key_id: str = GLOBAL_ID) -> KeyVersion:
    ring = keys().ring(key_id)
    assert ring is not None
    version = ring.write_version(time.time())
    assert version is not None
    return version


@pytest.mark.django_db
def test_the_key_is_an_asherah_record_wrapped_by_the_system_key() -> None:
    with asherah_django.session(P):
        Customer.objects.create(email="k@example.org")
    rows = list(EncryptionKey.objects.filter(id=GLOBAL_ID))
    assert len(rows) == 1
    record = EnvelopeKeyRecord.from_json(rows[0].key_record)
    assert record.parent is not None
    assert record.parent.key_id == "_SK_testsvc_testprod"
    assert len(record.encrypted_key) == 60  # AES-256-GCM: 32 + tag 16 + nonce 12
    assert not record.revoked
    system_key = factory()._keys.system_key(record.parent)
    assert system_key.unwrap(record.encrypted_key) == bytes(index_key()._secret or b"")
    assert rows[0].key_record.startswith('{"Created":')  # Asherah's compact JSON
    assert "Key" in rows[0].key_record and "ParentKeyMeta" in rows[0].key_record


@pytest.mark.django_db
def test_no_asherah_implementation_mistakes_the_ids_for_its_keys() -> None:
    with asherah_django.session(P):
        Customer.objects.create(email="ids@example.org")
    assert index_key_id(None, "svc", "prod") == "_BIDX__svc_prod"
    assert index_key_id("t1", "svc", "prod") == "_BIDX_t1_svc_prod"
    assert parse_index_key_id("_BIDX__svc_prod", "svc", "prod") == (True, None)
    assert parse_index_key_id("_BIDX_t1_svc_prod", "svc", "prod") == (True, "t1")
    assert parse_index_key_id("_IK_t1_svc_prod", "svc", "prod") == (False, None)
    # Asherah's revoke script: id LIKE '_SK_%' / '_IK_%' ('_' is a one-character wildcard)
    with connection.cursor() as cursor:
        for pattern in ("_SK_%", "_IK_%"):
            cursor.execute("SELECT id FROM encryption_key WHERE id LIKE %s", [pattern])
            assert not [r for (r,) in cursor.fetchall() if "BIDX" in r]
    assert GLOBAL_ID not in factory().system_key_id
    assert not any("BIDX" in p for p in all_partitions(factory()))  # asherah_rotate's view
    assert admin_keys.kind_of(GLOBAL_ID) not in (admin_keys.SYSTEM, admin_keys.INTERMEDIATE)


@pytest.mark.django_db
def test_the_index_is_never_an_unkeyed_hash_of_the_value() -> None:
    values = ["ann@example.org", " Ann@Example.ORG ", "x", ""]
    with asherah_django.session(P):
        rows = [Subscriber.objects.create(email=v) for v in values]
    for value, row in zip(values, rows, strict=True):
        stored = raw_row(Subscriber, row.pk, "email_bidx")[0]
        digest = digest_of(stored)
        assert len(digest) == 32
        texts = {value, value.strip(), normalise_text(value, strip=True, casefold=True)}
        candidates: set[str] = set()
        for text in texts:
            data = text.encode()
            for name in ("sha256", "sha1", "md5", "sha512", "sha3_256", "blake2b"):
                full = hashlib.new(name, data).digest()
                candidates |= {full.hex(), base64.b64encode(full).decode()}
            for key in (b"", b"\0" * 32, b"testsvc", b"testprod"):
                full = hmac.digest(key, data, "sha256")
                candidates |= {full.hex(), base64.b64encode(full).decode()}
        for candidate in candidates:
            assert digest not in candidate  # nor any truncation of it
            assert stored not in candidate
        assert digest not in value


@pytest.mark.django_db
def test_blind_index_key_wrap_nonces_are_distinct(own_service: str) -> None:
    """Each index key is wrapped under the system key with a nonce of its own (a repeated
    nonce under the SK would expose the XOR of two index keys): many partitions' keys,
    and several versions of one key id, read back from the stored records."""
    ring_keys = IndexKeys(factory())
    for index in range(60):
        ring_keys.write_version(ring_keys.key_id(f"t{index}"))
    global_id = ring_keys.key_id(None)
    ring_keys.write_version(global_id)
    rotated = ring_keys.rotate(global_id, int(time.time()) + 3600)
    assert rotated is not None and rotated[1]  # a second, pending version
    rows = EncryptionKey.objects.filter(
        id__startswith="_BIDX_", id__endswith=own_service + "_testprod"
    )
    wraps = [EnvelopeKeyRecord.from_json(row.key_record).encrypted_key for row in rows]
    assert len(wraps) == 62  # 60 partitions' keys, and two versions of the global one
    nonces = [wrap[-12:] for wrap in wraps]
    assert len(set(nonces)) == len(nonces), "a blind index key wrap nonce was used twice"
    assert len({wrap[:-12] for wrap in wraps}) == len(wraps)


@pytest.mark.django_db
def test_each_field_derives_its_own_key() -> None:
    with asherah_django.session(P):
        customer = Customer.objects.create(email="same@example.org", nickname="same@example.org")
        sub = Subscriber.objects.create(email="same@example.org")
    customer_email, nickname = raw_row(Customer, customer.pk, "email_bidx", "nickname_bidx")
    subscriber = raw_row(Subscriber, sub.pk, "email_bidx")[0]
    assert len({digest_of(customer_email), digest_of(nickname), digest_of(subscriber)}) == 3
    version = index_key()
    assert version.field_key("bidxapp.customer.email") != version.field_key(
        "bidxapp.subscriber.email"
    )


@pytest.mark.django_db
def test_keys_are_cached_and_reloaded_after_the_check_interval(own_service: str) -> None:
    key_id = f"_BIDX__{own_service}_testprod"
    store = factory().metastore
    before = store.queries
    assert not Subscriber.objects.filter(email="a@example.org").exists()  # no key yet
    assert not Subscriber.objects.filter(email="a@example.org").exists()
    assert store.queries == before + 2  # an absent key is not cached: asked each time
    assert not EncryptionKey.objects.filter(id=key_id).exists()  # lookups never create one
    other = IndexKeys(factory())  # "another process" creates the key and writes
    assert other.write_version(key_id).created > 0
    with asherah_django.session(P):
        Subscriber.objects.create(email="a@example.org")
    assert Subscriber.objects.filter(email="a@example.org").exists()  # seen at once
    warm = store.queries
    with asherah_django.session(P):
        for i in range(5):
            Subscriber.objects.create(email=f"w{i}@example.org")
            assert Subscriber.objects.filter(email=f"w{i}@example.org").exists()
    if connection.vendor != "sqlite":  # (there a key made in this transaction is rechecked)
        assert store.queries == warm
    interval = factory().policy.check_interval
    f = factory()
    real = f.clock
    f.clock = lambda: real() + interval + 1  # type: ignore[method-assign]
    try:
        count = store.queries
        assert Subscriber.objects.filter(email="w0@example.org").exists()
        assert store.queries == count + 1  # reloaded once...
        assert Subscriber.objects.filter(email="w1@example.org").exists()
        assert store.queries == count + 1 or connection.vendor == "sqlite"  # ...then cached
    finally:
        f.clock = real  # type: ignore[method-assign]


def test_key_versions_never_show_or_pickle_their_bytes() -> None:
    version = KeyVersion(1795866780, os.urandom(32))
    secret = bytes(version._secret or b"")
    assert all(form not in repr(version) for form in forms_of(secret))
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(version)
    version.wipe()
    with pytest.raises(RuntimeError, match="wiped"):
        version.field_key("x")


@pytest.mark.django_db
def test_the_key_is_in_no_setting_and_no_log_record(
    own_service: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with asherah_django.session(P):
        customer = Customer.objects.create(email="log@example.org", nickname="n")
        Customer.objects.get(email="log@example.org")
        customer.email = "log2@example.org"
        customer.save()
    key_id = f"_BIDX__{own_service}_testprod"
    version = index_key(key_id)
    secrets = secrets_of(version, "bidxapp.customer.email", "bidxapp.customer.nickname")
    texts = [r.getMessage() + (r.exc_text or "") for r in caplog.records]
    assert any(f"created blind index key {key_id}" in t for t in texts)  # it was logged...
    everything = "\n".join(texts)
    with warnings.catch_warnings():  # (reading a deprecated setting warns: EMAIL_BACKEND, 6.1)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        configured = "\n".join(
            repr(getattr(settings, name)) for name in dir(settings) if name.isupper()
        ) + "\n".join(f"{k}={v}" for k, v in os.environ.items())
    for secret in secrets:  # ...without its material
        for form in forms_of(secret):
            assert form not in everything
            assert form not in configured


@pytest.mark.django_db(transaction=True)
def test_the_admin_shows_the_key_row_without_its_material() -> None:
    from django.contrib.auth.models import User

    with asherah_django.session(P):
        Customer.objects.create(email="admin@example.org")
    version = index_key()
    stored = EncryptionKey.objects.get(id=GLOBAL_ID)
    record_key = EnvelopeKeyRecord.from_json(stored.key_record).encrypted_key
    forbidden = [
        *(f for s in secrets_of(version, "bidxapp.customer.email") for f in forms_of(s)),
        base64.b64encode(record_key).decode(),
        record_key.hex(),
    ]
    client = Client()
    client.force_login(User.objects.create_superuser("root", password="x"))
    page = client.get(LIST)
    assert page.status_code == 200
    text = page.content.decode()
    assert GLOBAL_ID in text
    detail = client.get(
        f"{LIST}{quote(admin_keys.meta_object_id(KeyMeta(GLOBAL_ID, version.created)))}/change/"
    )
    assert detail.status_code == 200
    for body in (text, detail.content.decode()):
        for form in forms_of(bytes(version._secret or b"")) + forbidden:
            assert form not in body


@pytest.mark.django_db(transaction=True)
def test_the_admin_lists_the_key_as_a_blind_index_key() -> None:
    from django.contrib.auth.models import User

    with asherah_django.session(P):
        Customer.objects.create(email="kind@example.org")
    client = Client()
    client.force_login(User.objects.create_superuser("root", password="x"))
    text = client.get(LIST).content.decode()
    assert "Blind index" in text
    assert admin_keys.kind_of(GLOBAL_ID) == "blind_index"
    policy = admin_keys.Policy.from_settings()
    rows = admin_keys.to_rows(list(EncryptionKey.objects.filter(id=GLOBAL_ID)), policy, now())
    assert [(r.kind_title, r.status, r.expires, r.revocable) for r in rows] == [
        ("Blind index key", admin_keys.CURRENT, None, False)  # retired by asherah_reindex only
    ]


@pytest.mark.django_db
def test_the_in_memory_metastore_works_too() -> None:
    with override_settings(ASHERAH={**settings.ASHERAH, "METASTORE": "memory"}):
        with asherah_django.session(P):
            Subscriber.objects.create(email="mem@example.org")
        assert Subscriber.objects.filter(email="MEM@example.org").exists()
        store: Any = factory().metastore
        assert [k for k, _, _ in store.items() if k.startswith("_BIDX_")] == [GLOBAL_ID]
