"""Django REST framework over encrypted fields, through a real URLconf and APIClient."""

from __future__ import annotations

import datetime
import decimal
import json
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework import serializers
from rest_framework.validators import UniqueValidator

import asherah_django
from asherah_django.contrib.drf import ENCRYPTION_ERROR_DETAIL, PartitionUniqueValidator
from tests.hygiene import MARKER, assert_clean_text
from tests.integration.integrations.urls import (
    ContactSerializer,
    PlainContactSerializer,
    TenantNoteSerializer,
)
from tests.integrationsapp.models import Contact, TenantNote

pytestmark = pytest.mark.django_db

A = {"HTTP_X_TENANT": "tenant-a"}
B = {"HTTP_X_TENANT": "tenant-b"}


def test_model_serializer_maps_each_encrypted_field_to_its_plaintext_type() -> None:
    fields = ContactSerializer().get_fields()
    expected = {
        "email": serializers.EmailField,
        "name": serializers.CharField,
        "code": serializers.CharField,
        "bio": serializers.CharField,
        "born": serializers.DateField,
        "seen": serializers.DateTimeField,
        "prefs": serializers.JSONField,
        "score": serializers.IntegerField,
        "balance": serializers.DecimalField,
        "vip": serializers.BooleanField,
    }
    for name, kind in expected.items():
        assert type(fields[name]) is kind, (name, type(fields[name]))
    assert fields["name"].max_length == 20
    assert fields["balance"].max_digits == 8
    unique = [v for v in fields["email"].validators if isinstance(v, UniqueValidator)]
    assert len(unique) == 1
    assert "email_bidx" not in fields and "code_bidx" not in fields  # keyed digests
    plain = PlainContactSerializer().get_fields()
    for name in expected:  # a plain ModelSerializer maps them the same way
        assert type(plain[name]) is type(fields[name]), name
    assert plain["email_bidx"].read_only  # ... but shows the index: hence the mixin


def test_serializer_validates_plaintext_types() -> None:
    with asherah_django.session("tenant-a"):
        bad = ContactSerializer(
            data={
                "email": "not-an-email",
                "name": "x" * 21,
                "born": "yesterday",
                "score": "many",
                "balance": "123456.789",
            }
        )
        assert not bad.is_valid()
        assert set(bad.errors) == {"email", "name", "born", "score", "balance"}


def test_create_and_read_round_trip_every_type(api: Any) -> None:
    body = {
        "email": "Ann@Example.org",
        "name": "Ann",
        "code": "C-1",
        "bio": f"{MARKER}bio",
        "born": "1990-02-03",
        "seen": "2026-01-02T03:04:05Z",
        "prefs": {"theme": "dark", "n": [1, 2]},
        "score": 7,
        "balance": "12.50",
        "vip": True,
    }
    created = api.post("/api/contacts/", body, format="json", **A)
    assert created.status_code == 201, created.content
    pk = created.json()["id"]
    got = api.get(f"/api/contacts/{pk}/", **A).json()
    assert got == {**body, "id": pk}
    with asherah_django.session("tenant-a"):
        row = Contact.objects.get(pk=pk)
        assert row.born == datetime.date(1990, 2, 3)
        assert row.balance == decimal.Decimal("12.50")
        assert row.prefs == {"theme": "dark", "n": [1, 2]}
    stored = Contact.objects.filter(pk=pk).values_list("bio", flat=True).query
    with connection.cursor() as cursor:
        cursor.execute("SELECT bio FROM integrations_app_contact WHERE id = %s", [pk])
        (raw,) = cursor.fetchone()
    assert MARKER not in raw and '"Key"' in raw  # the column holds a DataRowRecord
    assert stored is not None


def test_unique_blind_index_gives_a_working_unique_validator_in_one_query(api: Any) -> None:
    assert api.post("/api/contacts/", {"email": "bob@x.org", "name": "B"}, **A).status_code == 201
    with CaptureQueriesContext(connection) as queries:
        again = api.post("/api/contacts/", {"email": " BOB@X.org ", "name": "B2"}, **A)
    assert again.status_code == 400
    assert again.json() == {"email": ["contact with this email already exists."]}
    lookups = [q["sql"] for q in queries.captured_queries if "email_bidx" in q["sql"]]
    assert len(lookups) == 1, lookups  # one query, on the indexed column
    assert "email_bidx" in lookups[0] and '"email" =' not in lookups[0]
    # an update of the same row keeps its own value
    pk = Contact.objects.get().pk
    same = api.patch(f"/api/contacts/{pk}/", {"email": "bob@x.org"}, format="json", **A)
    assert same.status_code == 200, same.content


def test_partition_unique_validator_is_per_tenant(api: Any) -> None:
    assert any(isinstance(v, PartitionUniqueValidator) for v in TenantNoteSerializer().validators)
    note = {"tenant": "t1", "body": f"{MARKER}one", "email": "c@x.org"}
    assert api.post("/api/notes/", note, format="json").status_code == 201
    other_tenant = api.post("/api/notes/", {**note, "tenant": "t2"}, format="json")
    assert other_tenant.status_code == 201, other_tenant.content
    duplicate = api.post("/api/notes/", {**note, "email": "C@X.org"}, format="json")
    assert duplicate.status_code == 400
    assert duplicate.json() == {"email": ["A tenant note with this email already exists."]}
    assert TenantNote.objects.count() == 2


def test_row_partitioned_fields_in_list_and_detail_without_a_session(api: Any) -> None:
    for tenant in ("t1", "t2", "t3"):
        note = {"tenant": tenant, "body": f"{MARKER}{tenant}", "email": f"{tenant}@x.org"}
        assert api.post("/api/notes/", note, format="json").status_code == 201
    listed = api.get("/api/notes/").json()
    assert [(n["tenant"], n["body"]) for n in listed] == [
        (t, f"{MARKER}{t}") for t in ("t1", "t2", "t3")
    ]
    detail = api.get(f"/api/notes/{listed[1]['id']}/").json()
    assert detail["body"] == f"{MARKER}t2" and detail["email"] == "t2@x.org"
    assert [n["tenant"] for n in api.get("/api/notes/?tenant=t3").json()] == ["t3"]
    # each row is under its own tenant's key
    with connection.cursor() as cursor:
        cursor.execute("SELECT tenant, body FROM integrations_app_tenantnote")
        for tenant, raw in cursor.fetchall():
            assert f"_IK_{tenant}_" in json.loads(raw)["Key"]["ParentKeyMeta"]["KeyId"]


def test_values_of_another_tenant_are_an_error_without_records_or_keys(api: Any) -> None:
    created = api.post("/api/contacts/", {"email": "d@x.org", "name": "D"}, **A).json()
    other = api.get(f"/api/contacts/{created['id']}/", **B)
    assert other.status_code == 500
    assert other.json() == {"detail": ENCRYPTION_ERROR_DETAIL, "code": "encryption_error"}
    none = api.get("/api/contacts/")
    assert none.status_code == 500
    assert none.json()["detail"] == ENCRYPTION_ERROR_DETAIL
    for response in (other, none):
        assert_clean_text(response.content.decode(), "DRF error body")
        assert b"Created" not in response.content and b"tenant-a" not in response.content


def test_browsable_api_shows_no_records_or_key_material(api: Any) -> None:
    created = api.post("/api/contacts/", {"email": "e@x.org", "name": "E", "bio": "hi"}, **A)
    pk = created.json()["id"]
    for url in ("/api/contacts/", f"/api/contacts/{pk}/"):
        page = api.get(url, HTTP_ACCEPT="text/html", **A)
        assert page.status_code == 200
        html = page.content.decode()
        assert "e@x.org" in html  # the plaintext, to the tenant that owns it
        assert '"Key"' not in html and "ParentKeyMeta" not in html and "_bidx" not in html
        assert_clean_text(html, "browsable API page")
    error = api.get(f"/api/contacts/{pk}/", HTTP_ACCEPT="text/html", **B)
    assert error.status_code == 500
    assert "e@x.org" not in error.content.decode() and "ParentKeyMeta" not in error.content.decode()
    assert_clean_text(error.content.decode(), "browsable API error page")
