"""System checks of encrypted fields (ids asherah.E301-E311; registered as field checks).

Refused: ``primary_key`` (E301), ``unique`` without a blind index (E302), ``db_index``
(E303): each value is encrypted with a fresh data key, so equal values never match in SQL.
Also reported: an unknown ``legacy=`` (E304), a ``partition=`` that names no plain field of
the model (E305), ``Meta.ordering`` on an encrypted field (E306), and blind index
problems: a type that cannot have one (E307), bad options (E308), a unique index shorter
than 128 bits (E309), a clash with another field's name (E310), an index column that does
not belong to its source field (E311, reported by the column's own check), and ``bind=``
problems: bad options (E312), a row field whose value is not known when the value is
encrypted, such as an auto-increment primary key (E313).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from django.core import checks
from django.core.exceptions import FieldDoesNotExist
from django.db import models

from ..blind_index.options import (
    MAX_DIGEST_SIZE,
    MIN_DIGEST_SIZE,
    SCOPES,
    UNIQUE_MIN_DIGEST_SIZE,
)
from .bind import UNBOUND_CHOICES
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
    "asherah.E307": "blind_index on an encrypted field type that cannot have one",
    "asherah.E308": "blind_index options are invalid",
    "asherah.E309": "a unique blind index is shorter than 16 bytes (128 bits)",
    "asherah.E310": "a blind index column's name is taken by another field",
    "asherah.E311": "a blind index column does not belong to a blind-indexed field",
    "asherah.E312": "bind= options are invalid",
    "asherah.E313": "bind= names a row field whose value is not known before the INSERT",
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
    elif field.unique and field.blind_index is None:
        errors.append(
            checks.Error(
                "an encrypted field cannot be unique",
                hint=f"{why} in SQL; add blind_index=True (the index is then unique) or "
                "remove unique=True",
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
    if field.blind_index is not None:
        errors.extend(_check_blind_index(field))
    if field.bind is not None:
        errors.extend(_check_bind(field))
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


def _check_blind_index(field: EncryptedField) -> list[checks.CheckMessage]:
    options = field.blind_index
    assert options is not None
    if not field.blind_index_supported:
        return [
            checks.Error(
                f"{type(field).__name__} cannot have a blind index",
                hint="an index of a boolean is the value itself, and JSON has no canonical "
                "text to hash; index another field",
                obj=field,
                id="asherah.E307",
            )
        ]
    problems = []
    if options.scope not in SCOPES:
        problems.append(f"scope={options.scope!r} is not one of {', '.join(SCOPES)}")
    size = options.digest_size
    if type(size) is not int or not MIN_DIGEST_SIZE <= size <= MAX_DIGEST_SIZE:
        problems.append(f"digest_size={size!r} is not {MIN_DIGEST_SIZE} to {MAX_DIGEST_SIZE}")
    if not field.blind_index_text and (options.strip or options.casefold):
        problems.append("strip and casefold apply to text fields only")
    for name in ("context", "field_name"):
        value = getattr(options, name)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            problems.append(f"{name}={value!r} must be a non-empty string")
    errors: list[checks.CheckMessage] = [
        checks.Error(
            f"blind_index: {problem}",
            hint="see asherah_django.blind_index for the options",
            obj=field,
            id="asherah.E308",
        )
        for problem in problems
    ]
    if field.blind_unique and type(size) is int and size < UNIQUE_MIN_DIGEST_SIZE:
        errors.append(
            checks.Error(
                f"a unique blind index needs digest_size >= {UNIQUE_MIN_DIGEST_SIZE}",
                hint="shorter digests collide, and a collision would refuse a distinct value",
                obj=field,
                id="asherah.E309",
            )
        )
    if not problems:
        errors.extend(_check_index_column(field))
    return errors


def _check_index_column(field: EncryptedField) -> list[checks.CheckMessage]:
    name = field.blind_config.field_name
    try:
        column = field.model._meta.get_field(name)
    except FieldDoesNotExist:
        return []  # abstract models get theirs in each child
    if getattr(column, "source", None) == field.name:
        return []
    return [
        checks.Error(
            f"the blind index column {name!r} clashes with another field of "
            f"{field.model._meta.label}",
            hint="rename that field or give BlindIndex(field_name=...)",
            obj=field,
            id="asherah.E310",
        )
    ]


_BIND_HINT: Final = (
    "bind to fields known before the INSERT that never change: a UUID primary key with a "
    "default (models.UUIDField(primary_key=True, default=uuid.uuid4)), a natural key or a "
    "tenant id; or bind=True (the model and field only)"
)


def _check_bind(field: EncryptedField) -> list[checks.CheckMessage]:
    options = field.bind
    assert options is not None
    problems: list[str] = []
    unknown: list[checks.CheckMessage] = []
    if options.unbound not in UNBOUND_CHOICES:
        problems.append(f"unbound={options.unbound!r} is not one of {', '.join(UNBOUND_CHOICES)}")
    if options.label is not None and (not isinstance(options.label, str) or not options.label):
        problems.append(f"label={options.label!r} must be a non-empty string")
    if len(set(options.row)) != len(options.row):
        problems.append("row names a field twice")
    for name in options.row:
        if not isinstance(name, str):
            problems.append(f"row={options.row!r} must name fields")
            continue
        try:
            target = field.model._meta.get_field(name)
        except FieldDoesNotExist:
            problems.append(f"row names {name!r}, no field of {field.model._meta.label}")
            continue
        if target is field or getattr(target, "is_encrypted", False):
            problems.append(f"row names {name!r}, an encrypted field")
        elif not getattr(target, "concrete", False) or getattr(target, "many_to_many", False):
            problems.append(f"row names {name!r}, a field without a column")
        elif (
            isinstance(target, models.AutoField | models.BigAutoField | models.SmallAutoField)
            or getattr(target, "generated", False)
            or getattr(target, "db_default", models.NOT_PROVIDED) is not models.NOT_PROVIDED
            or getattr(target, "auto_now", False)
            or getattr(target, "auto_now_add", False)
        ):
            auto_pk = getattr(target, "primary_key", False)
            what = "an auto-increment primary key" if auto_pk else "its field"
            unknown.append(
                checks.Error(
                    f"bind= names {name!r}: {what} gets its value from the database or on "
                    "save, after the value is encrypted, so it cannot be bound to",
                    hint=_BIND_HINT,
                    obj=field,
                    id="asherah.E313",
                )
            )
    return [
        *(
            checks.Error(
                f"bind: {problem}",
                hint="see asherah_django.fields.bind for the options",
                obj=field,
                id="asherah.E312",
            )
            for problem in problems
        ),
        *unknown,
    ]
