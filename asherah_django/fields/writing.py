"""How an encrypted field's values are encrypted and written.

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

Django's python serializer (``dumpdata`` json/yaml) is handed the stored records, whether
or not the values were read; no key is needed to dump.
"""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any, Final

from django.core.exceptions import FieldError
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Model
from django.db.models.expressions import Value

from .. import django_internals
from ..blind_index.options import KEEP
from ..core.errors import DecryptionError, MalformedRecordError, PartitionMismatchError
from ..core.records import looks_like_data_row, parse_data_row
from .options import _current_partition, session_factory, session_for
from .reading import ReadingField
from .sealed import UNREAD, SealedValue
from .sql import check_stored_expression, computed_message, label

_MISSING: Final = object()
_new = object.__new__
#: Plaintext types that need no further inspection on the write path.
_PLAIN_TYPES: Final = frozenset(
    {str, bytes, int, float, bool, dict, list, Decimal, datetime.date, datetime.datetime}
)


class _ForSerializer:
    """What ``value_from_object`` gives Django's python serializer: not a "protected"
    type, so the serializer asks ``value_to_string`` (the stored record) instead."""

    __slots__ = ()


_FOR_SERIALIZER: Final = _ForSerializer()


class WritingField(ReadingField):
    """An encrypted field's write path (see the module docstring)."""

    def encrypt(self, value: Any, partition_id: str, instance: Model | None = None) -> str:
        """The DataRowRecord of plaintext ``value`` under ``partition_id`` (bound to
        ``instance``'s row when the field has ``bind=``)."""
        data = self.encode(self.normalize(value))
        if self.bind is not None:
            data = self._header(instance) + data
        return session_for(partition_id).encrypt(data)

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
        # SealedValue(record), without the Python-level __init__ (once per value written).
        sealed: SealedValue = _new(SealedValue)
        sealed.record, sealed.batch, sealed.value = (
            session_for(partition_id).encrypt(data),
            None,
            UNREAD,
        )
        return sealed

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

    def value_from_object(self, obj: Model) -> Any:
        # Django's python serializer (dumpdata json/yaml/jsonl) writes values of
        # "protected" types (numbers, dates) as they are: give it a marker so that it
        # asks value_to_string, which writes the DataRowRecord (assumption C of
        # django_internals; a serializer reaching here otherwise is refused).
        if django_internals.python_serializer_asking():
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

    def index_plaintext(self, instance: Model, indexed: bool) -> Any:
        """The plaintext its blind index column indexes (see
        :meth:`asherah_django.blind_index.options.SourceField.index_plaintext`)."""
        value = instance.__dict__.get(self.attname, _MISSING)
        if value is _MISSING:
            return KEEP
        if isinstance(value, SealedValue):
            if value.value is UNREAD and (indexed or value.verbatim):
                return KEEP  # unchanged since loaded (or fixture ciphertext)
            value = getattr(instance, self.attname)  # read (decrypts if needed)
        elif isinstance(value, Value):
            value = value.value
        if hasattr(value, "resolve_expression"):
            return KEEP  # refused by the encrypted field itself
        return value
