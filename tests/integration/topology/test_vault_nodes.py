"""``VAULT_ADDR`` listing the nodes of a 3-node OpenBao cluster; a standby that redirects.

OpenBao standbys forward requests to the active node, or, when forwarding is off
(``X-Vault-No-Request-Forwarding``, added here by :class:`~.redirecting.RedirectingProxy`
in front of a standby), answer requests that write storage (a login) with ``307`` and the
active node's ``api_addr``. The client follows such a redirect only to a node that
``VAULT_ADDR`` lists; any other redirect is refused before a token or secret id leaves
(tests/integration/vault/test_hostile_server.py covers a foreign host). A node that cannot be reached
is skipped for the next one at once.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from asherah_django.core.kms.vault import VaultTransitKMS
from asherah_django.core.kms.vault_errors import VaultKMSError
from asherah_django.testing.openbao import TRANSIT_POLICY, free_port
from asherah_django.testing.openbao_cluster import OpenBaoCluster
from tests.hygiene import register_secret

from .redirecting import RedirectingProxy

pytestmark = [pytest.mark.vault, pytest.mark.topology]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBaoCluster]:
    with OpenBaoCluster(tmp_path_factory.mktemp("nodes") / "ha") as made:
        register_secret(made.root_token, "token")
        leader = made.wait_for_leader()
        made.api(leader, "POST", "sys/auth/approle", {"type": "approle"})
        made.api(
            leader, "POST", "auth/approle/role/app",
            {"token_policies": [TRANSIT_POLICY], "token_ttl": "1h"},
        )  # fmt: skip
        yield made


def secret_id(cluster: OpenBaoCluster, proxy: RedirectingProxy) -> dict[str, object]:
    """AppRole settings with a fresh secret id good for one login, once the proxied standby
    has it (raft replicates it a moment after the leader made it)."""
    leader = cluster.wait_for_leader()
    role_id = cluster.api(leader, "GET", "auth/approle/role/app/role-id")["data"]["role_id"]
    answer = cluster.api(leader, "POST", "auth/approle/role/app/secret-id", {"num_uses": 1})
    secret: str = answer["data"]["secret_id"]
    register_secret(secret, "secret id")
    accessor = answer["data"]["secret_id_accessor"]
    lookup = urllib.request.Request(
        f"{proxy.addr}/v1/auth/approle/role/app/secret-id-accessor/lookup",
        data=json.dumps({"secret_id_accessor": accessor}).encode(), method="POST",
        headers={"X-Vault-Token": cluster.root_token},
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while True:  # the standby answers a read itself: 200 once replicated
        try:
            with urllib.request.urlopen(lookup, timeout=10) as reply:
                if reply.status == 200:
                    break
        except urllib.error.HTTPError as error:
            error.close()
        assert time.monotonic() < deadline, "the secret id never reached the standby"
        time.sleep(0.1)
    return {
        "VAULT_AUTH_METHOD": "approle",
        "VAULT_APPROLE_ROLE_ID": role_id,
        "VAULT_APPROLE_SECRET_ID": secret,
        "VAULT_MAX_RETRIES": 0,
    }


def wraps(kms: VaultTransitKMS) -> None:
    key = os.urandom(32)
    assert kms.decrypt_key(kms.encrypt_key(key)) == key


def test_standby_redirect_followed_to_a_listed_node_only(cluster: OpenBaoCluster) -> None:
    leader = cluster.wait_for_leader()
    standby, other = (i for i in range(3) if i != leader)
    with RedirectingProxy(cluster.addrs[standby]) as proxy:
        # Listed: the login (a storage write) is redirected to the leader and followed.
        nodes = f"{proxy.addr},{cluster.addrs[leader]},{cluster.addrs[other]}"
        credentials = secret_id(cluster, proxy)
        with VaultTransitKMS.from_mapping(
            cluster.settings(standby, VAULT_ADDR=nodes, **credentials)
        ) as kms:
            began = time.monotonic()
            wraps(kms)
            took = time.monotonic() - began
        assert 307 in proxy.statuses, "the standby forwarded instead of redirecting"
        followed = proxy.statuses.count(307)

        # Not listed: the same redirect is refused; the secret id never reached the leader,
        # so it still logs in there afterwards (it is good for one login only).
        credentials = secret_id(cluster, proxy)
        for refused in (proxy.addr, f"{proxy.addr},{cluster.addrs[other]}"):
            proxy.statuses.clear()
            settings = cluster.settings(standby, VAULT_ADDR=refused, **credentials)
            with VaultTransitKMS.from_mapping(settings) as kms:
                with pytest.raises(VaultKMSError, match="redirected the request") as raised:
                    kms.login()
            assert raised.value.status == 307 and proxy.statuses == [307]
        with VaultTransitKMS.from_mapping(cluster.settings(leader, **credentials)) as kms:
            wraps(kms)
    print(
        f"\nRedirecting standby: login redirected {followed}x to the listed leader and "
        f"followed; login + wrap + unwrap {took:.2f}s; redirects to an unlisted node refused "
        "(single address and list without the leader)"
    )


def test_unreachable_node_skipped_for_the_next(cluster: OpenBaoCluster) -> None:
    leader = cluster.wait_for_leader()
    token = cluster.create_token([TRANSIT_POLICY], ttl="1h")
    register_secret(token, "token")
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    nodes = ",".join([dead, *(addr for i, addr in enumerate(cluster.addrs) if i != leader)])
    settings = cluster.settings(leader, VAULT_ADDR=nodes, VAULT_TOKEN=token, VAULT_MAX_RETRIES=0)
    with VaultTransitKMS.from_mapping(settings) as kms:
        began = time.monotonic()
        wraps(kms)
        first = time.monotonic() - began
        began = time.monotonic()
        for _ in range(20):
            wraps(kms)
        steady = (time.monotonic() - began) / 20
        assert kms.stats.retries == 0  # skipping a dead node is no retry (no backoff)
    print(
        f"\nNode list with a dead first node: first wrap + unwrap {first:.3f}s, then "
        f"{steady * 1000:.1f} ms each (the answering node stays in use)"
    )


def test_vault_addr_list_is_validated(tmp_path: Path) -> None:
    from asherah_django.core import ConfigurationError
    from asherah_django.core.kms.vault_config import VaultTransitConfig

    base = {"VAULT_TRANSIT_KEY": "k", "VAULT_TOKEN": "t"}
    config = VaultTransitConfig.from_mapping(
        {**base, "VAULT_ADDR": " https://a:8200/, https://b:8200 ,https://a:8200,"}
    )
    assert (config.addr, config.other_addrs) == ("https://a:8200", ("https://b:8200",))
    with pytest.raises(ConfigurationError, match="VAULT_ADDR must be an http"):
        VaultTransitConfig.from_mapping({**base, "VAULT_ADDR": "https://a:8200,b:8200"})
    with pytest.raises(ConfigurationError, match="needs an https:// VAULT_ADDR"):
        VaultTransitConfig.from_mapping(
            {**base, "VAULT_ADDR": "https://a:8200,http://b:8200", "VAULT_AUTH_METHOD": "cert",
             "VAULT_CLIENT_CERT": str(tmp_path / "c"), "VAULT_CLIENT_KEY": str(tmp_path / "k")}
        )  # fmt: skip


def test_plain_http_warning_counts_every_listed_node() -> None:
    """``check --deploy``'s asherah.W103 looks at each node of the list, not the first only."""
    from django.test import override_settings

    from asherah_django import checks

    base = {
        "SERVICE_NAME": "svc", "PRODUCT_ID": "prod", "KMS": "vault", "VAULT_TRANSIT_KEY": "k",
        "VAULT_TOKEN": "hvs.CAESIJ" + "x" * 90,
    }  # fmt: skip

    def w103(addr: str) -> list[str]:
        with override_settings(ASHERAH={**base, "VAULT_ADDR": addr}, DEBUG=False):
            return [m.id for m in checks.check_deployment() if m.id == "asherah.W103"]

    assert w103("https://vault-1:8200,http://vault-2:8200") == ["asherah.W103"]
    assert w103("https://vault-1:8200,https://vault-2:8200") == []
    assert w103("http://127.0.0.1:8200,http://localhost:8201") == []
