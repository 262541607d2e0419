"""EncryptedField: how an encrypted column's values go in and out of the database.

The column holds the DataRowRecord text (TEXT on every backend). ``None`` stays NULL;
every other value, empty strings included, is encrypted. Subclasses in ``types.py`` only
say how their Python value becomes bytes and back (``normalize``/``encode``/``decode``).

Which key (partition)
---------------------
A field without ``partition=`` uses the partition of the innermost open
:func:`asherah_django.session` (set per request by the middleware). With
``partition="tenant_id"`` (a field of the same model) or ``partition=callable``
(``callable(instance) -> str``), each row uses its own partition, so one queryset can hold
many tenants' rows. Decryption checks that the record's key belongs to that partition
exactly; a value of any other partition raises
:class:`~asherah_django.core.errors.PartitionMismatchError`.

Writes
------
``pre_save(instance)`` encrypts the attribute with the instance's partition and gives
Django a :class:`~.sealed.SealedValue`, which ``get_prep_value`` turns into its record
unchanged: nothing is encrypted twice, and values loaded but never touched are written
back as they were (no decryption, no new ciphertext). Paths that hand Django a bare value
without its row (``QuerySet.update()``, ``bulk_update()``'s ``Case(When(..., Value(v)))``)
encrypt in ``get_prep_value`` with the open session; a row-partitioned field cannot know
the row there and raises :class:`RowPartitionRequiredError` instead of guessing (use
:func:`asherah_django.fields.bulk_update`). Expressions pass through untouched.

Reads
-----
``from_db_value`` gets no instance. When Django is building model instances (ModelIterable,
RawModelIterable; detected once per query, see :func:`_building_instances`), the converter
stores a :class:`~.sealed.SealedValue` and the :class:`EncryptedAttribute` descriptor
decrypts it on first access, with the row's partition at hand, after preloading the keys
of the whole query column in one batch. ``values()``/``values_list()`` rows have no
instance: they are decrypted at once with the open session.

Legacy plaintext
----------------
A stored value that is not a DataRowRecord (by structure, see
:func:`~asherah_django.core.records.looks_like_data_row`) is plaintext written before the
field was encrypted. ``legacy="reject"`` (default) raises :class:`PlaintextValueError`;
``legacy="read"`` returns it (parsed as the field's type) and the next ``save()`` encrypts
it. A DataRowRecord that fails to decrypt always raises; nothing is swallowed and
ciphertext is never returned as if it were the value. Failures send
:data:`asherah_django.signals.decryption_failed` and log on ``asherah_django.fields``
(never with values or keys).

Nothing is stored on the field per call: per-query state lives in the converter's closure,
per-row state in the instance's ``__dict__``, the partition in a contextvar.
"""

from __future__ import annotations

import datetime
import logging
import sys
from collections.abc import Callable, Sequence
from decimal import Decimal
from types import CodeType, ModuleType
from typing import TYPE_CHECKING, Any, ClassVar, Final

from django.core import checks
from django.core.exceptions import FieldDoesNotExist, FieldError, ValidationError
from django.core.serializers import python as python_serializer
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, Model, query
from django.db.models.expressions import Case, Col, Expression, ExpressionWrapper, Value, When
from django.db.models.functions import Cast
from django.db.models.lookups import Exact, IsNull
from django.db.models.query_utils import DeferredAttribute
from django.utils.functional import cached_property

from .. import signals
from ..context import _partition as _partition_var
from ..context import require_partition
from ..core.errors import (
    AsherahError,
    DecryptionError,
    InvalidPartitionError,
    MalformedRecordError,
    PartitionMismatchError,
)
from ..core.records import looks_like_data_row, parse_data_row
from .sealed import UNREAD, ReadBatch, SealedValue, VerbatimValue

if TYPE_CHECKING:
    from ..core.session import SessionFactory

    _Field = Field[Any, Any]
else:
    _Field = Field

logger = logging.getLogger("asherah_django.fields")

LEGACY_CHOICES: Final = ("reject", "read")
SEARCHABLE_HINT: Final = (
    "the database holds only ciphertext (a fresh key per value), so SQL cannot compare, "
    "search or sort it; only isnull works. Filter on another field and compare in Python, "
    "or wait for searchable encrypted fields (blind_index=True, planned)"
)

_MISSING: Final = object()
#: Plaintext types that need no further inspection on the write path.
_PLAIN_TYPES: Final = frozenset(
    {str, bytes, int, float, bool, dict, list, Decimal, datetime.date, datetime.datetime}
)
_current_partition = _partition_var.get
_runtime: ModuleType | None = None


class PlaintextValueError(DecryptionError):
    """A stored value is not a DataRowRecord (legacy plaintext) and the field rejects it."""


class RowPartitionRequiredError(AsherahError):
    """A row-partitioned field was given a value without its row (``QuerySet.update()``)."""


def session_factory() -> SessionFactory:
    """The process-wide SessionFactory (``asherah_django.runtime``, imported on first use)."""
    runtime = _runtime
    if runtime is None:
        runtime = _load_runtime()
    factory: SessionFactory = runtime.get_session_factory()
    return factory


def _load_runtime() -> ModuleType:
    global _runtime
    from .. import runtime

    _runtime = runtime
    return runtime


class _ForSerializer:
    """What ``value_from_object`` gives Django's python serializer: not a "protected"
    type, so the serializer asks ``value_to_string`` (the stored record) instead."""

    __slots__ = ()


_FOR_SERIALIZER: Final = _ForSerializer()
_SERIALIZER_CODE: Final = python_serializer.Serializer._value_from_field.__code__  # type: ignore[attr-defined]

# Model-building iterables decrypt lazily (the descriptor has the instance); the others
# (values(), values_list()) decrypt at once. Code objects compared by identity.
_LAZY_CODES: Final[frozenset[CodeType]] = frozenset(
    {query.ModelIterable.__iter__.__code__, query.RawModelIterable.__iter__.__code__}
)
_EAGER_CODES: Final[frozenset[CodeType]] = frozenset(
    cls.__iter__.__code__
    for cls in (
        query.ValuesIterable,
        query.ValuesListIterable,
        query.NamedValuesListIterable,
        query.FlatValuesListIterable,
    )
)
_MAX_FRAMES: Final = 12


def _building_instances() -> bool:
    """Whether the query whose converters are being built will become model instances.

    Django gives converters no instance and no query, and calls the same
    ``get_db_converters`` for ``values()`` and for model queries; this looks, once per
    query, for the nearest queryset iterable on the call stack. Not found (a future
    Django, an aggregate): decrypt at once, which is always correct, only not batched.
    """
    frame = sys._getframe(2)
    for _ in range(_MAX_FRAMES):
        code = frame.f_code
        if code in _LAZY_CODES:
            return True
        if code in _EAGER_CODES:
            return False
        parent = frame.f_back
        if parent is None:
            return False
        frame = parent
    return False


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


class EncryptedCol(Col):
    """A column of an encrypted field. Ordering by it raises a clear error.

    Two ways in: Django resolves the columns of ``order_by("field")`` and
    ``Meta.ordering`` once more before compiling them (selected columns are not resolved
    again), and it compiles ``order_by(F("field"))`` after the select list is built but
    before the WHERE clause is split out (``SQLCompiler.pre_sql_setup``), a window in
    which nothing else is compiled. If a future Django changes that order, the second
    check simply never fires.
    """

    def resolve_expression(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("for_save") or (len(args) > 4 and args[4]):
            return super().resolve_expression(*args, **kwargs)  # update(x=F("field"))
        raise FieldError(_ordering_message(self.target))

    def as_sql(self, compiler: Any, connection: BaseDatabaseWrapper) -> Any:
        if compiler.select is not None and not hasattr(compiler, "where"):
            raise FieldError(_ordering_message(self.target))
        return super().as_sql(compiler, connection)


def _ordering_message(field: object) -> str:
    return f"cannot order by encrypted field {_label(field)}: {SEARCHABLE_HINT}."


class EncryptedIsNull(IsNull):
    """``field__isnull``: NULL is stored as NULL, so this one test works on ciphertext."""

    def __init__(self, lhs: Any, rhs: Any) -> None:
        if isinstance(lhs, EncryptedCol):
            lhs = Col(lhs.alias, lhs.target, lhs.output_field)
        super().__init__(lhs, rhs)


class EncryptedExact(Exact):
    """Only ``field=None`` (which Django turns into ``isnull``); anything else raises."""

    def __init__(self, lhs: Any, rhs: Any) -> None:
        if rhs is not None:
            raise FieldError(
                f"encrypted field {_label(getattr(lhs, 'target', lhs))} cannot be compared "
                f"with exact: {SEARCHABLE_HINT}."
            )
        super().__init__(lhs, rhs)


def _label(field: object) -> str:
    model = getattr(field, "model", None)
    name = getattr(field, "name", "?")
    return f"{model._meta.label}.{name}" if model is not None else str(name)


class EncryptedField(_Field):
    """Base class of the encrypted fields; see the module docstring for the data flow.

    Options (besides the usual field options):

    - ``partition``: ``None`` (the open session), the name of another field of the model
      (``"tenant_id"``, or a foreign key ``"tenant"``), or a callable
      ``(instance) -> str``. The callable must be importable (a module-level function)
      for migrations.
    - ``legacy``: ``"reject"`` (default) or ``"read"``, for stored values that are not
      DataRowRecords (see the module docstring).

    ``unique``, ``db_index`` and ``primary_key`` are refused by system checks.
    """

    descriptor_class = EncryptedAttribute
    #: Whether an unchanged decrypted value (same object) may be written back as the
    #: record it came from; False for mutable plaintexts (JSON) that change in place.
    reuse_records: ClassVar[bool] = True
    #: The plaintext's type name, for messages and validators; the column is TEXT.
    plain_type: ClassVar[str] = "text"

    def __init__(
        self,
        *args: Any,
        partition: str | Callable[[Any], object] | None = None,
        legacy: str = "reject",
        **kwargs: Any,
    ) -> None:
        self.partition = partition
        self.legacy = legacy
        super().__init__(*args, **kwargs)
        # Configuration read on every write, looked up once (DateField sets these).
        self._auto_now: bool = bool(getattr(self, "auto_now", False))
        self._auto_now_add: bool = bool(getattr(self, "auto_now_add", False))

    # -- the codec (subclasses) ---------------------------------------------------------

    def normalize(self, value: Any) -> Any:
        """The canonical Python plaintext for ``value`` (as the plain field would store)."""
        return value

    def encode(self, value: Any) -> bytes:
        """The bytes to encrypt for a normalized, non-None value."""
        raise NotImplementedError

    def decode(self, data: bytes) -> Any:
        """The Python value of decrypted bytes (ValueError/TypeError if they are not one)."""
        raise NotImplementedError

    def parse_legacy(self, text: str) -> Any:
        """The Python value of legacy plaintext found in the column."""
        return self.plain_to_python(text)

    def plain_to_python(self, value: Any) -> Any:
        """The plain field's ``to_python`` (no DataRowRecord detection)."""
        return super().to_python(value)

    # -- schema, deconstruction, checks -----------------------------------------------

    def get_internal_type(self) -> str:
        return "TextField"

    def db_type(self, connection: BaseDatabaseWrapper) -> str | None:
        return connection.data_types["TextField"]

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        if self.partition is not None:
            kwargs["partition"] = self.partition
        if self.legacy != "reject":
            kwargs["legacy"] = self.legacy
        cls = type(self)
        if cls.__module__.startswith("asherah_django.fields"):
            path = f"asherah_django.fields.{cls.__qualname__}"
        return name, path, args, kwargs

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        return [*super().check(**kwargs), *self._check_encryption()]

    def _check_encryption(self) -> list[checks.CheckMessage]:
        errors: list[checks.CheckMessage] = []
        why = "each value is encrypted with a fresh data key, so equal values never match"
        if self.primary_key:
            errors.append(
                checks.Error(
                    "an encrypted field cannot be the primary key",
                    hint=f"{why}; keep an ordinary primary key",
                    obj=self,
                    id="asherah.E301",
                )
            )
        elif self.unique:
            errors.append(
                checks.Error(
                    "an encrypted field cannot be unique",
                    hint=f"{why} in SQL; remove unique=True",
                    obj=self,
                    id="asherah.E302",
                )
            )
        if self.db_index:  # type: ignore[attr-defined]
            errors.append(
                checks.Error(
                    "an encrypted field cannot be indexed",
                    hint=f"{why}, so an index on the ciphertext is useless; remove db_index=True",
                    obj=self,
                    id="asherah.E303",
                )
            )
        if self.legacy not in LEGACY_CHOICES:
            errors.append(
                checks.Error(
                    f"legacy={self.legacy!r} is not one of {', '.join(LEGACY_CHOICES)}",
                    hint="'reject' refuses stored plaintext; 'read' accepts it until re-saved",
                    obj=self,
                    id="asherah.E304",
                )
            )
        errors.extend(self._check_partition_option())
        ordering = getattr(self.model._meta, "ordering", None) or ()
        names = {self.name, self.attname}
        if any(isinstance(o, str) and o.lstrip("-") in names for o in ordering):
            errors.append(
                checks.Error(
                    "Meta.ordering names an encrypted field",
                    hint=f"SQL would sort ciphertext: {SEARCHABLE_HINT}",
                    obj=self,
                    id="asherah.E306",
                )
            )
        return errors

    def _check_partition_option(self) -> list[checks.CheckMessage]:
        option = self.partition
        problem = ""
        if option is None or callable(option):
            return []
        if not isinstance(option, str):
            problem = "partition= must be a field name, a callable or None"
        else:
            try:
                target = self.model._meta.get_field(option)
            except FieldDoesNotExist:
                problem = f"partition={option!r} names no field of {self.model._meta.label}"
            else:
                if target is self or isinstance(target, EncryptedField):
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
                obj=self,
                id="asherah.E305",
            )
        ]

    # -- lookups and ordering ------------------------------------------------------------

    def get_lookup(self, lookup_name: str) -> Any:
        if lookup_name == "isnull":
            return EncryptedIsNull
        if lookup_name == "exact":
            return EncryptedExact
        raise FieldError(
            f"unsupported lookup {lookup_name!r} on encrypted field {_label(self)}: "
            f"{SEARCHABLE_HINT}."
        )

    def get_transform(self, lookup_name: str) -> Any:
        raise FieldError(
            f"unsupported transform {lookup_name!r} on encrypted field {_label(self)}: "
            f"{SEARCHABLE_HINT}."
        )

    def get_col(self, alias: str, output_field: Field[Any, Any] | None = None) -> Col:
        if alias == self.model._meta.db_table and (output_field is None or output_field == self):
            return self.cached_col
        return EncryptedCol(alias, self, output_field)

    @cached_property
    def cached_col(self) -> Col:
        return EncryptedCol(self.model._meta.db_table, self)

    def select_format(self, compiler: Any, sql: str, params: Any) -> Any:
        return sql, params  # the column is TEXT: no JSON casts, whatever the plain type

    # -- partitions ----------------------------------------------------------------------

    @cached_property
    def _partition_attname(self) -> str:
        option = self.partition
        assert isinstance(option, str)
        return self.model._meta.get_field(option).attname  # type: ignore[union-attr]

    def partition_of(self, instance: Model) -> str:
        """The partition whose key protects this field's value on ``instance``."""
        option = self.partition
        if option is None:
            partition_id = _current_partition()
            return partition_id if partition_id is not None else require_partition(_label(self))
        if type(option) is str:
            value = getattr(instance, self._partition_attname)
        else:
            value = option(instance)  # type: ignore[operator]
        if value is None or value == "":
            raise InvalidPartitionError(
                f"{_label(self)}: this row's partition ({self._partition_name}) is empty",
                hint="set it before saving or reading the encrypted value",
            )
        return value if type(value) is str else str(value)

    @property
    def _partition_name(self) -> str:
        option = self.partition
        return option if isinstance(option, str) else getattr(option, "__name__", "callable")

    def _bare_partition(self) -> str:
        """The partition for a value Django passes without its row (writes)."""
        if self.partition is None:
            return require_partition(_label(self))
        raise RowPartitionRequiredError(
            f"{_label(self)} takes its key from each row's {self._partition_name}, but this "
            "value comes without its row (QuerySet.update(), bulk_update(), Value())",
            hint="save the instances (save(), bulk_create()) or use "
            "asherah_django.fields.bulk_update(queryset, objs, fields)",
        )

    def _read_partition(self) -> str:
        """The partition for a value read without its row (values(), values_list())."""
        if self.partition is None:
            return require_partition(_label(self))
        return require_partition(
            f"{_label(self)} (read by values()/values_list(), which have no row to take "
            f"{self._partition_name} from; iterate model instances instead, or open the "
            "session of the tenant)"
        )

    # -- writing -------------------------------------------------------------------------

    def encrypt(self, value: Any, partition_id: str) -> str:
        """The DataRowRecord of plaintext ``value`` under ``partition_id``."""
        data = self.encode(self.normalize(value))
        return session_factory().get_session(partition_id).encrypt(data)

    def pre_save(self, model_instance: Model, add: bool) -> Any:
        value = model_instance.__dict__.get(self.attname, _MISSING)
        if self._auto_now or (add and self._auto_now_add) or value is _MISSING:
            value = super().pre_save(model_instance, add)  # sets it, or loads it
        elif type(value) not in _PLAIN_TYPES:
            if isinstance(value, SealedValue):
                if value.value is UNREAD:
                    return self._keep(model_instance, value)
                if self._unchanged(model_instance, value):
                    return SealedValue(value.record)  # read, not changed: keep its record
                value = value.value
            elif hasattr(value, "resolve_expression"):
                if not isinstance(value, Value):
                    raise FieldError(self._computed_message(value))
                value = value.value  # obj.field = Value(x) means x
                if isinstance(value, SealedValue):
                    return value
        if value is None:
            return None
        partition_id = _current_partition() if self.partition is None else None
        if partition_id is None:
            partition_id = self.partition_of(model_instance)
        data = self.encode(self.normalize(value))
        return SealedValue(session_factory().get_session(partition_id).encrypt(data))

    def _unchanged(self, instance: Model, sealed: SealedValue) -> bool:
        """Whether a decrypted SealedValue may be written back as its own record: it was
        a DataRowRecord, its plaintext cannot have changed in place (not JSON), and a
        row-partitioned field's partition is still the one it was read under."""
        read_under = sealed.partition
        if read_under is None or not self.reuse_records:
            return False
        return self.partition is None or read_under == self.partition_of(instance)

    def _keep(self, instance: Model, sealed: SealedValue) -> SealedValue:
        """A loaded, never-decrypted value being saved again: keep its record as it is.

        Legacy plaintext is encrypted now (``legacy="read"``) or refused. For a
        row-partitioned field the record must belong to the row's current partition
        (it changes when the partition field was reassigned).
        """
        record = sealed.record
        try:
            row = parse_data_row(record)
        except MalformedRecordError:
            plain = self._legacy_value(record)
            return SealedValue(self.encrypt(plain, self.partition_of(instance)))
        if self.partition is not None:
            expected = session_factory().intermediate_key_id(self.partition_of(instance))
            if row.parent.key_id != expected:
                raise PartitionMismatchError(
                    f"{_label(self)}: the stored value belongs to another partition than "
                    f"this row's {self._partition_name}",
                    hint="read the value before changing the partition, then assign it again",
                )
        return SealedValue(record)  # no batch: known to be a record

    def get_prep_value(self, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, SealedValue):
            record = value.record
            if value.batch is None or looks_like_data_row(record):
                return record  # made by pre_save or to_python (loaddata), or read as is
            return self.encrypt(self._legacy_value(record), self._bare_partition())
        if hasattr(value, "resolve_expression"):
            return value
        return self.encrypt(value, self._bare_partition())

    def get_db_prep_value(
        self, value: Any, connection: BaseDatabaseWrapper, prepared: bool = False
    ) -> Any:
        return value if prepared else self.get_prep_value(value)

    def get_db_prep_save(self, value: Any, connection: BaseDatabaseWrapper) -> Any:
        if type(value) is SealedValue and value.batch is None:
            return value.record  # from pre_save: the hot path of writes
        if hasattr(value, "as_sql"):  # bulk_update's Case(When(...)) and other expressions
            self._check_stored_expression(value)
            return value  # its Values are encrypted when compiled (output_field=self)
        return self.get_prep_value(value)

    def _check_stored_expression(self, expression: Any) -> None:
        """Refuse an expression whose result the database would compute in plaintext.

        Allowed: ``Case``/``When``/``Cast``/``ExpressionWrapper`` around values typed as an
        encrypted field (Django encrypts them through this field when compiling) or NULL,
        and columns of encrypted fields (their ciphertext is copied as it is).
        """
        if isinstance(expression, Value):
            output = expression._output_field_or_none  # type: ignore[attr-defined]
            if expression.value is None or isinstance(output, EncryptedField):
                return
        elif isinstance(expression, Col):
            if isinstance(expression.target, EncryptedField):
                return
        elif isinstance(expression, Case):
            for case in expression.cases:
                self._check_stored_expression(case)
            self._check_stored_expression(expression.default)
            return
        elif isinstance(expression, When):
            self._check_stored_expression(expression.result)
            return
        elif isinstance(expression, Cast | ExpressionWrapper):
            for source in expression.get_source_expressions():
                self._check_stored_expression(source)
            return
        raise FieldError(self._computed_message(expression))

    def _computed_message(self, expression: object) -> str:
        return (
            f"cannot store {type(expression).__name__} in encrypted field {_label(self)}: the "
            "database would compute the value in plaintext; assign the Python value instead"
        )

    # -- reading -------------------------------------------------------------------------

    def get_db_converters(self, connection: BaseDatabaseWrapper) -> list[Callable[..., Any]]:
        if not _building_instances():
            return [self.from_db_value]
        batch = ReadBatch()
        pending = batch.pending

        def to_sealed(value: Any, expression: Expression, connection: BaseDatabaseWrapper) -> Any:
            if value is None:
                return None
            pending.append(value)
            return SealedValue(value, batch)

        return [to_sealed]

    def from_db_value(
        self, value: Any, expression: Expression, connection: BaseDatabaseWrapper
    ) -> Any:
        """Decrypt at once with the open session (rows that have no instance)."""
        if value is None:
            return None
        return self._read(session_factory(), value, self._read_partition())

    def open_sealed(self, instance: Model, sealed: SealedValue) -> Any:
        """Decrypt ``sealed`` for ``instance``; it keeps the plaintext, which is returned.

        This is the read hot path: the session comes from the query's batch (which also
        preloads the keys of rows read so far), and anything unusual (legacy plaintext,
        errors) is left to :meth:`_read_record`, which handles it precisely.
        """
        if self.partition is None:
            partition_id = _current_partition()
            if partition_id is None:
                partition_id = require_partition(_label(self))
        else:
            partition_id = self.partition_of(instance)
        batch = sealed.batch
        try:
            if batch is None:
                session = session_factory().get_session(partition_id)
            else:
                cached = None if batch.pending else batch.sessions.get(partition_id)
                session = cached or batch.session(partition_id, session_factory)
            value = self.decode(session.decrypt(sealed.record))
        except Exception:
            if batch is not None:
                batch.factory = None  # (it may have been closed meanwhile)
            value, is_record = self._read_record(session_factory(), sealed.record, partition_id)
            sealed.value = value
            sealed.partition = partition_id if is_record else None
            return value
        sealed.value = value
        sealed.partition = partition_id
        return value

    def _read(self, factory: SessionFactory, record: Any, partition_id: str) -> Any:
        return self._read_record(factory, record, partition_id)[0]

    def _read_record(
        self, factory: SessionFactory, record: Any, partition_id: str
    ) -> tuple[Any, bool]:
        """The value of a stored ``record`` and whether it was a DataRowRecord (not
        legacy plaintext)."""
        if type(record) is not str:
            record = bytes(record).decode("utf-8")
        try:
            data = factory.get_session(partition_id).decrypt(record)
        except MalformedRecordError as exc:
            if looks_like_data_row(record):  # a DataRowRecord, but a broken one
                self._failed(exc)
                raise
            return self._legacy_value(record), False
        except DecryptionError as exc:
            self._failed(exc)
            raise
        try:
            return self.decode(data), True
        except (ValueError, TypeError, ValidationError):
            error = DecryptionError(
                f"{_label(self)}: the decrypted value is not valid {self.plain_type}"
            )
            self._failed(error)
            raise error from None

    def _legacy_value(self, record: str) -> Any:
        if self.legacy != "read":
            error = PlaintextValueError(
                f"{_label(self)} holds a value that is not an Asherah DataRowRecord "
                "(plaintext stored before the field was encrypted?)",
                hint="encrypt stored values with `manage.py asherah_encrypt "
                f"{self.model._meta.label}.{self.name}`, or set legacy='read' on the field",
            )
            self._failed(error)
            raise error
        try:
            value = self.parse_legacy(record)
        except (ValueError, TypeError, ValidationError):
            error = PlaintextValueError(
                f"{_label(self)} holds plaintext that is not valid {self.plain_type}"
            )
            self._failed(error)
            raise error from None
        logger.debug("read a legacy plaintext value of %s", _label(self))
        return value

    def _failed(self, error: Exception) -> None:
        logger.warning("cannot decrypt a value of %s: %s", _label(self), error)
        signals.decryption_failed.send(sender=self.model, model=self.model, field=self, error=error)

    # -- forms, validation, serialization ------------------------------------------------

    def to_python(self, value: Any) -> Any:
        """As the plain field, except that DataRowRecord text becomes a SealedValue.

        That is how ``loaddata`` stores fixture ciphertext unchanged (the instance it builds
        then shows that SealedValue, not plaintext); plaintext fixture values are encrypted
        when saved. Form and model validation use :meth:`clean`, which never does this, so
        text typed into a form is always encrypted, whatever it looks like.
        """
        if type(value) is str and value[:1] == "{" and looks_like_data_row(value):
            return VerbatimValue(value)
        return self.plain_to_python(value)

    def clean(self, value: Any, model_instance: Model | None) -> Any:
        value = self.plain_to_python(value)
        self.validate(value, model_instance)
        self.run_validators(value)
        return value

    def value_from_object(self, obj: Model) -> Any:
        # Django's python serializer (dumpdata json/yaml/jsonl) writes values of
        # "protected" types (numbers, dates) as they are: give it a marker so that it
        # asks value_to_string, which writes the DataRowRecord.
        if sys._getframe(1).f_code is _SERIALIZER_CODE:
            return _FOR_SERIALIZER
        return getattr(obj, self.attname)

    def value_to_string(self, obj: Model) -> str | None:  # type: ignore[override]
        """The DataRowRecord to serialize: the stored one when the value was not changed
        since it was loaded, else a new one. Never the plaintext."""
        value = obj.__dict__.get(self.attname, _MISSING)
        if value is _MISSING:
            obj.refresh_from_db(fields=[self.attname])
            value = obj.__dict__.get(self.attname)
        if value is None:
            return None
        if isinstance(value, SealedValue):
            record = value.record
            if value.value is UNREAD:
                if looks_like_data_row(record):
                    return record
                return self.encrypt(self._legacy_value(record), self.partition_of(obj))
            if self._unchanged(obj, value):
                return record
            value = value.value
        return self.encrypt(value, self.partition_of(obj))


def encrypted_fields(model: type[Model]) -> Sequence[EncryptedField]:
    """The encrypted concrete fields of ``model``."""
    return [f for f in model._meta.concrete_fields if isinstance(f, EncryptedField)]
