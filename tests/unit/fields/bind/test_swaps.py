"""Bound values (``bind=``) against a database writer who moves records around.

The attacker has SQL access to the application's tables but no keys: they copy a stored
DataRowRecord into another row or another column *of the same partition* (moves between
partitions are refused already, tests/integration/reliability/test_hostile.py). Before ``bind=``
(today's ``remarks`` column, unbound) such a swap decrypts without complaint; a bound
field refuses it with :class:`BindingMismatchError`. These tests carry the ``database``
marker and run on SQLite, PostgreSQL and MariaDB.
"""

from __future__ import annotations

import pickle
import uuid
from typing import Any

import pytest
from django.core import serializers
from django.db import connection
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from asherah_django import session as partition_scope
from asherah_django.core import BindingMismatchError, PartitionMismatchError, UnboundRecordError
from asherah_django.core.binding import has_header
from asherah_django.fields import BoundRowRequiredError, RowPartitionRequiredError, bulk_update
from asherah_django.runtime import get_session_factory
from tests.bindapp.models import Account, Migrating, Patient
from tests.hygiene import MARKER

from .conftest import stored, write_raw

pytestmark = pytest.mark.django_db(transaction=True)


def patients(n: int = 2, tenant: str = "t") -> list[Patient]:
    return [
        Patient.objects.create(
            tenant_id=tenant,
            diagnosis=MARKER + f"diagnosis {i}",
            notes=MARKER + f"notes {i}",
            remarks=MARKER + f"remarks {i}",
            summary=MARKER + f"summary {i}",
            allergies={"i": i},
        )
        for i in range(n)
    ]


def fresh(patient: Patient) -> Patient:
    return Patient.objects.get(pk=patient.pk)


def test_unbound_swap_between_rows_is_not_detected() -> None:
    """The attack, as it works today on an unbound field (and keeps working: bind= is
    opt-in): row b's ``remarks`` replaced by row a's record decrypts to a's value."""
    a, b = patients()
    write_raw(Patient, b.pk, "remarks", stored(Patient, a.pk, "remarks"))
    assert fresh(b).remarks == MARKER + "remarks 0"


def test_swap_between_rows_is_refused_for_a_bound_field() -> None:
    """Demonstration first: without bind= the same move would read patient a's diagnosis
    as patient b's (test above). With bind=("id",) it raises, naming the differing row
    field but no value."""
    a, b = patients()
    write_raw(Patient, b.pk, "diagnosis", stored(Patient, a.pk, "diagnosis"))
    with pytest.raises(BindingMismatchError) as caught:
        fresh(b).diagnosis  # noqa: B018
    message = str(caught.value)
    assert "bindapp.patient.diagnosis: the value belongs to another row (differing: id)" in (
        message
    )
    assert str(a.pk) not in message and str(b.pk) not in message and MARKER not in message
    assert fresh(a).diagnosis == MARKER + "diagnosis 0"  # the source row is intact
    # refresh_from_db, only()/defer() and select through another queryset verify it too
    with pytest.raises(BindingMismatchError):
        b.refresh_from_db()  # (Django reads the fresh instance's values to copy them)
    with pytest.raises(BindingMismatchError):
        Patient.objects.only("pk", "tenant_id").get(pk=b.pk).diagnosis  # noqa: B018
    # a natural key of two fields (id, tenant_id), a binary and a JSON value: the same
    write_raw(Patient, b.pk, "allergies", stored(Patient, a.pk, "allergies"))
    with pytest.raises(BindingMismatchError, match=r"differing: id\)"):
        fresh(b).allergies  # noqa: B018


def test_swap_between_columns_is_refused_for_a_bound_field() -> None:
    """The same row's record of another column (bound or not) is refused in a bound one."""
    (a,) = patients(1)
    write_raw(Patient, a.pk, "notes", stored(Patient, a.pk, "diagnosis"))
    with pytest.raises(BindingMismatchError) as caught:
        fresh(a).notes  # noqa: B018
    assert "belongs to another column (bindapp.patient.diagnosis), not bindapp.patient.notes" in (
        str(caught.value)
    )
    write_raw(Patient, a.pk, "notes", stored(Patient, a.pk, "remarks"))  # unbound source
    with pytest.raises(UnboundRecordError, match="not bound to its row and column"):
        fresh(a).notes  # noqa: B018
    # a column-only binding (bind=True) refuses other columns too
    write_raw(Patient, a.pk, "summary", stored(Patient, a.pk, "diagnosis"))
    with pytest.raises(BindingMismatchError, match="another column"):
        fresh(a).summary  # noqa: B018


def test_a_column_only_binding_does_not_see_swaps_between_rows() -> None:
    """``bind=True`` binds the column, not the row: documented, and shown here."""
    a, b = patients()
    write_raw(Patient, b.pk, "summary", stored(Patient, a.pk, "summary"))
    assert fresh(b).summary == MARKER + "summary 0"


def test_rollback_to_an_older_value_of_the_same_row_is_not_detected() -> None:
    """What SECURITY.md says a binding does not stop: the row's own earlier record, put
    back (from a backup), is bound to the same row and column and decrypts."""
    (a,) = patients(1)
    old = stored(Patient, a.pk, "diagnosis")
    a.diagnosis = MARKER + "corrected"
    a.save()
    assert stored(Patient, a.pk, "diagnosis") != old
    write_raw(Patient, a.pk, "diagnosis", old)
    assert fresh(a).diagnosis == MARKER + "diagnosis 0"


def test_session_partitioned_natural_key_binding() -> None:
    """Bound to a natural key (``number``) with an auto-increment pk beside it."""
    with partition_scope("bank"):
        one = Account.objects.create(number="n-1", secret=MARKER + "one", memo="m1")
        two = Account.objects.create(number="n-2", secret=MARKER + "two", memo="m2")
        assert Account.objects.get(pk=one.pk).secret == MARKER + "one"
        write_raw(Account, two.pk, "secret", stored(Account, one.pk, "secret"))
        with pytest.raises(BindingMismatchError, match=r"differing: number\)"):
            Account.objects.get(pk=two.pk).secret  # noqa: B018
        # a pinned label (Bind(label=...)) is what the header carries
        write_raw(Account, two.pk, "memo", stored(Account, two.pk, "secret"))
        with pytest.raises(BindingMismatchError, match=r"not bindapp\.account\.memo-v1"):
            Account.objects.get(pk=two.pk).memo  # noqa: B018


def test_values_and_values_list_fail_closed_for_row_bindings() -> None:
    """No instance, so no row to verify a row binding against: BoundRowRequiredError
    rather than unverified plaintext. A column-only binding is verified there."""
    with partition_scope("bank"):
        one = Account.objects.create(number="n-1", secret=MARKER + "one", memo="m1")
        with pytest.raises(BoundRowRequiredError, match="comes without its row"):
            list(Account.objects.values_list("secret", flat=True))
        with pytest.raises(BoundRowRequiredError):
            list(Account.objects.values("number", "secret"))
        assert list(Account.objects.values_list("memo", flat=True)) == ["m1"]
        write_raw(Account, one.pk, "memo", stored(Account, one.pk, "secret"))
        with pytest.raises(BindingMismatchError, match="another column"):
            list(Account.objects.values_list("memo", flat=True))


def test_writes_without_the_row() -> None:
    """update() binds a column-only field; a row-bound one needs its row
    (BoundRowRequiredError), which fields.bulk_update() gives it."""
    with partition_scope("bank"):
        one = Account.objects.create(number="n-1", secret="s1")
        two = Account.objects.create(number="n-2", secret="s2")
        Account.objects.update(memo="same memo")
        assert [a.memo for a in Account.objects.order_by("pk")] == ["same memo"] * 2
        with pytest.raises(BoundRowRequiredError):
            Account.objects.update(secret="x")
        one.secret, two.secret = "new 1", "new 2"
        with pytest.raises(BoundRowRequiredError):
            Account.objects.bulk_update([one, two], ["secret"])
        bulk_update(Account.objects.all(), [one, two], ["secret"])
        assert [a.secret for a in Account.objects.order_by("pk")] == ["new 1", "new 2"]
    with pytest.raises(RowPartitionRequiredError):  # row partitions refuse it first
        Patient.objects.update(diagnosis="x")


def test_bulk_create_update_fields_and_blind_index() -> None:
    rows = Patient.objects.bulk_create(
        [Patient(tenant_id="t", diagnosis=f"d{i}", email=f"P{i}@Example.org") for i in range(3)]
    )
    assert sorted(p.diagnosis for p in Patient.objects.all()) == ["d0", "d1", "d2"]
    assert Patient.objects.get(email="p1@example.org").pk == rows[1].pk
    write_raw(Patient, rows[2].pk, "email", stored(Patient, rows[1].pk, "email"))
    moved = Patient.objects.get(pk=rows[2].pk)
    with pytest.raises(BindingMismatchError):
        moved.email  # noqa: B018
    rows[0].notes = "only notes"
    rows[0].save(update_fields=["notes"])
    assert fresh(rows[0]).notes == "only notes"


def test_binary_values_round_trip() -> None:
    data = bytes(range(256)) + b"\xffAB\x01"
    patient = Patient.objects.create(tenant_id="t", diagnosis="d", scan=data)
    assert fresh(patient).scan == data


def test_read_unchanged_keeps_its_record_and_a_changed_row_field() -> None:
    """A value read and saved unchanged keeps its record. Changing a row field it is
    bound to re-binds a value that was read; one never read cannot be kept (it would
    never decrypt again): saving refuses with a hint, nothing is written."""
    with partition_scope("bank"):
        account = Account.objects.create(number="n-1", secret="s1")
        record = stored(Account, account.pk, "secret")
        loaded = Account.objects.get(pk=account.pk)
        assert loaded.secret == "s1"
        loaded.save()
        assert stored(Account, account.pk, "secret") == record
        loaded.number = "n-9"
        loaded.save()
        assert stored(Account, account.pk, "secret") != record
        assert Account.objects.get(pk=account.pk).secret == "s1"
        unread = Account.objects.get(pk=account.pk)
        unread.number = "n-10"
        with pytest.raises(BindingMismatchError, match="read the value before changing"):
            unread.save()
        assert Account.objects.get(pk=account.pk).number == "n-9"
        # pickled with what it was read as: still the same record when saved unchanged
        again = pickle.loads(pickle.dumps(Account.objects.get(pk=account.pk)))
        assert again.secret == "s1"
        kept = stored(Account, account.pk, "secret")
        again.save()
        assert stored(Account, account.pk, "secret") == kept


def test_dumpdata_and_loaddata_keep_the_binding() -> None:
    """Serialization writes the stored (bound) records; loaded back into the same rows
    they decrypt, loaded under another primary key they are refused."""
    (a,) = patients(1)
    text = serializers.serialize("json", Patient.objects.filter(pk=a.pk))
    assert MARKER not in text
    Patient.objects.all().delete()
    for obj in serializers.deserialize("json", text):
        obj.save()
    assert fresh(a).diagnosis == MARKER + "diagnosis 0"
    other = str(uuid.uuid4())
    Patient.objects.all().delete()
    for obj in serializers.deserialize("json", text.replace(str(a.pk), other)):
        obj.save()
    with pytest.raises(BindingMismatchError, match="another row"):
        Patient.objects.get(pk=other).diagnosis  # noqa: B018


def test_unbound_values_during_conversion() -> None:
    """``Bind(..., unbound="read")``: values written before bind= still read (and are
    bound when next saved); a bound value moved to another row is refused all the same.
    Only records that were never bound can still move while the option is on."""
    with partition_scope("conv"):
        first = Migrating.objects.create(body=MARKER + "first")
        second = Migrating.objects.create(body=MARKER + "second")
        factory = get_session_factory()
        unbound = factory.get_session("conv").encrypt(b"written before bind=")
    write_raw(Migrating, first.pk, "other", unbound)
    write_raw(Migrating, second.pk, "other", unbound)
    with partition_scope("conv"):
        assert Migrating.objects.get(pk=second.pk).other == "written before bind="
        write_raw(Migrating, second.pk, "body", stored(Migrating, first.pk, "body"))
        with pytest.raises(BindingMismatchError, match="another row"):
            Migrating.objects.get(pk=second.pk).body  # noqa: B018
        row = Migrating.objects.get(pk=first.pk)
        assert row.other == "written before bind="
        row.save()  # read, unchanged, but unbound: written again, bound
        record = stored(Migrating, first.pk, "other")
        plain = factory.get_session("conv").decrypt(record)
        assert has_header(plain) and plain.endswith(b"written before bind=")


def test_other_backends_see_a_standard_record(settings: Any) -> None:
    """A bound record is a standard DataRowRecord: any Asherah implementation decrypts
    it, to the header followed by the value (checked here with our core, which has no
    notion of bindings at that level)."""
    (a,) = patients(1)
    factory = get_session_factory()
    plain = factory.get_session("t").decrypt(stored(Patient, a.pk, "diagnosis"))
    assert plain.startswith(b"\xffAB\x01") and plain.endswith((MARKER + "diagnosis 0").encode())
    assert connection.vendor in {"sqlite", "postgresql", "mysql"}


def test_blind_index_rebuild_reads_bound_values_and_checks_their_column() -> None:
    """asherah_reindex decrypts bound values (without the header in the index); a value
    moved from another column is refused there, one moved from another row is not
    (it has no row to check against: SECURITY.md says so)."""
    from io import StringIO

    from django.core.management import call_command

    a, b, c = Patient.objects.bulk_create(
        [Patient(tenant_id="t", diagnosis="d", email=f"p{i}@example.org") for i in range(3)]
    )
    out = StringIO()
    call_command("asherah_reindex", "bindapp.Patient.email", "--recompute", stdout=out)
    assert Patient.objects.get(email="p1@example.org").pk == b.pk
    write_raw(Patient, c.pk, "email", stored(Patient, c.pk, "diagnosis"))
    out = StringIO()
    with pytest.raises(SystemExit) as exited:  # finished, a value unreadable (issue #14)
        call_command("asherah_reindex", "bindapp.Patient.email", "--recompute", stdout=out)
    assert exited.value.code == 3
    assert "1 unreadable" in out.getvalue(), out.getvalue()
    write_raw(Patient, c.pk, "email", stored(Patient, a.pk, "email"))
    call_command("asherah_reindex", "bindapp.Patient.email", "--recompute", stdout=StringIO())
    assert {p.pk for p in Patient.objects.filter(email="p0@example.org")} == {a.pk, c.pk}
    with pytest.raises(BindingMismatchError):
        Patient.objects.get(pk=c.pk).email  # noqa: B018  (reading it is refused)


@pytest.mark.urls("tests.unit.fields.bind.urls")
def test_admin_shows_and_saves_bound_values_and_marks_moved_ones() -> None:
    """The admin (EncryptedFieldsAdminMixin) edits bound values like any other; a moved
    one shows a placeholder with the reason, never the other row's plaintext."""
    from django.contrib.auth.models import User
    from django.test import Client

    client = Client()
    client.force_login(User.objects.create_superuser("root", password="x"))
    a, b = patients()
    url = f"/admin/bindapp/patient/{a.pk}/change/"
    page = client.get(url).content.decode()
    assert MARKER + "diagnosis 0" in page
    data = {"tenant_id": "t", "diagnosis": "edited", "notes": "n", "summary": "s"}
    assert client.post(url, data).status_code == 302
    assert fresh(a).diagnosis == "edited"
    write_raw(Patient, b.pk, "diagnosis", stored(Patient, a.pk, "diagnosis"))
    listing = client.get("/admin/bindapp/patient/").content.decode()
    assert "belongs to another row or column" in listing and "edited" in listing
    assert listing.count("edited") == 1
    page = client.get(f"/admin/bindapp/patient/{b.pk}/change/").content.decode()
    assert "belongs to another row or column" in page and "edited" not in page


BOUND_TEXT = ["diagnosis", "notes", "email"]
ALL_TEXT = [*BOUND_TEXT, "remarks", "summary"]


@hypothesis_settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    source=st.tuples(st.integers(0, 3), st.sampled_from(ALL_TEXT)),
    target=st.tuples(st.integers(0, 3), st.sampled_from(BOUND_TEXT)),
)
def test_a_moved_record_never_reads_as_the_value_of_its_new_place(
    source: tuple[int, str], target: tuple[int, str]
) -> None:
    """Any record of four rows (two tenants) copied into any row-bound column of any of
    them reads as the target's own value only when it is the target's own record; any
    other is a typed refusal, never another row's or column's plaintext."""
    Patient.objects.all().delete()
    rows = [
        Patient.objects.create(
            tenant_id=f"t{i % 2}", **{name: f"{MARKER}{name}{i}@x.org" for name in ALL_TEXT}
        )
        for i in range(4)
    ]
    (i, src), (j, dst) = source, target
    own = getattr(fresh(rows[j]), dst)
    write_raw(Patient, rows[j].pk, dst, stored(Patient, rows[i].pk, src))
    if (i, src) == (j, dst):
        assert getattr(fresh(rows[j]), dst) == own
    else:
        with pytest.raises((BindingMismatchError, PartitionMismatchError)):
            getattr(fresh(rows[j]), dst)
