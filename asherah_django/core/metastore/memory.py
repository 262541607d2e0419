"""InMemoryMetastore: a dict-backed metastore for tests. Everything is lost on exit."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..protocols import KeyStore
from ..records import EnvelopeKeyRecord, KeyMeta


class InMemoryMetastore:
    """Thread-safe, insert-if-absent, with per-operation counters for tests."""

    def __init__(self) -> None:
        self._records: dict[str, dict[int, EnvelopeKeyRecord]] = {}
        self._lock = threading.Lock()
        self.loads = 0
        self.stores = 0

    def __repr__(self) -> str:
        return f"<InMemoryMetastore {sum(map(len, self._records.values()))} keys>"

    def load(self, key_id: str, created: int) -> EnvelopeKeyRecord | None:
        with self._lock:
            self.loads += 1
            return self._records.get(key_id, {}).get(created)

    def load_latest(self, key_id: str) -> EnvelopeKeyRecord | None:
        with self._lock:
            self.loads += 1
            versions = self._records.get(key_id)
            if not versions:
                return None
            return versions[max(versions)]

    def load_many(self, metas: Iterable[KeyMeta]) -> dict[KeyMeta, EnvelopeKeyRecord]:
        with self._lock:
            self.loads += 1
            found = {}
            for meta in metas:
                record = self._records.get(meta.key_id, {}).get(meta.created)
                if record is not None:
                    found[meta] = record
            return found

    def store(self, key_id: str, created: int, record: EnvelopeKeyRecord) -> bool:
        with self._lock:
            self.stores += 1
            versions = self._records.setdefault(key_id, {})
            if created in versions:
                return False
            versions[created] = record
            return True

    def revoke(self, key_id: str, created: int) -> bool:
        """Mark a key revoked, as Asherah's revoke scripts do; False if absent."""
        with self._lock:
            record = self._records.get(key_id, {}).get(created)
            if record is None:
                return False
            self._records[key_id][created] = record.revoked_copy()
            return True

    def rewrap(self, key_id: str, created: int, expected: str, record: EnvelopeKeyRecord) -> bool:
        """Replace the record of ``(key_id, created)`` if it still reads as ``expected``."""
        with self._lock:
            versions = self._records.get(key_id, {})
            current = versions.get(created)
            if current is None or current.to_json() != expected:
                return False
            versions[created] = record
            return True

    def delete_version(self, key_id: str, created: int) -> bool:
        """Remove exactly ``(key_id, created)``; False if absent."""
        with self._lock:
            versions = self._records.get(key_id, {})
            if versions.pop(created, None) is None:
                return False
            if not versions:
                self._records.pop(key_id, None)
            return True

    def delete_key_id(self, key_id: str) -> int:
        """Remove every version of ``key_id`` (crypto-shredding); returns how many."""
        with self._lock:
            return len(self._records.pop(key_id, {}))

    def load_versions(self, key_id: str) -> dict[KeyMeta, EnvelopeKeyRecord]:
        with self._lock:
            versions = dict(self._records.get(key_id, {}))
        return {KeyMeta(key_id, created): record for created, record in versions.items()}

    def is_uncommitted(self, key_id: str, created: int) -> bool:
        return False  # every store is final at once

    def close(self) -> None:
        """Nothing to release: the records stay (tests share one store between factories)."""

    def after_fork_in_child(self) -> None:
        self._lock = threading.Lock()

    def items(self) -> list[tuple[str, int, EnvelopeKeyRecord]]:
        with self._lock:
            return [
                (key_id, created, record)
                for key_id, versions in self._records.items()
                for created, record in versions.items()
            ]


if TYPE_CHECKING:  # mypy verifies that InMemoryMetastore fits the contract
    _fits: KeyStore = InMemoryMetastore()
