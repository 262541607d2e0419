"""Legacy plaintext in an encrypted column: detected by structure, read or rejected; a
DataRowRecord that fails to decrypt always raises (nothing is swallowed)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import transaction

import asherah_django
from asherah_django.core.errors import DecryptionError, MalformedRecordError
from asherah_django.core.records import looks_like_data_row
from asherah_django.fields import PlaintextValueError
from asherah_django.signals import decryption_failed
from tests.testapp.models import LegacyNote
from tests.unit.fields.conftest import raw_column, write_raw

pytestmark = pytest.mark.django_db
P = "legacy"


@pytest.fixture
def failures() -> Any:
    seen: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        seen.append({"sender": sender, **kwargs})

    decryption_failed.connect(receiver)
    yield seen
    decryption_failed.disconnect(receiver)


def _legacy_row(**columns: Any) -> LegacyNote:
    note = LegacyNote.objects.create()
    for column, value in columns.items():
        write_raw(LegacyNote, note.pk, column, value)
    return note


def test_legacy_plaintext_is_read_without_a_session_but_not_saved_in_plaintext() -> None:
    """Before asherah_encrypt has run, reading plaintext needs no key, so no session."""
    from asherah_django.core.errors import NoActiveSessionError

    note = _legacy_row(body="plain old text", number="17")
    loaded = LegacyNote.objects.get(pk=note.pk)
    assert (loaded.body, loaded.number) == ("plain old text", 17)
    assert list(LegacyNote.objects.values_list("body", "number")) == [("plain old text", 17)]
    with pytest.raises(NoActiveSessionError), transaction.atomic():  # writing needs a key
        loaded.save()
    assert raw_column(LegacyNote, note.pk, "body") == "plain old text"
    with asherah_django.session(P):
        encrypted = LegacyNote.objects.create(body="new")
    with pytest.raises(NoActiveSessionError):  # a DataRowRecord still needs its partition
        LegacyNote.objects.get(pk=encrypted.pk).body  # noqa: B018


@pytest.mark.parametrize(
    "text",
    ["plain old text", "", "42", '{"Key": "not a record"}', '{"json": true}', "  spaced  "],
)
def test_legacy_read_returns_plaintext_and_the_next_save_encrypts_it(text: str) -> None:
    note = _legacy_row(body=text, number="17")
    with asherah_django.session(P):
        loaded = LegacyNote.objects.get(pk=note.pk)
        assert loaded.body == text
        assert loaded.number == 17
        assert list(LegacyNote.objects.values_list("body", "number")) == [(text, 17)]
        loaded.save()
    for column in ("body", "number"):
        assert looks_like_data_row(raw_column(LegacyNote, note.pk, column))
    with asherah_django.session(P):
        assert LegacyNote.objects.get(pk=note.pk).body == text


def test_saving_an_untouched_legacy_value_encrypts_it_too() -> None:
    note = _legacy_row(body="never read")
    with asherah_django.session(P):
        loaded = LegacyNote.objects.get(pk=note.pk)
        loaded.owner = "x"
        loaded.save()
        assert looks_like_data_row(raw_column(LegacyNote, note.pk, "body"))
        assert LegacyNote.objects.get(pk=note.pk).body == "never read"


def test_legacy_reject_is_the_default_and_raises_clearly(
    failures: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    note = _legacy_row(strict="secret plaintext")
    with asherah_django.session(P):
        loaded = LegacyNote.objects.get(pk=note.pk)
        with pytest.raises(PlaintextValueError, match="not an Asherah DataRowRecord") as info:
            loaded.strict  # noqa: B018
        assert "secret plaintext" not in str(info.value)
        assert "asherah_encrypt testapp.LegacyNote.strict" in str(info.value)
        with pytest.raises(PlaintextValueError):
            list(LegacyNote.objects.values_list("strict", flat=True))
    assert [f["field"].name for f in failures] == ["strict", "strict"]
    logged = [r for r in caplog.records if r.name == "asherah_django.fields"]
    assert logged and all("secret plaintext" not in r.getMessage() for r in logged)
    assert "testapp.LegacyNote.strict" in logged[0].getMessage()
    assert failures[0]["sender"] is LegacyNote and failures[0]["model"] is LegacyNote
    assert isinstance(failures[0]["error"], PlaintextValueError)


def test_legacy_plaintext_that_is_not_the_fields_type_raises() -> None:
    note = _legacy_row(number="forty-two")
    with asherah_django.session(P), pytest.raises(PlaintextValueError, match="not valid integer"):
        LegacyNote.objects.get(pk=note.pk).number  # noqa: B018


def _tamper(record: str, key: str) -> str:
    obj = json.loads(record)
    data = bytearray(obj["Data"].encode())
    data[5] = ord("A") if data[5] != ord("A") else ord("B")
    obj[key] = data.decode()
    return json.dumps(obj)


def test_a_tampered_record_raises_even_when_legacy_is_read(
    failures: list[dict[str, Any]],
) -> None:
    with asherah_django.session(P):
        note = LegacyNote.objects.create(body="authentic")
    record = raw_column(LegacyNote, note.pk, "body")
    write_raw(LegacyNote, note.pk, "body", _tamper(record, "Data"))
    with asherah_django.session(P):
        loaded = LegacyNote.objects.get(pk=note.pk)
        with pytest.raises(DecryptionError, match="authentication failed"):
            loaded.body  # noqa: B018
        assert type(loaded.__dict__["body"]).__name__ == "SealedValue"  # nothing returned
    assert [type(f["error"]) for f in failures] == [DecryptionError]


def test_a_record_with_a_broken_blob_is_not_taken_for_plaintext() -> None:
    with asherah_django.session(P):
        note = LegacyNote.objects.create(body="x")
    obj = json.loads(raw_column(LegacyNote, note.pk, "body"))
    obj["Data"] = "AAAA"  # valid base64, far too short for AES-GCM
    write_raw(LegacyNote, note.pk, "body", json.dumps(obj))
    with asherah_django.session(P), pytest.raises(MalformedRecordError):
        LegacyNote.objects.get(pk=note.pk).body  # noqa: B018
