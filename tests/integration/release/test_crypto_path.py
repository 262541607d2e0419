"""``asherah_check`` and the admin's health panel say which crypto path does the per-value
work (issue 19): ``crypto=C accelerator`` when the extension is loaded, ``crypto=pure Python``
otherwise (here by switching the loaded flag; tests/integration/release/test_artifacts.py installs a
real pure-Python sdist and a real wheel)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from asherah_django.core import session as core_session
from asherah_django.health.local import crypto_path
from tests.unit.management.commands.conftest import run_command

HEALTH = "/admin/asherah_django/encryptionkey/health/"


@pytest.mark.parametrize(("loaded", "shown"), [(True, "C accelerator"), (False, "pure Python")])
def test_crypto_path_in_check_and_admin_health_panel(
    transactional_db: None,
    monkeypatch: pytest.MonkeyPatch,
    settings: Any,
    loaded: bool,
    shown: str,
) -> None:
    settings.DEBUG = True  # the static KMS of the test settings passes the deploy checks then
    monkeypatch.setattr(core_session, "SPEEDUPS", loaded)
    assert crypto_path() == shown
    _, out, _ = run_command("asherah_check", "--json")
    document = json.loads(out)
    checks = {check["name"]: check for check in document["checks"]}
    assert checks["settings"]["data"]["crypto"] == shown  # in the JSON whatever the status
    _, out, _ = run_command("asherah_check")
    settings_line = next(line for line in out.splitlines() if line.startswith("settings"))
    assert f"crypto={shown}" in settings_line
    client = Client()
    client.force_login(User.objects.create_superuser("panel", "p@example.org", "pw"))
    panel = client.post(HEALTH).content.decode()
    assert f"crypto={shown}" in panel
