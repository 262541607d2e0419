"""A test-only metastore over the standard library's sqlite3, in the Rust core's layout.

The Rust core (the ``asherah`` wheel) creates ``encryption_key(id TEXT, created
TIMESTAMP, key_record TEXT, PRIMARY KEY (id, created))`` and writes ``created`` as UTC
text ``YYYY-MM-DD HH:MM:SS``. Sharing one file proves the two implementations agree on
the table, the timestamps and the records.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from datetime import UTC, datetime

from asherah_django.core import EnvelopeKeyRecord, KeyMeta

SCHEMA = """CREATE TABLE IF NOT EXISTS encryption_key (
    id TEXT NOT NULL,
    created TIMESTAMP NOT NULL,
    key_record TEXT NOT NULL,
    PRIMARY KEY (id, created)
)"""


def to_column(created: int) -> str:
    return datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%d %H:%M:%S")


class SqliteMetastore:
    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA busy_timeout = 5000")
        self._db.execute(SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def __del__(self) -> None:
        # Tests often drop a store without closing it; Python 3.13 turns a connection left to
        # the garbage collector into a ResourceWarning (an error here) in whichever test runs.
        db = getattr(self, "_db", None)
        if db is not None:
            db.close()

    def load(self, key_id: str, created: int) -> EnvelopeKeyRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT key_record FROM encryption_key WHERE id = ? AND created = ?",
                (key_id, to_column(created)),
            ).fetchone()
        return None if row is None else EnvelopeKeyRecord.from_json(row[0])

    def load_latest(self, key_id: str) -> EnvelopeKeyRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT key_record FROM encryption_key WHERE id = ? ORDER BY created DESC LIMIT 1",
                (key_id,),
            ).fetchone()
        return None if row is None else EnvelopeKeyRecord.from_json(row[0])

    def load_many(self, metas: Iterable[KeyMeta]) -> dict[KeyMeta, EnvelopeKeyRecord]:
        return {m: r for m in metas if (r := self.load(m.key_id, m.created)) is not None}

    def store(self, key_id: str, created: int, record: EnvelopeKeyRecord) -> bool:
        with self._lock:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO encryption_key (id, created, key_record) VALUES (?, ?, ?)",
                (key_id, to_column(created), record.to_json()),
            )
        return cursor.rowcount == 1

    def rows(self) -> list[tuple[str, str, str]]:
        with self._lock:
            return self._db.execute("SELECT id, created, key_record FROM encryption_key").fetchall()
