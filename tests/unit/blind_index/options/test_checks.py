"""System checks of blind indexes: types that cannot have one, bad options, short unique
digests, name clashes, index columns declared by hand (asherah.E302, E307-E311)."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import models
from django.test.utils import isolate_apps

from asherah_django.fields import (
    FIELD_CHECK_IDS,
    BlindIndex,
    BlindIndexField,
    EncryptedBooleanField,
    EncryptedCharField,
    EncryptedEmailField,
    EncryptedIntegerField,
    EncryptedJSONField,
    EncryptedTextField,
)
from tests.bidxapp.models import Customer


def ids(model: type[models.Model]) -> list[str]:
    return sorted(m.id for m in model.check() if m.id and m.id.startswith("asherah."))


def test_the_test_models_pass_their_checks() -> None:
    assert ids(Customer) == []
    for check_id in ("asherah.E307", "asherah.E308", "asherah.E309", "asherah.E310"):
        assert check_id in FIELD_CHECK_IDS


@isolate_apps("tests.bidxapp")
def test_unique_needs_a_blind_index_and_some_types_cannot_have_one() -> None:
    class Thing(models.Model):  # noqa: DJ008
        a = EncryptedTextField(unique=True)
        b = EncryptedJSONField(blind_index=True, null=True)
        c = EncryptedBooleanField(blind_index=True, null=True)
        d = EncryptedTextField(unique=True, blind_index=True)

        class Meta:
            app_label = "bidxapp"

    found = {(m.obj.name, m.id) for m in Thing.check() if m.id and m.id.startswith("asherah.")}
    assert found == {("a", "asherah.E302"), ("b", "asherah.E307"), ("c", "asherah.E307")}


@pytest.mark.parametrize(
    ("options", "field_class", "expected"),
    [
        (BlindIndex(scope="tenant"), EncryptedCharField, "scope='tenant'"),
        (BlindIndex(digest_size=4), EncryptedCharField, "digest_size=4"),
        (BlindIndex(digest_size=33), EncryptedCharField, "digest_size=33"),
        (BlindIndex(casefold=True), EncryptedIntegerField, "text fields only"),
        (BlindIndex(context=""), EncryptedCharField, "context=''"),
    ],
    ids=str,
)
def test_bad_options_are_reported(options: BlindIndex, field_class: Any, expected: str) -> None:
    with isolate_apps("tests.bidxapp"):

        class Thing(models.Model):  # noqa: DJ008
            value = field_class(blind_index=options, null=True)

            class Meta:
                app_label = "bidxapp"

        errors = [m for m in Thing.check() if m.id == "asherah.E308"]
    assert len(errors) == 1
    assert expected in errors[0].msg


@isolate_apps("tests.bidxapp")
def test_a_unique_index_needs_128_bits_and_its_name_must_be_free() -> None:
    class Short(models.Model):  # noqa: DJ008
        email = EncryptedEmailField(blind_index=BlindIndex(digest_size=8), unique=True)

        class Meta:
            app_label = "bidxapp"

    assert ids(Short) == ["asherah.E309"]

    class Clash(models.Model):  # noqa: DJ008
        email_hash = models.CharField(max_length=10)
        email = EncryptedEmailField(blind_index=BlindIndex(field_name="email_hash"))

        class Meta:
            app_label = "bidxapp"

    assert ids(Clash) == ["asherah.E310"]

    class Stray(models.Model):  # noqa: DJ008
        other_bidx = BlindIndexField(source="other")
        other = EncryptedEmailField()

        class Meta:
            app_label = "bidxapp"

    assert ids(Stray) == ["asherah.E311"]
