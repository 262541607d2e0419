"""SQLite: keys inserted inside the caller's transaction, which may still roll back.

SQLite allows one writer, so there :class:`~asherah_django.metastore.DjangoMetastore` stores
keys on the caller's connection, inside its transaction. Each such key is tracked here until
the transaction commits; one whose transaction rolled back is reported once by
:meth:`PendingKeys.take_rolled_back` (the runtime drops it from the key caches), and
:meth:`PendingKeys.is_uncommitted` tells the blind index key rings to reload meanwhile.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from django.db import transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from .core.records import KeyMeta


@dataclass
class _Pending:
    """A key inserted inside the caller's SQLite transaction, not yet committed."""

    meta: KeyMeta
    connection: BaseDatabaseWrapper
    committed: bool = False

    def mark_committed(self) -> None:
        self.committed = True


class PendingKeys:
    """The keys stored in callers' transactions that have not committed yet."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: The keys tracked (read without the lock: the runtime tests it on every value).
        self.entries: list[_Pending] = []

    def add(self, meta: KeyMeta, connection: BaseDatabaseWrapper, using: str) -> None:
        """Track ``meta``, just inserted in ``connection``'s open transaction."""
        pending = _Pending(meta, connection)
        with self._lock:
            self.entries.append(pending)
        transaction.on_commit(pending.mark_committed, using=using)

    def __bool__(self) -> bool:
        return bool(self.entries)

    def is_uncommitted(self, meta: KeyMeta) -> bool:
        with self._lock:
            return any(p.meta == meta and not p.committed for p in self.entries)

    def take_rolled_back(self) -> list[KeyMeta]:
        """Keys whose transaction has rolled back (each reported once); committed ones are
        forgotten."""
        rolled_back: list[KeyMeta] = []
        with self._lock:
            still = []
            for pending in self.entries:
                if pending.committed:
                    continue
                hooks = pending.connection.run_on_commit
                if any(hook[1] == pending.mark_committed for hook in hooks):
                    still.append(pending)
                else:
                    rolled_back.append(pending.meta)
            self.entries = still
        return rolled_back

    def clear(self) -> None:
        with self._lock:
            self.entries.clear()
