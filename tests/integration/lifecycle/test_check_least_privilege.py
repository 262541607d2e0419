"""asherah_check with README's own least-privilege production policy (issue #14 item 8).

An OpenBao server of this module's own gets exactly the README's setup: the transit key
``asherah-master`` with ``auto_rotate_period=2160h`` and the two policies, their HCL taken
verbatim from README.md. A token with only ``asherah-transit`` (encrypt and decrypt) must
pass with exit status 0; with ``asherah-rotate`` too, the key's configuration is checked.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from asherah_django.testing.openbao import OpenBaoServer
from tests.support.common import ROOT
from tests.unit.management.commands.conftest import run_command

pytestmark = [pytest.mark.vault, pytest.mark.django_db(transaction=True)]


def readme_policy(name: str) -> str:
    """The heredoc of ``vault policy write <name> - <<EOF`` in the Vault guide, verbatim."""
    text = (ROOT / "docs" / "vault.md").read_text(encoding="utf-8")
    match = re.search(rf"vault policy write {name} - <<EOF\n(.*?)\nEOF\n", text, re.S)
    assert match is not None, f"docs/vault.md has no policy {name}"
    return match.group(1) + "\n"


@pytest.fixture(scope="module")
def readme_bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBaoServer]:
    with OpenBaoServer(tmp_path_factory.mktemp("openbao-readme")) as server:
        assert server.transit_key == "asherah-master"
        server.api(  # README: vault write transit/keys/asherah-master ... auto_rotate_period=2160h
            "POST", "transit/keys/asherah-master/config", {"auto_rotate_period": "2160h"}
        )
        for name in ("asherah-transit", "asherah-rotate"):
            server.write_policy(name, readme_policy(name))
        yield server


def check(bao: OpenBaoServer, settings: Any, *policies: str) -> tuple[int, list[str]]:
    token = bao.create_token(list(policies), ttl="1h")
    settings.ASHERAH = {
        "SERVICE_NAME": f"lp{uuid.uuid4().hex[:8]}",
        "PRODUCT_ID": "prod",
        "KMS": "vault",
        **bao.settings(VAULT_TOKEN=token),
        "VAULT_TRANSIT_KEY": "asherah-master",
        "VAULT_MAX_RETRIES": 0,
    }
    status, out, _ = run_command("asherah_check")
    return status, out.splitlines()


def test_readme_least_privilege_policy_passes(readme_bao: OpenBaoServer, settings: Any) -> None:
    status, lines = check(readme_bao, settings, "asherah-transit")
    assert status == 0, "\n".join(lines)
    (key_config,) = [line for line in lines if line.startswith("vault.key_config")]
    assert key_config.startswith(
        "vault.key_config  OK    not checked: this token may not read the configuration of "
        "transit key 'asherah-master' (the least-privilege asherah-transit policy)"
    )


def test_deeper_check_with_the_rotation_policy(readme_bao: OpenBaoServer, settings: Any) -> None:
    status, lines = check(readme_bao, settings, "asherah-transit", "asherah-rotate")
    assert status == 0, "\n".join(lines)
    (key_config,) = [line for line in lines if line.startswith("vault.key_config")]
    assert "auto_rotate_period 90d" in key_config and "not checked" not in key_config
