"""The Vault client against servers that misbehave on purpose (a scriptable loopback server,
alone or as a proxy in front of the real OpenBao):

* a redirect to another host is never followed: the Vault token would go with it;
* an AppRole login that reached Vault but got a 5xx (or a dropped connection) back is not
  sent again: a single-use secret id is spent by the first attempt, and re-sending it
  is at best a confusing failure and at worst a replay of a credential.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from asherah_django.core.kms.vault import VaultTransitKMS
from asherah_django.core.kms.vault_errors import (
    VaultConnectionError,
    VaultKMSError,
    VaultUnavailableError,
)
from asherah_django.testing.openbao import TRANSIT_POLICY, OpenBaoServer
from tests.support.loopback_http import LoopbackHTTP, Reply, Request, forward

from .conftest import approle_role

pytestmark = pytest.mark.vault
MakeKMS = Callable[[dict[str, object]], VaultTransitKMS]
LOGIN = "/v1/auth/approle/login"


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_to_another_host_is_not_followed_and_the_token_stays(
    bao: OpenBaoServer, make_kms: MakeKMS, status: int
) -> None:
    token = bao.create_token([TRANSIT_POLICY], ttl="1h")
    with LoopbackHTTP(lambda _: Reply(200, body=b'{"data":{}}'), host="127.0.0.2") as elsewhere:

        def redirect(request: Request) -> Reply:
            return Reply(status, {"Location": elsewhere.url + request.path})

        with LoopbackHTTP(redirect) as front:
            kms = make_kms(bao.settings(VAULT_ADDR=front.url, VAULT_TOKEN=token))
            with pytest.raises(VaultKMSError) as raised:
                kms.encrypt_key(bytes(32))
            assert front.requests  # the client did talk to VAULT_ADDR, with its token...
            assert all(r.headers.get("X-Vault-Token") == token for r in front.requests)
    assert elsewhere.requests == []  # ...and to nothing else
    assert token not in str(raised.value)
    assert str(status) in str(raised.value)


@pytest.mark.parametrize("failure", ["500", "502", "dropped"])
def test_an_approle_login_answered_5xx_or_dropped_is_not_sent_again(
    bao: OpenBaoServer, make_kms: MakeKMS, failure: str
) -> None:
    role_id, secret_id = approle_role(bao, secret_id_num_uses=1)
    single_use = secret_id()

    def proxy(request: Request) -> Reply:
        reply = forward(bao.addr, request)  # OpenBao really processes it (the id is spent)
        if request.path == LOGIN:
            if failure == "dropped":
                return Reply(0, drop=True)
            return Reply(int(failure), body=b'{"errors":["the load balancer lost the answer"]}')
        return reply

    before = bao.audit_count("auth/approle/login")
    with LoopbackHTTP(proxy) as front:
        kms = make_kms(
            bao.settings(VAULT_ADDR=front.url, VAULT_AUTH_METHOD="approle",
                         VAULT_APPROLE_ROLE_ID=role_id, VAULT_APPROLE_SECRET_ID=single_use)
        )  # fmt: skip
        expected = VaultConnectionError if failure == "dropped" else VaultUnavailableError
        with pytest.raises(expected):
            kms.encrypt_key(bytes(32))
        assert front.paths().count(LOGIN) == 1  # one attempt: the secret id went once
        assert kms.stats.retries == 0
    assert bao.audit_count("auth/approle/login") == before + 1


def test_a_repeatable_request_answered_5xx_is_retried(
    bao: OpenBaoServer, make_kms: MakeKMS
) -> None:
    """The control for the test above: the retry machinery works, and Transit calls (which
    carry no single-use credential) are retried after a 5xx."""
    token = bao.create_token([TRANSIT_POLICY], ttl="1h")
    failures = [500]

    def proxy(request: Request) -> Reply:
        if "/transit/encrypt/" in request.path and failures:
            failures.pop()
            return Reply(500, body=b'{"errors":["try again"]}')
        return forward(bao.addr, request)

    with LoopbackHTTP(proxy) as front:
        kms = make_kms(bao.settings(VAULT_ADDR=front.url, VAULT_TOKEN=token))
        assert kms.decrypt_key(kms.encrypt_key(bytes(32))) == bytes(32)
        assert sum("/transit/encrypt/" in p for p in front.paths()) == 2
        assert kms.stats.retries == 1
