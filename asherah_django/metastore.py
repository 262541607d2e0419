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
(``tests/integration/topology/test_postgres_replica.py``).

Cold loads
----------
``load``, ``load_many`` and ``load_latest`` of this service's intermediate keys fetch the
service's system key rows in the same query and keep them for a few seconds, so the system
key lookup that follows a cold intermediate key load costs no query: decrypting values of
P partitions cold costs at most P queries (one with ``Session.preload``). ``load_latest``
itself is never answered from that prefetch, so a reload after a lost race sees the winner.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Final

from django.db import (
    DEFAULT_DB_ALIAS,
    IntegrityError,
    connections,
    transaction,
)

from .core.errors import MetastoreError
from .core.forking import after_fork_in_child
from .core.key_ids import KeyIds, KeyKind, is_internal_id
from .core.protocols import KeyStore
from .core.records import EnvelopeKeyRecord, KeyMeta
from .metastore_connections import KeyConnections
from .metastore_pending import PendingKeys
from .metastore_sql import (
    MYSQL_DUPLICATE,
    MYSQL_RETRYABLE,
    Row,
    build_sql,
    created_param,
    in_range,
    mysql_code,
    parse_rows,
)

_REVOKE_ATTEMPTS: Final = 5
#: Seconds a system key row fetched along with an intermediate key may answer ``load``.
PREFETCH_TTL: Final = 5.0
#: ``(id, created)`` pairs per ``load_many`` query.
BATCH_SIZE: Final = 200


class DjangoMetastore(KeyConnections):
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
        self._ids = KeyIds.of_system_key(system_key_id) if system_key_id else None
        #: Statements executed (for tests and metrics).
        self.queries = 0
        self._prefetched: dict[KeyMeta, tuple[EnvelopeKeyRecord, float]] = {}
        #: SQLite: keys stored inside callers' transactions, not committed yet.
        self.pending_keys = PendingKeys()
        self._vendor: str | None = None
        self._sql: dict[str, str] = {}
        self._init_process_state()
        _LIVE.add(self)

    def __repr__(self) -> str:
        return f"<DjangoMetastore using={self.using!r} table={self.table!r}>"

    # -- the Metastore contract ---------------------------------------------------------

    def load(self, key_id: str, created: int) -> EnvelopeKeyRecord | None:
        """The record stored under exactly ``(key_id, created)``, or ``None``."""
        if is_internal_id(key_id):
            return None
        meta = KeyMeta(key_id, created)
        if not in_range(created):
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
            if is_internal_id(meta.key_id) or not in_range(meta.created):
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
                code = mysql_code(exc.__cause__)
                if code == MYSQL_DUPLICATE:
                    return False
                if code not in MYSQL_RETRYABLE or attempt == 2:
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

    def rewrap(self, key_id: str, created: int, expected: str, record: EnvelopeKeyRecord) -> bool:
        """Replace the record (and, with ``integrity_tags``, the tag) of ``(key_id, created)``
        with ``record`` only if the row still holds the text ``expected`` (as read): a
        concurrent revocation or a second rewrap is never written over. Committed at once
        (on SQLite: with the caller's transaction)."""
        if is_internal_id(key_id):
            return False
        self._forget_prefetched(key_id)
        params: list[object] = [record.to_json()]
        if self.integrity_tags:
            params.append(record.tag or "")
        params += [key_id, self._created_param(created), expected]
        name = "rewrap+tag" if self.integrity_tags else "rewrap"
        return self._execute(self._sql_for(name), params) > 0

    def delete_version(self, key_id: str, created: int) -> bool:
        """Delete exactly the row ``(key_id, created)``; False if it was absent."""
        if is_internal_id(key_id):
            return False
        self._forget_prefetched(key_id)
        return (
            self._execute(self._sql_for("delete-version"), [key_id, self._created_param(created)])
            > 0
        )

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

    def close(self) -> None:
        """Close every dedicated connection (all threads) and forget prefetched rows."""
        with self._lock:
            self._prefetched.clear()
            self.pending_keys.clear()
        self._close_connections()

    def after_fork_in_child(self) -> None:
        """In a forked child: abandon the parent's connections (never closed here)."""
        self._abandon_connections()
        self._prefetched = {}
        self.pending_keys = PendingKeys()

    # -- SQLite: keys inside the caller's transaction ------------------------------------------

    def _store_in_caller_transaction(self, meta: KeyMeta, params: list[object]) -> bool:
        conn = connections[self.using]
        outer = conn.in_atomic_block
        with transaction.atomic(using=self.using):
            inserted = self._execute(self._sql_for("insert-if-absent"), params)
        if inserted and outer:
            self.pending_keys.add(meta, conn, self.using)
        return inserted > 0

    def is_uncommitted(self, key_id: str, created: int) -> bool:
        """True while ``(key_id, created)`` was inserted in a caller's SQLite transaction
        that has not committed (or has rolled back and was not taken yet)."""
        return self.pending_keys.is_uncommitted(KeyMeta(key_id, created))

    @property
    def has_pending(self) -> bool:
        """True while a key inserted in a caller's (SQLite) transaction awaits its commit."""
        return bool(self.pending_keys)

    def take_rolled_back(self) -> list[KeyMeta]:
        """Keys inserted in a caller's transaction that has since rolled back (SQLite)."""
        return self.pending_keys.take_rolled_back()

    # -- statements ------------------------------------------------------------------------

    def _sql_for(self, name: str) -> str:
        sql = self._sql.get(name)
        if sql is None:
            sql = self._sql[name] = build_sql(
                name,
                quote=connections[self.using].ops.quote_name,
                vendor=self.vendor,
                table=self.table,
                integrity_tags=self.integrity_tags,
            )
        return sql

    def _column(self, name: str) -> str:
        return connections[self.using].ops.quote_name(name)

    def _created_param(self, created: int) -> object:
        return created_param(created, self.vendor)

    # -- rows and the system-key prefetch ------------------------------------------------------

    def _prefetches_for(self, key_id: str) -> bool:
        if self._ids is None:
            return False
        parsed = self._ids.parse(key_id)
        return parsed.ours and parsed.kind is KeyKind.INTERMEDIATE

    def _collect(
        self, rows: Iterable[Row], *, prefetching: bool = False
    ) -> dict[KeyMeta, EnvelopeKeyRecord]:
        """Parse rows by ``(id, created)``. With ``prefetching``, the system key rows that
        came along are kept for :meth:`load` (malformed ones are skipped, not raised)."""
        collected, extra = parse_rows(
            rows,
            table=self.table,
            using=self.using,
            integrity_tags=self.integrity_tags,
            lenient_id=self.system_key_id if prefetching else None,
        )
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


_LIVE: weakref.WeakSet[DjangoMetastore] = weakref.WeakSet()


@after_fork_in_child
def _after_fork_in_child() -> None:
    for metastore in list(_LIVE):
        metastore.after_fork_in_child()


if TYPE_CHECKING:  # mypy verifies that DjangoMetastore fits the contract
    _fits: KeyStore = DjangoMetastore()
    _unused: Callable[[], None] = _after_fork_in_child
