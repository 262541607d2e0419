"""How an encrypted field's stored values are read and decrypted.

``from_db_value`` gets no instance. When Django is building model instances (ModelIterable,
RawModelIterable; detected once per query, see
:func:`~asherah_django.django_internals.building_instances`), the converter
stores a :class:`~.sealed.SealedValue` in the instance's ``__dict__`` and the data
descriptor :class:`~.descriptors.EncryptedAttribute` decrypts it on first access, with the
row's partition at hand, and keeps the plaintext in it. Before the first decryption of a
query column, the keys of all its rows read so far are preloaded in one batched metastore
round trip (:class:`~.sealed.ReadBatch`): N rows over P partitions cost one key query
cold (the Django metastore fetches the system key with them), none warm.
``values()``/``values_list()`` rows have no instance: they are decrypted at once with the
open session.

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

Bound values (``bind=``) are read only when their header is the one of the row at hand;
rows without an instance (``values()``) can verify a column-only binding only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Model
from django.db.models.expressions import Expression

from .. import django_internals, signals
from ..context import require_partition
from ..core.binding import unbind
from ..core.errors import DecryptionError, MalformedRecordError
from ..core.records import looks_like_data_row
from .options import (
    OptionsField,
    PlaintextValueError,
    _current_partition,
    session_factory,
    session_for,
)
from .sealed import UNREAD, ReadBatch, SealedValue
from .sql import label

if TYPE_CHECKING:
    from ..core.session import SessionFactory

logger = logging.getLogger("asherah_django.fields")


class ReadingField(OptionsField):
    """An encrypted field's read path (see the module docstring)."""

    def get_db_converters(self, connection: BaseDatabaseWrapper) -> list[Callable[..., Any]]:
        if not django_internals.building_instances():
            return [self._values_converter()]
        batch = ReadBatch()
        pend = batch.pending.append
        new = object.__new__

        def to_sealed(value: Any, expression: Expression, connection: BaseDatabaseWrapper) -> Any:
            if value is None:
                return None
            pend(value)
            # SealedValue(value, batch), without the Python-level __init__ (once per row).
            sealed: SealedValue = new(SealedValue)
            sealed.record, sealed.batch, sealed.value = value, batch, UNREAD
            return sealed

        return [to_sealed]

    def _values_converter(self) -> Callable[..., Any]:
        """The converter of a query without instances (``values()``): decrypts at once.

        For a field without ``partition=`` or ``bind=``, the open partition's session is
        looked up once per query (again when the partition changes), and each value costs
        its decryption; anything unusual (no partition open, legacy plaintext, any error)
        goes to :meth:`from_db_value`, which handles and reports it precisely.
        """
        if self.partition is not None or self.bind is not None:
            return self.from_db_value
        slow = self.from_db_value
        decode = self.decode
        # The partition last seen and its session's decrypt (a list: one query's state).
        last: list[Any] = [None, None]

        def from_db(value: Any, expression: Expression, connection: BaseDatabaseWrapper) -> Any:
            if value is None:
                return None
            partition_id = _current_partition()
            if partition_id is not None:
                try:
                    if partition_id != last[0]:
                        last[1] = session_for(partition_id).decrypt
                        last[0] = partition_id
                    return decode(last[1](value))
                except Exception:
                    last[0] = None  # (the factory may have been closed meanwhile)
            return slow(value, expression, connection)

        return from_db

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
                session = session_for(partition_id)
            else:
                session = batch.session(partition_id, session_factory)
            value = self.decode(session.decrypt(sealed.record))
        except Exception:
            if batch is not None:
                batch.factory = batch.partition = None  # (it may have been closed meanwhile)
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
        no_scope = self.partition is None and _current_partition() is None
        if no_scope and self._is_legacy_readable(sealed.record):  # plaintext needs no key
            sealed.value = value = self._legacy_value(sealed.record)
            sealed.partition = None
            return value
        partition_id = self.partition_of(instance)
        batch = sealed.batch
        try:
            if batch is None:
                session = session_for(partition_id)
            else:
                session = batch.session(partition_id, session_factory)
            header = self.binder.header_of(instance)
            data = session.decrypt(sealed.record)
            if data.startswith(header):
                value = self.decode(data[len(header) :])
                sealed.value, sealed.partition, sealed.binding = value, partition_id, header
                return value
        except Exception:
            if batch is not None:
                batch.factory = batch.partition = None  # (it may have been closed meanwhile)
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
