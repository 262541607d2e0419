"""The SQL of :class:`~asherah_django.metastore.DjangoMetastore`: statement templates, the
``created`` parameter, and reading rows back (whatever the column types of each database).

Only quoted identifiers (the model's table and columns) are interpolated into statements;
every value is a parameter.
"""

from __future__ import annotations

import calendar
import datetime
from collections.abc import Callable, Iterable
from typing import Any, Final

from django.db import DatabaseError

from .core.errors import MalformedRecordError, MetastoreError, UnreadableKeyError
from .core.integrity import ADD_TAG_COLUMN_SQL, TAG_COLUMN
from .core.key_ids import is_internal_id
from .core.records import EnvelopeKeyRecord, KeyMeta

Row = tuple[Any, ...]

MYSQL_DUPLICATE: Final = 1062
MYSQL_RETRYABLE: Final = frozenset({1205, 1213})  # lock wait timeout, deadlock
_EPOCH: Final = datetime.datetime(1970, 1, 1)
_SECOND: Final = datetime.timedelta(seconds=1)
_MIN_CREATED: Final = calendar.timegm((1000, 1, 1, 0, 0, 0))
_MAX_CREATED: Final = calendar.timegm((9999, 12, 31, 23, 59, 59))
HINT: Final = (
    "check that the database is reachable and that the encryption_key table exists "
    "(manage.py migrate asherah_django)"
)


COLUMN_KEYS: Final = {"id": "id", "c": "created", "r": "key_record", "g": TAG_COLUMN}
# Templates; only the quoted table and column names are filled in with str.format.
SQL: Final = {
    "select": "SELECT {id}, {c}, {r} FROM {t}",
    "pair": "({id} = %s AND {c} = %s)",
    "load": "SELECT {id}, {c}, {r} FROM {t} WHERE ({id} = %s AND {c} = %s)",
    "load+sk": "SELECT {id}, {c}, {r} FROM {t} WHERE ({id} = %s AND {c} = %s) OR {id} = %s",
    "latest": "SELECT {id}, {c}, {r} FROM {t} WHERE {id} = %s ORDER BY {c} DESC LIMIT 1",
    "latest+sk": (
        "SELECT {id}, {c}, {r} FROM "
        "(SELECT {id}, {c}, {r} FROM {t} WHERE {id} = %s ORDER BY {c} DESC LIMIT 1) latest_key "
        "UNION ALL SELECT {id}, {c}, {r} FROM {t} WHERE {id} = %s"
    ),
    "insert": "INSERT INTO {t} ({id}, {c}, {r}) VALUES (%s, %s, %s)",
    "insert-if-absent": (
        "INSERT INTO {t} ({id}, {c}, {r}) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING"
    ),
    # Revocation is a compare-and-swap on the record text read ({rt}: the column as text
    # or bytes, whatever its type), so a concurrent rewrap is never undone.
    "load-text": "SELECT {id}, {c}, {rt} FROM {t} WHERE ({id} = %s AND {c} = %s)",
    "revoke": "UPDATE {t} SET {r} = %s WHERE ({id} = %s AND {c} = %s AND {rt} = {pt})",
    "revoke-mysql": (
        "UPDATE {t} SET {r} = %s, {c} = {c} WHERE ({id} = %s AND {c} = %s AND {rt} = {pt})"
    ),
    "delete": "DELETE FROM {t} WHERE {id} = %s",
    "delete-version": "DELETE FROM {t} WHERE ({id} = %s AND {c} = %s)",
    # A rewrap (asherah_erase) is a compare-and-swap like revocation; the tag goes along.
    # (created = created: see revoke-mysql; harmless elsewhere.)
    "rewrap": "UPDATE {t} SET {r} = %s, {c} = {c} WHERE ({id} = %s AND {c} = %s AND {rt} = {pt})",
    "rewrap+tag": (
        "UPDATE {t} SET {r} = %s, {g} = %s, {c} = {c} "
        "WHERE ({id} = %s AND {c} = %s AND {rt} = {pt})"
    ),
    "versions": "SELECT {id}, {c}, {r} FROM {t} WHERE {id} = %s",
    # (created = created: see revoke-mysql; harmless elsewhere.)
    "set-tag": (
        "UPDATE {t} SET {g} = %s, {c} = {c} WHERE ({id} = %s AND {c} = %s) AND {g} IS NULL"
    ),
}


def build_sql(
    name: str, *, quote: Callable[[str], str], vendor: str, table: str, integrity_tags: bool
) -> str:
    """The statement ``name`` of :data:`SQL` for this database and table."""
    names = {"t": quote(table), **{key: quote(column) for key, column in COLUMN_KEYS.items()}}
    if vendor == "mysql":  # byte-exact (the column's collation may ignore case)
        names["rt"], names["pt"] = f"CAST({names['r']} AS BINARY)", "CAST(%s AS BINARY)"
    else:
        names["rt"], names["pt"] = f"CAST({names['r']} AS TEXT)", "%s"
    template = SQL[name]
    if name == "revoke" and vendor == "mysql":
        # Assigning created to itself stops MySQL's ON UPDATE CURRENT_TIMESTAMP, which
        # an old-style TIMESTAMP column may carry, from moving the key.
        template = SQL["revoke-mysql"]
    if integrity_tags:  # the tag column goes along wherever rows are read or written
        template = template.replace("{id}, {c}, {r}", "{id}, {c}, {r}, {g}")
        template = template.replace("{id}, {c}, {rt}", "{id}, {c}, {rt}, {g}")
        template = template.replace("(%s, %s, %s)", "(%s, %s, %s, %s)")
    return template.format(**names)


def created_param(created: int, vendor: str) -> object:
    """``created`` as the naive UTC wall-clock Go and the Rust core bind."""
    if not in_range(created):
        raise MetastoreError(
            f"created {created} is outside the years 1000 to 9999 that the encryption_key "
            "table's timestamp column holds"
        )
    value = _EPOCH + datetime.timedelta(seconds=created)
    if vendor == "sqlite":  # TEXT, exactly as the Rust core's datetime(x,'unixepoch')
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return value


def hint_for(exc: Exception, *, integrity_tags: bool, table: str) -> str:
    """What to do about a failed statement."""
    if integrity_tags and TAG_COLUMN in str(exc):
        return (
            f"KEY_INTEGRITY is sign or require, which needs the {TAG_COLUMN} column: run "
            f"manage.py migrate asherah_django, or on a table you manage yourself "
            f"{ADD_TAG_COLUMN_SQL.replace('encryption_key', table)}"
        )
    return HINT


def parse_rows(
    rows: Iterable[Row], *, table: str, using: str, integrity_tags: bool, lenient_id: str | None
) -> tuple[dict[KeyMeta, EnvelopeKeyRecord], dict[KeyMeta, EnvelopeKeyRecord]]:
    """Rows by ``(id, created)``: the rows asked for, and those of ``lenient_id`` (system key
    rows that came along for the prefetch: malformed ones are skipped, not raised)."""
    collected: dict[KeyMeta, EnvelopeKeyRecord] = {}
    extra: dict[KeyMeta, EnvelopeKeyRecord] = {}
    for key_id, created, key_record, *tags in rows:
        if tags and tags[0] == TAG_COLUMN:
            # SQLite reads a double-quoted name that is no column as a string literal:
            # the table has no integrity_tag column (a real tag starts with "v1:").
            raise MetastoreError(
                f"the metastore table {table!r} in database {using!r} has no {TAG_COLUMN} column",
                hint=hint_for(
                    DatabaseError(TAG_COLUMN), integrity_tags=integrity_tags, table=table
                ),
            )
        if is_internal_id(key_id):
            continue
        lenient = key_id == lenient_id
        try:
            meta = KeyMeta(key_id, epoch(created))
            parsed = record(key_record)
            parsed.tag = tag(tags[0]) if tags else None
            (extra if lenient else collected)[meta] = parsed
        except (MalformedRecordError, ValueError, TypeError, OverflowError) as exc:
            if lenient:
                continue
            raise UnreadableKeyError(
                f"key record {key_id!r} in table {table!r} is malformed: {exc}"
            ) from exc
    return collected, extra


def in_range(created: int) -> bool:
    """Whether ``created`` is a time every supported database's timestamp column holds
    (MySQL's DATETIME starts at year 1000); a key outside it cannot exist."""
    return _MIN_CREATED <= created <= _MAX_CREATED


def epoch(value: object) -> int:
    """A ``created`` column value (naive UTC wall-clock) as epoch seconds."""
    if isinstance(value, bytes):
        value = value.decode("ascii")
    if isinstance(value, str):
        value = datetime.datetime.fromisoformat(value.strip())
    if isinstance(value, datetime.datetime):
        # (timegm(timetuple()) gives the same integer, four times slower: one per key row.)
        return (value.replace(tzinfo=None, microsecond=0) - _EPOCH) // _SECOND
    raise TypeError(f"unexpected created column value of type {type(value).__name__}")


def record(value: object) -> EnvelopeKeyRecord:
    """Parse ``key_record`` whether the column is text, bytes or JSON(B)."""
    if isinstance(value, dict):
        return EnvelopeKeyRecord.from_dict(value, "key record")
    if isinstance(value, memoryview):
        value = bytes(value)
    if isinstance(value, str | bytes):
        return EnvelopeKeyRecord.from_json(value)
    raise MalformedRecordError(f"key record has unexpected type {type(value).__name__}")


def tag(value: object) -> str | None:
    """The ``integrity_tag`` column as text (None when the row has none)."""
    if isinstance(value, bytes | memoryview):
        value = bytes(value).decode("ascii", "replace")
    return value if isinstance(value, str) and value else None


def mysql_code(exc: BaseException | None) -> int | None:
    """The MySQL error number behind a (possibly wrapped) driver exception."""
    while exc is not None:
        args = getattr(exc, "args", ())
        if args and isinstance(args[0], int):
            return args[0]
        exc = exc.__cause__
    return None
