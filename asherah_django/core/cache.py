"""Bounded, thread-safe caches of unwrapped keys.

Keys are cached by their exact ``(id, created)`` plus a pointer from each id to its
latest known key. Reads take no lock (single dict operations are atomic under the
GIL); inserts and evictions do. An evicted key is wiped.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from .keys import CryptoKey
from .records import KeyMeta


class KeyCache:
    """An LRU cache of :class:`CryptoKey` with a per-id "latest" pointer."""

    def __init__(self, max_size: int, *, enabled: bool = True) -> None:
        if max_size < 1:
            raise ValueError("cache size must be at least 1")
        self.max_size = max_size
        self.enabled = enabled
        self._keys: OrderedDict[KeyMeta, CryptoKey] = OrderedDict()
        #: Latest key per key id; read directly by sessions on the encrypt hot path.
        self.latest: dict[str, CryptoKey] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"<KeyCache {len(self._keys)}/{self.max_size} keys>"

    def get(self, meta: KeyMeta) -> CryptoKey | None:
        key = self._keys.get(meta)
        if key is not None:
            try:  # noqa: SIM105 (suppress() costs a context manager on the hot path)
                self._keys.move_to_end(meta)
            except KeyError:  # evicted by another thread in between; still usable
                pass
        return key

    def put(self, key: CryptoKey, *, latest: bool = False) -> CryptoKey:
        """Cache ``key`` (keeping an already cached twin) and return the cached one."""
        if not self.enabled:
            return key
        evicted: list[CryptoKey] = []
        with self._lock:
            existing = self._keys.get(key.meta)
            if existing is not None and existing is not key:
                existing.revoked = existing.revoked or key.revoked
                existing.checked_at = max(existing.checked_at, key.checked_at)
                key.wipe()
                key = existing
            self._keys[key.meta] = key
            self._keys.move_to_end(key.meta)
            if latest:
                current = self.latest.get(key.meta.key_id)
                if current is None or current.meta.created <= key.meta.created:
                    self.latest[key.meta.key_id] = key
            while len(self._keys) > self.max_size:
                _, old = self._keys.popitem(last=False)
                if self.latest.get(old.meta.key_id) is old:
                    del self.latest[old.meta.key_id]
                evicted.append(old)
        for old in evicted:
            old.wipe()
        return key

    def forget_latest(self, key_id: str) -> None:
        """Drop the latest pointer so the next write asks the metastore."""
        with self._lock:
            self.latest.pop(key_id, None)

    def keys(self) -> list[CryptoKey]:
        with self._lock:
            return list(self._keys.values())

    def clear(self) -> None:
        """Empty the cache and wipe every key it held."""
        with self._lock:
            keys = list(self._keys.values())
            self._keys.clear()
            self.latest.clear()
        for key in keys:
            key.wipe()
