"""A plain :class:`~.protocols.Metastore` seen as a :class:`~.protocols.KeyStore`.

The built-in stores (``DjangoMetastore``, ``InMemoryMetastore``) are key stores; a user's
store that implements only the three calls of the Metastore contract is wrapped once, here,
when its SessionFactory is built, with these documented defaults: ``load_many`` loads one
key at a time, ``load_versions`` knows the latest version only, ``revoke`` and
``delete_key_id`` raise :class:`~.errors.MetastoreError` (the store cannot), ``close`` and
the fork reset do nothing (the store is the caller's), nothing is ever uncommitted.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from .errors import MetastoreError
from .protocols import BatchMetastore, KeyStore, Metastore
from .records import EnvelopeKeyRecord, KeyMeta


def key_store(metastore: Metastore) -> KeyStore:
    """``metastore`` itself when it is a key store, else the adapter."""
    return metastore if isinstance(metastore, KeyStore) else PlainKeyStore(metastore)


class PlainKeyStore:
    """The KeyStore defaults over a store with the Metastore contract only."""

    def __init__(self, metastore: Metastore) -> None:
        self.wrapped = metastore

    def __repr__(self) -> str:
        return f"<PlainKeyStore {self.wrapped!r}>"

    def load(self, key_id: str, created: int) -> EnvelopeKeyRecord | None:
        return self.wrapped.load(key_id, created)

    def load_latest(self, key_id: str) -> EnvelopeKeyRecord | None:
        return self.wrapped.load_latest(key_id)

    def store(self, key_id: str, created: int, record: EnvelopeKeyRecord) -> bool:
        return self.wrapped.store(key_id, created, record)

    def load_many(self, metas: Iterable[KeyMeta]) -> dict[KeyMeta, EnvelopeKeyRecord]:
        wrapped = self.wrapped
        if isinstance(wrapped, BatchMetastore):
            return dict(wrapped.load_many(metas))
        found = {}
        for meta in metas:
            record = wrapped.load(meta.key_id, meta.created)
            if record is not None:
                found[meta] = record
        return found

    def load_versions(self, key_id: str) -> dict[KeyMeta, EnvelopeKeyRecord]:
        latest = self.wrapped.load_latest(key_id)
        return {KeyMeta(key_id, latest.created): latest} if latest is not None else {}

    def revoke(self, key_id: str, created: int) -> bool:
        raise MetastoreError(f"{type(self.wrapped).__name__} cannot mark keys revoked")

    def rewrap(self, key_id: str, created: int, expected: str, record: EnvelopeKeyRecord) -> bool:
        raise MetastoreError(f"{type(self.wrapped).__name__} cannot rewrap keys in place")

    def delete_version(self, key_id: str, created: int) -> bool:
        raise MetastoreError(f"{type(self.wrapped).__name__} cannot delete keys")

    def delete_key_id(self, key_id: str) -> int:
        raise MetastoreError(f"{type(self.wrapped).__name__} cannot delete keys")

    def is_uncommitted(self, key_id: str, created: int) -> bool:
        return False

    def close(self) -> None:
        """The store is the caller's: it closes it."""

    def after_fork_in_child(self) -> None:
        """Nothing of this adapter's own to reset."""


if TYPE_CHECKING:  # mypy verifies that the adapter fits the contract

    def _fits(store: PlainKeyStore) -> KeyStore:
        return store
