"""AES-256-GCM with Asherah's byte layout: ``ciphertext || tag(16) || nonce(12)``, no AAD.

The nonce goes last, which is unusual but is what every Asherah implementation
writes. The same primitive wraps the system key (static KMS), the intermediate
key, the data row key and the data itself.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import DecryptionError

KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
WRAPPED_KEY_SIZE = KEY_SIZE + TAG_SIZE + NONCE_SIZE
#: AES-GCM's own limit as enforced by Go and the Rust core: (2^32 - 2) blocks of 16 bytes.
MAX_PLAINTEXT_SIZE = (2**32 - 2) * 16


def check_key(key: bytes | bytearray) -> None:
    """Raise ``ValueError`` unless ``key`` is exactly :data:`KEY_SIZE` bytes."""
    if len(key) != KEY_SIZE:
        raise ValueError(f"AES-256-GCM keys are {KEY_SIZE} bytes, got {len(key)}")


def new_key() -> bytes:
    """A fresh random 256-bit key from the operating system's CSPRNG."""
    return os.urandom(KEY_SIZE)


class Cipher:
    """An AES-256-GCM key ready for repeated use (the key schedule is computed once)."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes | bytearray) -> None:
        check_key(key)
        self._aead = AESGCM(bytes(key))

    def __repr__(self) -> str:
        return "<Cipher AES-256-GCM>"

    def seal(self, plaintext: bytes, nonce: bytes | None = None) -> bytes:
        """Encrypt ``plaintext`` and return ``ciphertext || tag || nonce``."""
        if nonce is None:
            nonce = os.urandom(NONCE_SIZE)
        elif len(nonce) != NONCE_SIZE:
            raise ValueError(f"AES-GCM nonces are {NONCE_SIZE} bytes, got {len(nonce)}")
        return self._aead.encrypt(nonce, plaintext, None) + nonce

    def open(self, blob: bytes) -> bytes:
        """Decrypt a ``ciphertext || tag || nonce`` blob; :class:`DecryptionError` if it fails."""
        if len(blob) < TAG_SIZE + NONCE_SIZE:
            raise DecryptionError(
                f"encrypted blob is {len(blob)} bytes; at least {TAG_SIZE + NONCE_SIZE} expected"
            )
        try:
            return self._aead.decrypt(blob[-NONCE_SIZE:], blob[:-NONCE_SIZE], None)
        except InvalidTag:
            raise DecryptionError(
                "authentication failed: wrong key, or the record was modified"
            ) from None
