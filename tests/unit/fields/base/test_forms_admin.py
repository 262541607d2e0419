"""ModelForms and the admin show and save plaintext; the database keeps ciphertext."""

from __future__ import annotations

import datetime
import decimal
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from django import forms
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client, override_settings

import asherah_django
from asherah_django.core.records import looks_like_data_row
from tests.testapp.models import AllTypes, TenantNote
from tests.unit.fields.conftest import raw_column

pytestmark = pytest.mark.django_db
MIDDLEWARE = [*settings.MIDDLEWARE, "asherah_django.middleware.AsherahSessionMiddleware"]


if TYPE_CHECKING:  # generic only in django-stubs
    _ModelForm = forms.ModelForm[AllTypes]
else:
    _ModelForm = forms.ModelForm


class AllTypesForm(_ModelForm):
    class Meta:
        model = AllTypes
        exclude = ("blob",)


def test_model_form_shows_plaintext_and_saves_ciphertext() -> None:
    with asherah_django.session("forms"):
        obj = AllTypes.objects.create(text="shown", char="short", number=3, flag=True)
        form = AllTypesForm(instance=AllTypes.objects.get(pk=obj.pk))
        assert form.initial["text"] == "shown" and form.initial["number"] == 3
        html = form.as_p()
        assert "shown" in html and 'maxlength="40"' in html
        data = {
            "label": "edited",
            "text": '{"Key": "typed by a user, still plaintext"}',
            "char": "c" * 40,
            "email": "x@example.com",
            "data": '{"a": 1}',
            "number": "4",
            "big_number": "",
            "amount": "2.5",
            "flag": "false",
            "day": "2024-01-02",
            "moment": "2024-01-02 03:04:05",
        }
        form = AllTypesForm(data, instance=AllTypes.objects.get(pk=obj.pk))
        assert form.is_valid(), form.errors
        assert set(form.changed_data) >= {"label", "text", "char", "number"}
        assert "flag" in form.changed_data
        saved = form.save()
        got = AllTypes.objects.get(pk=saved.pk)
        assert (got.text, got.char, got.number, got.flag, got.amount, got.data) == (
            '{"Key": "typed by a user, still plaintext"}',
            "c" * 40,
            4,
            False,
            decimal.Decimal("2.500"),
            {"a": 1},
        )
        assert got.day == datetime.date(2024, 1, 2) and got.big_number is None
    for name in ("text", "char", "number", "flag", "data"):
        assert looks_like_data_row(raw_column(AllTypes, obj.pk, name))


def test_a_record_pasted_into_a_model_form_is_encrypted_not_stored_as_is() -> None:
    """Form input that IS a DataRowRecord (another row's ciphertext, copied) goes through
    clean(), which never adopts it: it is plaintext to encrypt. Storing it as is would let
    a user copy another row's secret into a row they can read back."""
    with asherah_django.session("forms"):
        victim = AllTypes.objects.create(text="the victim's secret", number=1)
        mine = AllTypes.objects.create(text="mine", number=2)
    pasted = raw_column(AllTypes, victim.pk, "text")
    assert looks_like_data_row(pasted)
    with asherah_django.session("forms"):
        data = {"label": "x", "text": pasted, "char": "", "email": "", "data": "null"}
        data.update(number="2", big_number="", amount="", flag="", day="", moment="")
        form = AllTypesForm(data, instance=AllTypes.objects.get(pk=mine.pk))
        assert form.is_valid(), form.errors
        assert form.cleaned_data["text"] == pasted and type(form.cleaned_data["text"]) is str
        form.save()
        stored = raw_column(AllTypes, mine.pk, "text")
        assert stored != pasted and looks_like_data_row(stored)
        assert AllTypes.objects.get(pk=mine.pk).text == pasted  # the typed text, encrypted
        # Model validation (full_clean) takes the same path.
        instance = AllTypes.objects.get(pk=mine.pk)
        instance.text = pasted
        instance.full_clean(exclude=["blob"])
        assert type(instance.text) is str
        instance.save()
        assert raw_column(AllTypes, mine.pk, "text") not in (pasted, stored)
        assert AllTypes.objects.get(pk=mine.pk).text == pasted


def test_model_form_validates_the_plaintext() -> None:
    with asherah_django.session("forms"):
        form = AllTypesForm({"char": "x" * 41, "email": "not an email", "number": str(2**31)})
        assert not form.is_valid()
        assert set(form.errors) == {"char", "email", "number"}
        instance = AllTypes(char="y" * 41, number=2**31)
        with pytest.raises(Exception, match="at most 40 characters"):
            instance.full_clean()


@pytest.fixture
def admin_client() -> Iterator[tuple[Client, User]]:
    with override_settings(ROOT_URLCONF="tests.unit.fields.urls", MIDDLEWARE=MIDDLEWARE):
        user = User.objects.create(username="root", is_staff=True, is_superuser=True)
        client = Client()
        client.force_login(user)
        yield client, user


def test_admin_changelist_change_and_add(admin_client: tuple[Client, User]) -> None:
    client, user = admin_client
    with asherah_django.session(str(user.pk)):  # the middleware's default: the user's pk
        obj = AllTypes.objects.create(label="row", text="visible in admin", number=12)
    page = client.get("/admin/testapp/alltypes/")
    assert page.status_code == 200 and b"visible in admin" in page.content
    change = client.get(f"/admin/testapp/alltypes/{obj.pk}/change/")
    assert b"visible in admin" in change.content
    post: dict[str, Any] = {"label": "row", "text": "edited in admin", "char": "", "email": ""}
    post.update(data="null", number="13", big_number="", amount="", flag="", day="", moment_0="")
    post.update(moment_1="")
    response = client.post(f"/admin/testapp/alltypes/{obj.pk}/change/", post)
    assert response.status_code == 302, response.content
    added = client.post("/admin/testapp/alltypes/add/", {**post, "label": "new", "text": "added"})
    assert added.status_code == 302
    with asherah_django.session(str(user.pk)):
        assert AllTypes.objects.get(pk=obj.pk).text == "edited in admin"
        assert AllTypes.objects.get(label="new").text == "added"
    assert looks_like_data_row(raw_column(AllTypes, obj.pk, "text"))


def test_a_record_pasted_into_the_admin_is_encrypted_not_stored_as_is(
    admin_client: tuple[Client, User],
) -> None:
    client, user = admin_client
    with asherah_django.session(str(user.pk)):
        victim = AllTypes.objects.create(label="victim", text="the victim's secret")
    pasted = raw_column(AllTypes, victim.pk, "text")
    post: dict[str, Any] = {"label": "copy", "text": pasted, "char": "", "email": ""}
    post.update(data="null", number="", big_number="", amount="", flag="", day="", moment_0="")
    post.update(moment_1="")
    assert client.post("/admin/testapp/alltypes/add/", post).status_code == 302
    copy = AllTypes.objects.get(label="copy")
    stored = raw_column(AllTypes, copy.pk, "text")
    assert stored != pasted and looks_like_data_row(stored)
    with asherah_django.session(str(user.pk)):
        assert AllTypes.objects.get(pk=copy.pk).text == pasted
    page = client.get(f"/admin/testapp/alltypes/{copy.pk}/change/")
    assert b"the victim&#x27;s secret" not in page.content
    assert b"the victim's secret" not in page.content


def test_admin_lists_rows_of_many_tenants(admin_client: tuple[Client, User]) -> None:
    client, _ = admin_client
    for tenant in ("north", "south"):
        TenantNote.objects.create(tenant_id=tenant, title=tenant, body=f"{tenant} body")
    page = client.get("/admin/testapp/tenantnote/")
    assert b"north body" in page.content and b"south body" in page.content
    sorted_page = client.get("/admin/testapp/tenantnote/", {"o": "1"})
    assert sorted_page.status_code == 200
