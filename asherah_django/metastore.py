"""DjangoMetastore: Asherah's metastore in the ``encryption_key`` table of a Django database.

Transaction rule
----------------
A key row is committed on its own, before the value it protects can be committed, and is
never rolled back by the caller's transaction. Key reads and writes therefore do not run
on the caller's connection but on a dedicated autocommit connection per thread to the same
database (``ASHERAH["DATABASE"]``, default ``"default"``). This guarantees that

* every stored value names a key that is durable: when the caller's transaction rolls back
  after an encrypt, its values vanish but the (now unused) key stays, and the key caches
  never hold a key the database lost;
* after a lost insert race (two processes creating the same key in the same minute) the
  reload sees the winner's committed row, even under MySQL's REPEATABLE READ, where a read
  inside the caller's transaction would keep seeing its old snapshot;
* a caller's long transaction never holds locks on key rows that other processes wait for.

The dedicated connections use the alias's settings with ``AUTOCOMMIT`` forced on. Like
Django's own, they are opened on first use, checked and closed at request start and end
(``CONN_MAX_AGE``, ``CONN_HEALTH_CHECKS``; ``asherah_django.runtime.connect_signals``),
closed when their thread has ended, closed by :meth:`DjangoMetastore.close`, and abandoned
(never closed, so the parent's sessions survive) in a child process after ``fork()``.
A stale connection is replaced and the query retried once.

SQLite is the exception: it allows a single writer, so a second connection would wait for
the caller's write lock. There key operations use the caller's connection; a key created
inside the caller's transaction commits or rolls back with it (inserted in a savepoint), and
:meth:`DjangoMetastore.take_rolled_back` reports keys whose transaction rolled back so that
``asherah_django.runtime`` drops them from the key caches before the next use. A value
encrypted inside a rolled-back SQLite transaction is rolled back with it if it was stored
in the same database; one kept elsewhere cannot be decrypted. Use PostgreSQL or MySQL in
production.

Inserts are insert-if-absent: ``INSERT ... ON CONFLICT DO NOTHING`` on PostgreSQL and
SQLite; on MySQL/MariaDB a plain ``INSERT`` whose duplicate-key error (1062) means "already
there" (``INSERT IGNORE`` would also silence truncation errors). Database errors become
:class:`~asherah_django.core.errors.MetastoreError`.

Keys on another database
------------------------
``ASHERAH = {"DATABASE": "keys", ...}`` puts the table on the ``keys`` alias. The metastore
always uses that alias; route the model there for migrations and the admin::

    class AsherahRouter:
        def db_for_read(self, model, **hints):
            return "keys" if model._meta.app_label == "asherah_django" else None

        db_for_write = db_for_read

        def allow_migrate(self, db, app_label, **hints):
            if app_label == "asherah_django":
                return db == "keys"
            return None

    DATABASE_ROUTERS = ["myproject.routers.AsherahRouter"]

and run ``manage.py migrate asherah_django --database keys``.

Read replicas
-------------
Key reads never follow ``DATABASE_ROUTERS``: loads, stores and the reload after a lost
insert race all run on ``ASHERAH["DATABASE"]``, which must be the writable primary (or a
libpq multi-host entry with ``target_session_attrs=read-write``). A router that sends
reads to a lagging replica therefore never hides a key this or another process has just
written; only the admin's and your own ORM queries of the model follow the router
(``tests/topology/test_postgres_replica.py``).

Cold loads
----------
``load``, ``load_many`` and ``load_latest`` of this service's intermediate keys fetch the
service's system key rows in the same query and keep them for a few seconds, so the system
key lookup that follows a cold intermediate key load costs no query: decrypting values of
P partitions cold costs at most P queries (one with ``Session.preload``). ``load_latest``
itself is never answered from that prefetch, so a reload after a lost race sees the winner.
"""

from __future__ import annotations

import asyncio
import calendar
import datetime
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from django.db import (
    DEFAULT_DB_ALIAS,
    DatabaseError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    connections,
    transaction,
)
from django.db.backends.base.base import BaseDatabaseWrapper

from .core.errors import MalformedRecordError, MetastoreError, UnreadableKeyError
from .core.integrity import ADD_TAG_COLUMN_SQL, TAG_COLUMN
from .core.partition import is_internal_id
from .core.protocols import BatchMetastore
from .core.records import EnvelopeKeyRecord, KeyMeta

logger = logging.getLogger("asherah_django.metastore")

Row = tuple[Any, ...]

#: Seconds a system key row fetched along with an intermediate key may answer ``load``.
PREFETCH_TTL: Final = 5.0
#: ``(id, created)`` pairs per ``load_many`` query.
BATCH_SIZE: Final = 200
_MYSQL_DUPLICATE: Final = 1062
_REVOKE_ATTEMPTS: Final = 5
_MYSQL_RETRYABLE: Final = frozenset({1205, 1213})  # lock wait timeout, deadlock
_EPOCH: Final = datetime.datetime(1970, 1, 1)
_MIN_CREATED: Final = calendar.timegm((1000, 1, 1, 0, 0, 0))
_MAX_CREATED: Final = calendar.timegm((9999, 12, 31, 23, 59, 59))
_HINT: Final = (
    "check that the database is reachable and that the encryption_key table exists "
    "(manage.py migrate asherah_django)"
)


@dataclass
class _Held:
    """A dedicated connection and the thread that owns it."""

    wrapper: BaseDatabaseWrapper
    thread: threading.Thread


@dataclass
class _Pending:
    """A key inserted inside the caller's SQLite transaction, not yet committed."""

    meta: KeyMeta
    connection: BaseDatabaseWrapper
    committed: bool = False

    def mark_committed(self) -> None:
        self.committed = True


class DjangoMetastore:
    """Asherah's Metastore (and BatchMetastore) on the ``encryption_key`` table."""

    def __init__(
        self,
        using: str = DEFAULT_DB_ALIAS,
        *,
        system_key_id: str | None = None,
        table: str | None = None,
        integrity_tags: bool = False,
    ) -> None:
        from .models import EncryptionKey

        self.using = using
        #: Read and write the ``integrity_tag`` column (KEY_INTEGRITY sign or require). Off,
        #: no statement names it, so tables without it (adopted ones) keep working.
        self.integrity_tags = integrity_tags
        #: The table: the EncryptionKey model's ``db_table`` unless given.
        self.table = table or EncryptionKey._meta.db_table
        self.system_key_id = system_key_id
        self._ik_suffix = system_key_id[len("_SK") :] if system_key_id else None
        #: Statements executed (for tests and metrics).
        self.queries = 0
        self._prefetched: dict[KeyMeta, tuple[EnvelopeKeyRecord, float]] = {}
        self._pending: list[_Pending] = []
        self._vendor: str | None = None
        self._sql: dict[str, str] = {}
        self._init_process_state()
        _LIVE.add(self)

    def _init_process_state(self) -> None:
        self._lock = threading.Lock()
        self._local = threading.local()
        self._held: list[_Held] = []
        #: Runs key queries asked for from a thread with a running event loop (see _run).
        self._loop_helper: ThreadPoolExecutor | None = None

    def __repr__(self) -> str:
        return f"<DjangoMetastore using={self.using!r} table={self.table!r}>"

    # -- the Metastore contract ---------------------------------------------------------

    def load(self, key_id: str, created: int) -> EnvelopeKeyRecord | None:
        """The record stored under exactly ``(key_id, created)``, or ``None``."""
        if is_internal_id(key_id):
            return None
        meta = KeyMeta(key_id, created)
        if not _in_range(created):
            return None  # no timestamp column can hold it: no such key (ParentKeyMeta fuzz)
        record = self._take_prefetched(meta)
        if record is not None:
            return record
        sql, params = self._sql_for("load"), [key_id, self._created_param(created)]
        prefetching = self._prefetches_for(key_id)
        if prefetching:
            sql, params = self._sql_for("load+sk"), [*params, self.system_key_id]
        return self._collect(self._query(sql, params), prefetching=prefetching).get(meta)

    def load_latest(self, key_id: str) -> EnvelopeKeyRecord | None:
        """The record for ``key_id`` with the greatest ``created``, or ``None``."""
        if is_internal_id(key_id):
            return None
        prefetching = self._prefetches_for(key_id)
        if prefetching:
            rows = self._query(self._sql_for("latest+sk"), [key_id, self.system_key_id])
        else:
            rows = self._query(self._sql_for("latest"), [key_id])
        found = self._collect(rows, prefetching=prefetching)
        versions = [meta for meta in found if meta.key_id == key_id]
        return found[max(versions, key=lambda meta: meta.created)] if versions else None

    def load_many(self, metas: Iterable[KeyMeta]) -> dict[KeyMeta, EnvelopeKeyRecord]:
        """The records found for ``metas``, in as few queries as possible."""
        found: dict[KeyMeta, EnvelopeKeyRecord] = {}
        wanted: list[KeyMeta] = []
        for meta in {KeyMeta(*m) for m in metas}:
            if is_internal_id(meta.key_id) or not _in_range(meta.created):
                continue
            record = self._take_prefetched(meta)
            if record is not None:
                found[meta] = record
            else:
                wanted.append(meta)
        prefetch = any(self._prefetches_for(meta.key_id) for meta in wanted)
        for start in range(0, len(wanted), BATCH_SIZE):
            chunk = wanted[start : start + BATCH_SIZE]
            pairs = " OR ".join([self._sql_for("pair")] * len(chunk))
            params: list[object] = []
            for meta in chunk:
                params += [meta.key_id, self._created_param(meta.created)]
            with_sk = prefetch and start == 0
            if with_sk:
                pairs += f" OR {self._column('id')} = %s"
                params.append(self.system_key_id)
            rows = self._query(f"{self._sql_for('select')} WHERE {pairs}", params)
            collected = self._collect(rows, prefetching=with_sk)
            found.update((meta, collected[meta]) for meta in chunk if meta in collected)
        return found

    def store(self, key_id: str, created: int, record: EnvelopeKeyRecord) -> bool:
        """Insert if absent: ``True`` when inserted, ``False`` when ``(key_id, created)``
        already exists. Never overwrites."""
        if is_internal_id(key_id):
            raise MetastoreError(f"refusing to store a key under the reserved id {key_id!r}")
        params = [key_id, self._created_param(created), record.to_json()]
        if self.integrity_tags:
            params.append(record.tag)
        if self._shares_caller_connection():
            return self._store_in_caller_transaction(KeyMeta(key_id, created), params)
        if self.vendor == "postgresql":
            return self._execute(self._sql_for("insert-if-absent"), params) > 0
        if self.vendor == "mysql":
            return self._store_mysql(params)
        try:  # other backends: the unique constraint tells
            self._execute(self._sql_for("insert"), params)
        except MetastoreError as exc:
            if isinstance(exc.__cause__, IntegrityError) and self.load(key_id, created):
                return False
            raise
        return True

    def _store_mysql(self, params: list[object]) -> bool:
        """A plain INSERT; its duplicate-key error means "already there". Deadlocks and
        lock wait timeouts (statement rolled back, nothing stored) are retried."""
        for attempt in range(3):
            try:
                self._execute(self._sql_for("insert"), params)
            except MetastoreError as exc:
                code = _mysql_code(exc.__cause__)
                if code == _MYSQL_DUPLICATE:
                    return False
                if code not in _MYSQL_RETRYABLE or attempt == 2:
                    raise
                time.sleep(0.05 * (attempt + 1))
            else:
                return True
        raise AssertionError("unreachable")  # pragma: no cover

    # -- administration -------------------------------------------------------------------

    def load_versions(self, key_id: str) -> dict[KeyMeta, EnvelopeKeyRecord]:
        """Every stored version of ``key_id`` (blind index key rings), on the key connection."""
        if is_internal_id(key_id):
            return {}
        return self._collect(self._query(self._sql_for("versions"), [key_id]))

    def set_tag(self, key_id: str, created: int, tag: str) -> bool:
        """Store the integrity tag of an untagged row (``asherah_sign_keys``); False when
        the row is gone or already has a tag (never overwritten)."""
        if not self.integrity_tags:
            raise MetastoreError("this DjangoMetastore was built without integrity_tags=True")
        self._forget_prefetched(key_id)
        params = [tag, key_id, self._created_param(created)]
        return self._execute(self._sql_for("set-tag"), params) > 0

    def revoke(self, key_id: str, created: int) -> bool:
        """Mark a key ``"Revoked":true`` as Asherah's revoke scripts do; False if absent.

        Committed at once (on SQLite: with the caller's transaction). Sends ``key_revoked``
        when it marks the key (not when it was already revoked).
        """
        if is_internal_id(key_id):
            return False
        meta = KeyMeta(key_id, created)
        created_param = self._created_param(created)
        for _ in range(_REVOKE_ATTEMPTS):
            self._forget_prefetched(key_id)
            rows = self._query(self._sql_for("load-text"), [key_id, created_param])
            record = self._collect(rows).get(meta)
            if record is None:
                return False
            if record.revoked:
                return True
            # Only if the row still holds what was read: a rewrap that landed in between
            # is kept (and revoked on the next pass) instead of being written back over.
            swapped = self._execute(
                self._sql_for("revoke"),
                [record.revoked_copy().to_json(), key_id, created_param, rows[0][2]],
            )
            if swapped:
                break
        else:
            raise MetastoreError(
                f"key {key_id!r} created {created} changed {_REVOKE_ATTEMPTS} times while "
                "being revoked; run the revocation again"
            )
        from .signals import key_revoked

        key_revoked.send(sender=type(self), key_id=key_id, created=created)
        return True

    def delete_key_id(self, key_id: str) -> int:
        """Delete every version of ``key_id`` (crypto-shredding); returns how many.

        Committed at once (on SQLite: with the caller's transaction). Sends ``key_shredded``.
        """
        if is_internal_id(key_id):
            return 0
        self._forget_prefetched(key_id)
        count = self._execute(self._sql_for("delete"), [key_id])
        if count:
            from .signals import key_shredded

            key_shredded.send(sender=type(self), key_id=key_id, count=count)
        return count

    # -- connections ------------------------------------------------------------------------

    @property
    def vendor(self) -> str:
        vendor = self._vendor
        if vendor is None:
            vendor = self._vendor = connections[self.using].vendor
        return vendor

    def _shares_caller_connection(self) -> bool:
        return self.vendor == "sqlite"

    def connection(self) -> BaseDatabaseWrapper:
        """The connection key queries of this thread use (opened lazily)."""
        if self._shares_caller_connection():
            return connections[self.using]
        held: _Held | None = getattr(self._local, "held", None)
        if held is None:
            main = connections[self.using]
            settings_dict = {**main.settings_dict, "AUTOCOMMIT": True}
            wrapper = type(main)(settings_dict, alias=self.using)
            held = _Held(wrapper, threading.current_thread())
            with self._lock:
                self._prune_dead_threads()
                self._held.append(held)
            self._local.held = held
        return held.wrapper

    def close_old_connections(self) -> None:
        """Django's request-boundary rule for this thread's connection; closes those of
        threads that have ended."""
        held: _Held | None = getattr(self._local, "held", None)
        if held is not None:
            held.wrapper.close_if_unusable_or_obsolete()
        with self._lock:
            self._prune_dead_threads()

    def close(self) -> None:
        """Close every dedicated connection (all threads) and forget prefetched rows."""
        with self._lock:
            held, self._held = self._held, []
            helper, self._loop_helper = self._loop_helper, None
            self._prefetched.clear()
            self._pending.clear()
        self._local = threading.local()
        for item in held:
            _close(item.wrapper)
        if helper is not None:
            if self._shares_caller_connection():  # the helper thread's own connection
                helper.submit(connections[self.using].close)
            helper.shutdown(wait=False)

    def _prune_dead_threads(self) -> None:
        alive = []
        for item in self._held:
            if item.thread.is_alive():
                alive.append(item)
            else:
                _close(item.wrapper)
        self._held = alive

    def _after_fork_in_child(self) -> None:
        for item in self._held:
            _abandon(item.wrapper)
        self._init_process_state()
        self._prefetched = {}
        self._pending = []

    # -- SQLite: keys inside the caller's transaction ------------------------------------------

    def _store_in_caller_transaction(self, meta: KeyMeta, params: list[object]) -> bool:
        conn = connections[self.using]
        outer = conn.in_atomic_block
        with transaction.atomic(using=self.using):
            inserted = self._execute(self._sql_for("insert-if-absent"), params)
        if inserted and outer:
            pending = _Pending(meta, conn)
            with self._lock:
                self._pending.append(pending)
            transaction.on_commit(pending.mark_committed, using=self.using)
        return inserted > 0

    @property
    def has_pending(self) -> bool:
        """True while a key inserted in a caller's (SQLite) transaction awaits its commit."""
        return bool(self._pending)

    def take_rolled_back(self) -> list[KeyMeta]:
        """Keys inserted in a caller's transaction that has since rolled back (SQLite)."""
        rolled_back: list[KeyMeta] = []
        with self._lock:
            still = []
            for pending in self._pending:
                if pending.committed:
                    continue
                hooks = pending.connection.run_on_commit
                if any(hook[1] == pending.mark_committed for hook in hooks):
                    still.append(pending)
                else:
                    rolled_back.append(pending.meta)
            self._pending = still
        return rolled_back

    # -- queries ------------------------------------------------------------------------------

    def _query(self, sql: str, params: Sequence[Any]) -> list[Row]:
        """Run one query and return its rows."""
        return self._run(sql, params, fetch=True)[0]

    def _execute(self, sql: str, params: Sequence[Any]) -> int:
        """Run one statement and return how many rows it changed."""
        return self._run(sql, params, fetch=False)[1]

    def _run(self, sql: str, params: Sequence[Any], *, fetch: bool) -> tuple[list[Row], int]:
        if _loop_running():
            # An encrypted attribute read in async code (an async view, ``async for`` over a
            # queryset) whose key is not cached yet. Django forbids database calls from a
            # thread running an event loop (SynchronousOnlyOperation), so the query runs on
            # a helper thread with its own key connection; the caller waits for it, as it
            # waits for Vault. Only cold keys get here: cached ones need no query.
            return self._helper().submit(self._run_on_helper, sql, params, fetch).result()
        return self._run_here(sql, params, fetch)

    def _run_on_helper(self, sql: str, params: Sequence[Any], fetch: bool) -> tuple[list[Row], int]:
        try:
            return self._run_here(sql, params, fetch)
        finally:
            if self._shares_caller_connection():
                # SQLite: the helper thread's own connection to the caller's database.
                # Closed now rather than left to the garbage collector when the helper
                # ends (unclosed, Python 3.13 warns); cold keys only come here.
                connections[self.using].close()

    def _helper(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._loop_helper is None:
                self._loop_helper = ThreadPoolExecutor(1, thread_name_prefix="asherah-keys")
            return self._loop_helper

    def _run_here(self, sql: str, params: Sequence[Any], fetch: bool) -> tuple[list[Row], int]:
        for attempt in (0, 1):
            conn = self.connection()
            reused = conn.connection is not None
            try:
                with conn.cursor() as cursor:
                    self.queries += 1
                    cursor.execute(sql, params)
                    rows = list(cursor.fetchall()) if fetch else []
                    return rows, cursor.rowcount
            except (OperationalError, InterfaceError) as exc:
                dedicated = not self._shares_caller_connection()
                if dedicated and not conn.is_usable():
                    _close(conn)
                    if reused and attempt == 0 and _mysql_code(exc) not in _MYSQL_RETRYABLE:
                        logger.info("asherah key connection was stale; reconnecting once")
                        continue
                raise MetastoreError(
                    f"metastore query failed on database {self.using!r}: {exc}",
                    hint=self._hint_for(exc),
                ) from exc
            except DatabaseError as exc:
                raise MetastoreError(
                    f"metastore query failed on database {self.using!r}: {exc}",
                    hint=self._hint_for(exc),
                ) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _hint_for(self, exc: Exception) -> str:
        if self.integrity_tags and TAG_COLUMN in str(exc):
            return (
                f"KEY_INTEGRITY is sign or require, which needs the {TAG_COLUMN} column: run "
                f"manage.py migrate asherah_django, or on a table you manage yourself "
                f"{ADD_TAG_COLUMN_SQL.replace('encryption_key', self.table)}"
            )
        return _HINT

    def _sql_for(self, name: str) -> str:
        sql = self._sql.get(name)
        if sql is None:
            sql = self._sql[name] = self._build_sql(name)
        return sql

    def _column(self, name: str) -> str:
        return connections[self.using].ops.quote_name(name)

    def _build_sql(self, name: str) -> str:
        # Only quoted identifiers (the model's table and columns) are interpolated; every
        # value is a parameter.
        names = {
            "t": connections[self.using].ops.quote_name(self.table),
            **{key: self._column(column) for key, column in _COLUMN_KEYS.items()},
        }
        if self.vendor == "mysql":  # byte-exact (the column's collation may ignore case)
            names["rt"], names["pt"] = f"CAST({names['r']} AS BINARY)", "CAST(%s AS BINARY)"
        else:
            names["rt"], names["pt"] = f"CAST({names['r']} AS TEXT)", "%s"
        template = _SQL[name]
        if name == "revoke" and self.vendor == "mysql":
            # Assigning created to itself stops MySQL's ON UPDATE CURRENT_TIMESTAMP, which
            # an old-style TIMESTAMP column may carry, from moving the key.
            template = _SQL["revoke-mysql"]
        if self.integrity_tags:  # the tag column goes along wherever rows are read or written
            template = template.replace("{id}, {c}, {r}", "{id}, {c}, {r}, {g}")
            template = template.replace("{id}, {c}, {rt}", "{id}, {c}, {rt}, {g}")
            template = template.replace("(%s, %s, %s)", "(%s, %s, %s, %s)")
        return template.format(**names)

    def _created_param(self, created: int) -> object:
        """``created`` as the naive UTC wall-clock Go and the Rust core bind."""
        if not _in_range(created):
            raise MetastoreError(
                f"created {created} is outside the years 1000 to 9999 that the encryption_key "
                "table's timestamp column holds"
            )
        value = _EPOCH + datetime.timedelta(seconds=created)
        if self.vendor == "sqlite":  # TEXT, exactly as the Rust core's datetime(x,'unixepoch')
            return value.strftime("%Y-%m-%d %H:%M:%S")
        return value

    # -- rows and the system-key prefetch ------------------------------------------------------

    def _prefetches_for(self, key_id: str) -> bool:
        suffix = self._ik_suffix
        return suffix is not None and key_id.startswith("_IK_") and key_id.endswith(suffix)

    def _collect(
        self, rows: Iterable[Row], *, prefetching: bool = False
    ) -> dict[KeyMeta, EnvelopeKeyRecord]:
        """Parse rows by ``(id, created)``. With ``prefetching``, the system key rows that
        came along are kept for :meth:`load` (malformed ones are skipped, not raised)."""
        collected: dict[KeyMeta, EnvelopeKeyRecord] = {}
        extra: dict[KeyMeta, EnvelopeKeyRecord] = {}
        for key_id, created, key_record, *tag in rows:
            if tag and tag[0] == TAG_COLUMN:
                # SQLite reads a double-quoted name that is no column as a string literal:
                # the table has no integrity_tag column (a real tag starts with "v1:").
                raise MetastoreError(
                    f"the metastore table {self.table!r} in database {self.using!r} has no "
                    f"{TAG_COLUMN} column",
                    hint=self._hint_for(DatabaseError(TAG_COLUMN)),
                )
            if is_internal_id(key_id):
                continue
            lenient = prefetching and key_id == self.system_key_id
            try:
                meta = KeyMeta(key_id, _epoch(created))
                record = _record(key_record)
                record.tag = _tag(tag[0]) if tag else None
                (extra if lenient else collected)[meta] = record
            except (MalformedRecordError, ValueError, TypeError, OverflowError) as exc:
                if lenient:
                    continue
                raise UnreadableKeyError(
                    f"key record {key_id!r} in table {self.table!r} is malformed: {exc}"
                ) from exc
        if extra:
            now = time.monotonic()
            with self._lock:
                for meta, record in extra.items():
                    self._prefetched[meta] = record, now
        collected.update(extra)
        return collected

    def _take_prefetched(self, meta: KeyMeta) -> EnvelopeKeyRecord | None:
        if not self._prefetched:
            return None
        with self._lock:
            entry = self._prefetched.pop(meta, None)
            now = time.monotonic()
            for stale in [m for m, (_, at) in self._prefetched.items() if now - at > PREFETCH_TTL]:
                del self._prefetched[stale]
        if entry is None or time.monotonic() - entry[1] > PREFETCH_TTL:
            return None
        return entry[0]

    def _forget_prefetched(self, key_id: str) -> None:
        with self._lock:
            for meta in [m for m in self._prefetched if m.key_id == key_id]:
                del self._prefetched[meta]


_COLUMN_KEYS: Final = {"id": "id", "c": "created", "r": "key_record", "g": TAG_COLUMN}
# Templates; only the quoted table and column names are filled in with str.format.
_SQL: Final = {
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
    "versions": "SELECT {id}, {c}, {r} FROM {t} WHERE {id} = %s",
    # (created = created: see revoke-mysql; harmless elsewhere.)
    "set-tag": (
        "UPDATE {t} SET {g} = %s, {c} = {c} WHERE ({id} = %s AND {c} = %s) AND {g} IS NULL"
    ),
}


def _loop_running() -> bool:
    """True in a thread that runs an asyncio event loop (Django's async-unsafe test)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _in_range(created: int) -> bool:
    """Whether ``created`` is a time every supported database's timestamp column holds
    (MySQL's DATETIME starts at year 1000); a key outside it cannot exist."""
    return _MIN_CREATED <= created <= _MAX_CREATED


def _epoch(value: object) -> int:
    """A ``created`` column value (naive UTC wall-clock) as epoch seconds."""
    if isinstance(value, bytes):
        value = value.decode("ascii")
    if isinstance(value, str):
        value = datetime.datetime.fromisoformat(value.strip())
    if isinstance(value, datetime.datetime):
        return calendar.timegm(value.replace(tzinfo=None).timetuple())
    raise TypeError(f"unexpected created column value of type {type(value).__name__}")


def _record(value: object) -> EnvelopeKeyRecord:
    """Parse ``key_record`` whether the column is text, bytes or JSON(B)."""
    if isinstance(value, dict):
        return EnvelopeKeyRecord.from_dict(value, "key record")
    if isinstance(value, memoryview):
        value = bytes(value)
    if isinstance(value, str | bytes):
        return EnvelopeKeyRecord.from_json(value)
    raise MalformedRecordError(f"key record has unexpected type {type(value).__name__}")


def _tag(value: object) -> str | None:
    """The ``integrity_tag`` column as text (None when the row has none)."""
    if isinstance(value, bytes | memoryview):
        value = bytes(value).decode("ascii", "replace")
    return value if isinstance(value, str) and value else None


def _mysql_code(exc: BaseException | None) -> int | None:
    """The MySQL error number behind a (possibly wrapped) driver exception."""
    while exc is not None:
        args = getattr(exc, "args", ())
        if args and isinstance(args[0], int):
            return args[0]
        exc = exc.__cause__
    return None


def _close(wrapper: BaseDatabaseWrapper) -> None:
    """Close a connection possibly owned by another thread."""
    wrapper.inc_thread_sharing()
    try:
        wrapper.close()
    except DatabaseError:
        logger.warning("could not close an asherah key connection cleanly", exc_info=True)
    finally:
        wrapper.dec_thread_sharing()


_GRAVEYARD: list[BaseDatabaseWrapper] = []


def _abandon(wrapper: BaseDatabaseWrapper) -> None:
    """In a forked child: never use nor close the parent's connection. Its socket is pointed
    at /dev/null so that a driver's goodbye at exit cannot end the parent's session."""
    raw = wrapper.connection
    if raw is None:
        return
    try:
        fd = raw.fileno()
    except Exception:  # sqlite3 and others have no socket
        fd = None
    if isinstance(fd, int) and fd >= 0:
        devnull = os.open(os.devnull, os.O_RDWR)
        try:
            os.dup2(devnull, fd)
        finally:
            os.close(devnull)
    _GRAVEYARD.append(wrapper)


_LIVE: weakref.WeakSet[DjangoMetastore] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for metastore in list(_LIVE):
        metastore._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)

if TYPE_CHECKING:  # mypy verifies that DjangoMetastore fits the contract
    _fits: BatchMetastore = DjangoMetastore()
    _unused: Callable[[], None] = _after_fork_in_child
