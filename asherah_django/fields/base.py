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
``pre_save(instance)`` (save(), create(), bulk_create(), update_or_create()) encrypts the
attribute with the instance's partition and gives Django a :class:`~.sealed.SealedValue`
holding the record, which ``get_db_prep_save`` passes on unchanged: nothing is encrypted
twice. A value loaded and never read is written back as the record it was (no
decryption); one read but not changed too (except JSON, which can change in place, and a
row whose partition changed). Paths that hand Django a bare value without its row
(``QuerySet.update(field=v)``, ``bulk_update()``'s ``Case(When(pk=..., then=Value(v)))``)
encrypt in ``get_prep_value`` with the open session; a row-partitioned field cannot know
the row there and raises :class:`RowPartitionRequiredError` instead of guessing (use
:func:`asherah_django.fields.bulk_update`). Expressions are passed through to SQL only when
they cannot produce plaintext (``Case``/``When``/``Cast`` around values typed as this field,
NULL, or another encrypted column); anything the database would compute (``F("name")``,
``Lower(...)``, an untyped ``Value``) raises ``FieldError``. ``obj.field = Value(x)`` means x.

Reads
-----
``from_db_value`` gets no instance. When Django is building model instances (ModelIterable,
RawModelIterable; detected once per query, see :func:`~.sql.building_instances`), the converter
stores a :class:`~.sealed.SealedValue` in the instance's ``__dict__`` and the data
descriptor :class:`~.descriptors.EncryptedAttribute` decrypts it on first access, with the
row's partition at hand, and keeps the plaintext in it. Before the first decryption of a
query column, the keys of all its rows read so far are preloaded in one batched metastore
round trip (:class:`~.sealed.ReadBatch`): N rows over P partitions cost one key query
cold (the Django metastore fetches the system key with them), none warm.
``values()``/``values_list()`` rows have no instance: they are decrypted at once with the
open session. Django's python serializer (``dumpdata`` json/yaml) is handed the stored
records, whether or not the values were read; no key is needed to dump.

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

Bound values
------------
A field with ``bind=`` (:mod:`~asherah_django.fields.bind`) puts a header naming its column
and row fields in front of the plaintext before encrypting it, and reads only values whose
header is the one of the row at hand (:class:`~asherah_django.core.errors.BindingMismatchError`
otherwise). Rows without an instance (``values()``) can verify a column-only binding only.

Lookups other than ``isnull`` (and ``=None``), transforms and ordering raise ``FieldError``
naming the field and pointing to searchable fields. A field with ``blind_index=...`` also
answers ``exact``, ``in`` (and ``iexact`` when it casefolds) through its blind index
column, and may be ``unique``; see :mod:`asherah_django.fields.blind`.

Nothing is stored on the field per call: per-query state lives in the converter's closure
(its ReadBatch), per-row state in the instance's ``__dict__``, the partition in a
contextvar.
"""

from __future__ import annotations

import datetime
import logging
import sys
from collections.abc import Callable, Sequence
from decimal import Decimal
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar, Final

from django.core import checks
from django.core.exceptions import FieldError, ValidationError
from django.core.serializers import python as python_serializer
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, Model
from django.db.models.expressions import Col, Expression, Value
from django.utils.functional import cached_property

from .. import signals
from ..context import _partition as _partition_var
from ..context import require_partition
from ..core.binding import unbind
from ..core.errors import (
    AsherahError,
    DecryptionError,
    InvalidPartitionError,
    MalformedRecordError,
    PartitionMismatchError,
)
from ..core.records import looks_like_data_row, parse_data_row
from . import bind as binding
from . import blind
from .checks import check_field
from .descriptors import EncryptedAttribute
from .sealed import UNREAD, ReadBatch, SealedValue, VerbatimValue
from .sql import (
    SEARCHABLE_HINT,
    EncryptedCol,
    EncryptedExact,
    EncryptedIsNull,
    building_instances,
    check_stored_expression,
    computed_message,
    label,
)

if TYPE_CHECKING:
    from ..core.session import SessionFactory

    _Field = Field[Any, Any]
else:
    _Field = Field

logger = logging.getLogger("asherah_django.fields")


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


class EncryptedField(_Field):
    """Base class of the encrypted fields; see the module docstring for the data flow.

    Options (besides the usual field options):

    - ``partition``: ``None`` (the open session), the name of another field of the model
      (``"tenant_id"``, or a foreign key ``"tenant"``), or a callable
      ``(instance) -> str``. The callable must be importable (a module-level function)
      for migrations.
    - ``legacy``: ``"reject"`` (default) or ``"read"``, for stored values that are not
      DataRowRecords (see the module docstring).

    - ``blind_index``: ``True`` or a :class:`~asherah_django.fields.blind.BlindIndex`:
      keep a keyed index of the value in a column of its own (``<name>_bidx``), so that
      exact-match lookups and ``unique=True`` work (:mod:`~asherah_django.fields.blind`).
    - ``bind``: ``True``, a tuple of row field names or a
      :class:`~asherah_django.fields.bind.Bind`: values decrypt only in the column (and
      row) they were written for (:mod:`~asherah_django.fields.bind`).

    ``db_index`` and ``primary_key`` are refused by system checks, and ``unique`` too
    unless the field has a blind index (the index column is then the unique one).
    """

    descriptor_class = EncryptedAttribute
    #: Marks encrypted fields (checks and other modules test it without importing this).
    is_encrypted: ClassVar[bool] = True
    #: Whether a value read and not reassigned may be written back as the record it came
    #: from; False for mutable plaintexts (JSON) that can change in place.
    reuse_records: ClassVar[bool] = True
    #: The plaintext's type name, for messages and validators; the column is TEXT.
    plain_type: ClassVar[str] = "text"
    #: Whether ``blind_index=`` is allowed (False where equality would reveal the value,
    #: or where the encoding is not canonical).
    blind_index_supported: ClassVar[bool] = True
    #: Whether the blind index normalises text (``strip``/``casefold``), and their defaults.
    blind_index_text: ClassVar[bool] = False
    blind_index_strip: ClassVar[bool] = False
    blind_index_casefold: ClassVar[bool] = False

    def __init__(
        self,
        *args: Any,
        partition: str | Callable[[Any], object] | None = None,
        legacy: str = "reject",
        blind_index: bool | blind.BlindIndex | None = None,
        bind: bool | Sequence[str] | binding.Bind | None = None,
        **kwargs: Any,
    ) -> None:
        self.partition = partition
        self.bind: binding.Bind | None = binding.normalize(bind)
        self.legacy = legacy
        if blind_index is True:
            blind_index = blind.BlindIndex()
        self.blind_index: blind.BlindIndex | None = blind_index or None
        #: ``unique=True`` as given: with a blind index, the index column is UNIQUE.
        self.blind_unique: bool = bool(blind_index) and bool(kwargs.get("unique"))
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
        if self.blind_index is not None:
            kwargs["blind_index"] = True if self.blind_index.is_default else self.blind_index
            # The schema's UNIQUE goes on the index column (its field says so); the
            # ciphertext column gets none.
            kwargs.pop("unique", None)
        if self.bind is not None:
            kwargs["bind"] = self.bind
        cls = type(self)
        if cls.__module__.startswith("asherah_django.fields"):
            path = f"asherah_django.fields.{cls.__qualname__}"
        return name, path, args, kwargs

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        return [*super().check(**kwargs), *check_field(self)]

    def contribute_to_class(
        self, cls: type[Model], name: str, private_only: bool = False, **kwargs: Any
    ) -> None:
        super().contribute_to_class(cls, name, private_only=private_only, **kwargs)
        self.__dict__.pop("blind_config", None)  # (a copy from an abstract parent)
        self.__dict__.pop("binder", None)
        if self.blind_index is not None:
            blind.attach(self, cls)

    @property  # (Django's is a cached_property; this one depends on who asks)
    def unique(self) -> bool:
        """As Django's, except that a schema editor never sees a blind-indexed field
        unique: the UNIQUE constraint belongs to its index column, not to its ciphertext."""
        if self.primary_key:
            return True
        if not self._unique:  # type: ignore[attr-defined]
            return False
        return self.blind_index is None or not blind.schema_editor_asking()

    @cached_property
    def blind_config(self) -> blind.IndexConfig:
        """The blind index options resolved for this field (only with ``blind_index``)."""
        return blind.resolve(self)

    @cached_property
    def binder(self) -> binding.Binder:
        """The ``bind=`` options resolved for this field (only with ``bind``)."""
        return binding.resolve(self)

    def _header(self, instance: Model | None) -> bytes:
        """A bound field's header for ``instance``'s row (None: a value without its row)."""
        binder = self.binder
        return binder.header_without_row() if instance is None else binder.header_of(instance)

    # -- lookups and ordering ------------------------------------------------------------

    def get_lookup(self, lookup_name: str) -> Any:
        if lookup_name == "isnull":
            return EncryptedIsNull
        if self.blind_index is not None:
            if lookup_name == "exact":
                return blind.BlindExact
            if lookup_name == "in":
                return blind.BlindIn
            if lookup_name == "iexact" and self.blind_config.casefold:
                return blind.BlindIExact
            raise FieldError(
                f"unsupported lookup {lookup_name!r} on encrypted field {label(self)}: its "
                "blind index answers only exact matches (=, in, get(); iexact when it "
                "casefolds) and isnull; the database holds only ciphertext and a keyed "
                "index, so it cannot search, compare or sort the values."
            )
        if lookup_name == "exact":
            return EncryptedExact
        raise FieldError(
            f"unsupported lookup {lookup_name!r} on encrypted field {label(self)}: "
            f"{SEARCHABLE_HINT}."
        )

    def get_transform(self, lookup_name: str) -> Any:
        raise FieldError(
            f"unsupported transform {lookup_name!r} on encrypted field {label(self)}: "
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
            return partition_id if partition_id is not None else require_partition(label(self))
        if type(option) is str:
            value = getattr(instance, self._partition_attname)
        else:
            value = option(instance)  # type: ignore[operator]
        if value is None or value == "":
            raise InvalidPartitionError(
                f"{label(self)}: this row's partition ({self._partition_name}) is empty",
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
            return require_partition(label(self))
        raise RowPartitionRequiredError(
            f"{label(self)} takes its key from each row's {self._partition_name}, but this "
            "value comes without its row (QuerySet.update(), bulk_update(), Value())",
            hint="save the instances (save(), bulk_create()) or use "
            "asherah_django.fields.bulk_update(queryset, objs, fields)",
        )

    def _read_partition(self) -> str:
        """The partition for a value read without its row (values(), values_list())."""
        if self.partition is None:
            return require_partition(label(self))
        return require_partition(
            f"{label(self)} (read by values()/values_list(), which have no row to take "
            f"{self._partition_name} from; iterate model instances instead, or open the "
            "session of the tenant)"
        )

    # -- writing -------------------------------------------------------------------------

    def encrypt(self, value: Any, partition_id: str, instance: Model | None = None) -> str:
        """The DataRowRecord of plaintext ``value`` under ``partition_id`` (bound to
        ``instance``'s row when the field has ``bind=``)."""
        data = self.encode(self.normalize(value))
        if self.bind is not None:
            data = self._header(instance) + data
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
                    raise FieldError(computed_message(self, value))
                value = value.value  # obj.field = Value(x) means x
                if isinstance(value, SealedValue):
                    return value
        if value is None:
            return None
        partition_id = _current_partition() if self.partition is None else None
        if partition_id is None:
            partition_id = self.partition_of(model_instance)
        data = self.encode(self.normalize(value))
        if self.bind is not None:
            data = self.binder.header_of(model_instance) + data
        return SealedValue(session_factory().get_session(partition_id).encrypt(data))

    def _unchanged(self, instance: Model, sealed: SealedValue) -> bool:
        """Whether a decrypted SealedValue may be written back as its own record: it was
        a DataRowRecord, its plaintext cannot have changed in place (not JSON), and a
        row-partitioned field's partition is still the one it was read under."""
        read_under = sealed.partition
        if read_under is None or not self.reuse_records:
            return False
        if self.bind is not None:
            # A bound field's record is kept only if it was bound, to this very row.
            read_as = getattr(sealed, "binding", None)
            if read_as is None or read_as != self.binder.header_of(instance):
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
            return SealedValue(self.encrypt(plain, self.partition_of(instance), instance))
        if self.bind is not None and self.binder.by_row:
            # The row fields it is bound to may have changed since it was loaded: a
            # record kept as it is would then never decrypt again. Verify it.
            try:
                self._read_record(session_factory(), record, self.partition_of(instance), instance)
            except DecryptionError as exc:
                raise type(exc)(
                    f"{label(self)}: the stored value cannot be kept as it is ({exc.args[0]})",
                    hint="read the value before changing the row fields it is bound to "
                    f"({', '.join(self.binder.attnames)}) or its partition, then save",
                ) from None
        if self.partition is not None:
            expected = session_factory().intermediate_key_id(self.partition_of(instance))
            if row.parent.key_id != expected:
                raise PartitionMismatchError(
                    f"{label(self)}: the stored value belongs to another partition than "
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
        return self.encrypt(value, self._bare_partition())  # (bound: column-only bindings)

    def get_db_prep_value(
        self, value: Any, connection: BaseDatabaseWrapper, prepared: bool = False
    ) -> Any:
        return value if prepared else self.get_prep_value(value)

    def get_db_prep_save(self, value: Any, connection: BaseDatabaseWrapper) -> Any:
        if type(value) is SealedValue and value.batch is None:
            return value.record  # from pre_save: the hot path of writes
        if hasattr(value, "as_sql"):  # bulk_update's Case(When(...)) and other expressions
            check_stored_expression(self, value)
            return value  # its Values are encrypted when compiled (output_field=self)
        return self.get_prep_value(value)

    # -- reading -------------------------------------------------------------------------

    def get_db_converters(self, connection: BaseDatabaseWrapper) -> list[Callable[..., Any]]:
        if not building_instances():
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
        if self.bind is not None:
            self.binder.header_without_row()  # refuses a row binding: fail closed
        if self._is_legacy_readable(value) and _current_partition() is None:
            return self._legacy_value(value)
        return self._read(session_factory(), value, self._read_partition())

    def _is_legacy_readable(self, record: Any) -> bool:
        """Whether ``record`` is legacy plaintext this field reads (``legacy="read"``)."""
        return self.legacy == "read" and type(record) is str and not looks_like_data_row(record)

    def open_sealed(self, instance: Model, sealed: SealedValue) -> Any:
        """Decrypt ``sealed`` for ``instance``; it keeps the plaintext, which is returned.

        This is the read hot path: the session comes from the query's batch (which also
        preloads the keys of rows read so far), and anything unusual (legacy plaintext,
        errors) is left to :meth:`_read_record`, which handles it precisely.
        """
        if self.bind is not None:
            return self._open_bound(instance, sealed)
        if self.partition is None:
            partition_id = _current_partition()
            if partition_id is None:
                if self._is_legacy_readable(sealed.record):  # plaintext needs no key
                    sealed.value = value = self._legacy_value(sealed.record)
                    sealed.partition = None
                    return value
                partition_id = require_partition(label(self))
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

    def _open_bound(self, instance: Model, sealed: SealedValue) -> Any:
        """:meth:`open_sealed` of a field with ``bind=``: the record's header must be the
        one of this column and ``instance``'s row. The usual case inline; anything else
        (unbound or moved records, legacy plaintext, errors) through :meth:`_read_record`."""
        no_session = self.partition is None and _current_partition() is None
        if no_session and self._is_legacy_readable(sealed.record):  # plaintext needs no key
            sealed.value = value = self._legacy_value(sealed.record)
            sealed.partition = None
            return value
        partition_id = self.partition_of(instance)
        batch = sealed.batch
        try:
            if batch is None:
                session = session_factory().get_session(partition_id)
            else:
                cached = None if batch.pending else batch.sessions.get(partition_id)
                session = cached or batch.session(partition_id, session_factory)
            header = self.binder.header_of(instance)
            data = session.decrypt(sealed.record)
            if data.startswith(header):
                value = self.decode(data[len(header) :])
                sealed.value, sealed.partition, sealed.binding = value, partition_id, header
                return value
        except Exception:
            if batch is not None:
                batch.factory = None  # (it may have been closed meanwhile)
        value, is_record = self._read_record(
            session_factory(), sealed.record, partition_id, instance, sealed
        )
        sealed.value = value
        sealed.partition = partition_id if is_record else None
        return value

    def _read(self, factory: SessionFactory, record: Any, partition_id: str) -> Any:
        return self._read_record(factory, record, partition_id)[0]

    def _read_record(
        self,
        factory: SessionFactory,
        record: Any,
        partition_id: str,
        instance: Model | None = None,
        sealed: SealedValue | None = None,
    ) -> tuple[Any, bool]:
        """The value of a stored ``record`` and whether it was a DataRowRecord (not
        legacy plaintext). A bound field's record is verified against ``instance``'s row
        (column only when None) and, with ``sealed``, the header is noted in it."""
        if type(record) is not str:
            record = bytes(record).decode("utf-8")
        try:
            data = factory.get_session(partition_id).decrypt(record)
            if self.bind is not None:
                header = self._header(instance)
                opened = unbind(header, data, accept_unbound=self.binder.accept_unbound)
                if sealed is not None:
                    sealed.binding = header if len(opened) != len(data) else None
                data = opened
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
                f"{label(self)}: the decrypted value is not valid {self.plain_type}"
            )
            self._failed(error)
            raise error from None

    def _legacy_value(self, record: str) -> Any:
        if self.legacy != "read":
            error = PlaintextValueError(
                f"{label(self)} holds a value that is not an Asherah DataRowRecord "
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
                f"{label(self)} holds plaintext that is not valid {self.plain_type}"
            )
            self._failed(error)
            raise error from None
        logger.debug("read a legacy plaintext value of %s", label(self))
        return value

    def _failed(self, error: Exception) -> None:
        logger.warning("cannot decrypt a value of %s: %s", label(self), error)
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
        if self.blind_unique and not self.unique and model_instance is not None:
            blind.validate_unique_in_partition(self, value, model_instance)
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
                return self.encrypt(self._legacy_value(record), self.partition_of(obj), obj)
            if self._unchanged(obj, value):
                return record
            value = value.value
        return self.encrypt(value, self.partition_of(obj), obj)


def encrypted_fields(model: type[Model]) -> Sequence[EncryptedField]:
    """The encrypted concrete fields of ``model``."""
    return [f for f in model._meta.concrete_fields if isinstance(f, EncryptedField)]
