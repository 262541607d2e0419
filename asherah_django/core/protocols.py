"""The two contracts the engine depends on: a key management service and a metastore.

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
class ClosableKMS(Protocol):
    """A KMS holding resources (connections, tokens) that ``close()`` releases."""

    def close(self) -> None: ...
