"""Values read from the database but not decrypted yet, and batched key loading.

When Django builds model instances from a query, an encrypted column's text becomes a
:class:`SealedValue` in the instance's ``__dict__`` instead of being decrypted at once
(``from_db_value`` gets no instance, so it cannot know a row's partition). The field's
descriptor opens it on first attribute access, with the instance at hand.

All sealed values of one query column share a :class:`ReadBatch`. The first value opened
hands every record of the batch not yet seen to :func:`preload`, which loads the
intermediate keys they name in one batched metastore round trip (plus one for their
system keys). So reading N rows over P partitions costs at most two metastore queries
with cold caches, whatever N and P, and none with warm ones. With ``QuerySet.iterator()``
rows arrive one chunk at a time and each access preloads only the rows seen so far.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ..core.errors import MalformedRecordError
from ..core.records import KeyMeta, parse_data_row

if TYPE_CHECKING:
    from ..core.session import Session, SessionFactory

__all__ = ["UNREAD", "ReadBatch", "SealedValue", "VerbatimValue", "preload"]

_PARENT = '"ParentKeyMeta":'


class _Unread:
    __slots__ = ()

    def __repr__(self) -> str:
        return "UNREAD"


#: ``SealedValue.value`` before the value is decrypted.
UNREAD: Any = _Unread()


class SealedValue:
    """A stored encrypted-column value, as the database returned it, not decrypted.

    ``record`` is the column's text: a DataRowRecord, or legacy plaintext. Its ``repr``
    never shows it. Writing a SealedValue back stores ``record`` unchanged, which is how
    ``save()`` leaves untouched values alone.

    Once decrypted, it keeps the plaintext in ``value`` (``UNREAD`` until then) and the
    partition it was read under in ``partition`` (``None`` for legacy plaintext), so that
    a value read but not changed is saved, and dumped, as the record it came from.
    """

    __slots__ = ("batch", "binding", "partition", "record", "value")
    #: See :class:`VerbatimValue`.
    verbatim = False

    def __init__(self, record: str, batch: ReadBatch | None = None) -> None:
        self.record = record
        self.batch = batch
        self.value: Any = UNREAD
        self.partition: str | None  # set when decrypted
        #: For a bound field, set when decrypted: the header the record was verified
        #: against (None for an unbound record). Unset otherwise (read with getattr).
        self.binding: bytes | None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} (not decrypted)>"

    def __reduce__(self) -> tuple[Any, ...]:
        if self.value is not UNREAD:  # keep what was read (and maybe changed in place)
            binding = getattr(self, "binding", None)
            return _opened, (self.record, self.value, self.partition, binding)
        return type(self), (self.record,)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SealedValue):
            return self.record == other.record
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.record)


class VerbatimValue(SealedValue):
    """A DataRowRecord given to the field as text (a fixture value, through
    ``to_python``). The attribute returns it as it is rather than decrypting it, because
    ``loaddata``'s raw save reads attributes to store them; it is stored unchanged."""

    __slots__ = ()
    verbatim = True


def _opened(
    record: str, value: Any, partition: str | None, binding: bytes | None = None
) -> SealedValue:
    sealed = SealedValue(record)
    sealed.value, sealed.partition, sealed.binding = value, partition, binding
    return sealed


class ReadBatch:
    """Per query column: the records whose keys are not preloaded yet, and the factory
    and sessions its values are decrypted with (looked up once, not once per row).

    ``partition`` and ``decrypt`` are the partition last opened and its session's
    ``decrypt``: the descriptor's inline path (:class:`~.descriptors.EncryptedAttribute`)
    uses them for the next value of the same partition, with nothing looked up.
    """

    __slots__ = ("decrypt", "factory", "partition", "pending", "sessions")

    def __init__(self) -> None:
        self.pending: list[str] = []
        self.factory: SessionFactory | None = None
        self.sessions: dict[str, Session] = {}
        self.partition: str | None = None
        self.decrypt: Callable[[str], bytes] | None = None

    def session(self, partition_id: str, get_factory: Callable[[], SessionFactory]) -> Session:
        """The session for ``partition_id``, after preloading the pending records' keys."""
        factory = self.factory
        if factory is None or factory.closed:
            factory = self.factory = get_factory()
            self.sessions.clear()
        if self.pending:
            self.flush(factory)
        session = self.sessions.get(partition_id)
        if session is None:
            session = self.sessions[partition_id] = factory.get_session(partition_id)
        self.partition, self.decrypt = partition_id, session.decrypt
        return session

    def flush(self, factory: SessionFactory) -> None:
        """Preload the keys of every pending record (one batched metastore round trip)."""
        pending = self.pending  # the query's converter keeps appending to this list
        records = pending[:]
        if not records:
            return
        del pending[: len(records)]
        if len(records) > 1:  # a single record loads its own key when decrypted
            preload(factory, records)


def preload(factory: SessionFactory, records: Iterable[str]) -> None:
    """Load, in one batched round trip, the intermediate keys ``records`` need."""
    factory.preload(key_metas(records))


def key_metas(records: Iterable[str]) -> set[KeyMeta]:
    """The intermediate keys named by ``records`` (legacy plaintext is skipped).

    Records in the compact canonical layout are sliced (the ``ParentKeyMeta`` object, one
    small ``json.loads`` per distinct key); anything else takes the full parser.
    """
    seen: set[str] = set()
    metas: set[KeyMeta] = set()
    for record in records:
        start = record.find(_PARENT, 100, 160)  # where canonical records have it
        if start < 0:
            start = record.find(_PARENT)
        if start >= 0:
            start += len(_PARENT)
            end = record.find("}", start) + 1
            chunk = record[start:end]
            if chunk in seen:
                continue
            meta = _meta_from_json(chunk)
            if meta is not None:  # else a KeyId holding "}" cut it short: parse in full
                seen.add(chunk)
                metas.add(meta)
                continue
        try:
            metas.add(parse_data_row(record).parent)
        except MalformedRecordError:
            continue
    return metas


def _meta_from_json(chunk: str) -> KeyMeta | None:
    try:
        obj: Any = json.loads(chunk)
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    key_id, created = obj.get("KeyId"), obj.get("Created")
    if not isinstance(key_id, str) or not key_id or type(created) is not int:
        return None
    return KeyMeta(key_id, created)
