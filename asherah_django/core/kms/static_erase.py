"""StaticEraseKMS: the static KMS's documented equivalent of retiring master-key versions.

The static KMS has one master key and no versions, so nothing can make its old wrappings
unopenable except replacing the key. An erasure with it therefore needs the *new* master
key (``--new-static-master-key-hex``): version 1 is the current key, version 2 the new one.
The new system key is wrapped under version 2, and :meth:`raise_floor` drops version 1 from
this object; whether the old key is gone everywhere else (settings, environment, secret
stores) is the operator's job, which no program can verify: the receipt says so. Set
``STATIC_MASTER_KEY_HEX`` to the new key in every process before the next start.

Receipts are signed with HMAC-SHA256 under a key derived from the new master key: anyone
holding it can verify them, which is enough for tests and development, never for an
auditor. For tests and local development only, like the static KMS itself.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import TYPE_CHECKING, Final

from ..aead import KEY_SIZE, Cipher
from ..errors import DecryptionError, KMSError
from .erase import EraseRefusedError
from .static import StaticKMS

_SIGNING_LABEL: Final = b"asherah_django erasure receipt v1"
_OLD, _NEW = 1, 2


class StaticEraseKMS:
    """Two static master keys: the current one (version 1) and its replacement (2)."""

    kind = "static"

    def __init__(self, old: StaticKMS, new: bytes) -> None:
        self._old = old
        self._new = Cipher(new)
        if self._opens_with_old(self._new.seal(b"probe")):
            raise EraseRefusedError(
                "--new-static-master-key-hex is the current STATIC_MASTER_KEY_HEX: an erasure "
                "needs a new master key"
            )
        self._floor = _OLD
        self._mac_key = hmac.digest(new, _SIGNING_LABEL, "sha256")

    @classmethod
    def replacing(cls, kms: StaticKMS, new_hex: str | None) -> StaticEraseKMS:
        if not new_hex:
            raise EraseRefusedError(
                "the static KMS has a single master key, whose wrappings cannot be retired: "
                "pass --new-static-master-key-hex (the key that replaces STATIC_MASTER_KEY_HEX) "
                "or use KMS=vault",
                hint="the static KMS is for tests and development; see docs/howto/erasure.md",
            )
        try:
            new = binascii.unhexlify(new_hex.strip())
        except (binascii.Error, ValueError):
            new = b""
        if len(new) != KEY_SIZE:
            raise EraseRefusedError(
                f"--new-static-master-key-hex must be {2 * KEY_SIZE} hex digits (a 32-byte key)"
            )
        return cls(kms, new)

    def _opens_with_old(self, blob: bytes) -> bool:
        try:
            self._old.decrypt_key(blob)
        except KMSError:
            return False
        return True

    def __repr__(self) -> str:
        return "<StaticEraseKMS (testing only)>"

    def describe(self) -> str:
        return "static master key (testing only)"

    def encrypt_key(self, key: bytes) -> bytes:
        return self._new.seal(key)

    def decrypt_key(self, encrypted_key: bytes) -> bytes:
        try:
            return self._new.open(encrypted_key)
        except DecryptionError:
            pass
        if self._floor <= _OLD:
            return self._old.decrypt_key(encrypted_key)
        raise EraseRefusedError("no static master key of this erasure opens the system key")

    def check_permissions(self, *, trim: bool = False) -> None:
        return None

    def latest_version(self) -> int:
        return _NEW

    def floor(self) -> int:
        return self._floor

    def version_of(self, encrypted_key: bytes) -> int:
        try:
            self._new.open(encrypted_key)
        except DecryptionError:
            return _OLD
        return _NEW

    def rotate(self) -> int:
        return _NEW

    def raise_floor(self, version: int) -> None:
        self._floor = max(self._floor, version)

    def destroy_below(self, version: int) -> None:
        self.raise_floor(version)  # the old key lives on wherever it is configured: see above

    def opens(self, encrypted_key: bytes) -> bool:
        try:
            self.decrypt_key(encrypted_key)
        except KMSError:
            return False
        return True

    def signer(self) -> str:
        return "static-hmac:new-master-key"

    def sign(self, payload: bytes) -> str:
        mac = hmac.digest(self._mac_key, payload, hashlib.sha256)
        return "hmac-sha256:" + base64.b64encode(mac).decode("ascii")

    def verify(self, payload: bytes, signature: str) -> bool:
        return hmac.compare_digest(self.sign(payload).encode(), signature.strip().encode())


if TYPE_CHECKING:  # mypy checks that the class fits the protocol
    from .erase import EraseCapableKMS

    _fits: EraseCapableKMS = StaticEraseKMS(StaticKMS(b""), b"")
