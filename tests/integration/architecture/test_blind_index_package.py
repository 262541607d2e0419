"""The blind-index package stands below the fields: its field side (options, index values,
the index column, the UPDATE guard, the lookups) loads without asherah_django.fields, and an
encrypted field is what it expects of one (:class:`SourceField`). The import contract in
pyproject.toml checks the same statically (``lint-imports``)."""

from __future__ import annotations

import subprocess
import sys

from asherah_django.blind_index import BlindIndex, BlindIndexField, column, lookups, options
from asherah_django.fields import BlindIndex as FieldsBlindIndex
from asherah_django.fields import BlindIndexField as FieldsBlindIndexField
from tests.bidxapp.models import Customer
from tests.support.common import ROOT


def test_the_field_side_loads_without_the_fields() -> None:
    code = (
        "import sys\n"
        "import asherah_django.blind_index.lookups, asherah_django.blind_index.column\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('asherah_django.fields'))\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr


def test_migrations_keep_naming_the_options_and_column_by_their_fields_paths() -> None:
    assert FieldsBlindIndex is BlindIndex and FieldsBlindIndexField is BlindIndexField
    assert BlindIndex(scope="partition").deconstruct()[0] == "asherah_django.fields.BlindIndex"  # type: ignore[attr-defined]
    column_field = Customer._meta.get_field("email_bidx")
    assert isinstance(column_field, column.BlindIndexField)
    assert column_field.deconstruct()[1] == "asherah_django.fields.BlindIndexField"


def test_an_encrypted_field_is_what_the_index_expects_of_its_source() -> None:
    field = Customer._meta.get_field("email")
    config = options.resolve(field)  # type: ignore[arg-type]
    assert config == field.blind_config  # type: ignore[attr-defined]
    assert field.get_lookup("exact") is lookups.BlindExact
    assert field.get_lookup("in") is lookups.BlindIn
