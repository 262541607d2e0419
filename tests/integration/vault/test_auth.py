"""The four auth methods against a real OpenBao: login, SessionFactory round trip, failures.

Each failure gives the upstream message ("Vault kubernetes auth failed: permission denied"
...) with the context (VAULT_ADDR, mount, key) and a hint.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from asherah_django.core import ConfigurationError
from asherah_django.core.kms.vault import VaultTransitKMS
from asherah_django.core.kms.vault_errors import (
    VaultAuthError,
    VaultConnectionError,
    VaultPermissionError,
)
from asherah_django.testing.openbao import TRANSIT_POLICY, OpenBaoServer
from asherah_django.testing.tls import CertificateAuthority
from tests.support.kubernetes import TokenReviewServer

from .conftest import (
    K8S_NAMESPACE,
    K8S_ROLE,
    K8S_SERVICE_ACCOUNT,
    approle_role,
    factory_for,
    round_trip,
)

pytestmark = pytest.mark.vault
MakeKMS = Callable[[dict[str, object]], VaultTransitKMS]


def context_of(server: OpenBaoServer, mount: str) -> str:
    return f"(VAULT_ADDR={server.addr}, mount={mount}, key={server.transit_key})"


# -- token ------------------------------------------------------------------------------


def test_token_auth_round_trip(bao: OpenBaoServer, make_kms: MakeKMS) -> None:
    token = bao.create_token([TRANSIT_POLICY], ttl="1h")
    kms = make_kms(bao.settings(VAULT_TOKEN=token))
    with factory_for(kms) as factory:
        round_trip(factory)
    assert kms.stats.encrypt == 1 and kms.stats.logins == 0


def test_unknown_token_is_an_auth_error(bao: OpenBaoServer, make_kms: MakeKMS) -> None:
    kms = make_kms(bao.settings(VAULT_TOKEN="s.not-a-token"))
    with pytest.raises(VaultAuthError) as raised:
        kms.encrypt_key(bytes(32))
    assert str(raised.value).startswith(
        "Vault Transit encrypt failed: permission denied; Vault does not accept VAULT_TOKEN "
        f"(invalid, expired or revoked) {context_of(bao, 'transit')} (hint: "
    )
    with pytest.raises(VaultAuthError, match="lookup-self failed: permission denied"):
        kms.login()


def test_token_without_the_policy_is_a_permission_error(
    bao: OpenBaoServer, make_kms: MakeKMS
) -> None:
    kms = make_kms(bao.settings(VAULT_TOKEN=bao.create_token(["default"], ttl="1h")))
    with pytest.raises(VaultPermissionError) as raised:
        kms.encrypt_key(bytes(32))
    error = raised.value
    assert str(error).startswith(
        "Vault Transit encrypt failed: 1 error occurred: permission denied "
        f"{context_of(bao, 'transit')} (hint: "
    )
    assert "vault token capabilities transit/encrypt/asherah-master" in error.hint
    assert error.status == 403
    assert kms.stats.retries == 0  # 4xx are never retried


# -- kubernetes -------------------------------------------------------------------------


def k8s_settings(bao: OpenBaoServer, token_file: Path, role: str = K8S_ROLE) -> dict[str, object]:
    return bao.settings(
        VAULT_AUTH_METHOD="kubernetes", VAULT_AUTH_ROLE=role, VAULT_K8S_TOKEN_PATH=str(token_file)
    )


def test_kubernetes_auth_round_trip(
    bao: OpenBaoServer, k8s_api: TokenReviewServer, k8s_token_file: Path, make_kms: MakeKMS
) -> None:
    reviews = k8s_api.reviews
    kms = make_kms(k8s_settings(bao, k8s_token_file))
    with factory_for(kms) as factory:
        round_trip(factory)
        info = kms.token_info()
    assert kms.stats.logins == 1
    assert k8s_api.reviews == reviews + 1  # OpenBao really asked our TokenReview endpoint
    assert info.path == "auth/kubernetes/login" and TRANSIT_POLICY in info.policies


def test_kubernetes_jwt_is_read_again_at_every_login(
    bao: OpenBaoServer, k8s_api: TokenReviewServer, k8s_token_file: Path, make_kms: MakeKMS
) -> None:
    kms = make_kms(k8s_settings(bao, k8s_token_file))
    kms.login()
    first_jwt = k8s_token_file.read_text().strip()
    # The kubelet rotates the projected token; the old one stops being valid.
    k8s_token_file.write_text(k8s_api.issue(K8S_NAMESPACE, K8S_SERVICE_ACCOUNT))
    k8s_api.revoke(first_jwt)
    kms.login()
    with factory_for(kms) as factory:
        round_trip(factory)
    assert kms.stats.logins == 2


def test_kubernetes_wrong_role(bao: OpenBaoServer, k8s_token_file: Path, make_kms: MakeKMS) -> None:
    kms = make_kms(k8s_settings(bao, k8s_token_file, role="no-such-role"))
    with pytest.raises(VaultAuthError) as raised:
        kms.encrypt_key(bytes(32))
    assert str(raised.value).startswith(
        f'Vault kubernetes auth failed: invalid role name "no-such-role" '
        f"{context_of(bao, 'kubernetes')} (hint: verify the service account name and namespace"
    )


def test_kubernetes_rejected_token(
    bao: OpenBaoServer, k8s_api: TokenReviewServer, tmp_path: Path, make_kms: MakeKMS
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(k8s_api.issue(K8S_NAMESPACE, K8S_SERVICE_ACCOUNT, register=False))
    rejected = k8s_api.rejected
    kms = make_kms(k8s_settings(bao, token_file))
    with pytest.raises(VaultAuthError) as raised:
        kms.encrypt_key(bytes(32))
    assert str(raised.value).startswith(
        f"Vault kubernetes auth failed: permission denied {context_of(bao, 'kubernetes')} (hint: "
    )
    assert k8s_api.rejected == rejected + 1


def test_kubernetes_service_account_of_another_namespace(
    bao: OpenBaoServer, k8s_api: TokenReviewServer, tmp_path: Path, make_kms: MakeKMS
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(k8s_api.issue("other-namespace", K8S_SERVICE_ACCOUNT))
    kms = make_kms(k8s_settings(bao, token_file))
    with pytest.raises(
        VaultAuthError, match=r"^Vault kubernetes auth failed: namespace not authorized"
    ):
        kms.encrypt_key(bytes(32))


def test_kubernetes_missing_token_file(
    bao: OpenBaoServer, tmp_path: Path, make_kms: MakeKMS
) -> None:
    kms = make_kms(k8s_settings(bao, tmp_path / "absent"))
    with pytest.raises(
        VaultAuthError, match="cannot read the service account token at VAULT_K8S_TOKEN_PATH="
    ):
        kms.encrypt_key(bytes(32))


# -- approle ----------------------------------------------------------------------------


def test_approle_auth_round_trip(bao: OpenBaoServer, make_kms: MakeKMS) -> None:
    role_id, secret_id = approle_role(bao)
    kms = make_kms(bao.settings(VAULT_AUTH_METHOD="approle", VAULT_APPROLE_ROLE_ID=role_id,
                                VAULT_APPROLE_SECRET_ID=secret_id()))  # fmt: skip
    with factory_for(kms) as factory:
        round_trip(factory)
    assert kms.stats.logins == 1


def test_approle_without_secret_id_when_the_role_does_not_bind_one(
    bao: OpenBaoServer, make_kms: MakeKMS
) -> None:
    role_id, _ = approle_role(bao, bind_secret_id=False, secret_id_bound_cidrs=["127.0.0.1/32"])
    kms = make_kms(bao.settings(VAULT_AUTH_METHOD="approle", VAULT_APPROLE_ROLE_ID=role_id))
    with factory_for(kms) as factory:
        round_trip(factory)


def test_approle_wrong_secret_id(bao: OpenBaoServer, make_kms: MakeKMS) -> None:
    role_id, _ = approle_role(bao)
    kms = make_kms(bao.settings(VAULT_AUTH_METHOD="approle", VAULT_APPROLE_ROLE_ID=role_id,
                                VAULT_APPROLE_SECRET_ID="00000000-0000-0000-0000-000000000000"))  # fmt: skip
    with pytest.raises(VaultAuthError) as raised:
        kms.encrypt_key(bytes(32))
    assert str(raised.value).startswith(
        f"Vault approle auth failed: invalid role or secret ID {context_of(bao, 'approle')} (hint: "
    )
    assert "fresh secret id" not in str(raised.value)  # never accepted, so not "spent"


def test_approle_wrong_role(bao: OpenBaoServer, make_kms: MakeKMS) -> None:
    _, secret_id = approle_role(bao)
    kms = make_kms(bao.settings(VAULT_AUTH_METHOD="approle", VAULT_APPROLE_ROLE_ID="no-such-role",
                                VAULT_APPROLE_SECRET_ID=secret_id()))  # fmt: skip
    with pytest.raises(
        VaultAuthError, match=r"^Vault approle auth failed: invalid role or secret ID"
    ):
        kms.encrypt_key(bytes(32))


# -- cert -------------------------------------------------------------------------------


def test_cert_auth_round_trip(bao_tls: OpenBaoServer, tmp_path: Path, make_kms: MakeKMS) -> None:
    assert bao_tls.ca is not None
    cert, key = bao_tls.ca.issue(tmp_path, "app-server", client=True)
    kms = make_kms(bao_tls.settings(VAULT_AUTH_METHOD="cert", VAULT_CLIENT_CERT=str(cert),
                                    VAULT_CLIENT_KEY=str(key)))  # fmt: skip
    with factory_for(kms) as factory:
        round_trip(factory)
        assert kms.token_info().display_name == "cert-asherah"
    assert kms.stats.logins == 1


def test_cert_auth_untrusted_client_certificate(
    bao_tls: OpenBaoServer, tmp_path: Path, make_kms: MakeKMS
) -> None:
    rogue = CertificateAuthority.create(tmp_path, "rogue-ca")
    cert, key = rogue.issue(tmp_path, "intruder", client=True)
    kms = make_kms(bao_tls.settings(VAULT_AUTH_METHOD="tls", VAULT_CLIENT_CERT=str(cert),
                                    VAULT_CLIENT_KEY=str(key)))  # fmt: skip
    with pytest.raises(VaultAuthError) as raised:
        kms.encrypt_key(bytes(32))
    assert str(raised.value).startswith(
        "Vault cert auth failed: invalid certificate or no client certificate supplied "
        f"{context_of(bao_tls, 'cert')} (hint: check VAULT_CLIENT_CERT and VAULT_CLIENT_KEY"
    )


def test_tls_server_not_trusted_without_vault_cacert(
    bao_tls: OpenBaoServer, make_kms: MakeKMS
) -> None:
    token = bao_tls.create_token([TRANSIT_POLICY], ttl="1h")
    kms = make_kms(bao_tls.settings(VAULT_TOKEN=token, VAULT_CACERT=None))
    with pytest.raises(VaultConnectionError) as raised:
        kms.encrypt_key(bytes(32))
    assert str(raised.value).startswith(
        "Vault Transit encrypt request failed: TLS handshake failed"
    )
    assert "VAULT_CACERT" in raised.value.hint
    assert kms.stats.retries == 0


def test_no_credentials_at_all(bao: OpenBaoServer) -> None:
    with pytest.raises(
        ConfigurationError, match=r"^Vault authentication required: set VAULT_TOKEN"
    ):
        VaultTransitKMS.from_mapping(bao.settings())
