"""``VAULT_ADDR`` listing several nodes, against one real OpenBao and loopback fronts.

A node that cannot be reached is skipped for the next at once and the answering node stays
in use; a 307/308 redirect is followed only to a listed node (and that node stays in use);
any other redirect, and 301/302/303 even to a listed node, is refused with the token kept
home. The 3-node cluster versions are in tests/integration/topology/test_vault_nodes.py.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import pytest

from asherah_django.core.kms.vault import VaultTransitKMS
from asherah_django.core.kms.vault_errors import VaultConnectionError, VaultKMSError
from asherah_django.testing.openbao import TRANSIT_POLICY, OpenBaoServer, free_port
from tests.support.loopback_http import LoopbackHTTP, Reply, Request

pytestmark = pytest.mark.vault
MakeKMS = Callable[[dict[str, object]], VaultTransitKMS]


def wraps(kms: VaultTransitKMS) -> None:
    key = os.urandom(32)
    assert kms.decrypt_key(kms.encrypt_key(key)) == key


def dead() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there


@pytest.mark.parametrize("status", [307, 308])
def test_redirect_to_a_listed_node_is_followed_and_that_node_kept(
    bao: OpenBaoServer, make_kms: MakeKMS, status: int
) -> None:
    token = bao.create_token([TRANSIT_POLICY], ttl="1h")
    with LoopbackHTTP(lambda r: Reply(status, {"Location": bao.addr + r.path})) as standby:
        nodes = f"{standby.url},{bao.addr}"
        kms = make_kms(bao.settings(VAULT_ADDR=nodes, VAULT_TOKEN=token, VAULT_MAX_RETRIES=0))
        for _ in range(3):
            wraps(kms)
        assert len(standby.requests) == 1  # redirected once; the leader stays in use


@pytest.mark.parametrize("status", [301, 302, 303, 307])
def test_redirect_elsewhere_or_changing_the_method_is_refused(
    bao: OpenBaoServer, make_kms: MakeKMS, status: int
) -> None:
    token = bao.create_token([TRANSIT_POLICY], ttl="1h")
    with LoopbackHTTP(lambda _: Reply(200, body=b'{"data":{}}'), host="127.0.0.2") as elsewhere:
        # 307 to an unlisted host; 301/302/303 (which turn a POST into a GET) even to a listed one
        target = elsewhere.url if status == 307 else bao.addr

        def redirect(request: Request) -> Reply:
            return Reply(status, {"Location": target + request.path})

        with LoopbackHTTP(redirect) as front:
            nodes = f"{front.url},{bao.addr}"
            kms = make_kms(bao.settings(VAULT_ADDR=nodes, VAULT_TOKEN=token, VAULT_MAX_RETRIES=0))
            with pytest.raises(VaultKMSError, match=str(status)):
                kms.encrypt_key(bytes(32))
            assert len(front.requests) == 1
    assert elsewhere.requests == []


def test_unreachable_node_skipped_once_then_the_next_kept(
    bao: OpenBaoServer, make_kms: MakeKMS, caplog: pytest.LogCaptureFixture
) -> None:
    token = bao.create_token([TRANSIT_POLICY], ttl="1h")
    kms = make_kms(
        bao.settings(VAULT_ADDR=f"{dead()},{bao.addr}", VAULT_TOKEN=token, VAULT_MAX_RETRIES=0)
    )
    with caplog.at_level(logging.WARNING, logger="asherah_django.core.kms.vault"):
        for _ in range(3):
            wraps(kms)
    skipped = [r for r in caplog.records if "unreachable; trying the next" in r.getMessage()]
    assert len(skipped) == 1  # the dead node is not tried again while the next one answers
    assert kms.stats.retries == 0


def test_every_node_unreachable_is_a_connection_error(make_kms: MakeKMS) -> None:
    settings = {
        "VAULT_ADDR": f"{dead()},{dead()},{dead()}", "VAULT_TRANSIT_KEY": "k",
        "VAULT_TOKEN": "t", "VAULT_MAX_RETRIES": 0,
    }  # fmt: skip
    with pytest.raises(VaultConnectionError, match="connection refused"):
        make_kms(settings).encrypt_key(bytes(32))


def test_redirect_to_a_listed_node_that_is_down_is_a_connection_error(
    bao: OpenBaoServer, make_kms: MakeKMS
) -> None:
    """The followed request fails like any other: typed, with the retries it allows."""
    down = dead()
    with LoopbackHTTP(lambda r: Reply(307, {"Location": down + r.path})) as standby:
        settings = bao.settings(
            VAULT_ADDR=f"{standby.url},{down}", VAULT_TOKEN="t", VAULT_MAX_RETRIES=1
        )
        with pytest.raises(VaultConnectionError, match="connection refused"):
            make_kms(settings).encrypt_key(bytes(32))
    # Each attempt: the standby redirects, the listed node refuses (the redirect's target
    # only, not the list again): 2 attempts, 2 requests to the standby.
    assert len(standby.requests) == 2
