"""Secrets hygiene, as tests: what ``repr()``/``str()`` show, what errors say, key wiping,
and the run-wide log check of ``tests/hygiene.py`` itself.

* ``repr()`` and ``str()`` of every core object (factory, sessions, caches, keys, records,
  KMSs, Vault client parts, metastores, settings, scopes) and of every error the code
  raises in the failure paths that involve secrets (tampered records, another partition,
  shredded keys, a wrong master key, revoked/unauthorised/unreachable Vault tokens,
  corrupted key records, bad settings) contain no key bytes (raw, hex, base64), token,
  secret id or plaintext; exception chains included.
* Key bytes held by the core are zeroed in the very bytearrays that held them when a key
  is evicted from its cache, when a duplicate is dropped, when the factory closes and
  when Django's runtime factory is reset; the transient bytearrays used while creating or
  unwrapping a key are zeroed too. Best effort, and only that: ``bytes`` copies (the
  KMS's answer, ``AESGCM``'s own key schedule inside OpenSSL) cannot be wiped from
  Python; SECURITY.md says so.
* The hygiene plugin finds each form of a registered secret (and no false positive), and
  a run whose log carries one fails, with the secret redacted in the report.
"""

from __future__ import annotations

import base64
import logging
import os
import pickle
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from asherah_django import runtime
from asherah_django import session as partition_scope
from asherah_django.core import (
    AsherahError,
    CryptoPolicy,
    EnvelopeKeyRecord,
    InMemoryMetastore,
    SessionFactory,
    StaticKMS,
    parse_data_row,
)
from asherah_django.core.aead import Cipher
from asherah_django.core.keys import CryptoKey
from asherah_django.core.kms.vault import VaultTransitKMS
from asherah_django.testing.openbao import TRANSIT_POLICY, OpenBaoServer
from tests import hygiene
from tests.hygiene import MARKER

from .conftest import ROOT, unique

PLAINTEXT = MARKER + "the-secret-value"


def key_forms(secret: bytes) -> list[str]:
    """Every spelling of key bytes that must never be shown."""
    b64 = base64.b64encode(secret).decode()
    return [
        secret.hex(),
        secret.hex().upper(),
        b64,
        b64.rstrip("="),
        base64.urlsafe_b64encode(secret).decode().rstrip("="),
        repr(secret)[2:-1],
        secret.decode("latin-1"),
    ]


def texts_of(obj: object) -> list[str]:
    texts = [repr(obj), str(obj)]
    if isinstance(obj, BaseException):
        seen: set[int] = set()
        cause: BaseException | None = obj
        while cause is not None and id(cause) not in seen:
            seen.add(id(cause))
            texts += [repr(cause), str(cause), getattr(cause, "hint", "") or ""]
            # what a traceback shows: the cause, else the context unless ``from None``
            cause = cause.__cause__ or (None if cause.__suppress_context__ else cause.__context__)
    return texts


def assert_clean(objects: list[object], secrets: list[str]) -> None:
    secrets = [s for s in secrets if len(s) >= 12]
    for obj in objects:
        for text in texts_of(obj):
            leaked = [s for s in secrets if s in text]
            assert not leaked, f"{type(obj).__name__} shows a secret: {text[:200]!r}"


def raised(action: Any) -> AsherahError:
    with pytest.raises(AsherahError) as info:
        action()
    return info.value


@pytest.fixture
def factory() -> Iterator[SessionFactory]:
    with SessionFactory(
        "svc", "prod", StaticKMS.random(), InMemoryMetastore(), CryptoPolicy()
    ) as made:
        yield made


def cached(factory: SessionFactory) -> list[CryptoKey]:
    keys = factory._keys
    return [*keys.intermediate_keys.entries.values(), *keys.system_keys.entries.values()]


def cached_secrets(factory: SessionFactory) -> list[str]:
    return [form for key in cached(factory) for form in key_forms(bytes(key._secret))]


# -- repr() and str() --------------------------------------------------------------------------


def test_core_objects_and_errors_show_no_key_material(factory: SessionFactory) -> None:
    master = os.urandom(32)
    kms = StaticKMS(master)
    metastore = InMemoryMetastore()
    made = SessionFactory("svc", "prod", kms, metastore)
    session = made.get_session("tenant")
    record = session.encrypt(PLAINTEXT.encode())
    row = parse_data_row(record)
    ik = next(iter(made._keys.intermediate_keys.entries.values()))
    sk = next(iter(made._keys.system_keys.entries.values()))
    sk_record = metastore.load(sk.key_id, sk.created)
    ik_record = metastore.load(ik.key_id, ik.created)
    assert sk_record is not None and ik_record is not None
    secrets = [*cached_secrets(made), *key_forms(master), PLAINTEXT]

    tampered = record.replace(record[-10:-6], "AAAA" if record[-10:-6] != "AAAA" else "BBBB")
    other = SessionFactory("svc", "prod", StaticKMS.random(), metastore)  # wrong master key
    errors = [
        raised(lambda: session.decrypt(tampered)),
        raised(lambda: made.get_session("another").decrypt(record)),
        raised(lambda: session.decrypt(record[:40])),
        raised(lambda: other.get_session("tenant").decrypt(record)),
        raised(lambda: StaticKMS.from_hex(master.hex()[:-1])),
        raised(lambda: StaticKMS.from_hex(master.hex()[:-1] + "z")),
        raised(lambda: made.get_session("x" * 300)),
        raised(lambda: session.encrypt(b"\0" * (64 * 1024 * 1024 + 1))),
    ]
    metastore.delete_key_id(ik.key_id)  # shredded
    cold = SessionFactory("svc", "prod", kms, metastore)
    errors.append(raised(lambda: cold.get_session("tenant").decrypt(record)))
    broken = InMemoryMetastore()  # an intermediate key record that does not unwrap
    broken.store(sk.key_id, sk.created, sk_record)
    corrupt = EnvelopeKeyRecord(ik.created, os.urandom(60), parent=ik_record.parent)
    broken.store(ik.key_id, ik.created, corrupt)
    bad = SessionFactory("svc", "prod", kms, broken)
    errors.append(raised(lambda: bad.get_session("tenant").decrypt(record)))
    made.close()
    errors.append(raised(lambda: made.get_session("tenant")))
    errors.append(raised(lambda: session.encrypt(b"after close")))

    objects: list[object] = [
        made, session, made._keys, made._keys.intermediate_keys, made._keys.system_keys,
        ik, sk, sk_record, ik_record, row, row.parent, made.policy, kms, metastore,
        Cipher(master), *errors,
    ]  # fmt: skip
    assert len(errors) == 12
    assert_clean(objects, secrets)
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(ik)


@pytest.mark.vault
def test_vault_objects_and_errors_show_no_token(rel_bao: OpenBaoServer) -> None:
    token = rel_bao.create_token([TRANSIT_POLICY], ttl="1h")
    powerless = rel_bao.create_token(["default"], ttl="1h")
    secrets = [token, powerless, rel_bao.root_token]
    kms = VaultTransitKMS.from_mapping(rel_bao.settings(VAULT_TOKEN=token, VAULT_MAX_RETRIES=0))
    key = os.urandom(32)
    secrets += key_forms(key)
    blob = kms.encrypt_key(key)
    kms.decrypt_key(blob)
    objects: list[object] = [kms, kms.config, kms.stats, kms._tokens, kms._http]
    objects += [kms._tokens._lease]
    denied = VaultTransitKMS.from_mapping(rel_bao.settings(VAULT_TOKEN=powerless))
    nowhere = VaultTransitKMS.from_mapping(
        rel_bao.settings(VAULT_TOKEN=token, VAULT_ADDR="http://127.0.0.1:9", VAULT_MAX_RETRIES=0)
    )
    garbage = b"vault:v1:" + base64.b64encode(key)
    errors = [
        raised(lambda: denied.encrypt_key(key)),
        raised(lambda: nowhere.decrypt_key(blob)),
        raised(lambda: kms.decrypt_key(garbage)),
        raised(lambda: kms.decrypt_key(key)),
    ]
    rel_bao.api("POST", "auth/token/revoke", {"token": token})
    errors.append(raised(lambda: kms.decrypt_key(blob)))
    for made in (kms, denied, nowhere):
        made.close()
    assert_clean(objects + errors, secrets)


@pytest.mark.django_db(transaction=True)
def test_django_objects_show_no_key_material(settings: Any) -> None:
    from asherah_django.conf import asherah_settings
    from asherah_django.fields.sealed import SealedValue
    from asherah_django.middleware import AsherahSessionMiddleware
    from tests.testapp.models import Secret, TenantNote

    master = os.urandom(32)
    settings.ASHERAH = {
        **settings.ASHERAH,
        "SERVICE_NAME": unique("hyg"),
        "STATIC_MASTER_KEY_HEX": master.hex(),
    }
    note = TenantNote.objects.create(tenant_id="t1", body=PLAINTEXT)
    loaded = TenantNote.objects.get(pk=note.pk)
    sealed = loaded.__dict__["body"]
    assert isinstance(sealed, SealedValue)
    unread = repr(sealed)
    assert loaded.body == PLAINTEXT
    factory = runtime.get_session_factory()
    secrets = [*cached_secrets(factory), *key_forms(master), PLAINTEXT]
    scope = partition_scope("t1")
    objects: list[object] = [
        factory, factory.metastore, asherah_settings, scope, sealed, unread, loaded,
        AsherahSessionMiddleware(lambda request: None),
    ]  # fmt: skip
    with scope:
        secret = Secret.objects.create(owner="t1", body=PLAINTEXT)
    with partition_scope("t2"):
        objects.append(raised(lambda: Secret.objects.get(pk=secret.pk).body))
    objects.append(raised(lambda: Secret.objects.get(pk=secret.pk).body))  # no session
    TenantNote.objects.filter(pk=note.pk).update(tenant_id="t2")  # the row moved tenant
    objects.append(raised(lambda: TenantNote.objects.get(pk=note.pk).body))
    secrets += cached_secrets(runtime.get_session_factory())
    assert_clean(objects, secrets)


# -- wiping ------------------------------------------------------------------------------------


def held(factory: SessionFactory) -> list[bytearray]:
    """The bytearrays that hold the cached keys' bytes right now."""
    return [key._secret for key in cached(factory)]


def zeroed(buffers: list[bytearray]) -> bool:
    return all(len(b) == 32 and not any(b) for b in buffers)


def test_evicted_keys_are_wiped_in_place() -> None:
    policy = CryptoPolicy(intermediate_key_cache_size=2)
    with SessionFactory("svc", "prod", StaticKMS.random(), InMemoryMetastore(), policy) as f:
        records = {p: f.get_session(p).encrypt(b"v") for p in ("a", "b")}
        first = {k.key_id: (k, k._secret) for k in f._keys.intermediate_keys.entries.values()}
        assert not zeroed([buffer for _, buffer in first.values()])
        for partition in ("c", "d", "e", "f"):  # CLOCK: each key gets a second chance once
            f.get_session(partition).encrypt(b"v")
        still = list(f._keys.intermediate_keys.entries.values())
        evicted = [(k, b) for k, b in first.values() if k not in still]
        assert evicted and zeroed([buffer for _, buffer in evicted])
        assert all(not key.usable for key, _ in evicted)
        # Values under an evicted key still decrypt: the key is loaded again, not reused.
        assert all(f.get_session(p).decrypt(r) == b"v" for p, r in records.items())


def test_a_duplicate_key_put_in_the_cache_is_wiped() -> None:
    with SessionFactory("svc", "prod", StaticKMS.random(), InMemoryMetastore()) as f:
        record = f.get_session("a").encrypt(b"v")
        cached = next(iter(f._keys.intermediate_keys.entries.values()))
        twin = CryptoKey(cached.meta, bytes(cached._secret), parent=cached.parent)
        assert f._keys.intermediate_keys.put(twin) is cached
        assert zeroed([twin._secret]) and not twin.usable and cached.usable
        assert f.get_session("a").decrypt(record) == b"v"


def test_closing_the_factory_wipes_every_key() -> None:
    f = SessionFactory("svc", "prod", StaticKMS.random(), InMemoryMetastore())
    for partition in ("a", "b", "c"):
        f.get_session(partition).encrypt(b"v")
    buffers = held(f)
    assert len(buffers) == 4 and not zeroed(buffers)
    f.close()
    assert zeroed(buffers)
    assert len(f._keys.intermediate_keys) == 0 and len(f._keys.system_keys) == 0


def test_transient_key_buffers_are_zeroed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bytearrays that carry a new or unwrapped key into CryptoKey are zeroed after."""
    passed: list[bytearray] = []
    original = CryptoKey.__init__

    def spy(self: CryptoKey, meta: Any, secret: Any, **kwargs: Any) -> None:
        original(self, meta, secret, **kwargs)
        if isinstance(secret, bytearray):
            passed.append(secret)

    monkeypatch.setattr(CryptoKey, "__init__", spy)
    metastore = InMemoryMetastore()
    kms = StaticKMS.random()
    with SessionFactory("svc", "prod", kms, metastore) as writer:
        record = writer.get_session("a").encrypt(b"v")  # creates an SK and an IK
    with SessionFactory("svc", "prod", kms, metastore) as reader:
        assert reader.get_session("a").decrypt(record) == b"v"  # unwraps both
    assert len(passed) == 4 and zeroed(passed)


@pytest.mark.django_db(transaction=True)
def test_resetting_the_runtime_factory_wipes_its_keys(settings: Any) -> None:
    from tests.testapp.models import TenantNote

    settings.ASHERAH = {**settings.ASHERAH, "SERVICE_NAME": unique("wipe")}
    TenantNote.objects.create(tenant_id="t1", body="v")
    factory = runtime.get_session_factory()
    buffers = held(factory)
    assert len(buffers) == 2 and not zeroed(buffers)
    settings.ASHERAH = {**settings.ASHERAH, "SERVICE_NAME": unique("wipe")}  # setting_changed
    assert factory.closed and zeroed(buffers)
    TenantNote.objects.create(tenant_id="t1", body="v")
    buffers = held(runtime.get_session_factory())
    runtime.reset_session_factory()
    assert zeroed(buffers)


# -- the run-wide log check --------------------------------------------------------------------


def test_the_log_check_finds_every_form_and_nothing_else() -> None:
    key = os.urandom(32)
    token = "s." + base64.b32encode(os.urandom(15)).decode()
    hygiene.register_secret(key)
    hygiene.register_secret(token, "VAULT TOKEN")
    for form in [*key_forms(key)[:6], key.decode("latin-1")]:
        assert list(hygiene._hits(f"prefix {form} suffix")), form
    assert [kind for _, kind in hygiene._hits(f"token={token}&x")] == ["VAULT TOKEN"]
    assert [kind for _, kind in hygiene._hits(f"got {MARKER}x")] == ["PLAINTEXT MARKER"]
    innocent = [
        "GET /v1/transit/decrypt/asherah-master HTTP/1.1 200",
        "a" * 200,
        "0123456789abcdef" * 8,
        base64.b64encode(os.urandom(64)).decode(),
        repr(os.urandom(64)),
        os.urandom(40).decode("latin-1"),
    ]
    for text in innocent:
        assert list(hygiene._hits(text)) == [], text
    seen = {f"lease {token} renewed": hygiene._Seen("x.y", "INFO", "t::test")}
    (line,) = hygiene.find_leaks(seen)
    assert token not in line and "<VAULT TOKEN>" in line and "x.y INFO" in line


def test_a_run_that_logs_a_secret_fails(tmp_path: Path) -> None:
    """A separate pytest run with the plugin: a test logs a token; the run fails, the
    report names the logger and test, and does not print the token."""
    token = "s." + base64.b32encode(os.urandom(15)).decode()
    (tmp_path / "test_leak.py").write_text(
        textwrap.dedent(f"""
        import logging
        from tests.hygiene import register_secret

        def test_leaks():
            register_secret({token!r}, "VAULT TOKEN")
            logging.getLogger("leaky.module").debug("using token %s", {token!r})
        """)
    )
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.hygiene", "-p", "no:django",
         "-p", "no:cacheprovider", "-q", str(tmp_path / "test_leak.py")],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    output = run.stdout + run.stderr
    assert run.returncode == 1, output
    assert "1 passed" in output and "secrets hygiene: FAILED" in output
    assert "leaky.module DEBUG x1 in test_leak.py::test_leaks: VAULT TOKEN" in output
    assert token not in output and "<VAULT TOKEN>" in output
    logging.getLogger(__name__).debug("the leak test passed")  # (this run's log stays clean)
