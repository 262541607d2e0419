"""System checks of encrypted fields (ids asherah.E301-E306; registered as field checks).

Refused: ``primary_key`` (E301), ``unique`` (E302), ``db_index`` (E303): each value is
encrypted with a fresh data key, so equal values never match in SQL. Also reported: an
unknown ``legacy=`` (E304), a ``partition=`` that names no plain field of the model
(E305), and ``Meta.ordering`` on an encrypted field (E306).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from django.core import checks
from django.core.exceptions import FieldDoesNotExist

from .sql import SEARCHABLE_HINT

if TYPE_CHECKING:
    from .base import EncryptedField

LEGACY_CHOICES: Final = ("reject", "read")

#: Every id these checks can report, with what it means.
FIELD_CHECK_IDS: Final[dict[str, str]] = {
    "asherah.E301": "an encrypted field is the primary key",
    "asherah.E302": "an encrypted field is unique",
    "asherah.E303": "an encrypted field has db_index",
    "asherah.E304": "an encrypted field's legacy= is not 'reject' or 'read'",
    "asherah.E305": "an encrypted field's partition= names no plain field of its model",
    "asherah.E306": "Meta.ordering names an encrypted field",
}


def check_field(field: EncryptedField) -> list[checks.CheckMessage]:
    """The checks of one encrypted field."""
    errors: list[checks.CheckMessage] = []
    why = "each value is encrypted with a fresh data key, so equal values never match"
    if field.primary_key:
        errors.append(
            checks.Error(
                "an encrypted field cannot be the primary key",
                hint=f"{why}; keep an ordinary primary key",
                obj=field,
                id="asherah.E301",
            )
        )
    elif field.unique:
        errors.append(
            checks.Error(
                "an encrypted field cannot be unique",
                hint=f"{why} in SQL; remove unique=True",
                obj=field,
                id="asherah.E302",
            )
        )
    if field.db_index:  # type: ignore[attr-defined]
        errors.append(
            checks.Error(
                "an encrypted field cannot be indexed",
                hint=f"{why}, so an index on the ciphertext is useless; remove db_index=True",
                obj=field,
                id="asherah.E303",
            )
        )
    if field.legacy not in LEGACY_CHOICES:
        errors.append(
            checks.Error(
                f"legacy={field.legacy!r} is not one of {', '.join(LEGACY_CHOICES)}",
                hint="'reject' refuses stored plaintext; 'read' accepts it until re-saved",
                obj=field,
                id="asherah.E304",
            )
        )
    errors.extend(_check_partition_option(field))
    ordering = getattr(field.model._meta, "ordering", None) or ()
    names = {field.name, field.attname}
    if any(isinstance(o, str) and o.lstrip("-") in names for o in ordering):
        errors.append(
            checks.Error(
                "Meta.ordering names an encrypted field",
                hint=f"SQL would sort ciphertext: {SEARCHABLE_HINT}",
                obj=field,
                id="asherah.E306",
            )
        )
    return errors


def _check_partition_option(field: EncryptedField) -> list[checks.CheckMessage]:
    option = field.partition
    problem = ""
    if option is None or callable(option):
        return []
    if not isinstance(option, str):
        problem = "partition= must be a field name, a callable or None"
    else:
        try:
            target = field.model._meta.get_field(option)
        except FieldDoesNotExist:
            problem = f"partition={option!r} names no field of {field.model._meta.label}"
        else:
            if target is field or getattr(target, "is_encrypted", False):
                problem = f"partition={option!r} names an encrypted field"
            elif not getattr(target, "concrete", False):
                problem = f"partition={option!r} names a field without a column"
    if not problem:
        return []
    return [
        checks.Error(
            problem,
            hint="name a plain field of the same model (e.g. 'tenant_id'), or pass a "
            "module-level function(instance) -> str",
            obj=field,
            id="asherah.E305",
        )
    ]
