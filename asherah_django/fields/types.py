"""The encrypted field types: each is its plain Django field plus a byte codec.

The plaintext encodings are simple and language-neutral, so that other Asherah clients
can read the values: UTF-8 text, raw bytes, JSON, decimal digits, ``true``/``false``,
ISO 8601 dates and date-times (aware date-times in UTC when ``USE_TZ``).
"""

from __future__ import annotations

import datetime
import decimal
import json
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core import validators
from django.db import models
from django.db.backends.base.operations import BaseDatabaseOperations
from django.utils import timezone
from django.utils.functional import cached_property

from .base import EncryptedField

if TYPE_CHECKING:  # Django's fields are generic only in django-stubs
    _TextField = models.TextField[Any, Any]
    _CharField = models.CharField[Any, Any]
    _EmailField = models.EmailField[Any, Any]
    _BinaryField = models.BinaryField[Any, Any]
    _JSONField = models.JSONField[Any, Any]
    _IntegerField = models.IntegerField[Any, Any]
    _BigIntegerField = models.BigIntegerField[Any, Any]
    _DecimalField = models.DecimalField[Any, Any]
    _BooleanField = models.BooleanField[Any, Any]
    _DateField = models.DateField[Any, Any]
    _DateTimeField = models.DateTimeField[Any, Any]
else:
    _TextField = models.TextField
    _CharField = models.CharField
    _EmailField = models.EmailField
    _BinaryField = models.BinaryField
    _JSONField = models.JSONField
    _IntegerField = models.IntegerField
    _BigIntegerField = models.BigIntegerField
    _DecimalField = models.DecimalField
    _BooleanField = models.BooleanField
    _DateField = models.DateField
    _DateTimeField = models.DateTimeField

__all__ = [
    "EncryptedBigIntegerField",
    "EncryptedBinaryField",
    "EncryptedBooleanField",
    "EncryptedCharField",
    "EncryptedDateField",
    "EncryptedDateTimeField",
    "EncryptedDecimalField",
    "EncryptedEmailField",
    "EncryptedIntegerField",
    "EncryptedJSONField",
    "EncryptedTextField",
]


class _TextCodec(EncryptedField):
    blind_index_text = True

    def normalize(self, value: Any) -> Any:
        return value if type(value) is str else self.plain_to_python(value)

    encode = staticmethod(str.encode)  # type: ignore[assignment]  # (C calls: the hot path)
    decode = staticmethod(bytes.decode)  # type: ignore[assignment]


class EncryptedTextField(_TextCodec, _TextField):
    """Text of any length (``str``)."""


class EncryptedCharField(_TextCodec, _CharField):
    """Short text (``str``); ``max_length`` validates the plaintext (the column is TEXT)."""


class EncryptedEmailField(_TextCodec, _EmailField):
    """An e-mail address (``str``), validated as Django's EmailField does. Its blind index
    strips and casefolds by default."""

    blind_index_strip = True
    blind_index_casefold = True


class EncryptedBinaryField(EncryptedField, _BinaryField):
    """Bytes (``bytes``; memoryview and bytearray are accepted). Not editable in forms."""

    plain_type = "bytes"

    def normalize(self, value: Any) -> Any:
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value)
        return self.plain_to_python(value)  # base64 text, as Django serializes bytes

    def encode(self, value: Any) -> bytes:
        return value  # type: ignore[no-any-return]

    def decode(self, data: bytes) -> Any:
        return data


class EncryptedJSONField(EncryptedField, _JSONField):
    """Any JSON value (``encoder``/``decoder`` as Django's JSONField). ``None`` is NULL;
    key and path lookups are not available (the database sees ciphertext)."""

    plain_type = "JSON"
    reuse_records = False  # dicts and lists change in place: always encrypt them again
    blind_index_supported = False  # json.dumps is not canonical (key order, spacing)

    def encode(self, value: Any) -> bytes:
        return json.dumps(value, cls=self.encoder).encode()

    def decode(self, data: bytes) -> Any:
        return json.loads(data, cls=self.decoder)

    def parse_legacy(self, text: str) -> Any:
        return json.loads(text, cls=self.decoder)


class _IntegerCodec(EncryptedField):
    plain_type = "integer"
    plain_internal_type = "IntegerField"

    def normalize(self, value: Any) -> Any:
        if type(value) is int:
            return value
        try:
            return int(value)
        except (TypeError, ValueError) as exc:
            raise exc.__class__(
                f"Field '{self.name}' expected a number but got {value!r}."
            ) from exc

    def encode(self, value: Any) -> bytes:
        return str(value).encode()

    def decode(self, data: bytes) -> Any:
        return int(data)

    def parse_legacy(self, text: str) -> Any:
        return int(text.strip())

    @cached_property
    def validators(self) -> list[Callable[[Any], None]]:
        # IntegerField derives range validators from its internal type; ours is TextField,
        # so use the range of the plaintext type (that of every backend: 32/64-bit).
        own = self._validators  # type: ignore[attr-defined]
        found: list[Callable[[Any], None]] = [*self.default_validators, *own]
        low, high = BaseDatabaseOperations.integer_field_ranges[self.plain_internal_type]
        if not any(isinstance(v, validators.MinValueValidator) for v in found):
            found.append(validators.MinValueValidator(low))
        if not any(isinstance(v, validators.MaxValueValidator) for v in found):
            found.append(validators.MaxValueValidator(high))
        return found


class EncryptedIntegerField(_IntegerCodec, _IntegerField):
    """A 32-bit integer (``int``), validated to the range of IntegerField."""


class EncryptedBigIntegerField(_IntegerCodec, _BigIntegerField):
    """A 64-bit integer (``int``), validated to the range of BigIntegerField."""

    plain_internal_type = "BigIntegerField"


class EncryptedDecimalField(EncryptedField, _DecimalField):
    """A decimal (``Decimal``) with ``max_digits`` and ``decimal_places`` as DecimalField;
    stored as its digits with exactly ``decimal_places`` decimals."""

    plain_type = "decimal"

    def normalize(self, value: Any) -> Any:
        return self.plain_to_python(value)

    def encode(self, value: Any) -> bytes:
        places = self.decimal_places
        exponent = decimal.Decimal(1).scaleb(-places) if places is not None else None
        if exponent is not None:
            value = value.quantize(exponent, context=self.context)
        return str(value).encode()

    def decode(self, data: bytes) -> Any:
        return decimal.Decimal(data.decode())

    def parse_legacy(self, text: str) -> Any:
        return decimal.Decimal(text.strip())


class EncryptedBooleanField(EncryptedField, _BooleanField):
    """``True``/``False`` (``None`` too when ``null=True``)."""

    plain_type = "boolean"
    blind_index_supported = False  # two values: the index would be the value itself

    def normalize(self, value: Any) -> Any:
        return value if type(value) is bool else self.plain_to_python(value)

    def encode(self, value: Any) -> bytes:
        return b"true" if value else b"false"

    def decode(self, data: bytes) -> Any:
        if data == b"true":
            return True
        if data == b"false":
            return False
        raise ValueError("not a boolean")


class EncryptedDateField(EncryptedField, _DateField):
    """A date (``datetime.date``), stored as ``YYYY-MM-DD``."""

    plain_type = "date"

    def normalize(self, value: Any) -> Any:
        return value if type(value) is datetime.date else self.plain_to_python(value)

    def encode(self, value: Any) -> bytes:
        return value.isoformat().encode()  # type: ignore[no-any-return]

    def decode(self, data: bytes) -> Any:
        return datetime.date.fromisoformat(data.decode())


class EncryptedDateTimeField(EncryptedField, _DateTimeField):
    """A date and time (``datetime.datetime``), stored in ISO 8601. With ``USE_TZ`` values
    are aware and stored in UTC; a naive value is taken in the default time zone with
    Django's RuntimeWarning, exactly as DateTimeField does."""

    plain_type = "date and time"

    def normalize(self, value: Any) -> Any:
        if type(value) is not datetime.datetime:
            value = self.plain_to_python(value)
        if settings.USE_TZ:
            if timezone.is_naive(value):
                warnings.warn(
                    f"DateTimeField {self.model.__name__}.{self.name} received a naive "
                    f"datetime ({value}) while time zone support is active.",
                    RuntimeWarning,
                    stacklevel=4,
                )
                value = timezone.make_aware(value, timezone.get_default_timezone())
            value = value.astimezone(datetime.UTC)
        return value

    def encode(self, value: Any) -> bytes:
        return value.isoformat().encode()  # type: ignore[no-any-return]

    def decode(self, data: bytes) -> Any:
        value = datetime.datetime.fromisoformat(data.decode())
        if settings.USE_TZ:
            if timezone.is_naive(value):
                return value.replace(tzinfo=datetime.UTC)
            return value
        if timezone.is_aware(value):
            return timezone.make_naive(value, timezone.get_default_timezone())
        return value

    def parse_legacy(self, text: str) -> Any:
        value = self.plain_to_python(text.strip())
        if settings.USE_TZ and timezone.is_naive(value):
            return value.replace(tzinfo=datetime.UTC)  # Django stores UTC in naive columns
        return value
