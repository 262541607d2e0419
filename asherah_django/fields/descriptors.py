"""The instance attribute of an encrypted field."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from django.db.models import Field, Model
from django.db.models.query_utils import DeferredAttribute

from ..context import _partition
from .sealed import UNREAD, SealedValue

if TYPE_CHECKING:
    from .base import EncryptedField

_MISSING: Final = object()
_current_partition = _partition.get


class EncryptedAttribute(DeferredAttribute):
    """Instance attribute of an encrypted field: decrypts a sealed value on first access.

    A data descriptor, so it sees every access even when ``__dict__`` holds the value.
    The SealedValue stays in ``__dict__`` and keeps the plaintext once decrypted. A
    *verbatim* SealedValue (fixture ciphertext given as text) is returned as it is.

    The common case is opened here, inline: a field without ``partition=`` or ``bind=``,
    a value of a query whose batch last opened the open partition (so its session is at
    hand) and whose other rows' keys are preloaded. Everything else, and any error, goes
    to :meth:`~.reading.ReadingField.open_sealed`, which decides (and reports) exactly
    as always.
    """

    def __init__(self, field: Field[Any, Any]) -> None:
        super().__init__(field)
        self.attname: str = field.attname
        options: EncryptedField = field  # type: ignore[assignment]
        #: Whether values may be opened inline (no row partition, no binding).
        self.inline: bool = options.partition is None and options.bind is None
        self.decode: Callable[[bytes], Any] = options.decode

    def __get__(self, instance: Model | None, cls: type[Model] | None = None) -> Any:
        if instance is None:
            return self
        value = instance.__dict__.get(self.attname, _MISSING)
        if value is _MISSING:
            value = super().__get__(instance, cls)  # deferred: load it
        if type(value) is not SealedValue:  # (a VerbatimValue is returned as it is)
            return value
        plain = value.value
        if plain is not UNREAD:
            return plain
        batch = value.batch
        if self.inline and batch is not None:
            partition_id = _current_partition()
            pending = batch.pending
            # (A single pending record is this one, from .iterator(): nothing to preload.)
            if partition_id is not None and partition_id == batch.partition and len(pending) < 2:
                pending.clear()
                try:
                    plain = self.decode(batch.decrypt(value.record))  # type: ignore[misc]
                except Exception:  # noqa: S110 (open_sealed below reads it again, precisely)
                    pass
                else:
                    value.value, value.partition = plain, partition_id
                    return plain
        field: EncryptedField = self.field  # type: ignore[assignment]
        return field.open_sealed(instance, value)

    def __set__(self, instance: Model, value: Any) -> None:
        instance.__dict__[self.attname] = value
