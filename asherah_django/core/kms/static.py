"""StaticKMS: a master key held in process memory. For tests and local development only.

It wraps system keys with AES-256-GCM under the raw 32-byte master key, exactly as
Asherah's static KMS does (Go ``kms.NewStatic``, the Rust core's ``StaticKMS``), so
data made with the same master key is interchangeable with those implementations.
"""

from __future__ import annotations

import binascii
import logging
import os
from typing import TYPE_CHECKING

from ..aead import KEY_SIZE, Cipher
from ..errors import ConfigurationError, DecryptionError, KMSError
from ..protocols import KeyManagementService

logger = logging.getLogger("asherah_django.core")

#: Asherah's public test master key (``thisIsAStaticMasterKeyForTesting``), as hex.
TEST_MASTER_KEY_HEX = "746869734973415374617469634d61737465724b6579466f7254657374696e67"


class StaticKMS:
    """Wraps system keys under a master key given in memory. Never use it in production."""

    __slots__ = ("_cipher",)

    def __init__(self, master_key: bytes) -> None:
        if not isinstance(master_key, bytes) or len(master_key) != KEY_SIZE:
            raise ConfigurationError(
                f"STATIC_MASTER_KEY_HEX must decode to exactly {KEY_SIZE} bytes "
                f"({2 * KEY_SIZE} hex characters)"
            )
        self._cipher = Cipher(master_key)
        logger.warning(
            "asherah_django is using the static KMS: the master key is in process memory. "
            "This is for tests and local development only; use Vault Transit in production."
        )

    @classmethod
    def from_hex(cls, master_key_hex: str) -> StaticKMS:
        """Build from 64 hex characters, the form of ``STATIC_MASTER_KEY_HEX``."""
        if not isinstance(master_key_hex, str) or len(master_key_hex.strip()) != 2 * KEY_SIZE:
            raise ConfigurationError(
                f"STATIC_MASTER_KEY_HEX must be {2 * KEY_SIZE} hex characters "
                "(a 32-byte key); generate one with: python -c "
                '"import secrets; print(secrets.token_hex(32))"'
            )
        try:
            master_key = binascii.unhexlify(master_key_hex.strip())
        except (binascii.Error, ValueError):
            raise ConfigurationError(
                "STATIC_MASTER_KEY_HEX must contain only hex digits 0-9 and a-f"
            ) from None
        return cls(master_key)

    @classmethod
    def random(cls) -> StaticKMS:
        """A KMS with a fresh random master key (test suites)."""
        return cls(os.urandom(KEY_SIZE))

    def __repr__(self) -> str:
        return "<StaticKMS (testing only)>"

    def encrypt_key(self, key: bytes) -> bytes:
        return self._cipher.seal(key)

    def decrypt_key(self, encrypted_key: bytes) -> bytes:
        try:
            return self._cipher.open(encrypted_key)
        except DecryptionError:
            raise KMSError(
                "static KMS could not decrypt the system key: the master key differs from "
                "the one that wrapped it",
                hint="check STATIC_MASTER_KEY_HEX matches the other services sharing the metastore",
            ) from None


if TYPE_CHECKING:  # mypy verifies that StaticKMS fits the contract
    _fits: KeyManagementService = StaticKMS(b"")
