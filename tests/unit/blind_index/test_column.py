"""unique=True through the index: the UNIQUE constraint is on the index column, equal
values (after normalisation) collide, validate_unique and ModelForms report the field,
get_or_create / update_or_create / in_bulk work, also racing on a real server."""

from __future__ import annotations

import threading

import pytest
from django import forms
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, connections, transaction

import asherah_django
from tests.bidxapp.models import Customer
from tests.unit.blind_index.conftest import raw_row

P = "bidx-unique"


class CustomerForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = Customer
        fields = ["name", "email"]


@pytest.mark.django_db
def test_equal_values_collide_on_the_index_column() -> None:
    with asherah_django.session(P):
        Customer.objects.create(name="a", email="dup@example.org")
        with pytest.raises(IntegrityError), transaction.atomic():
            Customer.objects.create(name="b", email="  DUP@Example.org")
        Customer.objects.create(name="c", email="other@example.org")
    assert Customer.objects.count() == 2


@pytest.mark.django_db
def test_validate_unique_and_model_forms_report_the_encrypted_field() -> None:
    with asherah_django.session(P):
        first = Customer.objects.create(name="a", email="form@example.org")
        clash = Customer(name="b", email="Form@Example.org")
        with pytest.raises(ValidationError) as info:
            clash.full_clean()
        assert list(info.value.message_dict) == ["email"]
        assert "already exists" in info.value.message_dict["email"][0]
        first.full_clean()  # the row itself is no clash
        form = CustomerForm(data={"name": "b", "email": "FORM@example.org"})
        assert not form.is_valid()
        assert list(form.errors) == ["email"]
        form = CustomerForm(data={"name": "b", "email": "new@example.org"})
        assert form.is_valid(), form.errors
        saved = form.save()
    assert Customer.objects.get(email="new@example.org").pk == saved.pk


@pytest.mark.django_db
def test_get_or_create_update_or_create_and_in_bulk() -> None:
    with asherah_django.session(P):
        made, created = Customer.objects.get_or_create(email="goc@example.org", name="one")
        assert created
        again, created = Customer.objects.get_or_create(
            email="GOC@example.org", defaults={"name": "two"}
        )
        assert (again.pk, created, again.name) == (made.pk, False, "one")
        updated, created = Customer.objects.update_or_create(
            email="goc@example.org", defaults={"name": "three", "nickname": "n"}
        )
        assert (updated.pk, created) == (made.pk, False)
        assert Customer.objects.get(nickname="n").name == "three"
        found = Customer.objects.in_bulk(
            ["goc@example.org", "none@example.org"], field_name="email"
        )
        assert list(found) == ["goc@example.org"]
        assert found["goc@example.org"].pk == made.pk


@pytest.mark.django_db
def test_the_schema_puts_unique_on_the_index_column_only() -> None:
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, "bidxapp_customer")
    unique = {tuple(c["columns"]) for c in constraints.values() if c["unique"]}
    assert ("email_bidx",) in unique
    assert ("email",) not in unique
    indexed = {tuple(c["columns"]) for c in constraints.values() if c["index"] or c["unique"]}
    assert {("nickname_bidx",), ("account_bidx",), ("birthday_bidx",)} <= indexed
    assert not any(col in indexed for col in [("email",), ("nickname",)])
    field = Customer._meta.get_field("email")
    assert field.unique  # validation (validate_unique, forms, DRF) sees a unique field
    assert not Customer._meta.get_field("email_bidx").unique  # ...once, on the field


@pytest.mark.slow
@pytest.mark.skipif(connection.vendor == "sqlite", reason="needs concurrent writers")
@pytest.mark.django_db(transaction=True)
def test_racing_get_or_create_makes_one_row() -> None:
    barrier = threading.Barrier(4)
    results: list[tuple[int, bool]] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with asherah_django.session(P):
                barrier.wait(timeout=10)
                obj, created = Customer.objects.get_or_create(email="race@example.org")
                results.append((obj.pk, created))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    Customer.objects.filter(email="warm@example.org").exists()  # (creates nothing)
    with asherah_django.session(P):
        Customer.objects.create(email="warm@example.org")  # the key exists before the race
    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    assert len({pk for pk, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    row = Customer.objects.get(email="race@example.org")
    assert raw_row(Customer, row.pk, "email_bidx")[0]
    assert Customer.objects.count() == 2
