"""Key rows: what every stored key row goes through, whatever the path that loads it.

The parent and integrity checks (issue #13), unwrapping by the system key or the KMS, the
metastore calls (foreign exceptions become :class:`~.errors.MetastoreError`) and the
"created" listeners. :class:`~.envelope.KeyHierarchy` builds Asherah's rotation rules on
this base; the blind index keys use it through the SessionFactory's front.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TypeVar

from . import integrity
from .aead import NONCE_SIZE
from .errors import AsherahError, DecryptionError, KeyParentMismatchError, MetastoreError
from .keys import CryptoKey
from .policy import CryptoPolicy
from .protocols import KeyManagementService, KeyStore
from .records import EnvelopeKeyRecord, KeyMeta

logger = logging.getLogger("asherah_django.core")

_T = TypeVar("_T")

#: Called as ``listener(event, key_id, created)`` for "created" keys; set by the Django layer.
KeyListener = Callable[[str, str, int], None]


class KeyRows:
    """Checks, unwraps, loads and stores the key rows of one service's hierarchy (a base
    of :class:`~.envelope.KeyHierarchy`, which sets these attributes)."""

    policy: CryptoPolicy
    system_key_id: str
    kms: KeyManagementService
    metastore: KeyStore
    clock: Callable[[], float]
    listeners: list[KeyListener]

    # -- checks -----------------------------------------------------------------------

    def check_parent(self, key_id: str, record: EnvelopeKeyRecord) -> None:
        """Refuse a key record (IK or blind index) whose parent is not this factory's SK."""
        parent = record.parent
        if parent is not None and parent.key_id != self.system_key_id:
            raise KeyParentMismatchError(
                f"{integrity.describe(key_id, record.created)} names the parent "
                f"{parent.key_id!r}, not this service's system key {self.system_key_id!r}",
                hint=FOREIGN_HINT,
            )

    def sign_child(
        self, system_key: CryptoKey, key_id: str, created: int, record: EnvelopeKeyRecord
    ) -> None:
        """Set ``record.tag`` (unless KEY_INTEGRITY is off) for a key wrapped by ``system_key``."""
        if self.policy.key_integrity != "off":
            record.tag = integrity.make_tag(secret_of(system_key), "child", key_id, created, record)

    def check_child(
        self, system_key: CryptoKey, key_id: str, created: int, record: EnvelopeKeyRecord
    ) -> None:
        """Refuse a key row wrapped by ``system_key`` whose tag KEY_INTEGRITY rejects."""
        mode = self.policy.key_integrity
        if mode != "off":
            integrity.check(mode, secret_of(system_key), "child", key_id, created, record)

    # -- unwrapping ---------------------------------------------------------------------

    def _unwrap_child(
        self, system_key: CryptoKey, meta: KeyMeta, record: EnvelopeKeyRecord
    ) -> bytearray:
        self.check_child(system_key, meta.key_id, meta.created, record)
        try:
            return bytearray(system_key.unwrap(record.encrypted_key))
        except DecryptionError:
            raise DecryptionError(
                f"{integrity.describe(*meta)} does not decrypt "
                f"with system key {system_key.key_id!r} created {system_key.created}"
            ) from None

    def _kms_unwrap(self, meta: KeyMeta, record: EnvelopeKeyRecord, now: float) -> CryptoKey:
        mode = self.policy.key_integrity
        integrity.check_present(mode, meta.key_id, meta.created, record)
        secret = bytearray(self.kms.decrypt_key(record.encrypted_key))
        try:
            integrity.check(mode, secret, "self", meta.key_id, meta.created, record)
            return CryptoKey(meta, secret, revoked=record.revoked, checked_at=now)
        except ValueError:
            raise DecryptionError(
                f"system key {meta.key_id!r} created {meta.created} did not unwrap to 32 bytes"
            ) from None
        finally:
            zero(secret)

    # -- the metastore ------------------------------------------------------------------

    def load_versions(self, key_id: str) -> dict[KeyMeta, EnvelopeKeyRecord]:
        """Every stored version of ``key_id`` (foreign exceptions become MetastoreError)."""
        return self._call(lambda: dict(self.metastore.load_versions(key_id)))

    def _load(self, meta: KeyMeta) -> EnvelopeKeyRecord | None:
        return self._call(lambda: self.metastore.load(meta.key_id, meta.created))

    def _load_latest(self, key_id: str) -> EnvelopeKeyRecord | None:
        return self._call(lambda: self.metastore.load_latest(key_id))

    def _store(self, key_id: str, created: int, record: EnvelopeKeyRecord) -> bool:
        return self._call(lambda: self.metastore.store(key_id, created, record))

    def _call(self, operation: Callable[[], _T]) -> _T:
        """Run a metastore operation, translating foreign exceptions into MetastoreError."""
        try:
            return operation()
        except AsherahError:
            raise
        except Exception as exc:
            raise MetastoreError(
                f"metastore operation failed: {type(exc).__name__}",
                hint="check the database connection and that the encryption_key table exists",
            ) from exc

    def _notify(self, event: str, key_id: str, created: int) -> None:
        for listener in self.listeners:
            try:
                listener(event, key_id, created)
            except Exception:  # a metrics hook must never break encryption
                logger.exception("asherah key listener failed for event %s", event)


FOREIGN_HINT = (
    "honest Asherah data never has this: someone with write access to the metastore "
    "substituted a key row; restore it from a trusted backup"
)


def secret_of(key: CryptoKey) -> bytes:
    secret = key.secret_bytes
    if secret is None:
        raise RuntimeError("this key was wiped (evicted or its factory closed)")
    return secret


def new_nonce() -> bytes:
    return os.urandom(NONCE_SIZE)


def zero(buffer: bytearray) -> None:
    for index in range(len(buffer)):
        buffer[index] = 0
