"""Tokens with short TTLs: renewal, re-login at max TTL or after revocation, single-use ids.

Each test uses its own AppRole mount, so the audit log counts only its own logins.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from asherah_django.core.kms.vault import VaultTransitKMS
from asherah_django.core.kms.vault_errors import VaultAuthError
from asherah_django.testing.openbao import TRANSIT_POLICY, OpenBaoServer

from .conftest import factory_for, unique

pytestmark = pytest.mark.vault
MakeKMS = Callable[[dict[str, object]], VaultTransitKMS]


def approle_mount(bao: OpenBaoServer, **role: Any) -> tuple[str, dict[str, object], str]:
    """A new AppRole mount with one role: (mount, KMS settings, secret id)."""
    mount = unique("approle-lifecycle")
    bao.api("POST", f"sys/auth/{mount}", {"type": "approle"})
    bao.api("POST", f"auth/{mount}/role/app", {"token_policies": [TRANSIT_POLICY], **role})
    role_id = bao.api("GET", f"auth/{mount}/role/app/role-id")["data"]["role_id"]
    secret_id = bao.api("POST", f"auth/{mount}/role/app/secret-id", {})["data"]["secret_id"]
    settings = bao.settings(
        VAULT_AUTH_METHOD="approle", VAULT_AUTH_MOUNT=mount, VAULT_APPROLE_ROLE_ID=role_id,
        VAULT_APPROLE_SECRET_ID=secret_id,
    )  # fmt: skip
    return mount, settings, secret_id


def test_factory_outlives_a_short_token_ttl(bao: OpenBaoServer, make_kms: MakeKMS) -> None:
    # Tokens live 3 s and can be renewed up to 6 s; the factory runs for 8 s and asks
    # Vault every 0.4 s (system keys are not cached, so each new partition needs Vault).
    mount, settings, _ = approle_mount(bao, token_ttl="3s", token_max_ttl="6s")
    kms = make_kms(settings)
    failed_before = bao.audit_count("transit/decrypt/asherah-master", status_ok=False)
    with factory_for(kms, cache_system_keys=False) as factory:
        written = []
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            session = factory.get_session(unique("ttl"))
            written.append((session, session.encrypt(b"still working")))
            time.sleep(0.4)
        for session, record in written:
            assert session.decrypt(record) == b"still working"
        stats = kms.stats
    assert stats.decrypt >= 15  # Vault really was used throughout
    assert stats.renewals >= 1  # renewed while renewable...
    assert stats.logins >= 2  # ...and logged in again when max TTL came
    # The token was replaced before it expired: Vault never refused a call.
    assert bao.audit_count(f"auth/{mount}/login", status_ok=False) == 0
    assert bao.audit_count("transit/decrypt/asherah-master", status_ok=False) == failed_before


def test_idle_past_expiry_logs_in_again_without_a_failed_call(
    bao: OpenBaoServer, make_kms: MakeKMS
) -> None:
    _, settings, _ = approle_mount(bao, token_ttl="2s", token_max_ttl="2s")
    kms = make_kms(settings)
    blob = kms.encrypt_key(os.urandom(32))
    failed_before = bao.audit_count("transit/decrypt/asherah-master", status_ok=False)
    time.sleep(2.2)  # the token is dead now
    assert len(kms.decrypt_key(blob)) == 32
    assert kms.stats.logins == 2
    assert bao.audit_count("transit/decrypt/asherah-master", status_ok=False) == failed_before


def test_revoked_token_answered_403_logs_in_again_and_repeats_the_call(
    bao: OpenBaoServer, make_kms: MakeKMS
) -> None:
    mount, settings, _ = approle_mount(bao, token_ttl="1h")
    kms = make_kms(settings)
    blob = kms.encrypt_key(os.urandom(32))
    failed_before = bao.audit_count("transit/decrypt/asherah-master", status_ok=False)
    bao.api("PUT", f"sys/leases/revoke-prefix/auth/{mount}/login")
    assert len(kms.decrypt_key(blob)) == 32
    assert kms.stats.logins == 2
    assert bao.audit_count("transit/decrypt/asherah-master", status_ok=False) == failed_before + 1


def test_static_token_is_renewed_while_renewable(bao: OpenBaoServer, make_kms: MakeKMS) -> None:
    token = bao.create_token([TRANSIT_POLICY], ttl="3s", explicit_max_ttl="1m")
    kms = make_kms(bao.settings(VAULT_TOKEN=token))
    blob = kms.encrypt_key(os.urandom(32))
    for _ in range(10):  # 5 s: beyond the 3 s TTL
        time.sleep(0.5)
        assert len(kms.decrypt_key(blob)) == 32
    assert kms.stats.renewals >= 2
    assert kms.token_info().ttl > 0


def test_expired_static_token_says_to_supply_a_new_one(
    bao: OpenBaoServer, make_kms: MakeKMS
) -> None:
    token = bao.create_token([TRANSIT_POLICY], ttl="1s", renewable=False)
    kms = make_kms(bao.settings(VAULT_TOKEN=token))
    kms.encrypt_key(os.urandom(32))
    time.sleep(1.2)
    with pytest.raises(VaultAuthError) as raised:
        kms.encrypt_key(os.urandom(32))
    assert "Vault does not accept VAULT_TOKEN (invalid, expired or revoked)" in str(raised.value)
    assert "supply a new token" in raised.value.hint


def test_single_use_secret_id_is_spent_once_then_a_fresh_one_is_asked_for(
    bao: OpenBaoServer, make_kms: MakeKMS
) -> None:
    mount, settings, _ = approle_mount(
        bao, secret_id_num_uses=1, token_ttl="3s", token_max_ttl="3s"
    )
    kms = make_kms(settings)
    login_path = f"auth/{mount}/login"

    # Eight threads start cold at once: one login serves them all.
    with ThreadPoolExecutor(8) as pool:
        blobs = list(pool.map(lambda _: kms.encrypt_key(os.urandom(32)), range(8)))
    assert bao.audit_count(login_path) == 1

    # A forked worker (gunicorn --preload) reuses the token: no second login.
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            kms.decrypt_key(blobs[0])
            code = 0 if kms.stats.logins == 0 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert bao.audit_count(login_path) == 1

    time.sleep(3.1)  # max TTL reached: a new login is needed, and the secret id is used up
    for _ in range(3):
        with pytest.raises(VaultAuthError) as raised:
            kms.decrypt_key(blobs[1])
        message = str(raised.value)
        assert message.startswith("Vault approle auth failed: ")
        assert "a fresh secret id is needed" in message
        assert str(settings["VAULT_APPROLE_SECRET_ID"]) not in message
    # Vault refused the spent id once; after that it is never sent again.
    assert bao.audit_count(login_path) == 2
    assert bao.audit_count(login_path, status_ok=True) == 1
