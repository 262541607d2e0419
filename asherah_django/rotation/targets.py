"""Which columns ``--reencrypt`` and ``--report`` read: ``app_label.Model[.field]`` labels.

Values are read raw (the column's text, no field conversion, no decryption) in
primary-key order, in windows of ``batch_size`` rows. A value's partition is the one its
DataRowRecord names (``_IK_{partition}_{service}_{product}``), so session-partitioned and
row-partitioned fields are handled alike and a value never moves to another partition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.core.exceptions import FieldDoesNotExist
from django.db import models, router
from django.db.models import ExpressionWrapper, F

from ..core.errors import AsherahError, MalformedRecordError
from ..core.records import DataRowRecord, parse_data_row
from ..fields.base import EncryptedField, encrypted_fields
from .keys import RotationError

if TYPE_CHECKING:
    from ..core.session import SessionFactory

Row = tuple[Any, ...]


@dataclass(frozen=True)
class Target:
    """A model and the encrypted fields of it to read."""

    model: type[models.Model]
    fields: tuple[EncryptedField, ...]

    @property
    def label(self) -> str:
        names = ", ".join(field.name for field in self.fields)
        return f"{self.model._meta.label} ({names})"

    def columns(self) -> list[Any]:
        """``values_list`` arguments: the pk, then each column's raw text."""
        raw = [
            ExpressionWrapper(F(field.attname), output_field=models.TextField())
            for field in self.fields
        ]
        return ["pk", *raw]

    def database(self, using: str | None) -> str:
        return using or router.db_for_write(self.model)


def parse_field_label(
    label: str, error: type[AsherahError]
) -> tuple[type[models.Model], Any | None]:
    """``app_label.Model`` -> (model, None); ``app_label.Model.field`` -> (model, field).

    Shared by the commands that take such labels; ``error`` is the command's error type.
    """
    parts = label.split(".")
    if len(parts) not in (2, 3):
        raise error(f"expected app_label.Model or app_label.Model.field, got {label!r}")
    try:
        model = apps.get_model(parts[0], parts[1])
    except LookupError as exc:
        raise error(str(exc.args[0])) from None
    if len(parts) == 2:
        return model, None
    try:
        return model, model._meta.get_field(parts[2])
    except FieldDoesNotExist:
        raise error(f"{model._meta.label} has no field {parts[2]!r}") from None


def resolve_targets(labels: Sequence[str]) -> list[Target]:
    """``app_label.Model`` (every encrypted field of it) or ``app_label.Model.field``."""
    chosen: dict[type[models.Model], list[EncryptedField]] = {}
    for label in labels:
        model, field = parse_field_label(label, RotationError)
        if field is None:
            fields = list(encrypted_fields(model))
            if not fields:
                raise RotationError(f"{model._meta.label} has no encrypted field")
        else:
            if not isinstance(field, EncryptedField):
                raise RotationError(f"{model._meta.label}.{field.name} is not an encrypted field")
            fields = [field]
        known = chosen.setdefault(model, [])
        known += [field for field in fields if field not in known]
    return [Target(model, tuple(fields)) for model, fields in chosen.items()]


def every_target() -> list[Target]:
    """Every installed model that has encrypted fields."""
    found = []
    for model in apps.get_models():
        fields = tuple(encrypted_fields(model))
        if fields:
            found.append(Target(model, fields))
    return found


def check_pk(target: Target) -> None:
    pk = target.model._meta.pk
    if pk is None or isinstance(pk, models.CompositePrimaryKey):
        raise RotationError(
            f"{target.model._meta.label} has no single-column primary key to read it in windows"
        )


def parse(text: object) -> DataRowRecord | None:
    """The DataRowRecord a column holds, or None (NULL, empty, or legacy plaintext)."""
    if isinstance(text, bytes | memoryview):
        text = bytes(text).decode("utf-8", "replace")
    if not isinstance(text, str) or not text:
        return None
    try:
        return parse_data_row(text)
    except MalformedRecordError:
        return None


def partition_of(factory: SessionFactory, key_id: str) -> str | None:
    """The partition an intermediate key id belongs to under this factory's service and
    product; None for another service's key."""
    return factory.ids.partition_of(key_id)
