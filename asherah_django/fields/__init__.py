"""Encrypted model fields: the column holds an Asherah DataRowRecord, code sees plaintext.

    from asherah_django.fields import EncryptedTextField, EncryptedJSONField

    class Note(models.Model):
        tenant_id = models.CharField(max_length=64)
        body = EncryptedTextField()                              # the open session's key
        details = EncryptedJSONField(partition="tenant_id", null=True)  # each row's tenant
        email = EncryptedEmailField(blind_index=True, unique=True)  # searchable: email=...
        diagnosis = EncryptedTextField(bind=("id",))  # decrypts only in this row and column

See :mod:`asherah_django.fields.base` for the field and the modules it is built from
(options and partitions, reading, writing), :mod:`asherah_django.fields.types` for the
encodings, :mod:`asherah_django.blind_index` for blind indexes (exact-match lookups).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar, cast

from django.db.models import Model, QuerySet, Value

# BlindIndex and BlindIndexField live in asherah_django.blind_index; migrations name them
# by these paths (asherah_django.fields.BlindIndex...), so they stay importable here.
from ..blind_index.column import BlindIndexField as BlindIndexField
from ..blind_index.options import BlindIndex as BlindIndex
from .base import (
    EncryptedField,
    PlaintextValueError,
    RowPartitionRequiredError,
    encrypted_fields,
)
from .bind import Bind, BindingValueError, BoundRowRequiredError
from .declaration_checks import FIELD_CHECK_IDS
from .sealed import SealedValue, VerbatimValue
from .types import (
    EncryptedBigIntegerField,
    EncryptedBinaryField,
    EncryptedBooleanField,
    EncryptedCharField,
    EncryptedDateField,
    EncryptedDateTimeField,
    EncryptedDecimalField,
    EncryptedEmailField,
    EncryptedIntegerField,
    EncryptedJSONField,
    EncryptedTextField,
)

__all__ = [
    "FIELD_CHECK_IDS",
    "Bind",
    "BindingValueError",
    "BoundRowRequiredError",
    "EncryptedBigIntegerField",
    "EncryptedBinaryField",
    "EncryptedBooleanField",
    "EncryptedCharField",
    "EncryptedDateField",
    "EncryptedDateTimeField",
    "EncryptedDecimalField",
    "EncryptedEmailField",
    "EncryptedField",
    "EncryptedIntegerField",
    "EncryptedJSONField",
    "EncryptedTextField",
    "PlaintextValueError",
    "RowPartitionRequiredError",
    "SealedValue",
    "VerbatimValue",
    "bulk_update",
    "encrypted_fields",
]

M = TypeVar("M", bound=Model)


def bulk_update(
    queryset: QuerySet[M], objs: Iterable[M], fields: Sequence[str], batch_size: int | None = None
) -> int:
    """``queryset.bulk_update(objs, fields)`` that also handles row-partitioned fields.

    Django's ``bulk_update()`` hands each value to the field without its row, so a field
    with ``partition=`` cannot pick the key there (nor one bound to row fields, ``bind=``,
    its binding). This encrypts those values first, each
    with its own row's partition, and passes them to Django as ready-made expressions.
    Other fields (and session-partitioned encrypted fields) go through unchanged. The
    blind index of a blind-indexed field is computed and updated with it.
    """
    objs = list(objs)
    model = queryset.model
    indexed = [
        f
        for f in encrypted_fields(model)
        if f.blind_index is not None and (f.name in fields or f.attname in fields)
    ]
    if indexed:
        names = [f.blind_config.field_name for f in indexed]
        columns = [cast(BlindIndexField, model._meta.get_field(name)) for name in names]
        for obj in objs:
            for column in columns:
                column.pre_save(obj, add=False)  # sets the instance's index value
        fields = [*fields, *(name for name in names if name not in fields)]
    by_row = {
        f.attname
        for f in encrypted_fields(model)
        if (f.partition is not None or (f.bind is not None and f.binder.by_row))
        and (f.name in fields or f.attname in fields)
    }
    saved: list[tuple[M, str, Any]] = []
    try:
        for obj in objs:
            for field in encrypted_fields(model):
                if field.attname not in by_row:
                    continue
                sealed = field.pre_save(obj, add=False)  # encrypted with this row's key
                value = obj.__dict__.get(field.attname)
                if type(sealed) is SealedValue:
                    saved.append((obj, field.attname, value))
                    obj.__dict__[field.attname] = Value(sealed, output_field=field)
        return queryset.bulk_update(objs, fields, batch_size=batch_size)
    finally:
        for obj, attname, value in saved:
            obj.__dict__[attname] = value
