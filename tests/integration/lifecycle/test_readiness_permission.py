"""The readiness view's full report needs the key-view permission (issue #14 item 5)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from asherah_django import health
from tests.unit.management.commands.conftest import Vault
from tests.unit.management.commands.jsonshape import problems

pytestmark = [pytest.mark.vault, pytest.mark.urls("tests.unit.management.commands.urls")]


def _login(client: Client, *, staff: bool, permission: bool) -> None:
    user = User.objects.create_user(f"u{staff}{permission}", password="pw-not-secret")
    user.is_staff = staff
    user.save()
    if permission:
        user.user_permissions.add(Permission.objects.get(codename="view_encryptionkey"))
    client.force_login(user)


@pytest.mark.django_db(transaction=True)
def test_only_users_with_the_key_view_permission_see_the_report(
    vault: Vault, settings: Any
) -> None:
    settings.ASHERAH = vault.asherah()
    for staff, permission, detailed in (
        (True, False, False),  # staff alone: status only (it showed everything before)
        (False, True, False),  # not staff: status only, as in the admin
        (True, True, True),
    ):
        client = Client()
        _login(client, staff=staff, permission=permission)
        body = client.get("/ready/").json()
        if detailed:
            assert problems(body, health.REPORT_SCHEMA) == []
            assert vault.bao.addr in body["checks"][0]["detail"]
        else:
            assert body == {"status": "OK"}, (staff, permission)
    assert Client().get("/ready/").json() == {"status": "OK"}  # anonymous
