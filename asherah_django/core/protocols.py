"""The contracts the engine depends on: a key management service and a metastore.

:class:`Metastore` is the least a user's store implements; :class:`KeyStore` is everything
the Django layer asks of one (the built-in stores implement it; a plain Metastore is adapted
by :func:`~asherah_django.core.keystore.key_store`).

Implementations state that they fit with a module-level assignment such as
``_: Metastore = InMemoryMetastore()`` or ``if TYPE_CHECKING`` checks, so mypy
verifies them (Asherah's ``var _ Metastore = (*SQLMetastore)(nil)``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol, runtime_checkable

from .records import EnvelopeKeyRecord, KeyMeta


@runtime_checkable
class KeyManagementService(Protocol):
    """Wraps and unwraps system keys with a master key that never leaves the KMS."""

    def encrypt_key(self, key: bytes) -> bytes:
        """Return the opaque bytes to store as the system key's ``Key``.

        Raises :class:`~asherah_django.core.errors.KMSError` on failure.
        """
        ...

    def decrypt_key(self, encrypted_key: bytes) -> bytes:
        """Return the 32-byte system key from bytes produced by :meth:`encrypt_key`.

        Raises :class:`~asherah_django.core.errors.KMSError` on failure.
        """
        ...


@runtime_checkable
class Metastore(Protocol):
    """Stores envelope key records by ``(key id, created)``; never overwrites a key."""

    def load(self, key_id: str, created: int) -> EnvelopeKeyRecord | None:
        """The record stored under exactly ``(key_id, created)``, or ``None``."""
        ...

    def load_latest(self, key_id: str) -> EnvelopeKeyRecord | None:
        """The record for ``key_id`` with the greatest ``created``, or ``None``."""
        ...

    def store(self, key_id: str, created: int, record: EnvelopeKeyRecord) -> bool:
        """Insert if absent: ``True`` when inserted, ``False`` when that pair exists."""
        ...


@runtime_checkable
class BatchMetastore(Metastore, Protocol):
    """A metastore that can load many exact keys in one round trip."""

    def load_many(self, metas: Iterable[KeyMeta]) -> Mapping[KeyMeta, EnvelopeKeyRecord]:
        """The records found for ``metas``; absent ones are simply missing."""
        ...


@runtime_checkable
class KeyStore(BatchMetastore, Protocol):
    """Everything the Django layer needs from a metastore: the engine's three calls and
    ``load_many``, plus the versions of one id, revocation, crypto-shredding, closing,
    the fork reset and the keys still inside a caller's uncommitted transaction."""

    def load_versions(self, key_id: str) -> Mapping[KeyMeta, EnvelopeKeyRecord]:
        """Every stored version of ``key_id``."""
        ...

    def revoke(self, key_id: str, created: int) -> bool:
        """Mark a key ``"Revoked":true`` as Asherah's revoke scripts do; False if absent."""
        ...

    def rewrap(self, key_id: str, created: int, expected: str, record: EnvelopeKeyRecord) -> bool:
        """Replace the record (and integrity tag) of ``(key_id, created)`` with ``record``
        only if the row still holds the record text ``expected``; False otherwise."""
        ...

    def delete_version(self, key_id: str, created: int) -> bool:
        """Delete exactly the row ``(key_id, created)``; False if it was absent."""
        ...

    def delete_key_id(self, key_id: str) -> int:
        """Delete every version of ``key_id`` (crypto-shredding); returns how many."""
        ...

    def is_uncommitted(self, key_id: str, created: int) -> bool:
        """True while ``(key_id, created)`` was stored inside a caller's transaction that
        has not committed yet (it may still roll back; SQLite only)."""
        ...

    def close(self) -> None:
        """Release connections and forget anything cached."""
        ...

    def after_fork_in_child(self) -> None:
        """Drop the parent's locks and connections in a forked child (never close them)."""
        ...


@runtime_checkable
class ClosableKMS(Protocol):
    """A KMS holding resources (connections, tokens) that ``close()`` releases.

    ``close()`` is optional in :class:`KeyManagementService`: a KMS without one holds
    nothing to release; :func:`close_kms` is the one place that applies this default.
    """

    def close(self) -> None: ...


def close_kms(kms: KeyManagementService) -> None:
    """Close ``kms`` if it holds resources (the documented default: nothing to close)."""
    if isinstance(kms, ClosableKMS):
        kms.close()
