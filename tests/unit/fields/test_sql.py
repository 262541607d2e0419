"""Lookups and ordering on ciphertext raise; isnull works; the bulk_update trap."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import FieldError
from django.db import connection, transaction
from django.db.models import Case, Count, F, IntegerField, Q, Value, When
from django.db.models.functions import Lower

import asherah_django
from asherah_django.core.records import looks_like_data_row
from asherah_django.fields import EncryptedField
from tests.testapp.models import AllTypes

from .conftest import factory, raw_column

pytestmark = pytest.mark.django_db
P = "queries"


@pytest.fixture
def rows() -> list[AllTypes]:
    with asherah_django.session(P):
        return [
            AllTypes.objects.create(label="a", text="alpha", number=1, data={"k": 1}),
            AllTypes.objects.create(label="b", text=None, number=None),
        ]


@pytest.mark.parametrize(
    "lookup",
    [
        {"text": "alpha"},
        {"text__iexact": "alpha"},
        {"text__contains": "lph"},
        {"text__icontains": "LPH"},
        {"text__startswith": "a"},
        {"text__in": ["alpha"]},
        {"number__gt": 0},
        {"number__range": (0, 2)},
        {"text__regex": "a.*"},
        {"data__k": 1},
        {"data__has_key": "k"},
        {"day__year": 2024},
        {"moment__date": "2024-01-01"},
        {"text": F("char")},
    ],
    ids=str,
)
def test_lookups_other_than_isnull_raise_a_clear_error(rows: Any, lookup: dict[str, Any]) -> None:
    with pytest.raises(FieldError, match=r"encrypted field testapp\.AllTypes\.") as info:
        list(AllTypes.objects.filter(**lookup))
    assert "blind_index=True" in str(info.value)
    assert "ciphertext" in str(info.value)
    with pytest.raises(FieldError, match="encrypted field"):
        AllTypes.objects.exclude(**lookup).count()


@pytest.mark.parametrize(
    "ordering",
    [("text",), ("-text",), ("label", "number"), (F("text").desc(),), (F("number").asc(),)],
    ids=str,
)
def test_ordering_by_an_encrypted_field_raises(rows: Any, ordering: tuple[Any, ...]) -> None:
    with (
        asherah_django.session(P),
        pytest.raises(FieldError, match=r"cannot order by encrypted field .*blind_index"),
    ):
        list(AllTypes.objects.order_by(*ordering))


def test_isnull_and_none_work(rows: list[AllTypes]) -> None:
    assert list(AllTypes.objects.filter(text__isnull=True).values_list("label", flat=True)) == ["b"]
    assert AllTypes.objects.filter(text__isnull=False).get().label == "a"
    assert AllTypes.objects.filter(text=None).get().label == "b"
    assert AllTypes.objects.exclude(text=None).get().label == "a"
    assert AllTypes.objects.filter(Q(number__isnull=True) | Q(label="a")).count() == 2
    flags = AllTypes.objects.annotate(
        empty=Case(
            When(text__isnull=True, then=Value(1)), default=Value(0), output_field=IntegerField()
        )
    ).order_by("label")
    assert [r.empty for r in flags] == [0, 1]


def test_what_still_works_on_encrypted_columns(rows: list[AllTypes]) -> None:
    # counting non-null values, copying a column, plain-field filters and ordering
    assert AllTypes.objects.aggregate(n=Count("text"))["n"] == 1
    with asherah_django.session(P):
        assert AllTypes.objects.filter(label="a").update(char=F("text")) == 1
        assert AllTypes.objects.get(label="a").char == "alpha"
        assert [r.text for r in AllTypes.objects.order_by(Lower("label"))] == ["alpha", None]


def test_bulk_update_encrypts_each_value_once_and_passes_expressions_through(
    rows: list[AllTypes],
) -> None:
    field = AllTypes._meta.get_field("text")
    assert isinstance(field, EncryptedField)
    case = Case(When(pk=1, then=Value("x", output_field=field)), output_field=field)
    assert field.get_db_prep_save(case, connection) is case  # not encrypted as a value
    with asherah_django.session(P):
        objs = list(AllTypes.objects.order_by("label"))
        objs[0].text, objs[1].text = "first", ""
        objs[0].number, objs[1].number = 10, 20
        assert AllTypes.objects.bulk_update(objs, ["text", "number"], batch_size=1) == 2
        got = {o.label: (o.text, o.number) for o in AllTypes.objects.all()}
    assert got == {"a": ("first", 10), "b": ("", 20)}
    session = factory().get_session(P)
    for obj, plain in ((objs[0], "first"), (objs[1], "")):
        stored = raw_column(AllTypes, obj.pk, "text")
        assert looks_like_data_row(stored)
        # encrypted exactly once: the record opens to the plaintext, not to another record
        assert session.decrypt_text(stored) == plain


@pytest.mark.parametrize(
    "expression",
    [
        Value("typed as text"),
        Lower("label"),
        F("label"),
        Case(When(pk=1, then=F("label")), output_field=AllTypes._meta.get_field("text")),
    ],
    ids=str,
)
def test_values_computed_by_the_database_are_refused(rows: Any, expression: Any) -> None:
    # the database would write its result, in plaintext, into the encrypted column
    with asherah_django.session(P):
        with pytest.raises(FieldError, match="plaintext"), transaction.atomic():
            AllTypes.objects.filter(label="a").update(text=expression)
        if not isinstance(expression, Value):
            with pytest.raises(FieldError, match="plaintext"), transaction.atomic():
                AllTypes.objects.create(text=expression)
    assert looks_like_data_row(raw_column(AllTypes, rows[0].pk, "text"))


def test_a_value_expression_assigned_to_an_instance_means_its_python_value(rows: Any) -> None:
    with asherah_django.session(P):
        AllTypes.objects.create(label="v", text=Value("a value means its Python value"))
        assert AllTypes.objects.get(label="v").text == "a value means its Python value"
        assert AllTypes.objects.filter(label="a").update(text=Value(None)) == 1
        assert AllTypes.objects.get(label="a").text is None
