"""Every field type round-trips through the database, which holds only DataRowRecords.

Runs on SQLite, PostgreSQL and MariaDB (``DATABASE_URL``).
"""

from __future__ import annotations

import datetime
import decimal
import pickle
from typing import Any

import pytest
from django.db import connection, transaction

import asherah_django
from asherah_django.core.errors import NoActiveSessionError
from asherah_django.core.records import looks_like_data_row, parse_data_row
from asherah_django.fields import EncryptedField, SealedValue
from tests.testapp.models import AllTypes

from .conftest import factory, raw_column

pytestmark = pytest.mark.django_db

UTC = datetime.UTC
P = "roundtrip"

SAMPLES: dict[str, list[Any]] = {
    "text": ["", "hello, world", "ünïcødé ✓ 🔐 " * 50, "line\nbreak\ttab \x00 nul"],
    "char": ["", "x", "forty characters is the limit of thisone"[:40]],
    "email": ["someone@example.com", "ÄÖ@exämple.org"],
    "blob": [b"", b"\x00\x01\xff" * 100],
    "data": [{}, [], {"a": [1, 2.5, None, True], "ü": {"n": "x"}}, "just a string", 0, False],
    "number": [0, -1, 2**31 - 1, -(2**31)],
    "big_number": [0, 2**63 - 1, -(2**63)],
    "amount": [decimal.Decimal("0.000"), decimal.Decimal("-123456789.125"), decimal.Decimal("1.5")],
    "flag": [True, False],
    "day": [datetime.date(1, 1, 1), datetime.date(2024, 2, 29), datetime.date(9999, 12, 31)],
    "moment": [
        datetime.datetime(2024, 3, 1, 12, 30, 45, 123456, tzinfo=UTC),
        datetime.datetime(
            1999, 12, 31, 23, 59, 59, tzinfo=datetime.timezone(datetime.timedelta(hours=-5))
        ),
    ],
}
CASES = [(name, value) for name, values in SAMPLES.items() for value in values]


def _field(name: str) -> EncryptedField:
    field = AllTypes._meta.get_field(name)
    assert isinstance(field, EncryptedField)
    return field


@pytest.mark.parametrize(
    ("name", "value"), CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)]
)
def test_every_type_round_trips_and_the_column_holds_a_data_row_record(
    name: str, value: Any
) -> None:
    with asherah_django.session(P):
        obj = AllTypes.objects.create(**{name: value})
        loaded = AllTypes.objects.get(pk=obj.pk)
        assert type(loaded.__dict__[name]) is SealedValue  # not decrypted until read
        got = getattr(loaded, name)
        assert got == value
        assert type(got) is type(value) or name == "amount"
        if name == "amount":
            assert isinstance(got, decimal.Decimal)

    stored = raw_column(AllTypes, obj.pk, _field(name).column)
    assert isinstance(stored, str)
    assert looks_like_data_row(stored)
    record = parse_data_row(stored)
    assert record.parent.key_id == factory().intermediate_key_id(P)
    # What the record holds is the field's encoding of the value, nothing else.
    field = _field(name)
    plaintext = factory().get_session(P).decrypt(stored)
    assert plaintext == field.encode(field.normalize(value))
    if isinstance(value, str) and len(value) > 3:
        assert value not in stored
        assert value.encode("unicode_escape").decode() not in stored


def test_the_raw_column_never_shows_distinctive_plaintext() -> None:
    secret = "Correct Horse Battery Staple 4242"
    with asherah_django.session(P):
        obj = AllTypes.objects.create(
            text=secret,
            char=secret[:40],
            email="horse.battery@example.com",
            data={"password": secret},
            blob=secret.encode(),
            number=424242,
        )
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM testapp_alltypes WHERE id = %s", [obj.pk])
        row = cursor.fetchone()
    assert row is not None
    dump = " ".join(str(c.decode(errors="replace") if isinstance(c, bytes) else c) for c in row)
    for needle in ("Horse", "horse.battery", "password", "424242"):
        assert needle not in dump


def test_none_stays_null_and_every_other_value_is_encrypted() -> None:
    with asherah_django.session(P):
        empty = AllTypes.objects.create(text="", data={}, number=0, flag=False)
        nothing = AllTypes.objects.create()
    for name in ("text", "data", "number", "flag"):
        assert looks_like_data_row(raw_column(AllTypes, empty.pk, name))
    for field in AllTypes._meta.concrete_fields:
        if isinstance(field, EncryptedField):
            assert raw_column(AllTypes, nothing.pk, field.column) is None
    with asherah_django.session(P):
        loaded = AllTypes.objects.get(pk=nothing.pk)
        assert loaded.text is None and loaded.data is None and loaded.flag is None
        assert AllTypes.objects.get(pk=empty.pk).text == ""


def test_two_encryptions_of_one_value_differ() -> None:
    with asherah_django.session(P):
        a = AllTypes.objects.create(text="same")
        b = AllTypes.objects.create(text="same")
    assert raw_column(AllTypes, a.pk, "text") != raw_column(AllTypes, b.pk, "text")


def test_writing_without_a_session_raises_and_stores_nothing() -> None:
    # (each failing write in a savepoint: Django marks the transaction for rollback)
    with pytest.raises(NoActiveSessionError, match=r"AllTypes\.text"), transaction.atomic():
        AllTypes.objects.create(text="plaintext must never be stored")
    with pytest.raises(NoActiveSessionError), transaction.atomic():
        AllTypes.objects.bulk_create([AllTypes(number=1)])
    assert AllTypes.objects.count() == 0
    with asherah_django.session(P):
        obj = AllTypes.objects.create(text="x")
    with pytest.raises(NoActiveSessionError), transaction.atomic():
        AllTypes.objects.filter(pk=obj.pk).update(text="leak?")
    with pytest.raises(NoActiveSessionError):
        AllTypes.objects.get(pk=obj.pk).text  # noqa: B018
    with pytest.raises(NoActiveSessionError):
        list(AllTypes.objects.values_list("text", flat=True))
    assert looks_like_data_row(raw_column(AllTypes, obj.pk, "text"))


def test_queryset_api() -> None:
    with asherah_django.session(P):
        objs = AllTypes.objects.bulk_create(
            [AllTypes(label=f"r{i}", text=f"text {i}", number=i) for i in range(5)]
        )
        assert sorted(o.text for o in AllTypes.objects.all()) == [f"text {i}" for i in range(5)]
        assert [o.number for o in AllTypes.objects.order_by("label").iterator(chunk_size=2)] == [
            0,
            1,
            2,
            3,
            4,
        ]
        # values(), values_list() (flat and named) decrypt too
        assert list(AllTypes.objects.order_by("label").values("label", "text")[:2]) == [
            {"label": "r0", "text": "text 0"},
            {"label": "r1", "text": "text 1"},
        ]
        assert list(AllTypes.objects.order_by("label").values_list("number", flat=True)) == [
            0,
            1,
            2,
            3,
            4,
        ]
        named = AllTypes.objects.order_by("label").values_list("label", "text", named=True)[0]
        assert (named.label, named.text) == ("r0", "text 0")
        # only()/defer(): a deferred encrypted field loads (and decrypts) on access
        only = AllTypes.objects.only("label").get(label="r2")
        assert "text" not in only.__dict__
        assert only.text == "text 2"
        deferred = AllTypes.objects.defer("text").get(label="r3")
        assert deferred.number == 3 and deferred.text == "text 3"
        # in_bulk, refresh_from_db
        assert AllTypes.objects.in_bulk([objs[1].pk])[objs[1].pk].text == "text 1"
        obj = AllTypes.objects.get(label="r4")
        AllTypes.objects.filter(pk=obj.pk).update(text="changed")
        obj.refresh_from_db()
        assert obj.text == "changed"
        obj.refresh_from_db(fields=["number"])
        assert obj.number == 4
        # update_or_create / get_or_create on a plain field, encrypted defaults
        made, created = AllTypes.objects.update_or_create(label="new", defaults={"text": "v1"})
        assert created
        same, created = AllTypes.objects.update_or_create(label="new", defaults={"text": "v2"})
        assert not created and same.pk == made.pk
        assert AllTypes.objects.get(pk=made.pk).text == "v2"
        got, created = AllTypes.objects.get_or_create(label="new", defaults={"text": "v3"})
        assert not created and got.text == "v2"
        # select_related / annotations on plain fields are unaffected
        assert AllTypes.objects.filter(text__isnull=False).count() == 6
        assert AllTypes.objects.exclude(text__isnull=False).count() == 0
        assert AllTypes.objects.filter(text=None).count() == 0


def test_saving_untouched_values_keeps_their_records_and_changed_ones_are_re_encrypted() -> None:
    with asherah_django.session(P):
        obj = AllTypes.objects.create(text="keep", number=1)
        before = raw_column(AllTypes, obj.pk, "text")
        loaded = AllTypes.objects.get(pk=obj.pk)
        loaded.label = "renamed"
        loaded.save()
        assert raw_column(AllTypes, obj.pk, "text") == before  # never decrypted, kept
        loaded.number = 2
        loaded.save(update_fields=["number"])
        assert raw_column(AllTypes, obj.pk, "text") == before
        loaded.text = "new value"
        loaded.save()
        after = raw_column(AllTypes, obj.pk, "text")
        assert after != before and AllTypes.objects.get(pk=obj.pk).text == "new value"


def test_pickling_instances_before_and_after_decryption() -> None:
    with asherah_django.session(P):
        obj = AllTypes.objects.create(text="pickled", data={"k": 1}, moment=SAMPLES["moment"][0])
        sealed = AllTypes.objects.get(pk=obj.pk)
        payload = pickle.dumps(sealed)
        assert b"pickled" not in payload  # unread values pickle as ciphertext
        opened = AllTypes.objects.get(pk=obj.pk)
        assert opened.text == "pickled"
        for blob in (payload, pickle.dumps(opened)):
            copy = pickle.loads(blob)
            assert (copy.text, copy.data, copy.moment) == (
                "pickled",
                {"k": 1},
                SAMPLES["moment"][0],
            )
            copy.save()
        assert AllTypes.objects.get(pk=obj.pk).text == "pickled"


def test_async_orm() -> None:
    from asgiref.sync import async_to_sync

    async def main() -> list[str]:
        async with asherah_django.session(P):
            obj = await AllTypes.objects.acreate(label="a", text="async text", number=7)
            got = await AllTypes.objects.aget(pk=obj.pk)
            texts = [o.text async for o in AllTypes.objects.all()]
            texts += [o.text async for o in AllTypes.objects.all().aiterator()]
            first = await AllTypes.objects.filter(label="a").afirst()
            assert first is not None
            values = [v async for v in AllTypes.objects.values_list("number", flat=True)]
            await got.arefresh_from_db()
            return [got.text, first.text, *texts, str(values)]

    assert async_to_sync(main)() == ["async text", "async text", "async text", "async text", "[7]"]


def test_naive_datetimes_follow_django(settings: Any) -> None:
    naive = datetime.datetime(2024, 1, 2, 3, 4, 5)
    with asherah_django.session(P):
        with pytest.warns(RuntimeWarning, match="naive datetime"):
            obj = AllTypes.objects.create(moment=naive)
        assert AllTypes.objects.get(pk=obj.pk).moment == naive.replace(tzinfo=UTC)
        settings.USE_TZ = False
        obj = AllTypes.objects.create(moment=naive)
        assert AllTypes.objects.get(pk=obj.pk).moment == naive


def test_field_values_are_normalized_like_the_plain_fields() -> None:
    with asherah_django.session(P):
        obj = AllTypes.objects.create(
            number="12",
            amount="1.5",
            flag="t",  # type: ignore[misc]
            day="2024-05-06",
            blob=memoryview(b"mv"),
            moment="2024-05-06T07:08:09+00:00",
        )
        got = AllTypes.objects.get(pk=obj.pk)
        assert (got.number, got.amount, got.flag, got.day, got.blob) == (
            12,
            decimal.Decimal("1.500"),
            True,
            datetime.date(2024, 5, 6),
            b"mv",
        )
        assert got.moment == datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
        with pytest.raises(ValueError, match="expected a number"):
            AllTypes.objects.create(number="twelve")
