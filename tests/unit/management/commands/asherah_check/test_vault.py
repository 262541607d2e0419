"""asherah_check's Vault checks beyond the token: TLS, a sealed server, AppRole login."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from asherah_django.testing.openbao import OpenBaoServer
from tests.unit.management.commands.conftest import Vault, run_command
from tests.unit.management.commands.test_asherah_check import HEALTHY, normalize

pytestmark = [pytest.mark.vault, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def bao_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBaoServer]:
    with OpenBaoServer(tmp_path_factory.mktemp("openbao-tls"), tls=True) as server:
        yield server


def test_tls_verified_with_vault_cacert(bao_tls: OpenBaoServer, settings: Any) -> None:
    vault = Vault(bao_tls, "asherah-master", "tlssvc")
    bao_tls.api("POST", "transit/keys/asherah-master/config", {"auto_rotate_period": "2160h"})
    settings.ASHERAH = vault.asherah()
    status, out, _ = run_command("asherah_check")
    assert status == 0
    assert normalize(out, vault).splitlines()[1] == (
        f"vault.server      OK    Vault <VERSION> at <ADDR>: initialized, unsealed, active; "
        f"TLS verified with VAULT_CACERT={bao_tls.ca_cert}"
    )
    # Without the CA bundle the certificate cannot be verified: a failure, not a fallback.
    settings.ASHERAH = {**vault.asherah(), "VAULT_CACERT": None}
    status, out, _ = run_command("asherah_check")
    assert status == 1
    assert normalize(out, vault).splitlines()[1] == (
        "vault.server      FAIL  Vault health request failed: TLS handshake failed "
        "(VAULT_ADDR=<ADDR>, mount=transit, key=<KEY>) | hint: Vault's TLS certificate could "
        "not be verified or the handshake failed: set VAULT_CACERT to the CA bundle that signed "
        "Vault's certificate, and check VAULT_CLIENT_CERT/KEY"
    )


def test_sealed_vault_fails(vault: Vault, settings: Any) -> None:
    settings.ASHERAH = vault.asherah()
    vault.bao.api("PUT", "sys/seal")
    try:
        status, out, _ = run_command("asherah_check")
    finally:
        vault.bao.restart()  # the static seal unseals it on start
    assert status == 1
    assert normalize(out, vault).splitlines()[1] == (
        "vault.server      FAIL  Vault <VERSION> at <ADDR> is sealed | hint: unseal it (`vault "
        "operator unseal`), or point VAULT_ADDR at an unsealed node"
    )
    assert run_command("asherah_check")[0] == 0


def test_approle_login(vault: Vault, settings: Any) -> None:
    bao = vault.bao
    if "approle/" not in bao.api("GET", "sys/auth")["data"]:
        bao.api("POST", "sys/auth/approle", {"type": "approle"})
    policy = vault.full_policy()
    role = f"role-{vault.key}"
    bao.api("POST", f"auth/approle/role/{role}", {"token_policies": [policy], "token_ttl": "1h"})
    role_id = bao.api("GET", f"auth/approle/role/{role}/role-id")["data"]["role_id"]
    secret_id = bao.api("POST", f"auth/approle/role/{role}/secret-id")["data"]["secret_id"]
    approle = {
        "VAULT_TOKEN": None,
        "VAULT_AUTH_METHOD": "approle",
        "VAULT_APPROLE_ROLE_ID": role_id,
    }
    settings.ASHERAH = {**vault.asherah(), **approle, "VAULT_APPROLE_SECRET_ID": secret_id}
    status, out, _ = run_command("asherah_check")
    lines = normalize(out, vault).splitlines()
    assert status == 0
    assert lines[0] == HEALTHY.splitlines()[0].replace("token auth", "approle auth")
    assert lines[2] == (
        "vault.login       OK    approle auth: token TTL <DUR>, renewable; policies default, "
        "full-<KEY> (a new login replaces it before it expires, at auth/approle)"
    )
    settings.ASHERAH = {**vault.asherah(), **approle, "VAULT_APPROLE_SECRET_ID": "wrong"}
    status, out, _ = run_command("asherah_check")
    lines = normalize(out, vault).splitlines()
    assert status == 1
    assert lines[2] == (
        "vault.login       FAIL  Vault approle auth failed: invalid role or secret ID "
        "(VAULT_ADDR=<ADDR>, mount=approle, key=<KEY>) | hint: check VAULT_APPROLE_ROLE_ID and "
        "VAULT_APPROLE_SECRET_ID; secret ids expire (secret_id_ttl) and may be single-use "
        "(secret_id_num_uses)"
    )
