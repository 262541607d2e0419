"""The index follows the value: save() and bulk_create() compute it, a value loaded and
saved unread keeps it, and UPDATEs that would leave it stale are refused, while
asherah_django.fields.bulk_update() updates both; dumpdata/loaddata carry it."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.core.exceptions import FieldError
from django.core.management import call_command
from django.db import connection, transaction
from django.db.models import F
from django.test.utils import CaptureQueriesContext

import asherah_django
from asherah_django.fields import bulk_update
from tests.bidxapp.models import Customer, Subscriber, TenantContact
from tests.unit.blind_index.conftest import raw_row

pytestmark = pytest.mark.django_db
P = "bidx-writes"


def test_changing_the_value_moves_the_index_and_an_unread_save_keeps_it() -> None:
    with asherah_django.session(P):
        customer = Customer.objects.create(name="a", email="old@example.org")
        before = raw_row(Customer, customer.pk, "email_bidx")[0]
        customer.email = "new@example.org"
        customer.save()
        assert not Customer.objects.filter(email="old@example.org").exists()
        assert Customer.objects.get(email="new@example.org").pk == customer.pk
        after = raw_row(Customer, customer.pk, "email_bidx")[0]
        assert after != before
        loaded = Customer.objects.get(pk=customer.pk)
        loaded.name = "renamed"
        with CaptureQueriesContext(connection) as queries:
            loaded.save()  # the value was never read: nothing to decrypt or hash
        assert raw_row(Customer, customer.pk, "email_bidx")[0] == after
        assert len(queries) == 1 or connection.vendor == "sqlite"
        deferred = Customer.objects.defer("email").get(pk=customer.pk)
        deferred.name = "deferred"
        deferred.save()
        assert raw_row(Customer, customer.pk, "email_bidx")[0] == after
        loaded.email = None
        with pytest.raises(Exception), transaction.atomic():  # noqa: B017 - NOT NULL
            loaded.save()
    sub = Subscriber.objects.create(email=None)
    assert raw_row(Subscriber, sub.pk, "email_bidx") == (None,)


def test_update_that_would_leave_the_index_stale_is_refused() -> None:
    with asherah_django.session(P):
        customer = Customer.objects.create(name="a", email="upd@example.org")
        with pytest.raises(FieldError, match=r"email_bidx.*stale"), transaction.atomic():
            Customer.objects.filter(pk=customer.pk).update(email="other@example.org")
        with pytest.raises(FieldError, match="email_bidx"), transaction.atomic():
            Customer.objects.filter(pk=customer.pk).update(email=F("nickname"))
        customer.email = "changed@example.org"
        with pytest.raises(FieldError, match="update_fields naming both"), transaction.atomic():
            customer.save(update_fields=["email"])
        customer.save(update_fields=["email", "email_bidx"])
        assert Customer.objects.get(email="changed@example.org").pk == customer.pk
        customer.email = "bulk@example.org"
        with (
            pytest.raises(FieldError, match=r"asherah_django\.fields\.bulk_update"),
            transaction.atomic(),
        ):
            Customer.objects.bulk_update([customer], ["email"])
        Customer.objects.filter(pk=customer.pk).update(name="plain fields are fine")
    sub = Subscriber.objects.create(email=None, tag="t")
    Subscriber.objects.filter(pk=sub.pk).update(email=None, email_bidx=None)  # both: allowed


def test_bulk_create_and_our_bulk_update_index_every_row() -> None:
    with asherah_django.session(P):
        made = Subscriber.objects.bulk_create(
            [Subscriber(email=f"bulk{i}@example.org", tag=str(i)) for i in range(5)]
        )
        assert Subscriber.objects.filter(email="bulk3@example.org").get().tag == "3"
        for sub in made:
            sub.email = sub.email.replace("bulk", "moved")
        assert bulk_update(Subscriber.objects.all(), made, ["email"], batch_size=2) == 5
        assert set(
            Subscriber.objects.filter(
                email__in=["moved1@example.org", "moved4@example.org"]
            ).values_list("tag", flat=True)
        ) == {"1", "4"}
        assert not Subscriber.objects.filter(email="bulk1@example.org").exists()
    contacts = [
        TenantContact.objects.create(tenant_id=t, email=f"{t}@example.org") for t in ("x", "y")
    ]
    for contact in contacts:
        contact.email = f"new-{contact.tenant_id}@example.org"
    assert bulk_update(TenantContact.objects.all(), contacts, ["email"]) == 2
    assert TenantContact.objects.get(tenant_id="y", email="new-y@example.org") == contacts[1]


def test_dumpdata_and_loaddata_carry_the_index(tmp_path: Path) -> None:
    with asherah_django.session(P):
        customer = Customer.objects.create(name="dump", email="dump@example.org")
    out = io.StringIO()
    call_command("dumpdata", "bidxapp.customer", stdout=out)
    dumped = json.loads(out.getvalue())
    fields = dumped[0]["fields"]
    assert fields["email_bidx"] == raw_row(Customer, customer.pk, "email_bidx")[0]
    assert "dump@example.org" not in out.getvalue()
    Customer.objects.all().delete()
    fixture = tmp_path / "dump.json"
    fixture.write_text(out.getvalue())
    call_command("loaddata", str(fixture), verbosity=0)
    assert Customer.objects.get(email="dump@example.org").name == "dump"
