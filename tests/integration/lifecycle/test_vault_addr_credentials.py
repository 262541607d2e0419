"""A VAULT_ADDR with embedded credentials is never echoed (issue #14 item 7): not in the
configuration error, the system checks, asherah_check's output (text and JSON) or the
readiness view's report."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client

from asherah_django import runtime
from asherah_django.core.errors import ConfigurationError
from asherah_django.core.kms.vault_config import redact_userinfo
from tests.unit.management.commands.conftest import run_command

PASSWORD = "s3cretPassw0rd"


def test_redact_userinfo() -> None:
    assert redact_userinfo(f"https://user:{PASSWORD}@vault:8200/x") == "https://***@vault:8200/x"
    assert redact_userinfo("https://vault.example.com:8200") == "https://vault.example.com:8200"
    assert redact_userinfo(f"{PASSWORD}@vault") == "***@vault"


@pytest.mark.urls("tests.unit.management.commands.urls")
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("scheme", ["https", "http"])
def test_credentials_in_vault_addr_are_never_shown(
    settings: Any, admin_client: Client, scheme: str
) -> None:
    addr = f"{scheme}://asherah:{PASSWORD}@vault.example.com:8200"
    settings.ASHERAH = {
        "SERVICE_NAME": "svc",
        "PRODUCT_ID": "prod",
        "KMS": "vault",
        "VAULT_ADDR": addr,
        "VAULT_TOKEN": "hvs.not-a-real-token",
        "VAULT_TRANSIT_KEY": "k",
    }
    settings.DEBUG = False
    texts = []
    with pytest.raises(ConfigurationError) as error:
        runtime.get_session_factory()
    texts.append(str(error.value))
    assert "***@vault.example.com:8200" in texts[0]
    out = StringIO()
    try:
        call_command("check", "--deploy", "--tag", "asherah", stdout=out, stderr=out)
    except Exception as exc:  # SystemCheckError lists the messages
        texts.append(str(exc))
    texts.append(out.getvalue())
    for args in ((), ("--json",)):
        status, stdout, stderr = run_command("asherah_check", *args)
        assert status == 1
        texts += [stdout, stderr]
    texts.append(admin_client.get("/ready/").content.decode())
    joined = "\n".join(texts)
    assert "VAULT_ADDR" in joined
    assert PASSWORD not in joined
