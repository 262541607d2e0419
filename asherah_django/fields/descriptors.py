"""The instance attribute of an encrypted field."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from django.db.models import Field, Model
from django.db.models.query_utils import DeferredAttribute

from .sealed import UNREAD, SealedValue

if TYPE_CHECKING:
    from .base import EncryptedField

_MISSING: Final = object()


class EncryptedAttribute(DeferredAttribute):
    """Instance attribute of an encrypted field: decrypts a sealed value on first access.

    A data descriptor, so it sees every access even when ``__dict__`` holds the value.
    The SealedValue stays in ``__dict__`` and keeps the plaintext once decrypted. A
    *verbatim* SealedValue (fixture ciphertext given as text) is returned as it is.
    """

    def __init__(self, field: Field[Any, Any]) -> None:
        super().__init__(field)
        self.attname: str = field.attname

    def __get__(self, instance: Model | None, cls: type[Model] | None = None) -> Any:
        if instance is None:
            return self
        value = instance.__dict__.get(self.attname, _MISSING)
        if value is _MISSING:
            value = super().__get__(instance, cls)  # deferred: load it
        if type(value) is SealedValue:  # (a VerbatimValue is returned as it is)
            plain = value.value
            if plain is UNREAD:
                field: EncryptedField = self.field  # type: ignore[assignment]
                return field.open_sealed(instance, value)
            return plain
        return value

    def __set__(self, instance: Model, value: Any) -> None:
        instance.__dict__[self.attname] = value
