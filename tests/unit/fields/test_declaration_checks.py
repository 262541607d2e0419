"""System checks, stable deconstruction, no per-call state on fields, thread safety."""

from __future__ import annotations

import io
import threading
from typing import Any

import pytest
from django.core import checks
from django.core.management import call_command
from django.db import connection, models
from django.test.utils import isolate_apps, override_settings

import asherah_django
from asherah_django import fields as encrypted
from asherah_django.fields import EncryptedField
from tests.testapp.models import AllTypes, TenantNote, owner_partition

FIELD_CLASSES = [getattr(encrypted, name) for name in encrypted.__all__ if name.endswith("Field")]
FIELD_CLASSES = [cls for cls in FIELD_CLASSES if cls is not EncryptedField]


def _enc(model: type[models.Model], name: str) -> EncryptedField:
    field = model._meta.get_field(name)
    assert isinstance(field, EncryptedField)
    return field


def _ids(messages: list[checks.CheckMessage]) -> list[str]:
    return [m.id for m in messages if m.id]


@isolate_apps("tests.testapp")
def test_unique_db_index_and_primary_key_are_refused_by_checks() -> None:
    class Bad(models.Model):  # noqa: DJ008
        a = encrypted.EncryptedTextField(unique=True)
        b = encrypted.EncryptedCharField(max_length=10, db_index=True)
        c = encrypted.EncryptedIntegerField(primary_key=True)

        class Meta:
            app_label = "testapp"

    def ids(name: str) -> list[str]:
        return _ids(_enc(Bad, name).check())

    assert ids("a") == ["asherah.E302"]
    assert ids("b") == ["asherah.E303"]
    assert ids("c") == ["asherah.E301"]
    message = _enc(Bad, "a").check()[0]
    assert isinstance(message, checks.Error)
    assert "fresh data key" in (message.hint or "")


@isolate_apps("tests.testapp")
def test_bad_options_and_meta_ordering_are_reported() -> None:
    class Odd(models.Model):  # noqa: DJ008
        tenant = models.CharField(max_length=10)
        secret = encrypted.EncryptedTextField()
        a = encrypted.EncryptedTextField(legacy="maybe")
        b = encrypted.EncryptedTextField(partition="missing")
        c = encrypted.EncryptedTextField(partition="secret")
        d = encrypted.EncryptedTextField(partition="tenant")
        e = encrypted.EncryptedTextField(partition=owner_partition)

        class Meta:
            app_label = "testapp"
            ordering = ("-secret",)

    def ids(name: str) -> list[str]:
        return _ids(_enc(Odd, name).check())

    assert ids("a") == ["asherah.E304"]
    assert ids("b") == ["asherah.E305"]
    assert ids("c") == ["asherah.E305"]
    assert ids("d") == ids("e") == []
    assert ids("secret") == ["asherah.E306"]


def test_the_test_models_pass_every_check() -> None:
    assert [m for m in checks.run_checks() if m.id and m.id.startswith("asherah.E3")] == []


@pytest.mark.parametrize("cls", FIELD_CLASSES, ids=lambda c: c.__name__)
def test_deconstruct_is_stable_and_carries_no_settings(cls: type[EncryptedField]) -> None:
    extra: dict[str, Any] = {}
    if cls is encrypted.EncryptedCharField:
        extra["max_length"] = 20
    if cls is encrypted.EncryptedEmailField:
        extra["max_length"] = 254  # EmailField always deconstructs it
    if cls is encrypted.EncryptedDecimalField:
        extra = {"max_digits": 5, "decimal_places": 2}
    field = cls(null=True, partition="tenant_id", legacy="read", **extra)
    _name, path, args, kwargs = field.deconstruct()
    assert path == f"asherah_django.fields.{cls.__name__}"
    assert kwargs == {"null": True, "partition": "tenant_id", "legacy": "read", **extra}
    rebuilt = cls(*args, **kwargs)
    assert rebuilt.deconstruct()[1:] == (path, args, kwargs)
    plain = cls(**extra).deconstruct()[3]
    assert "legacy" not in plain and "partition" not in plain


@pytest.mark.django_db
def test_changing_keys_or_settings_never_makes_a_migration() -> None:
    other = {
        "SERVICE_NAME": "another",
        "PRODUCT_ID": "product",
        "KMS": "static",
        "STATIC_MASTER_KEY_HEX": "11" * 32,
        "METASTORE": "memory",
    }
    for asherah in (None, other):
        out = io.StringIO()
        with override_settings(**({"ASHERAH": asherah} if asherah else {})):
            call_command("makemigrations", "testapp", "--check", "--dry-run", stdout=out)
        assert "No changes detected" in out.getvalue()


def _state(field: EncryptedField) -> dict[str, Any]:
    return {k: v for k, v in vars(field).items() if k not in ("validators",)}


@pytest.mark.django_db(transaction=True)
def test_fields_keep_no_per_call_state_and_threads_do_not_mix() -> None:
    fields = [f for f in AllTypes._meta.concrete_fields if isinstance(f, EncryptedField)]
    fields.append(_enc(TenantNote, "body"))
    with asherah_django.session("warm"):  # warm every lazily computed attribute once
        AllTypes.objects.create(text="w", number=1)
        [o.text for o in AllTypes.objects.all()]
        TenantNote.objects.create(tenant_id="w", body="w")
        [n.body for n in TenantNote.objects.all()]
    before = {f: _state(f) for f in fields}
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def worker(n: int) -> None:
        try:
            with asherah_django.session(f"thread-{n}"):
                barrier.wait()
                for i in range(8):
                    obj = AllTypes.objects.create(label=f"{n}", text=f"{n}-{i}", number=i)
                    assert AllTypes.objects.get(pk=obj.pk).text == f"{n}-{i}"
                    TenantNote.objects.create(tenant_id=f"t{n}", body=f"{n}-{i}")
                mine = AllTypes.objects.filter(label=f"{n}")
                assert sorted(o.number for o in mine) == list(range(8))
                notes = TenantNote.objects.filter(tenant_id=f"t{n}")
                assert {x.body for x in notes} == {f"{n}-{i}" for i in range(8)}
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert {f: _state(f) for f in fields} == before
