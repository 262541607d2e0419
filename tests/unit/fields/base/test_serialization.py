"""dumpdata writes the stored DataRowRecords (never plaintext, no key needed); loaddata
stores them unchanged and encrypts plaintext fixture values."""

from __future__ import annotations

import datetime
import decimal
import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.core import serializers
from django.core.management import call_command

import asherah_django
from asherah_django.core.errors import NoActiveSessionError
from asherah_django.core.records import looks_like_data_row
from asherah_django.fields import EncryptedField
from tests.testapp.models import AllTypes, TenantNote
from tests.unit.fields.conftest import factory, raw_column

pytestmark = pytest.mark.django_db
P = "serial"
VALUES: dict[str, Any] = {
    "text": "dump me",
    "char": "char",
    "email": "dump@example.com",
    "blob": b"\x00bytes",
    "data": {"n": [1, 2]},
    "number": 31337,
    "big_number": 2**50,
    "amount": decimal.Decimal("12.345"),
    "flag": True,
    "day": datetime.date(2020, 2, 2),
    "moment": datetime.datetime(2020, 2, 2, 2, 2, 2, tzinfo=datetime.UTC),
}
ENCRYPTED = [f.name for f in AllTypes._meta.concrete_fields if isinstance(f, EncryptedField)]


def _raw_row(pk: int) -> dict[str, str]:
    return {name: raw_column(AllTypes, pk, name) for name in ENCRYPTED}


def _dump(*labels: str, fmt: str = "json") -> str:
    out = io.StringIO()
    call_command("dumpdata", *labels, format=fmt, stdout=out)
    return out.getvalue()


def test_dumpdata_writes_the_stored_records_without_any_session(tmp_path: Path) -> None:
    with asherah_django.session(P):
        obj = AllTypes.objects.create(label="row", **VALUES)
        empty = AllTypes.objects.create(label="empty")
    stored = _raw_row(obj.pk)
    text = _dump("testapp.AllTypes")  # no session open: nothing is decrypted
    dumped = {row["pk"]: row["fields"] for row in json.loads(text)}
    for name in ENCRYPTED:
        assert dumped[obj.pk][name] == stored[name]
        assert dumped[empty.pk][name] is None
    for needle in ("dump me", "dump@example.com", "31337", "12.345", "2020-02-02"):
        assert needle not in text

    # loaddata stores the records byte for byte
    fixture = tmp_path / "dump.json"
    fixture.write_text(text)
    AllTypes.objects.all().delete()
    call_command("loaddata", str(fixture), verbosity=0)
    assert _raw_row(obj.pk) == stored
    with asherah_django.session(P):
        loaded = AllTypes.objects.get(pk=obj.pk)
        assert {name: getattr(loaded, name) for name in VALUES} == VALUES


def test_instances_already_read_or_changed_are_dumped_encrypted() -> None:
    with asherah_django.session(P):
        obj = AllTypes.objects.create(**VALUES)
        loaded = AllTypes.objects.get(pk=obj.pk)
        assert loaded.number == 31337  # decrypted now
        loaded.text = "changed in memory"
        for fmt in ("json", "python", "xml"):
            text = str(serializers.serialize(fmt, [loaded]))
            for needle in ("changed in memory", "31337", "dump@example.com"):
                assert needle not in text
        python = serializers.serialize("python", [loaded])[0]["fields"]
    assert python["number"] == raw_column(AllTypes, obj.pk, "number")  # the stored record
    assert looks_like_data_row(python["text"])
    assert python["text"] != raw_column(AllTypes, obj.pk, "text")
    assert factory().get_session(P).decrypt_text(python["text"]) == "changed in memory"


def test_plaintext_fixture_values_are_encrypted_on_load(tmp_path: Path) -> None:
    fixture = tmp_path / "plain.json"
    fields = {"label": "plain", "text": "from a fixture", "number": 5, "day": "2021-01-01"}
    fixture.write_text(json.dumps([{"model": "testapp.alltypes", "pk": 900, "fields": fields}]))
    with pytest.raises(NoActiveSessionError):
        call_command("loaddata", str(fixture), verbosity=0)
    with asherah_django.session(P):
        call_command("loaddata", str(fixture), verbosity=0)
        loaded = AllTypes.objects.get(pk=900)
        assert (loaded.text, loaded.number, loaded.day) == (
            "from a fixture",
            5,
            datetime.date(2021, 1, 1),
        )
    for name in ("text", "number", "day"):
        assert looks_like_data_row(raw_column(AllTypes, 900, name))


def test_row_partitioned_models_round_trip_through_fixtures(tmp_path: Path) -> None:
    for tenant in ("ta", "tb"):
        TenantNote.objects.create(tenant_id=tenant, body=f"body of {tenant}", extra={"t": tenant})
    before = {n.pk: raw_column(TenantNote, n.pk, "body") for n in TenantNote.objects.all()}
    fixture = tmp_path / "notes.json"
    fixture.write_text(_dump("testapp.TenantNote"))
    assert "body of" not in fixture.read_text()
    TenantNote.objects.all().delete()
    call_command("loaddata", str(fixture), verbosity=0)
    assert {n.pk: raw_column(TenantNote, n.pk, "body") for n in TenantNote.objects.all()} == before
    assert {n.tenant_id: n.body for n in TenantNote.objects.all()} == {
        "ta": "body of ta",
        "tb": "body of tb",
    }
