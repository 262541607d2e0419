"""VAULT_NAMESPACE and credential files (VAULT_TOKEN_FILE, VAULT_APPROLE_SECRET_ID_FILE).

Real OpenBao namespaces (``sys/namespaces``, what ``bao namespace create`` calls), nested
two deep, each with its own Transit engine, key, policies and auth methods: every auth
method and every Transit call must reach the namespace, and only through
``VAULT_NAMESPACE`` (the same token without it is refused).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from asherah_django.core import ConfigurationError
from asherah_django.core.kms.vault import VaultTransitConfig, VaultTransitKMS
from asherah_django.core.kms.vault_errors import VaultAuthError, VaultKMSError
from asherah_django.testing.openbao import (
    ROTATE_POLICY,
    TRANSIT_POLICY,
    OpenBaoServer,
    rotate_policy,
    transit_policy,
)
from asherah_django.testing.tls import CertificateAuthority
from tests.support.kubernetes import TokenReviewServer

from .conftest import K8S_NAMESPACE, K8S_SERVICE_ACCOUNT

pytestmark = pytest.mark.vault
MakeKMS = Callable[[dict[str, object]], VaultTransitKMS]
_names = itertools.count()


def make_namespace(server: OpenBaoServer) -> str:
    """``team-N/app``: a nested namespace provisioned like the root one (transit, policies)."""
    outer = f"team-{os.getpid()}-{next(_names)}"
    server.api("POST", f"sys/namespaces/{outer}", {})
    server.api("POST", "sys/namespaces/app", {}, namespace=outer)
    namespace = f"{outer}/app"
    mount, key = server.transit_mount, server.transit_key

    def api(method: str, path: str, body: dict[str, object] | None = None) -> None:
        server.api(method, path, body, namespace=namespace)

    api("POST", f"sys/mounts/{mount}", {"type": "transit"})
    api("POST", f"{mount}/keys/{key}", {"type": "aes256-gcm96"})
    api("PUT", f"sys/policies/acl/{TRANSIT_POLICY}", {"policy": transit_policy(mount, key)})
    api("PUT", f"sys/policies/acl/{ROTATE_POLICY}", {"policy": rotate_policy(mount, key)})
    return namespace


def ns_token(server: OpenBaoServer, namespace: str, **options: object) -> str:
    answer = server.api(
        "POST", "auth/token/create", {"policies": [TRANSIT_POLICY], "ttl": "1h", **options},
        namespace=namespace,
    )  # fmt: skip
    token: str = answer["auth"]["client_token"]
    return token


def wraps(kms: VaultTransitKMS) -> None:
    """A cold encrypt and decrypt through Vault."""
    key = os.urandom(32)
    assert kms.decrypt_key(kms.encrypt_key(key)) == key


@pytest.fixture(scope="module")
def namespace(bao: OpenBaoServer) -> str:
    return make_namespace(bao)


# -- settings ---------------------------------------------------------------------------


def test_namespace_setting_is_validated_and_normalized() -> None:
    base = {"VAULT_ADDR": "http://127.0.0.1:8200", "VAULT_TRANSIT_KEY": "k", "VAULT_TOKEN": "t"}
    config = VaultTransitConfig.from_mapping({**base, "VAULT_NAMESPACE": "/admin/team/"})
    assert config.namespace == "admin/team"
    assert VaultTransitConfig.from_mapping({**base, "VAULT_NAMESPACE": "/"}).namespace is None
    with pytest.raises(ConfigurationError, match="VAULT_NAMESPACE must be a path"):
        VaultTransitConfig.from_mapping({**base, "VAULT_NAMESPACE": "admin/../root"})


def test_token_and_token_file_are_exclusive(tmp_path: Path) -> None:
    base = {"VAULT_ADDR": "http://127.0.0.1:8200", "VAULT_TRANSIT_KEY": "k"}
    with pytest.raises(ConfigurationError, match="only one of VAULT_TOKEN and VAULT_TOKEN_FILE"):
        VaultTransitConfig.from_mapping(
            {**base, "VAULT_TOKEN": "t", "VAULT_TOKEN_FILE": str(tmp_path / "t")}
        )
    config = VaultTransitConfig.from_mapping({**base, "VAULT_TOKEN_FILE": str(tmp_path / "t")})
    assert config.auth_method == "token" and config.token is None
    with pytest.raises(ConfigurationError, match="only one of VAULT_APPROLE_SECRET_ID and"):
        VaultTransitConfig.from_mapping(
            {**base, "VAULT_AUTH_METHOD": "approle", "VAULT_APPROLE_ROLE_ID": "r",
             "VAULT_APPROLE_SECRET_ID": "s", "VAULT_APPROLE_SECRET_ID_FILE": "/f"}
        )  # fmt: skip


# -- every auth method in a namespace ---------------------------------------------------


def test_token_in_namespace_needs_vault_namespace(
    bao: OpenBaoServer, namespace: str, make_kms: MakeKMS
) -> None:
    token = ns_token(bao, namespace)
    kms = make_kms(bao.settings(VAULT_TOKEN=token, VAULT_NAMESPACE=namespace))
    wraps(kms)
    assert kms.health().initialized  # sys/health lives in the root namespace: no header
    without = make_kms(bao.settings(VAULT_TOKEN=token))
    with pytest.raises(VaultKMSError) as raised:
        without.encrypt_key(os.urandom(32))
    assert "namespace=" not in str(raised.value)


def test_transit_lands_in_the_namespace_key(
    bao: OpenBaoServer, namespace: str, make_kms: MakeKMS
) -> None:
    """A ciphertext made in the namespace decrypts there only, not under the root key."""
    ns_kms = make_kms(bao.settings(VAULT_TOKEN=ns_token(bao, namespace), VAULT_NAMESPACE=namespace))
    root_kms = make_kms(bao.settings(VAULT_TOKEN=bao.create_token([TRANSIT_POLICY], ttl="1h")))
    blob = ns_kms.encrypt_key(os.urandom(32))
    with pytest.raises(VaultKMSError):
        root_kms.decrypt_key(blob)


def test_approle_in_namespace_with_secret_id_file(
    bao: OpenBaoServer, namespace: str, tmp_path: Path, make_kms: MakeKMS
) -> None:
    bao.api("POST", "sys/auth/approle", {"type": "approle"}, namespace=namespace)
    bao.api(
        "POST", "auth/approle/role/app", {"token_policies": [TRANSIT_POLICY], "token_ttl": "1h"},
        namespace=namespace,
    )  # fmt: skip
    role_id = bao.api("GET", "auth/approle/role/app/role-id", namespace=namespace)["data"][
        "role_id"
    ]
    secret = bao.api(
        "POST", "auth/approle/role/app/secret-id", {"num_uses": 1}, namespace=namespace
    )["data"]["secret_id"]
    secret_file = tmp_path / "secret-id"
    secret_file.write_text(secret + "\n")
    kms = make_kms(bao.settings(
        VAULT_AUTH_METHOD="approle", VAULT_APPROLE_ROLE_ID=role_id,
        VAULT_APPROLE_SECRET_ID_FILE=str(secret_file), VAULT_NAMESPACE=namespace,
    ))  # fmt: skip
    wraps(kms)
    assert kms.token_info().display_name == f"{namespace.replace('/', '-')}-auth-approle"


def test_kubernetes_in_namespace(
    bao: OpenBaoServer, namespace: str, k8s_api: TokenReviewServer, tmp_path: Path,
    make_kms: MakeKMS,
) -> None:  # fmt: skip
    ca = CertificateAuthority.create(tmp_path / "k8s", "kubernetes-ca")
    bao.api("POST", "sys/auth/kubernetes", {"type": "kubernetes"}, namespace=namespace)
    bao.api("POST", "auth/kubernetes/config", {
        "kubernetes_host": k8s_api.url, "token_reviewer_jwt": k8s_api.reviewer_jwt,
        "kubernetes_ca_cert": ca.pem, "disable_local_ca_jwt": True,
    }, namespace=namespace)  # fmt: skip
    bao.api("POST", "auth/kubernetes/role/app", {
        "bound_service_account_names": [K8S_SERVICE_ACCOUNT],
        "bound_service_account_namespaces": [K8S_NAMESPACE],
        "policies": [TRANSIT_POLICY], "ttl": "1h",
    }, namespace=namespace)  # fmt: skip
    jwt = tmp_path / "token"
    jwt.write_text(k8s_api.issue(K8S_NAMESPACE, K8S_SERVICE_ACCOUNT))
    kms = make_kms(bao.settings(
        VAULT_AUTH_METHOD="kubernetes", VAULT_AUTH_ROLE="app", VAULT_K8S_TOKEN_PATH=str(jwt),
        VAULT_NAMESPACE=namespace,
    ))  # fmt: skip
    wraps(kms)


def test_cert_in_namespace(bao_tls: OpenBaoServer, tmp_path: Path, make_kms: MakeKMS) -> None:
    assert bao_tls.ca is not None
    namespace = make_namespace(bao_tls)
    bao_tls.api("POST", "sys/auth/cert", {"type": "cert"}, namespace=namespace)
    bao_tls.api("POST", "auth/cert/certs/app", {
        "display_name": "ns-app", "policies": [TRANSIT_POLICY], "certificate": bao_tls.ca.pem,
        "ttl": "1h",
    }, namespace=namespace)  # fmt: skip
    cert, key = bao_tls.ca.issue(tmp_path, "ns-app", client=True)
    kms = make_kms(bao_tls.settings(
        VAULT_AUTH_METHOD="cert", VAULT_CLIENT_CERT=str(cert), VAULT_CLIENT_KEY=str(key),
        VAULT_NAMESPACE=namespace,
    ))  # fmt: skip
    wraps(kms)
    assert kms.token_info().display_name == f"{namespace.replace('/', '-')}-auth-cert-ns-app"


# -- credential files -------------------------------------------------------------------


def test_token_file_reread_once_when_vault_refuses_the_token(
    bao: OpenBaoServer, namespace: str, tmp_path: Path, make_kms: MakeKMS
) -> None:
    first = ns_token(bao, namespace)
    sink = tmp_path / "sink"
    sink.write_text(first)
    kms = make_kms(bao.settings(VAULT_TOKEN_FILE=str(sink), VAULT_NAMESPACE=namespace))
    wraps(kms)
    # What a Vault Agent does: a new token in the sink, the old one revoked.
    second = ns_token(bao, namespace)
    sink.write_text(second + "\n")
    bao.api("POST", "auth/token/revoke", {"token": first}, namespace=namespace)
    wraps(kms)  # the 403 made it read the file again: no failed call
    # The token in the file dies and nothing replaces it: a typed error naming the file.
    bao.api("POST", "auth/token/revoke", {"token": second}, namespace=namespace)
    with pytest.raises(VaultAuthError) as raised:
        kms.encrypt_key(os.urandom(32))
    message = str(raised.value)
    assert f"VAULT_TOKEN_FILE={sink}" in message
    assert f"VAULT_ADDR={bao.addr}" in message and f"namespace={namespace}" in message
    assert first not in message and second not in message
    assert "Vault Agent" in (raised.value.hint or "")


def test_unreadable_token_file_is_a_typed_error(
    bao: OpenBaoServer, tmp_path: Path, make_kms: MakeKMS
) -> None:
    missing = tmp_path / "no-such-sink"
    kms = make_kms(bao.settings(VAULT_TOKEN_FILE=str(missing)))
    with pytest.raises(VaultAuthError, match=f"VAULT_TOKEN_FILE={missing}"):
        kms.encrypt_key(os.urandom(32))
    missing.write_text("  \n")
    with pytest.raises(VaultAuthError, match="is empty"):
        kms.encrypt_key(os.urandom(32))


def test_secret_id_file_reread_at_relogin(
    bao: OpenBaoServer, tmp_path: Path, make_kms: MakeKMS
) -> None:
    """A single-use secret id is spent; a re-login reads the file; the same value is not resent."""
    mount = f"approle-file-{os.getpid()}"  # its own mount: its tokens are revoked below
    bao.api("POST", f"sys/auth/{mount}", {"type": "approle"})
    bao.api("POST", f"auth/{mount}/role/app", {"token_policies": [TRANSIT_POLICY]})
    role_id = bao.api("GET", f"auth/{mount}/role/app/role-id")["data"]["role_id"]

    def fresh() -> str:
        answer = bao.api("POST", f"auth/{mount}/role/app/secret-id", {"num_uses": 1})
        value: str = answer["data"]["secret_id"]
        return value

    secret_file = tmp_path / "secret-id"
    secret_file.write_text(fresh())
    kms = make_kms(bao.settings(
        VAULT_AUTH_METHOD="approle", VAULT_AUTH_MOUNT=mount, VAULT_APPROLE_ROLE_ID=role_id,
        VAULT_APPROLE_SECRET_ID_FILE=str(secret_file),
    ))  # fmt: skip
    wraps(kms)
    logins = kms.stats.logins
    # The token is revoked and the file still holds the spent secret id: a typed error.
    bao.api("PUT", f"sys/leases/revoke-prefix/auth/{mount}/login", {})
    with pytest.raises(VaultAuthError) as raised:
        kms.encrypt_key(os.urandom(32))
    assert f"VAULT_APPROLE_SECRET_ID_FILE={secret_file}" in str(raised.value)
    assert kms.stats.logins == logins + 1  # the one refused re-login
    with pytest.raises(VaultAuthError, match="already used"):
        kms.encrypt_key(os.urandom(32))
    assert kms.stats.logins == logins + 1  # the spent value is not sent again
    # A fresh secret id delivered to the file: the next call logs in with it.
    secret_file.write_text(fresh())
    wraps(kms)
    assert kms.stats.logins == logins + 2
