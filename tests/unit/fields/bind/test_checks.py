"""System checks of bind= (asherah.E312, E313), its deconstruction and every field type."""

from __future__ import annotations

import uuid

import pytest
from django.core import checks
from django.db import models
from django.test.utils import isolate_apps

from asherah_django import fields as encrypted
from asherah_django.fields import Bind, EncryptedField

FIELD_CLASSES = [getattr(encrypted, n) for n in encrypted.__all__ if n.endswith("Field")]
FIELD_CLASSES = [cls for cls in FIELD_CLASSES if cls is not EncryptedField]


def _messages(model: type[models.Model], name: str) -> list[checks.CheckMessage]:
    return model._meta.get_field(name).check()  # type: ignore[union-attr,no-any-return]


@isolate_apps("tests.bindapp")
def test_an_auto_increment_primary_key_is_refused_with_the_alternatives() -> None:
    class Auto(models.Model):  # noqa: DJ008
        body = encrypted.EncryptedTextField(bind=("id",))
        ok = encrypted.EncryptedTextField(bind=True)
        stamp = models.DateTimeField(auto_now=True)
        stamped = encrypted.EncryptedTextField(bind=("stamp",))

        class Meta:
            app_label = "bindapp"

    (error,) = _messages(Auto, "body")
    assert error.id == "asherah.E313"
    assert "an auto-increment primary key" in error.msg
    assert "UUIDField(primary_key=True, default=uuid.uuid4)" in error.hint
    assert "natural key" in error.hint and "bind=True" in error.hint
    assert _messages(Auto, "ok") == []
    assert [m.id for m in _messages(Auto, "stamped")] == ["asherah.E313"]


@isolate_apps("tests.bindapp")
def test_bad_options_are_refused() -> None:
    class Bad(models.Model):  # noqa: DJ008
        id = models.UUIDField(primary_key=True, default=uuid.uuid4)
        secret = encrypted.EncryptedTextField()
        tags = models.ManyToManyField("self")
        a = encrypted.EncryptedTextField(bind=("missing",))
        b = encrypted.EncryptedTextField(bind=Bind(("id",), unbound="maybe"))
        c = encrypted.EncryptedTextField(bind=("secret",))
        d = encrypted.EncryptedTextField(bind=("id", "id"))
        e = encrypted.EncryptedTextField(bind=Bind(("id",), label=""))
        f = encrypted.EncryptedTextField(bind=("tags",))
        good = encrypted.EncryptedTextField(bind=Bind(("id",), unbound="read"))

        class Meta:
            app_label = "bindapp"

    expected = {
        "a": "bind: row names 'missing', no field of bindapp.Bad",
        "b": "bind: unbound='maybe' is not one of reject, read",
        "c": "bind: row names 'secret', an encrypted field",
        "d": "bind: row names a field twice",
        "e": "bind: label='' must be a non-empty string",
        "f": "bind: row names 'tags', a field without a column",
    }
    for name, message in expected.items():
        found = _messages(Bad, name)
        assert [(m.id, m.msg) for m in found] == [("asherah.E312", message)], name
    assert _messages(Bad, "good") == []
    with pytest.raises(TypeError, match="bind= takes True"):
        encrypted.EncryptedTextField(bind=3)  # type: ignore[arg-type]


@pytest.mark.parametrize("cls", FIELD_CLASSES, ids=lambda c: c.__name__)
def test_every_field_type_takes_bind_and_deconstructs_it(cls: type[EncryptedField]) -> None:
    kwargs = {"max_length": 10} if "Char" in cls.__name__ else {}
    field = cls(bind=("id",), **kwargs)
    _, path, _, options = field.deconstruct()
    assert path.startswith("asherah_django.fields.")
    assert options["bind"] == Bind(("id",))
    again = cls(**options)
    assert again.bind == field.bind
    assert cls(**kwargs).deconstruct()[3].get("bind") is None


def test_migrations_write_bind_by_keyword_whatever_its_spelling() -> None:
    from django.db.migrations.writer import MigrationWriter

    spellings = [("id",), ["id"], Bind(("id",)), Bind(row="id"), Bind(row=["id"])]
    written = {MigrationWriter.serialize(encrypted.bind.normalize(s))[0] for s in spellings}
    assert written == {"asherah_django.fields.Bind(row=('id',))"}
    assert MigrationWriter.serialize(Bind())[0] == "asherah_django.fields.Bind()"
    assert (
        MigrationWriter.serialize(Bind(label="x", unbound="read"))[0]
        == "asherah_django.fields.Bind(label='x', unbound='read')"
    )
