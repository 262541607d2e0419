"""asherah_check names the Vault namespace its logins, tokens and Transit calls use."""

from __future__ import annotations

import json
import random
import string
from typing import Any

import pytest

from asherah_django.testing.openbao import rotate_policy, transit_policy
from tests.unit.management.commands.conftest import Vault, run_command
from tests.unit.management.commands.test_asherah_check import HEALTHY, normalize

pytestmark = [pytest.mark.vault, pytest.mark.django_db(transaction=True)]


def test_check_reports_the_vault_namespace(vault: Vault, settings: Any) -> None:
    # Letters only: normalize() rewrites keys, services and anything that looks like a duration.
    bao, namespace = vault.bao, "check-" + "".join(random.choices(string.ascii_lowercase, k=10))
    bao.api("POST", f"sys/namespaces/{namespace}", {})

    def api(method: str, path: str, body: dict[str, object]) -> dict[str, Any]:
        answer: dict[str, Any] = bao.api(method, path, body, namespace=namespace)
        return answer

    api("POST", "sys/mounts/transit", {"type": "transit"})
    api(
        "POST", f"transit/keys/{vault.key}", {"type": "aes256-gcm96", "auto_rotate_period": "2160h"}
    )
    hcl = transit_policy("transit", vault.key) + rotate_policy("transit", vault.key)
    api("PUT", f"sys/policies/acl/full-{vault.key}", {"policy": hcl})
    token = api("POST", "auth/token/create", {"policies": [f"full-{vault.key}"], "ttl": "1h"})
    settings.ASHERAH = vault.asherah(token["auth"]["client_token"], VAULT_NAMESPACE=namespace)

    status, out, _ = run_command("asherah_check")
    lines = normalize(out, vault).splitlines()
    assert status == 0, out
    assert lines[1] == HEALTHY.splitlines()[1] + f"; namespace {namespace}"
    assert lines[2:7] == HEALTHY.splitlines()[2:7]  # login, key and round trip in the namespace
    status, out, _ = run_command("asherah_check", "--json")
    server = next(c for c in json.loads(out)["checks"] if c["name"] == "vault.server")
    assert server["data"]["namespace"] == namespace

    # Without a namespace the line is unchanged and the data says so.
    settings.ASHERAH = vault.asherah()
    status, out, _ = run_command("asherah_check", "--json")
    server = next(c for c in json.loads(out)["checks"] if c["name"] == "vault.server")
    assert status == 0 and server["data"]["namespace"] is None
