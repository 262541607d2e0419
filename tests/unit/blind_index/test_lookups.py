"""Exact-match lookups through the blind index: =, exclude, get, in, iexact (casefolding
fields only), relations, NULL; one query on the indexed column; everything else raises."""

from __future__ import annotations

import datetime
import re
from typing import Any

import pytest
from django.core.exceptions import FieldError
from django.db import connection
from django.db.models import F, Q
from django.test.utils import CaptureQueriesContext

import asherah_django
from tests.bidxapp.models import Customer, Order, Subscriber
from tests.unit.blind_index.conftest import digest_of, raw_row

pytestmark = pytest.mark.django_db
P = "bidx-lookups"


@pytest.fixture
def people() -> dict[str, Customer]:
    with asherah_django.session(P):
        made = {
            "ann": Customer.objects.create(
                name="ann", email="Ann@Example.org", nickname="Annie", handle="AnnH",
                account=42, birthday=datetime.date(2001, 2, 3),
            ),
            "bob": Customer.objects.create(
                name="bob", email="bob@example.org", nickname="Bob", handle="BobH", account=7,
            ),
            "cy": Customer.objects.create(name="cy", email="cy@example.org"),
        }  # fmt: skip
        Order.objects.create(customer=made["ann"], label="ann's order")
    return made


def names(queryset: Any) -> list[str]:
    return sorted(queryset.values_list("name", flat=True))


def test_exact_exclude_get_and_in_need_no_session_for_a_global_index(people: Any) -> None:
    assert names(Customer.objects.filter(email="bob@example.org")) == ["bob"]
    assert names(Customer.objects.exclude(email="bob@example.org")) == ["ann", "cy"]
    assert Customer.objects.get(email="cy@example.org").name == "cy"
    assert names(Customer.objects.filter(email__in=["bob@example.org", "cy@example.org"])) == [
        "bob",
        "cy",
    ]
    assert names(Customer.objects.filter(email__in=["nobody@example.org", None])) == []
    assert names(Customer.objects.filter(email__in=[])) == []
    assert names(Customer.objects.exclude(email__in=[])) == ["ann", "bob", "cy"]
    assert not Customer.objects.filter(email="nobody@example.org").exists()
    with pytest.raises(Customer.DoesNotExist):
        Customer.objects.get(email="nobody@example.org")
    with asherah_django.session(P):  # reading the value still needs the key
        assert Customer.objects.get(email="bob@example.org").email == "bob@example.org"


def test_email_lookups_are_stripped_and_casefolded_by_default(people: Any) -> None:
    assert names(Customer.objects.filter(email="  ANN@example.ORG\n")) == ["ann"]
    assert names(Customer.objects.filter(email__iexact="ann@EXAMPLE.org")) == ["ann"]
    with asherah_django.session(P):
        assert Customer.objects.get(name="ann").email == "Ann@Example.org"  # stored as given


# Unicode caseless matching (NFC of the casefolded NFD), not ``.lower()``: each pair below
# is one value typed two ways; the last ones must stay apart.
SAME = [
    ("STRASSE", "straße"),  # German sharp s casefolds to "ss" (lower() keeps "ß")
    ("MASSE", "Maße"),
    ("Café", "Cafe\u0301"),  # NFC (precomposed é) and NFD (e + combining acute)
    ("RE\u0301SUME\u0301", "résumé"),
    ("Ångström", "A\u030angstro\u0308m"),
    ("\u01c5emal", "\u01c4EMAL"),  # a titlecase digraph (Dž) and its capital (DŽ)
    ("İstanbul", "i\u0307stanbul"),  # Turkish dotted capital I: i + combining dot
    ("ﬁle", "FILE"),  # the fi ligature casefolds to "fi"
]
APART = [
    ("k\u0131z", "kiz"),  # Turkish dotless i (U+0131) is its own letter: no locale folding
    ("KIZ", "k\u0131z"),
    ("İstanbul", "istanbul"),
    ("straße", "strase"),
]


def test_casefolded_lookups_follow_unicode_caseless_matching() -> None:
    for index, (stored, typed) in enumerate(SAME):
        with asherah_django.session(P):
            Customer.objects.create(name=f"s{index}", email=f"s{index}@example.org", handle=stored)
        assert names(Customer.objects.filter(handle=typed)) == [f"s{index}"], (stored, typed)
        assert names(Customer.objects.filter(handle__iexact=typed)) == [f"s{index}"]
        # The email field (stripped and casefolded by default) in its local part.
        with asherah_django.session(P):
            Subscriber.objects.create(email=f"{stored}@example.org")
        assert Subscriber.objects.filter(email=f" {typed}@EXAMPLE.org ").count() == 1
    for index, (stored, typed) in enumerate(APART):
        with asherah_django.session(P):
            Customer.objects.create(name=f"a{index}", email=f"a{index}@example.org", handle=stored)
        assert f"a{index}" not in names(Customer.objects.filter(handle=typed)), (stored, typed)


def test_char_fields_match_exactly_unless_they_casefold(people: Any) -> None:
    assert names(Customer.objects.filter(nickname="Annie")) == ["ann"]
    assert names(Customer.objects.filter(nickname="annie")) == []
    assert names(Customer.objects.filter(nickname="Annie ")) == []
    with pytest.raises(FieldError, match=r"iexact.*casefolds"):
        Customer.objects.filter(nickname__iexact="annie")
    assert names(Customer.objects.filter(handle="bobh")) == ["bob"]
    assert names(Customer.objects.filter(handle__iexact="BOBH")) == ["bob"]


def test_integer_and_date_values(people: Any) -> None:
    assert names(Customer.objects.filter(account=42)) == ["ann"]
    assert names(Customer.objects.filter(account="7")) == ["bob"]
    assert names(Customer.objects.filter(account__in=[7, 42, 99])) == ["ann", "bob"]
    assert names(Customer.objects.filter(birthday=datetime.date(2001, 2, 3))) == ["ann"]
    assert names(Customer.objects.filter(birthday="2001-02-03")) == ["ann"]
    with pytest.raises(ValueError, match="expected a number"):
        Customer.objects.filter(account="seven")


def test_relations_q_objects_and_none(people: Any) -> None:
    assert list(Order.objects.filter(customer__email="ann@example.org").values_list("label")) == [
        ("ann's order",)
    ]
    either = Customer.objects.filter(Q(email="bob@example.org") | Q(name="cy"))
    assert names(either) == ["bob", "cy"]
    assert names(Customer.objects.filter(~Q(email="bob@example.org"), account__isnull=False)) == [
        "ann"
    ]
    assert names(Customer.objects.filter(nickname=None)) == ["cy"]
    assert names(Customer.objects.exclude(nickname=None)) == ["ann", "bob"]
    # exclude() keeps NULL rows, as it does on a plain column
    assert names(Customer.objects.exclude(nickname="Bob")) == ["ann", "cy"]


@pytest.mark.parametrize(
    "lookup",
    [
        {"email__contains": "example"},
        {"email__icontains": "EXAMPLE"},
        {"email__startswith": "ann"},
        {"email__gt": "a"},
        {"email__range": ("a", "z")},
        {"email__regex": "a.*"},
        {"account__lt": 10},
        {"birthday__year": 2001},
        {"email": F("nickname")},
        {"email__in": "<subquery>"},
        {"email__in": "ann@example.org"},
    ],
    ids=str,
)
def test_what_an_index_cannot_answer_still_raises(people: Any, lookup: dict[str, Any]) -> None:
    if lookup.get("email__in") == "<subquery>":
        lookup = {"email__in": Customer.objects.values("email")}
    with pytest.raises(FieldError, match=r"(blind index|encrypted field)"):
        list(Customer.objects.filter(**lookup))


def test_ordering_by_an_indexed_field_still_raises(people: Any) -> None:
    with pytest.raises(FieldError, match="cannot order by encrypted field"):
        list(Customer.objects.order_by("email"))


def test_stored_index_values_have_a_version_tag_a_profile_and_a_digest(people: Any) -> None:
    email, nickname, handle = raw_row(
        Customer, people["ann"].pk, "email_bidx", "nickname_bidx", "handle_bidx"
    )
    assert re.fullmatch(r"[0-9a-z]+\.[0-9a-f]{4}:[0-9a-f]{32}", email)
    assert re.fullmatch(r"[0-9a-z]+\.[0-9a-f]{4}:[0-9a-f]{24}", handle)  # digest_size=12
    assert email.split(".")[0] == nickname.split(".")[0]  # the same (global) key version
    assert email.split(":")[0] != nickname.split(":")[0]  # profiles differ
    cy = raw_row(Customer, people["cy"].pk, "nickname_bidx", "email")
    assert cy[0] is None  # NULL value, NULL index
    with asherah_django.session(P):
        again = Subscriber.objects.create(email="ann@example.org")
        twice = Subscriber.objects.create(email="ANN@example.org ")
    first, second = (raw_row(Subscriber, s.pk, "email_bidx")[0] for s in (again, twice))
    assert first == second  # deterministic under one key, after normalisation
    assert digest_of(first) != digest_of(email)  # another field: another derived key


def test_a_lookup_is_one_query_on_the_index_column(people: Any) -> None:
    list(Customer.objects.filter(email="warm@example.org"))  # loads the key ring
    with CaptureQueriesContext(connection) as queries:
        found = list(Customer.objects.filter(email="bob@example.org").values_list("name"))
    assert found == [("bob",)]
    if connection.vendor != "sqlite":  # (there the key table shares the connection)
        assert len(queries) == 1
    sql = queries[-1]["sql"]
    assert "email_bidx" in sql
    assert "bob@example.org" not in sql
    with CaptureQueriesContext(connection) as queries:
        Customer.objects.filter(email__in=["bob@example.org", "cy@example.org"]).count()
    assert re.search(r"email_bidx\W* IN \(", queries[-1]["sql"])


@pytest.mark.skipif(connection.vendor != "postgresql", reason="EXPLAIN of PostgreSQL")
def test_postgresql_answers_lookups_from_the_index(people: Any) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # a handful of rows: force the choice
    for queryset, column in (
        (Customer.objects.filter(email="ann@example.org"), "email_bidx"),
        (Customer.objects.filter(nickname__in=["Bob", "Annie"]), "nickname_bidx"),
        (Order.objects.filter(customer__email="ann@example.org"), "email_bidx"),
    ):
        plan = queryset.explain()
        assert "Seq Scan on bidxapp_customer" not in plan, plan
        used = re.search(rf"(Index (Only )?Scan using|Bitmap Index Scan on) \S*{column}", plan)
        assert used, plan
        assert f"(({column})::text = " in plan, plan  # the condition is on the index column


@pytest.mark.skipif(connection.vendor != "mysql", reason="EXPLAIN of MariaDB/MySQL")
def test_mariadb_answers_lookups_from_the_index(people: Any) -> None:
    plan = Customer.objects.filter(email="ann@example.org").explain()
    assert "email_bidx" in plan, plan
    plan = Customer.objects.filter(nickname="Bob").explain()
    assert "nickname_bidx" in plan, plan
