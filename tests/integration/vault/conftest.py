"""Fixtures for the Vault Transit KMS tests: real OpenBao servers, no mocks, no Django.

Servers (started once per test session, about two seconds each):

* ``bao``: plain HTTP, with Kubernetes (backed by ``k8s_api``, a TokenReview endpoint in
  this process) and AppRole auth enabled;
* ``bao_tls``: HTTPS with a throw-away CA, with TLS certificate auth enabled;
* ``outage_bao`` (per module): a server the tests stop, pause and restart.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from asherah_django.core import CryptoPolicy, InMemoryMetastore, SessionFactory
from asherah_django.core.kms.vault import VaultTransitKMS
from asherah_django.testing.openbao import ROTATE_POLICY, TRANSIT_POLICY, OpenBaoServer
from asherah_django.testing.tls import CertificateAuthority
from tests.support.kubernetes import TokenReviewServer

K8S_ROLE = "asherah-role"
K8S_NAMESPACE = "default"
K8S_SERVICE_ACCOUNT = "asherah-sa"
APPROLE_ROLE = "asherah"
CERT_ROLE = "asherah-machines"

_names = itertools.count()


def unique(prefix: str) -> str:
    """A name no other test uses (roles, partitions) in the shared servers."""
    return f"{prefix}-{next(_names)}"


@pytest.fixture(scope="session")
def k8s_api() -> Iterator[TokenReviewServer]:
    with TokenReviewServer() as api:
        yield api


@pytest.fixture(scope="session")
def bao(
    tmp_path_factory: pytest.TempPathFactory, k8s_api: TokenReviewServer
) -> Iterator[OpenBaoServer]:
    workdir = tmp_path_factory.mktemp("openbao")
    cluster_ca = CertificateAuthority.create(workdir / "k8s", "kubernetes-ca")
    with OpenBaoServer(workdir / "server") as server:
        server.api("POST", "sys/auth/kubernetes", {"type": "kubernetes"})
        server.api(
            "POST",
            "auth/kubernetes/config",
            {
                "kubernetes_host": k8s_api.url,
                "token_reviewer_jwt": k8s_api.reviewer_jwt,
                "kubernetes_ca_cert": cluster_ca.pem,
                "disable_local_ca_jwt": True,
            },
        )
        server.api(
            "POST",
            f"auth/kubernetes/role/{K8S_ROLE}",
            {
                "bound_service_account_names": [K8S_SERVICE_ACCOUNT],
                "bound_service_account_namespaces": [K8S_NAMESPACE],
                "policies": [TRANSIT_POLICY],
                "ttl": "1h",
            },
        )
        server.api("POST", "sys/auth/approle", {"type": "approle"})
        server.api(
            "POST",
            f"auth/approle/role/{APPROLE_ROLE}",
            {"token_policies": [TRANSIT_POLICY], "token_ttl": "1h", "token_max_ttl": "4h"},
        )
        yield server


@pytest.fixture(scope="session")
def bao_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBaoServer]:
    with OpenBaoServer(tmp_path_factory.mktemp("openbao-tls"), tls=True) as server:
        assert server.ca is not None
        server.api("POST", "sys/auth/cert", {"type": "cert"})
        server.api(
            "POST",
            f"auth/cert/certs/{CERT_ROLE}",
            {
                "display_name": "asherah",
                "policies": [TRANSIT_POLICY],
                "certificate": server.ca.pem,
                "ttl": "1h",
            },
        )
        yield server


@pytest.fixture(scope="module")
def outage_bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBaoServer]:
    with OpenBaoServer(tmp_path_factory.mktemp("openbao-outage")) as server:
        yield server


def approle_role(server: OpenBaoServer, **options: Any) -> tuple[str, Callable[..., str]]:
    """A fresh AppRole role: (role id, function returning a new secret id)."""
    name = unique("approle")
    body = {"token_policies": [TRANSIT_POLICY], "token_ttl": "1h", "token_max_ttl": "4h"}
    server.api("POST", f"auth/approle/role/{name}", {**body, **options})
    role_id = server.api("GET", f"auth/approle/role/{name}/role-id")["data"]["role_id"]

    def secret_id(**secret_options: Any) -> str:
        answer = server.api("POST", f"auth/approle/role/{name}/secret-id", secret_options)
        value: str = answer["data"]["secret_id"]
        return value

    return role_id, secret_id


@pytest.fixture
def make_kms() -> Iterator[Callable[..., VaultTransitKMS]]:
    """``make_kms(settings)``: a KMS closed at the end of the test."""
    made: list[VaultTransitKMS] = []

    def make(settings: dict[str, object]) -> VaultTransitKMS:
        kms = VaultTransitKMS.from_mapping(settings)
        made.append(kms)
        return kms

    yield make
    for kms in made:
        kms.close()


@pytest.fixture
def root_kms(bao: OpenBaoServer, make_kms: Callable[..., VaultTransitKMS]) -> VaultTransitKMS:
    """A KMS on ``bao`` with a token holding asherah-transit and asherah-rotate."""
    token = bao.create_token([TRANSIT_POLICY, ROTATE_POLICY], ttl="1h")
    return make_kms(bao.settings(VAULT_TOKEN=token))


def factory_for(
    kms: VaultTransitKMS, metastore: Any = None, *, product: str = "product", **policy: Any
) -> SessionFactory:
    """A SessionFactory for service/``product`` (closing it closes ``kms`` too)."""
    return SessionFactory(
        "service", product, kms, metastore if metastore is not None else InMemoryMetastore(),
        CryptoPolicy(**policy) if policy else None,
    )  # fmt: skip


def round_trip(factory: SessionFactory, partition: str | None = None) -> None:
    """Encrypt and decrypt through the factory (so through the KMS on a cold start)."""
    session = factory.get_session(partition or unique("partition"))
    record = session.encrypt(b"payload")
    assert session.decrypt(record) == b"payload"


@pytest.fixture
def k8s_token_file(tmp_path: Path, k8s_api: TokenReviewServer) -> Path:
    """A service-account token file, as the kubelet mounts it."""
    path = tmp_path / "serviceaccount" / "token"
    path.parent.mkdir()
    path.write_text(k8s_api.issue(K8S_NAMESPACE, K8S_SERVICE_ACCOUNT) + "\n")
    return path
