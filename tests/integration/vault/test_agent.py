"""A real ``bao agent`` (AppRole auto-auth, token sink, API proxy) in front of OpenBao.

The agent's tokens live 2 s (renewable up to 4 s), so it logs in again every few
seconds while two threads make cold Transit calls: through its token sink
(``VAULT_TOKEN_FILE``, the application talking to Vault directly) and through its API
proxy (``VAULT_AUTH_METHOD=agent``, ``VAULT_ADDR`` = the agent). No call may fail.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from asherah_django.core.kms.vault import VaultTransitKMS
from asherah_django.core.kms.vault_errors import VaultAuthError
from asherah_django.testing.openbao import TRANSIT_POLICY, OpenBaoServer
from asherah_django.testing.openbao_agent import OpenBaoAgent
from tests.hygiene import register_secret

pytestmark = [pytest.mark.vault, pytest.mark.topology]
MakeKMS = Callable[[dict[str, object]], VaultTransitKMS]
LOAD_SECONDS = 12.0


@pytest.fixture(scope="module")
def agent(bao: OpenBaoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBaoAgent]:
    mount = f"approle-agent-{os.getpid()}"
    bao.api("POST", f"sys/auth/{mount}", {"type": "approle"})
    bao.api("POST", f"auth/{mount}/role/agent", {
        "token_policies": [TRANSIT_POLICY], "token_ttl": "2s", "token_max_ttl": "4s",
    })  # fmt: skip
    role_id = bao.api("GET", f"auth/{mount}/role/agent/role-id")["data"]["role_id"]
    secret_id = bao.api("POST", f"auth/{mount}/role/agent/secret-id", {})["data"]["secret_id"]
    workdir = tmp_path_factory.mktemp("bao-agent")
    with OpenBaoAgent(workdir, bao, role_id, secret_id, mount=mount) as running:
        yield running


def steady_load(kms: VaultTransitKMS, agent: OpenBaoAgent) -> tuple[int, list[str], set[str]]:
    """Two threads of cold wrap/unwrap for LOAD_SECONDS: (calls, errors, tokens seen)."""
    errors: list[str] = []
    calls = [0, 0]
    tokens = {agent.token()}
    register_secret(agent.token(), "token")
    stop = time.monotonic() + LOAD_SECONDS

    def work(slot: int) -> None:
        while time.monotonic() < stop:
            key = os.urandom(32)
            try:
                assert kms.decrypt_key(kms.encrypt_key(key)) == key
            except Exception as exc:  # counted and reported, never swallowed
                errors.append(f"{type(exc).__name__}: {exc}")
            calls[slot] += 2

    threads = [threading.Thread(target=work, args=(slot,)) for slot in (0, 1)]
    for thread in threads:
        thread.start()
    while time.monotonic() < stop:
        token = agent.token()
        if token not in tokens:
            register_secret(token, "token")  # the log-hygiene check looks for it too
            tokens.add(token)
        time.sleep(0.2)
    for thread in threads:
        thread.join()
    return sum(calls), errors, tokens


@pytest.mark.parametrize("via", ["sink", "api_proxy"])
def test_agent_rotated_tokens_never_fail_a_call(
    bao: OpenBaoServer, agent: OpenBaoAgent, make_kms: MakeKMS, via: str
) -> None:
    if via == "sink":
        settings = bao.settings(VAULT_TOKEN_FILE=str(agent.sink))
    else:
        settings = bao.settings(VAULT_ADDR=agent.addr, VAULT_AUTH_METHOD="agent")
    kms = make_kms(settings)
    kms.login()
    calls, errors, tokens = steady_load(kms, agent)
    print(
        f"\nbao agent via {via}: {calls} Transit calls in {LOAD_SECONDS:g}s, "
        f"{len(tokens)} agent tokens, {len(errors)} failed; {kms.stats}"
    )
    assert len(tokens) >= 2, "the agent did not rotate its token during the run"
    assert errors == []


def test_agent_token_revoked_behind_the_proxy_is_waited_for(
    bao: OpenBaoServer, agent: OpenBaoAgent, make_kms: MakeKMS
) -> None:
    """The agent's token dies under it (revoked here; on a busy host, expired before the
    agent's next login): the call's 403 is repeated once the agent has a new token."""
    kms = make_kms(bao.settings(VAULT_ADDR=agent.addr, VAULT_AUTH_METHOD="agent"))
    kms.login()
    dead = agent.token()
    register_secret(dead, "token")
    bao.api("POST", "auth/token/revoke", {"token": dead})
    key = os.urandom(32)
    began = time.monotonic()
    assert kms.decrypt_key(kms.encrypt_key(key)) == key
    waited = time.monotonic() - began
    register_secret(agent.token(), "token")
    print(f"\nagent token revoked: the call waited {waited:.2f}s for the agent's next token")
    assert agent.token() != dead
    assert kms.stats.other >= 2  # lookup-self through the agent: it was waited for


def test_agent_method_without_an_agent_is_a_typed_error(
    bao: OpenBaoServer, make_kms: MakeKMS
) -> None:
    kms = make_kms(bao.settings(VAULT_AUTH_METHOD="agent"))  # Vault itself: no token added
    with pytest.raises(VaultAuthError, match="through the agent failed") as raised:
        kms.login()
    assert "use_auto_auth_token" in (raised.value.hint or "")
