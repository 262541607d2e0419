"""A plain ModelAdmin (without EncryptedFieldsAdminMixin) never answers 500 on a row it
cannot decrypt: with AsherahSessionMiddleware installed, its pages are rendered as the
mixin would, the value locked; without the middleware, system check asherah.W003 says so."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client, override_settings

import asherah_django
from asherah_django.checks import check_admin
from tests.testapp.models import AllTypes

pytestmark = pytest.mark.django_db
MIDDLEWARE = [*settings.MIDDLEWARE, "asherah_django.middleware.AsherahSessionMiddleware"]
LIST = "/admin/testapp/alltypes/"


@pytest.fixture
def staff() -> Iterator[tuple[Client, User]]:
    with override_settings(ROOT_URLCONF="tests.unit.fields.urls", MIDDLEWARE=MIDDLEWARE):
        user = User.objects.create(username="root", is_staff=True, is_superuser=True)
        client = Client(raise_request_exception=False)
        client.force_login(user)
        yield client, user


def test_a_row_of_another_partition_is_shown_locked(staff: tuple[Client, User]) -> None:
    client, user = staff
    with asherah_django.session("someone-else"):
        other = AllTypes.objects.create(label="theirs", text="their secret", number=1)
    with asherah_django.session(str(user.pk)):  # the middleware's partition for this user
        AllTypes.objects.create(label="mine", text="my plaintext", number=2)
    page = client.get(LIST)
    assert page.status_code == 200
    text = page.content.decode()
    assert "my plaintext" in text and "their secret" not in text
    assert "Encrypted: encrypted for another partition" in text
    change = client.get(f"{LIST}{other.pk}/change/")
    assert change.status_code == 200
    assert "Encrypted: encrypted for another partition" in change.content.decode()
    assert "their secret" not in change.content.decode()


def test_without_a_session_the_pages_are_shown_locked(staff: tuple[Client, User]) -> None:
    client, _ = staff
    with asherah_django.session("someone-else"):
        other = AllTypes.objects.create(label="theirs", text="their secret", number=1)
    resolver = "tests.unit.fields.urls.header_partition"  # no X-Tenant header: no session
    with override_settings(ASHERAH={**settings.ASHERAH, "PARTITION_RESOLVER": resolver}):
        for url in (LIST, f"{LIST}{other.pk}/change/"):
            page = client.get(url)
            assert page.status_code == 200
            assert "Encrypted: no session for this partition" in page.content.decode()


def test_w003_without_the_middleware() -> None:
    import tests.unit.fields.urls  # noqa: F401 - registers plain ModelAdmins on its site

    def w003(middleware: list[str]) -> list[Any]:
        with override_settings(MIDDLEWARE=middleware):
            return [m for m in check_admin() if m.id == "asherah.W003"]

    found = w003(list(settings.MIDDLEWARE))
    assert any(
        "AllTypesAdmin (admin site 'fields_admin')" in m.msg and "testapp.AllTypes" in m.msg
        for m in found
    )
    assert all("EncryptedFieldsAdminMixin" in (m.hint or "") for m in found)
    assert w003(MIDDLEWARE) == []
    from django.core import checks

    registered = [m for m in checks.run_checks(tags=["admin"]) if m.id == "asherah.W003"]
    assert registered, "check_admin is not registered under the admin tag"
