"""The Django internals the fields lean on (asherah_django/django_internals.py): each
assumption holds on the Django this combination runs (5.2, 6.0 or 6.1), what the app does
when one stops holding, and that nothing else in the package looks at the call stack.

Assumption B (who reads ``unique``) is exercised through the schema itself by
tests/unit/blind_index/test_column.py::test_the_schema_puts_unique_on_the_index_column_only and
tests/unit/blind_index/options/test_migrations.py (tables from migrations and from the live models);
D (the UPDATE guard) by tests/unit/blind_index/test_values.py::
test_update_that_would_leave_the_index_stale_is_refused.
"""

from __future__ import annotations

import datetime
import decimal
import io
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import django
import pytest
from django.core import serializers
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.core.serializers import python as python_serializer
from django.core.serializers.json import Serializer as JSONSerializer
from django.db.models.sql.compiler import SQLUpdateCompiler

import asherah_django
from asherah_django import django_internals
from asherah_django.core.records import looks_like_data_row, parse_data_row
from asherah_django.fields import EncryptedField, SealedValue
from tests.testapp.models import AllTypes
from tests.unit.fields.conftest import raw_column

P = "internals"
VALUES: dict[str, Any] = {
    "text": "plain text 4711",
    "char": "char 4711",
    "email": "internals4711@example.com",
    "blob": b"\x00bytes4711",
    "data": {"n": [4711, 4712], "flag": False},
    "number": 4711,
    "big_number": 2**52 + 4711,
    "amount": decimal.Decimal("4711.125"),
    "flag": True,
    "day": datetime.date(2047, 11, 4),
    "moment": datetime.datetime(2047, 11, 4, 7, 11, 0, tzinfo=datetime.UTC),
}
#: Text that would appear in a dump if any value were written as plaintext.
PLAINTEXT = (
    "plain text 4711",
    "char 4711",
    "internals4711@",
    "4711.125",
    str(2**52 + 4711),
    "2047-11-04",
    "[4711, 4712]",
    "[4711,4712]",
)
ENCRYPTED = [f.name for f in AllTypes._meta.concrete_fields if isinstance(f, EncryptedField)]
PACKAGE = Path(asherah_django.__file__).parent
FENCED = PACKAGE / "django_internals.py"


def test_this_django_is_a_verified_one_and_every_assumption_holds() -> None:
    assert django.VERSION[:2] in django_internals.VERIFIED_DJANGO
    assert django_internals.verify() == []
    django_internals.check_startup()  # what the app's ready() runs: no error


def test_no_call_stack_inspection_outside_the_fenced_module() -> None:
    pattern = re.compile(
        r"sys\._getframe|inspect\.(stack|currentframe|getouterframes|getframeinfo|trace)"
        r"|\bcurrentframe\b|\bf_locals\b|\bf_back\b|\bf_globals\b|\btb_frame\b|\b_getframe\b"
    )
    offenders = [
        f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != FENCED
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []
    assert pattern.search(FENCED.read_text())  # (the pattern does find what it looks for)


# -- A. which query builds model instances --------------------------------------------------


@pytest.mark.django_db
def test_a_model_queries_decrypt_lazily_and_values_at_once() -> None:
    with asherah_django.session(P):
        obj = AllTypes.objects.create(label="a", **VALUES)
        for loaded in (
            AllTypes.objects.get(pk=obj.pk),
            next(iter(AllTypes.objects.raw("SELECT * FROM testapp_alltypes"))),
        ):
            assert isinstance(loaded.__dict__["number"], SealedValue)  # not decrypted yet
            assert loaded.number == VALUES["number"]
        row = AllTypes.objects.values("number", "day", "data").get(pk=obj.pk)
        assert row == {k: VALUES[k] for k in ("number", "day", "data")}
        assert AllTypes.objects.values_list("amount", flat=True).get(pk=obj.pk) == VALUES["amount"]
        named = AllTypes.objects.values_list("flag", "text", named=True).get(pk=obj.pk)
        assert (named.flag, named.text) == (True, VALUES["text"])


@pytest.mark.django_db
def test_a_unrecognised_iterables_fail_safe_by_decrypting_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(django_internals, "_LAZY_CODES", frozenset())
    monkeypatch.setattr(django_internals, "_EAGER_CODES", frozenset())
    with asherah_django.session(P):
        obj = AllTypes.objects.create(label="a", **VALUES)
        loaded = AllTypes.objects.get(pk=obj.pk)
        assert not isinstance(loaded.__dict__["number"], SealedValue)  # decrypted at once
        assert {name: getattr(loaded, name) for name in VALUES} == VALUES
        assert AllTypes.objects.values("day").get(pk=obj.pk) == {"day": VALUES["day"]}


# -- C. dumpdata: DataRowRecords for every field type, on every supported Django --------------


def _records_in(fmt: str, text: str) -> list[dict[str, Any]]:
    if fmt == "json":
        return [row["fields"] for row in json.loads(text)]
    if fmt == "jsonl":
        return [json.loads(line)["fields"] for line in text.splitlines() if line]
    assert fmt == "xml"
    rows = []
    for obj in ET.fromstring(text).iter("object"):
        rows.append({f.get("name"): f.text for f in obj.iter("field")})
    return rows


@pytest.mark.django_db
@pytest.mark.parametrize("fmt", ["json", "jsonl", "xml"])
def test_dumpdata_writes_records_for_every_field_type(fmt: str) -> None:
    with asherah_django.session(P):
        AllTypes.objects.create(label="fresh", **VALUES)
        read = AllTypes.objects.create(label="read", **VALUES)
        read = AllTypes.objects.get(pk=read.pk)
        assert {name: getattr(read, name) for name in VALUES} == VALUES  # all decrypted
    out = io.StringIO()
    if fmt == "xml":  # (it reads each value to test it for None: decryption needs a key)
        with asherah_django.session(P):
            call_command("dumpdata", "testapp.AllTypes", format=fmt, stdout=out)
    else:  # the python-based serializers need no key: they write the stored records
        call_command("dumpdata", "testapp.AllTypes", format=fmt, stdout=out)
    text = out.getvalue()
    rows = _records_in(fmt, text)
    assert len(rows) == 2
    for fields in rows:
        for name in ENCRYPTED:
            value = fields[name]
            assert isinstance(value, str) and looks_like_data_row(value), (name, value)
            parse_data_row(value)
    for needle in PLAINTEXT:
        assert needle not in text, needle
    # the python serializer (which json, jsonl and yaml use) directly, with instances read
    with asherah_django.session(P):  # (JSON, mutable in place, is encrypted anew)
        objects = [AllTypes.objects.get(pk=read.pk)]
        assert [getattr(objects[0], name) for name in VALUES] == list(VALUES.values())
        dumped = serializers.serialize("python", objects)[0]["fields"]
    assert all(looks_like_data_row(dumped[name]) for name in ENCRYPTED)
    assert dumped["number"] == raw_column(AllTypes, read.pk, "number")  # read, unchanged


class _OwnReader(JSONSerializer):
    """A serializer reading values its own way (as a changed Django could)."""

    def _value_from_field(self, obj: Any, field: Any) -> Any:
        value = field.value_from_object(obj)
        return value if python_serializer.is_protected_type(value) else field.value_to_string(obj)


@pytest.mark.django_db
def test_an_unrecognised_serializer_path_is_refused_not_served_plaintext() -> None:
    with asherah_django.session(P):
        obj = AllTypes.objects.create(label="x", number=4711, day=VALUES["day"])
        loaded = AllTypes.objects.get(pk=obj.pk)
        with pytest.raises(django_internals.UnsupportedDjangoError, match="does not recognise"):
            _OwnReader().serialize([loaded])
        assert loaded.number == 4711  # ordinary reads (forms, admin) are unaffected
        assert EncryptedField.value_from_object(AllTypes._meta.get_field("number"), loaded) == 4711


@pytest.mark.django_db
def test_a_changed_python_serializer_fails_closed_at_startup_and_in_dumpdata(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with asherah_django.session(P):
        AllTypes.objects.create(label="x", **VALUES)
    original = python_serializer.Serializer._value_from_field

    def moved(self: Any, obj: Any, field: Any) -> Any:
        return original(self, obj, field)  # the same reading, one call further away

    monkeypatch.setattr(python_serializer.Serializer, "_value_from_field", moved)
    try:
        problems = django_internals.verify()
        assert [p[:2] for p in problems] == ["C:"]
        assert django_internals.fatal(problems) == []  # it fails closed by itself:
        out = io.StringIO()
        with pytest.raises(CommandError, match="does not recognise"):
            call_command("dumpdata", "testapp.AllTypes", format="json", stdout=out)
        assert not any(needle in out.getvalue() for needle in PLAINTEXT)
    finally:
        monkeypatch.undo()
        assert django_internals.verify() == []
    assert "does not recognise" not in _dump_json()


def _dump_json() -> str:
    out = io.StringIO()
    call_command("dumpdata", "testapp.AllTypes", format="json", stdout=out)
    return out.getvalue()


# -- B and D: refused at startup --------------------------------------------------------------


def test_a_changed_update_compiler_stops_the_app_from_starting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def as_sql(self: Any) -> Any:  # asks no field for its placeholder
        return "", ()

    monkeypatch.setattr(SQLUpdateCompiler, "as_sql", as_sql)
    problems = django_internals.verify()
    assert [p[:2] for p in django_internals.fatal(problems)] == ["D:"]
    with pytest.raises(ImproperlyConfigured, match=r"does not support .*D: SQLUpdateCompiler"):
        django_internals.check_startup()
    monkeypatch.undo()
    assert django_internals.verify() == []


def test_a_schema_editor_that_reads_unique_elsewhere_stops_the_app_from_starting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from django.db.backends.base.schema import BaseDatabaseSchemaEditor

    def helper(field: Any) -> bool:
        return bool(field.unique)

    def should_be_indexed(self: Any, model: Any, field: Any) -> bool:
        return bool(field.db_index) and not helper(field)

    monkeypatch.setattr(BaseDatabaseSchemaEditor, "_field_should_be_indexed", should_be_indexed)
    with pytest.raises(ImproperlyConfigured, match="B: BaseDatabaseSchemaEditor"):
        django_internals.check_startup()
    monkeypatch.undo()
    assert django_internals.verify() == []
