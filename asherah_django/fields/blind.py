"""Blind indexes: exact-match lookups on encrypted fields.

    class Customer(models.Model):
        email = EncryptedEmailField(blind_index=True, unique=True)

gives the model a second column, ``email_bidx`` (a :class:`BlindIndexField`, added by the
field and carried by migrations), holding a truncated HMAC-SHA256 of the normalised
plaintext under a key of its own (see :mod:`asherah_django.blind_index.keyring`). Then
``filter(email=v)``, ``exclude(email=v)``, ``get``, ``email__in=[...]``, ``get_or_create``,
``update_or_create``, ``in_bulk(field_name="email")``, ``validate_unique`` and a
``UNIQUE`` constraint work, each as one query on that indexed column. ``iexact`` works when
the normalisation casefolds. Nothing else can: ranges, ``contains``, ordering and other
transforms still raise ``FieldError``.

Options (``blind_index=True`` or ``blind_index=BlindIndex(...)``)
-----------------------------------------------------------------
``strip``, ``casefold``
    Text normalisation before hashing; defaults: both on for EncryptedEmailField, both
    off for EncryptedCharField/EncryptedTextField (exact equality, as a plain column).
    ``casefold`` is Unicode caseless matching (NFC of the casefolded NFD): ``filter(email=
    "Ann@X.org")`` then also finds ``ann@x.org``, exactly like a case-insensitive
    collation. The stored value itself is never changed.
``scope``
    ``"global"`` (default): one key for the service; lookups need no partition, and equal
    values of different tenants have equal index values (someone reading the table learns
    that two tenants share a customer, never who). ``"partition"``: one key per partition,
    so index values of different tenants are unrelated; lookups then search one partition:
    the one given by an equality on the field's ``partition=`` field ANDed in the same
    query (``filter(tenant_id=t, email=v)``), else the open session's. ``unique=True`` is
    then unique per partition.
``digest_size``
    Bytes of the HMAC kept, 8 to 32; default 16 (128 bits). The index is compared in SQL
    with no second check, so it must not collide: at 128 bits two distinct values collide
    with probability about n²/2¹²⁹ (nothing for any real n), at 64 bits noticeably from
    billions of rows, which is why ``unique=True`` needs at least 16. Shortening it does
    not hide more: equality of values is visible either way (it is what an index is for);
    the plaintext is not, without the key.
``context``
    The string the field's key is derived from; default ``app_label.model.field``. Pin it
    before renaming a model or field, or run ``asherah_reindex`` after the rename.
``field_name``
    The index column's field; default ``<field>_bidx``.

Stored values look like ``sb8kq0.4c1e:9f86d081884c7d659a2feaa0c55ad015``: the key
version's tag, a 4-hex profile of the options and context, and the digest. Changing an
option or the context changes the profile, so ``asherah_reindex`` finds the rows to redo.

What keeps the index right
--------------------------
``save()``, ``create()``, ``bulk_create()`` and ``get_or_create()`` compute it with the
value. ``QuerySet.update()`` and Django's ``bulk_update()`` would change the value but not
its index, so an UPDATE that sets the field without its index raises ``FieldError``; use
``save()`` or :func:`asherah_django.fields.bulk_update`, which also updates the index
(``save(update_fields=[...])`` must name both). ``asherah_encrypt`` leaves the index empty:
run ``manage.py asherah_reindex`` afterwards, which also moves index values to a new key
after a rotation.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, cast

from django.core import checks
from django.core.exceptions import EmptyResultSet, FieldDoesNotExist, FieldError
from django.db import models
from django.db.models import Model
from django.db.models.expressions import Col, Value
from django.db.models.lookups import Lookup
from django.db.models.sql.compiler import SQLUpdateCompiler
from django.db.models.sql.where import AND, WhereNode
from django.utils.deconstruct import deconstructible

from ..blind_index.keyring import IndexKeys, KeyVersion, index_keys
from ..context import _partition as _partition_var
from ..context import require_partition
from .django_internals import schema_editor_asking
from .sealed import UNREAD, SealedValue

if TYPE_CHECKING:
    from .base import EncryptedField

    _CharField = models.CharField[Any, Any]
else:
    _CharField = models.CharField

__all__ = [
    "BlindIndex",
    "BlindIndexField",
    "IndexConfig",
    "column_length",
]

SCOPES: Final = ("global", "partition")
DEFAULT_DIGEST_SIZE: Final = 16
MIN_DIGEST_SIZE: Final = 8
MAX_DIGEST_SIZE: Final = 32
#: ``unique=True`` needs at least this many bytes (128 bits) so distinct values never collide.
UNIQUE_MIN_DIGEST_SIZE: Final = 16
SUFFIX: Final = "_bidx"
_current_partition = _partition_var.get


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
        """4 hex digits that change with any option or the context (see module docs)."""
        text = f"{self.context}\0{self.strip:d}{self.casefold:d}\0{self.digest_size}"
        return hashlib.sha256(text.encode()).hexdigest()[:4]


def resolve(field: EncryptedField) -> IndexConfig:
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


def index_input(field: EncryptedField, value: Any) -> bytes:
    """The bytes hashed for plaintext ``value`` (not None): the field's own canonical
    encoding, after the text normalisation for text fields."""
    value = field.normalize(value)
    if field.blind_index_text:
        config = field.blind_config
        return normalise_text(value, strip=config.strip, casefold=config.casefold).encode()
    return field.encode(value)


_keys_of: Callable[[], IndexKeys] | None = None


def current_keys() -> IndexKeys:
    """The blind index keys of the process-wide SessionFactory."""
    global _keys_of
    get = _keys_of
    if get is None:
        from .base import session_factory

        def get() -> IndexKeys:
            return index_keys(session_factory())

        _keys_of = get
    return get()


def write_value(field: EncryptedField, value: Any, partition: str | None) -> str:
    """The index value of plaintext ``value`` under the current key version."""
    config = field.blind_config
    keys = current_keys()
    version = keys.write_version(keys.key_id(partition if config.scope == "partition" else None))
    return version.index_value(
        config.context, config.profile, index_input(field, value), config.digest_size
    )


def lookup_values(
    field: EncryptedField, inputs: Iterable[bytes], partition: str | None
) -> list[str]:
    """The index values ``inputs`` may be stored as (one per live key version)."""
    config = field.blind_config
    keys = current_keys()
    versions: tuple[KeyVersion, ...] = keys.lookup_versions(
        keys.key_id(partition if config.scope == "partition" else None)
    )
    found: dict[str, None] = {}
    context, profile, size = config.context, config.profile, config.digest_size
    for data in inputs:
        for version in versions:
            found[version.index_value(context, profile, data, size)] = None
    return list(found)


# -- the index column -------------------------------------------------------------------------


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

    def source_field(self) -> EncryptedField:
        field = self.model._meta.get_field(self.source)
        return field  # type: ignore[return-value]

    def pre_save(self, model_instance: Model, add: bool) -> Any:
        """The index of the instance's current value (kept as stored when the value was
        loaded and never read, or deferred)."""
        attname = self.attname
        stored = model_instance.__dict__.get(attname)
        source = self.source_field()
        value = model_instance.__dict__.get(source.attname, _MISSING)
        if value is _MISSING:
            return stored
        if isinstance(value, SealedValue):
            if value.value is UNREAD and (stored is not None or value.verbatim):
                return stored  # unchanged since loaded (or fixture ciphertext)
            value = getattr(model_instance, source.attname)  # read (decrypts if needed)
        elif isinstance(value, Value):
            value = value.value
        if hasattr(value, "resolve_expression"):
            return stored  # refused by the encrypted field itself
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


_MISSING: Final = object()
_DEFAULTS: Final[dict[str, object]] = {
    "max_length": column_length(DEFAULT_DIGEST_SIZE),
    "null": True,
    "blank": True,
    "editable": False,
    "db_index": True,
}


def attach(field: EncryptedField, cls: type[Model]) -> None:
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


def validate_unique_in_partition(field: EncryptedField, value: Any, instance: Model) -> None:
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


class UpdateGuard:
    """The encrypted field's ``get_placeholder``: refuses an UPDATE that sets the value
    without its blind index (``QuerySet.update()``, Django's ``bulk_update()``,
    ``save(update_fields=[field])``)."""

    __slots__ = ("index_name", "label")

    def __init__(self, index_name: str, field: EncryptedField) -> None:
        self.index_name = index_name
        self.label = f"{field.model._meta.label}.{field.name}"

    def __call__(self, value: Any, compiler: Any, connection: Any) -> str:
        """``get_placeholder`` (Django 5.2, 6.0)."""
        if isinstance(compiler, SQLUpdateCompiler):
            self.check(compiler)
        return "%s"

    def placeholder_sql(self, value: Any, compiler: Any, connection: Any) -> tuple[str, Any]:
        """``get_placeholder_sql`` (Django 6.1+): the placeholder and its parameters."""
        if isinstance(compiler, SQLUpdateCompiler):
            self.check(compiler)
        if hasattr(value, "as_sql"):
            return compiler.compile(value)  # type: ignore[no-any-return]
        return "%s", (value,)

    def check(self, compiler: SQLUpdateCompiler) -> None:
        name = self.index_name
        query: Any = compiler.query
        if not any(f.name == name for f, _, _ in query.values):
            raise FieldError(
                f"this UPDATE sets {self.label} but not its blind index {name!r}, which "
                "would go stale: use save() (with update_fields naming both), or "
                "asherah_django.fields.bulk_update(), which update both"
            )


# -- lookups --------------------------------------------------------------------------------


class BlindLookup(Lookup):
    """Compares the blind index column with the index values of the plaintext(s).

    ``rhs`` holds the hashed inputs (bytes); the index values are computed when the query
    is compiled, with the key versions current then.
    """

    prepare_rhs = False
    can_use_none_as_rhs = False
    many = False

    def get_prep_lookup(self) -> Any:
        field = _target(self.lhs)
        rhs = self.rhs
        if rhs is None and not self.many:
            return None
        if self.many:
            if isinstance(rhs, str | bytes) or hasattr(rhs, "resolve_expression"):
                raise FieldError(
                    f"{field.model._meta.label}.{field.name}__in takes a list of values "
                    "(a subquery cannot be compared with a blind index)"
                )
            values = [v for v in rhs if v is not None]
        else:
            values = [rhs]
        inputs = []
        for value in values:
            if isinstance(value, Value):
                value = value.value
            if hasattr(value, "resolve_expression"):
                raise FieldError(
                    f"encrypted field {field.model._meta.label}.{field.name} can be compared "
                    "with values only, not with expressions or other columns: the database "
                    "holds ciphertext and a keyed index"
                )
            inputs.append(index_input(field, value))
        return tuple(inputs)

    def as_sql(self, compiler: Any, connection: Any) -> Any:
        field = _target(self.lhs)
        config = field.blind_config
        partition = self._partition(compiler, field) if config.scope == "partition" else None
        values = lookup_values(field, self.rhs, partition)
        if not values:
            raise EmptyResultSet  # no value, or no key yet: nothing can match
        companion = cast("BlindIndexField", field.model._meta.get_field(config.field_name))
        lhs_sql, lhs_params = compiler.compile(Col(self.lhs.alias, companion))
        if len(values) == 1:
            return f"{lhs_sql} = %s", [*lhs_params, values[0]]
        return f"{lhs_sql} IN ({', '.join(['%s'] * len(values))})", [*lhs_params, *values]

    def _partition(self, compiler: Any, field: EncryptedField) -> str:
        if isinstance(field.partition, str):
            found = _anded_partitions(compiler, self, field)
            if len(found) > 1:
                raise EmptyResultSet  # two different partitions ANDed: nothing matches
            if found:
                return found.pop()
        partition = _current_partition()
        if partition is not None:
            return partition
        label = f"{field.model._meta.label}.{field.name}"
        if field.partition is None:
            return require_partition(f"{label} (its blind index is per partition)")
        return require_partition(
            f"{label} (its blind index is per partition: filter on "
            f"{field._partition_name} in the same filter(), e.g. "
            f"filter({field._partition_name}=..., {field.name}=...), or open the session "
            "of the partition)"
        )


class BlindExact(BlindLookup):
    lookup_name = "exact"


class BlindIExact(BlindLookup):
    lookup_name = "iexact"


class BlindIn(BlindLookup):
    lookup_name = "in"
    many = True


def _target(lhs: Any) -> EncryptedField:
    target = getattr(lhs, "target", None)
    if not isinstance(lhs, Col) or getattr(target, "blind_index", None) is None:
        raise FieldError("a blind index lookup needs the encrypted field's column itself")
    return cast("EncryptedField", target)


def _anded_partitions(compiler: Any, lookup: Lookup, field: EncryptedField) -> set[str]:
    """Partition values fixed by ``partition_field = value`` conditions ANDed with
    ``lookup`` (on the same table alias) anywhere up the WHERE tree.

    Sound under negation: the lookup's truth only matters for rows where its AND
    siblings hold, i.e. rows of that partition.
    """
    path: list[WhereNode] | None = None
    for root in (getattr(compiler, "where", None), getattr(compiler.query, "where", None)):
        if isinstance(root, WhereNode):
            path = _path_to(root, lookup)
            if path is not None:
                break
    if not path:
        return set()
    option = field.partition
    assert isinstance(option, str)
    attname = field.model._meta.get_field(option).attname  # type: ignore[union-attr]
    alias = lookup.lhs.alias
    found: set[str] = set()
    for node in path:
        if node.connector != AND:
            continue
        for child in node.children:
            _collect(child, alias, attname, found)
    return found


def _path_to(node: WhereNode, target: object) -> list[WhereNode] | None:
    for child in node.children:
        if child is target:
            return [node]
        if isinstance(child, WhereNode):
            below = _path_to(child, target)
            if below is not None:
                return [node, *below]
    return None


def _collect(child: Any, alias: str, attname: str, found: set[str]) -> None:
    if isinstance(child, WhereNode):
        if child.connector == AND and not child.negated:
            for grandchild in child.children:
                _collect(grandchild, alias, attname, found)
        return
    if getattr(child, "lookup_name", None) != "exact":
        return
    lhs = getattr(child, "lhs", None)
    if not isinstance(lhs, Col) or lhs.alias != alias or lhs.target.attname != attname:
        return
    value = child.rhs
    if isinstance(value, tuple | list) and len(value) == 1:
        value = value[0]
    if value is None or hasattr(value, "resolve_expression"):
        return
    if isinstance(value, Model):
        value = value.pk
    found.add(value if type(value) is str else str(value))
