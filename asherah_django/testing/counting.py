"""Count a KMS's calls: ``CountingKMS`` wraps any KeyManagementService."""

from __future__ import annotations

import threading
from typing import Any

from ..core.protocols import KeyManagementService


class CountingKMS:
    """Forwards to ``inner`` and counts ``encrypt_key`` and ``decrypt_key`` calls."""

    def __init__(self, inner: KeyManagementService) -> None:
        self.inner = inner
        self.encrypts = 0
        self.decrypts = 0
        self._lock = threading.Lock()

    @property
    def calls(self) -> int:
        return self.encrypts + self.decrypts

    def encrypt_key(self, key: bytes) -> bytes:
        with self._lock:
            self.encrypts += 1
        return self.inner.encrypt_key(key)

    def decrypt_key(self, encrypted_key: bytes) -> bytes:
        with self._lock:
            self.decrypts += 1
        return self.inner.decrypt_key(encrypted_key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"<CountingKMS encrypts={self.encrypts} decrypts={self.decrypts} of {self.inner!r}>"
