"""A blind index's options (:class:`BlindIndex`), resolved per field (:class:`IndexConfig`),
and the bytes it hashes (the field's canonical encoding, text normalised)."""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Protocol

from django.db.models import Model
from django.utils.deconstruct import deconstructible

__all__ = ["BlindIndex", "IndexConfig", "SourceField", "column_length", "normalise_text"]

SCOPES: Final = ("global", "partition")
DEFAULT_DIGEST_SIZE: Final = 16
MIN_DIGEST_SIZE: Final = 8
MAX_DIGEST_SIZE: Final = 32
#: ``unique=True`` needs at least this many bytes (128 bits) so distinct values never collide.
UNIQUE_MIN_DIGEST_SIZE: Final = 16
SUFFIX: Final = "_bidx"
#: What :meth:`SourceField.index_plaintext` returns when the stored index is still right.
KEEP: Final = object()


def column_length(digest_size: int) -> int:
    """``max_length`` of the index column: tag (13) + "." + profile (4) + ":" + hex digest,
    with room to spare."""
    return 20 + 2 * digest_size


@deconstructible(path="asherah_django.fields.BlindIndex")
class BlindIndex:
    """Options of a field's blind index (``blind_index=True`` means all defaults)."""

    def __init__(
        self,
        *,
        strip: bool | None = None,
        casefold: bool | None = None,
        scope: str = "global",
        digest_size: int = DEFAULT_DIGEST_SIZE,
        context: str | None = None,
        field_name: str | None = None,
    ) -> None:
        self.strip = strip
        self.casefold = casefold
        self.scope = scope
        self.digest_size = digest_size
        self.context = context
        self.field_name = field_name

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BlindIndex):
            return NotImplemented
        return self.deconstruct() == other.deconstruct()  # type: ignore[attr-defined,no-any-return]

    def __hash__(self) -> int:
        return hash(repr(self))

    def __repr__(self) -> str:
        kwargs = self.deconstruct()[2]  # type: ignore[attr-defined]
        return f"BlindIndex({', '.join(f'{k}={v!r}' for k, v in sorted(kwargs.items()))})"

    @property
    def is_default(self) -> bool:
        return self == BlindIndex()


@dataclass(frozen=True)
class IndexConfig:
    """A field's blind index options, resolved against its type and model."""

    strip: bool
    casefold: bool
    scope: str
    digest_size: int
    context: str
    field_name: str

    @property
    def profile(self) -> str:
        """4 hex digits that change with any option or the context (see the package docs)."""
        text = f"{self.context}\0{self.strip:d}{self.casefold:d}\0{self.digest_size}"
        return hashlib.sha256(text.encode()).hexdigest()[:4]


class SourceField(Protocol):
    """What a blind index needs of the encrypted field it indexes (an
    ``asherah_django.fields.EncryptedField``; this package does not import the fields)."""

    name: str
    attname: str
    model: type[Model]
    partition: str | Callable[[Any], object] | None
    blind_index: BlindIndex | None
    blind_unique: bool
    blind_index_text: ClassVar[bool]
    blind_index_strip: ClassVar[bool]
    blind_index_casefold: ClassVar[bool]

    @property
    def blind_config(self) -> IndexConfig: ...

    @property
    def _partition_attname(self) -> str: ...

    @property
    def _partition_name(self) -> str: ...

    def normalize(self, value: Any) -> Any: ...

    def encode(self, value: Any) -> bytes: ...

    def partition_of(self, instance: Model) -> str: ...

    def index_plaintext(self, instance: Model, indexed: bool) -> Any:
        """The plaintext to index for ``instance``, or :data:`KEEP` when its stored index
        (``indexed``: one is stored) still holds: the value was deferred, loaded and never
        read, or is an expression the field refuses itself."""


def resolve(field: SourceField) -> IndexConfig:
    options = field.blind_index
    assert options is not None
    strip = options.strip if options.strip is not None else field.blind_index_strip
    casefold = options.casefold if options.casefold is not None else field.blind_index_casefold
    return IndexConfig(
        strip=bool(strip) and field.blind_index_text,
        casefold=bool(casefold) and field.blind_index_text,
        scope=options.scope,
        digest_size=options.digest_size,
        context=options.context or f"{field.model._meta.label_lower}.{field.name}",
        field_name=options.field_name or f"{field.name}{SUFFIX}",
    )


def normalise_text(text: str, *, strip: bool, casefold: bool) -> str:
    """The text a blind index hashes (NFC of the casefolded NFD when ``casefold``)."""
    if strip:
        text = text.strip()
    if casefold:
        text = unicodedata.normalize("NFC", unicodedata.normalize("NFD", text).casefold())
    return text


def index_input(field: SourceField, value: Any) -> bytes:
    """The bytes hashed for plaintext ``value`` (not None): the field's own canonical
    encoding, after the text normalisation for text fields."""
    value = field.normalize(value)
    if field.blind_index_text:
        config = field.blind_config
        return normalise_text(value, strip=config.strip, casefold=config.casefold).encode()
    return field.encode(value)
