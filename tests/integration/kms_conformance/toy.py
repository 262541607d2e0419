"""A user's own KMS, as a reader of the docs would write one (loaded by dotted path)."""

from __future__ import annotations

import hashlib
import hmac
import os

from asherah_django.core.errors import KMSError

_MASTER = hashlib.sha256(b"toy master key, tests only").digest()


class ToyKMS:
    """XOR-with-a-keystream wrap plus an HMAC tag: fine for a test, never for production."""

    def encrypt_key(self, key: bytes) -> bytes:
        nonce = os.urandom(16)
        stream = hashlib.sha256(_MASTER + nonce).digest()
        body = bytes(a ^ b for a, b in zip(key, stream, strict=True))
        tag = hmac.new(_MASTER, nonce + body, hashlib.sha256).digest()
        return nonce + body + tag

    def decrypt_key(self, encrypted_key: bytes) -> bytes:
        if len(encrypted_key) != 16 + 32 + 32:
            raise KMSError("toy KMS: wrong length")
        nonce, body, tag = encrypted_key[:16], encrypted_key[16:48], encrypted_key[48:]
        if not hmac.compare_digest(tag, hmac.new(_MASTER, nonce + body, hashlib.sha256).digest()):
            raise KMSError("toy KMS: tag mismatch")
        stream = hashlib.sha256(_MASTER + nonce).digest()
        return bytes(a ^ b for a, b in zip(body, stream, strict=True))


class NotAKMS:
    def encrypt_key(self, key: bytes) -> bytes:
        return key
