"""The index column (:class:`BlindIndexField`), added to the model by the encrypted field
(:func:`attach`), and the per-partition uniqueness check."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, cast

from django.core import checks
from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.db.models import Model

from ..django_internals import schema_editor_asking
from .guard import UpdateGuard
from .options import DEFAULT_DIGEST_SIZE, KEEP, SUFFIX, SourceField, column_length
from .values import write_value

if TYPE_CHECKING:
    _CharField = models.CharField[Any, Any]
else:
    _CharField = models.CharField

__all__ = ["BlindIndexField"]


class BlindIndexField(_CharField):
    """The column holding a field's blind index; added by ``blind_index=...`` on that field.

    Not editable; NULL when the value is NULL. It carries the schema: ``db_index=True``, or
    ``unique=True`` when the encrypted field is unique (the encrypted field's own column then
    gets no constraint). Only the schema sees it unique: validation goes through the
    encrypted field (see :func:`schema_editor_asking`).
    """

    description = "Blind index (keyed HMAC) of an encrypted field"

    def __init__(self, *args: Any, source: str = "", **kwargs: Any) -> None:
        self.source = source
        kwargs.setdefault("max_length", column_length(DEFAULT_DIGEST_SIZE))
        kwargs.setdefault("null", True)
        kwargs.setdefault("blank", True)
        kwargs.setdefault("editable", False)
        if not kwargs.get("unique"):
            kwargs.setdefault("db_index", True)
        super().__init__(*args, **kwargs)

    @property
    def schema_unique(self) -> bool:
        """Whether the column is UNIQUE in the schema."""
        return cast(bool, cast(Any, self)._unique)

    @property  # (Django's is a cached_property; this one depends on who asks)
    def unique(self) -> bool:
        return self.schema_unique and schema_editor_asking()

    def deconstruct(self) -> Any:
        name, _, args, kwargs = super().deconstruct()
        kwargs["source"] = self.source
        if self.schema_unique:
            kwargs["unique"] = True
            kwargs.pop("db_index", None)
        for key, default in _DEFAULTS.items():  # keep migrations short: __init__ sets these
            if key in kwargs and kwargs[key] == default:
                del kwargs[key]
        return name, "asherah_django.fields.BlindIndexField", args, kwargs

    def source_field(self) -> SourceField:
        field = self.model._meta.get_field(self.source)
        return field  # type: ignore[return-value]

    def pre_save(self, model_instance: Model, add: bool) -> Any:
        """The index of the instance's current value (kept as stored when the value was
        loaded and never read, or deferred)."""
        attname = self.attname
        stored = model_instance.__dict__.get(attname)
        source = self.source_field()
        value = source.index_plaintext(model_instance, stored is not None)
        if value is KEEP:
            return stored
        new = None
        if value is not None:
            partition = None
            if source.blind_config.scope == "partition":
                partition = source.partition_of(model_instance)
            new = write_value(source, value, partition)
        model_instance.__dict__[attname] = new
        return new

    def formfield(self, **kwargs: Any) -> Any:
        return None

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        errors = super().check(**kwargs)
        problem = ""
        try:
            source = self.model._meta.get_field(self.source)
        except FieldDoesNotExist:
            problem = f"source={self.source!r} names no field of {self.model._meta.label}"
        else:
            if getattr(source, "blind_index", None) is None:
                problem = f"{self.model._meta.label}.{self.source} has no blind_index"
            elif source.blind_config.field_name != self.name:  # type: ignore[union-attr]
                problem = f"{self.model._meta.label}.{self.source} keeps its index elsewhere"
        if problem:
            errors.append(
                checks.Error(
                    problem,
                    hint="blind index fields are added by blind_index=True on an encrypted "
                    "field; do not declare them",
                    obj=self,
                    id="asherah.E311",
                )
            )
        return errors


_DEFAULTS: Final[dict[str, object]] = {
    "max_length": column_length(DEFAULT_DIGEST_SIZE),
    "null": True,
    "blank": True,
    "editable": False,
    "db_index": True,
}


def attach(field: SourceField, cls: type[Model]) -> None:
    """Called by the encrypted field's ``contribute_to_class``: guard UPDATEs, and add the
    index column to concrete models (historical models in migrations get it from their
    own state, abstract ones through their children)."""
    options = field.blind_index
    assert options is not None
    name = options.field_name or f"{field.name}{SUFFIX}"
    # The UPDATE compiler asks the field for its placeholder: get_placeholder_sql from
    # Django 6.1, get_placeholder before (assumption D of django_internals).
    guard = UpdateGuard(name, field)
    field.get_placeholder = guard  # type: ignore[attr-defined]
    field.get_placeholder_sql = guard.placeholder_sql  # type: ignore[attr-defined]
    if cls._meta.abstract or cls.__module__ == "__fake__":
        return
    if any(f.name == name for f in cls._meta.local_fields):
        return  # declared by hand: the field checks say whether it fits
    unique = field.blind_unique
    companion = BlindIndexField(
        source=field.name, max_length=column_length(options.digest_size), unique=unique
    )
    cls.add_to_class(name, companion)
    if unique and options.scope == "partition" and isinstance(field.partition, str):
        # Unique per row partition: validate_unique's query has no partition to search,
        # so the field checks it itself, in validate(), with the row's partition.
        cast(Any, field)._unique = False


def validate_unique_in_partition(field: SourceField, value: Any, instance: Model) -> None:
    """``unique=True`` of a row-partitioned field whose index is per partition: no other
    row of the same partition may hold an equal value (checked through the index)."""
    attname = field._partition_attname
    partition = getattr(instance, attname, None)
    if value is None or partition is None or partition == "":
        return
    model = type(instance)
    rows = model._default_manager.filter(**{attname: partition, field.name: value})
    if not instance._state.adding and instance.pk is not None:
        rows = rows.exclude(pk=instance.pk)
    if rows.exists():
        raise instance.unique_error_message(model, (field.name,))
