"""Key rows for ``asherah_erase``: read every row, compare-and-swap one, delete one.

Rows are read with a SELECT on the metastore's database alias, because the ``integrity_tag``
column (present with ``KEY_INTEGRITY`` sign or require) is not a model field; every write
goes through the metastore (:meth:`~asherah_django.metastore.DjangoMetastore.rewrap`,
:meth:`~asherah_django.metastore.DjangoMetastore.delete_version`). A swap changes a row only
if it still holds the record text that was read, so a concurrent revocation or a second
erase is never overwritten: the row is read again on the next sweep.
"""

from __future__ import annotations

import calendar
import datetime
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.db import connections

from ..core.integrity import TAG_COLUMN
from ..core.key_ids import is_internal_id
from ..core.records import EnvelopeKeyRecord, KeyMeta

if TYPE_CHECKING:
    from ..metastore import DjangoMetastore


@dataclass(frozen=True)
class KeyRow:
    """One row of the key table, as read (``text`` is what a swap compares)."""

    meta: KeyMeta
    text: str
    tag: str | None

    def record(self) -> EnvelopeKeyRecord:
        record = EnvelopeKeyRecord.from_json(self.text)
        record.tag = self.tag
        return record


def _epoch(value: object) -> int:
    if isinstance(value, str):
        value = datetime.datetime.fromisoformat(value)
    assert isinstance(value, datetime.datetime)
    return calendar.timegm(value.replace(tzinfo=None).timetuple())


def read_rows(store: DjangoMetastore, *, key_id: str | None = None) -> Iterator[KeyRow]:
    """Every key row (or every version of ``key_id``), internal rows left out."""
    quote = connections[store.using].ops.quote_name
    tag = f", {quote(TAG_COLUMN)}" if store.integrity_tags else ""
    sql = f"SELECT id, created, key_record{tag} FROM {quote(store.table)}"  # noqa: S608
    params: list[str] = []
    if key_id is not None:
        sql += " WHERE id = %s"
        params.append(key_id)
    with connections[store.using].cursor() as cursor:
        cursor.execute(sql + " ORDER BY id, created", params)
        rows = cursor.fetchall()
    for row in rows:
        if is_internal_id(row[0]):
            continue
        text = row[2] if isinstance(row[2], str) else bytes(row[2]).decode("utf-8")
        yield KeyRow(KeyMeta(row[0], _epoch(row[1])), text, row[3] if tag else None)


def swap(store: DjangoMetastore, row: KeyRow, record: EnvelopeKeyRecord) -> bool:
    """Replace ``row``'s record (and tag) if the row still holds what was read."""
    return store.rewrap(row.meta.key_id, row.meta.created, row.text, record)


def delete(store: DjangoMetastore, meta: KeyMeta) -> bool:
    """Delete exactly the row ``meta``."""
    return store.delete_version(meta.key_id, meta.created)
