"""Bounded, thread-safe caches of unwrapped keys.

Keys are cached by their exact ``(id, created)`` plus a pointer from each id to its
latest known key. Eviction approximates LRU with the CLOCK algorithm. Reads take no
lock (single dict operations are atomic under the GIL); inserts and evictions do. An
evicted key is wiped. A child process made by ``fork()`` gives every cache a new lock
(the parent's may be held by a thread that does not exist in the child).
"""

from __future__ import annotations

import threading
import weakref

from .forking import after_fork_in_child
from .keys import CryptoKey
from .records import KeyMeta


class KeyCache:
    """A bounded cache of :class:`CryptoKey` (CLOCK eviction) with a per-id "latest" pointer."""

    def __init__(self, max_size: int, *, enabled: bool = True) -> None:
        if max_size < 1:
            raise ValueError("cache size must be at least 1")
        self.max_size = max_size
        self.enabled = enabled
        self.entries: dict[KeyMeta, CryptoKey] = {}
        #: Latest key per key id; read directly by sessions on the encrypt hot path.
        self.latest: dict[str, CryptoKey] = {}
        self._lock = threading.Lock()
        _LIVE.add(self)

    def __len__(self) -> int:
        return len(self.entries)

    def __repr__(self) -> str:
        return f"<KeyCache {len(self.entries)}/{self.max_size} keys>"

    def get(self, meta: KeyMeta) -> CryptoKey | None:
        key = self.entries.get(meta)
        if key is not None:
            key.referenced = True
        return key

    def put(self, key: CryptoKey, *, latest: bool = False) -> CryptoKey:
        """Cache ``key`` (keeping an already cached twin) and return the cached one."""
        if not self.enabled:
            return key
        evicted: list[CryptoKey] = []
        with self._lock:
            existing = self.entries.get(key.meta)
            if existing is not None and existing is not key:
                existing.revoked = existing.revoked or key.revoked
                existing.checked_at = max(existing.checked_at, key.checked_at)
                key.wipe()
                key = existing
            self.entries[key.meta] = key
            if latest:
                current = self.latest.get(key.meta.key_id)
                if current is None or current.meta.created <= key.meta.created:
                    self.latest[key.meta.key_id] = key
            # CLOCK eviction: a key used since it last reached the front gets a second
            # chance. Hits only set a flag, so the read path needs no lock and no reordering.
            while len(self.entries) > self.max_size:
                meta = next(iter(self.entries))  # dicts keep insertion order: the oldest
                old = self.entries.pop(meta)
                if old.referenced:
                    old.referenced = False
                    self.entries[meta] = old
                    continue
                if self.latest.get(old.meta.key_id) is old:
                    del self.latest[old.meta.key_id]
                evicted.append(old)
        for old in evicted:
            old.wipe()
        return key

    def mark_revoked(self, meta: KeyMeta) -> None:
        """A key was revoked elsewhere: flag the cached copy and stop using it for writes."""
        with self._lock:
            key = self.entries.get(meta)
            if key is not None:
                key.revoked = True
            if self.latest.get(meta.key_id) is key or key is None:
                self.latest.pop(meta.key_id, None)

    def discard(self, key_id: str) -> int:
        """Drop and wipe every cached version of ``key_id`` (it was shredded); how many."""
        with self._lock:
            doomed = [meta for meta in self.entries if meta.key_id == key_id]
            keys = [self.entries.pop(meta) for meta in doomed]
            self.latest.pop(key_id, None)
        for key in keys:
            key.wipe()
        return len(keys)

    def drop(self, meta: KeyMeta) -> None:
        """Drop and wipe one cached version (it is gone from the metastore)."""
        with self._lock:
            key = self.entries.pop(meta, None)
            if key is not None and self.latest.get(meta.key_id) is key:
                del self.latest[meta.key_id]
        if key is not None:
            key.wipe()

    def forget_latest(self, key_id: str) -> None:
        """Drop the latest pointer so the next write asks the metastore."""
        with self._lock:
            self.latest.pop(key_id, None)

    def cached(self) -> list[CryptoKey]:
        with self._lock:
            return list(self.entries.values())

    def clear(self) -> None:
        """Empty the cache and wipe every key it held."""
        with self._lock:
            keys = list(self.entries.values())
            self.entries.clear()
            self.latest.clear()
        for key in keys:
            key.wipe()


_LIVE: weakref.WeakSet[KeyCache] = weakref.WeakSet()


@after_fork_in_child
def _after_fork_in_child() -> None:
    for cache in list(_LIVE):
        cache._lock = threading.Lock()
