"""Key operations of ``asherah_rotate``: revoke, rewrap, shred. Each one is logged.

Revocation rewrites the key's record with ``"Revoked":true`` (Asherah's record format, as
its revoke scripts do), so every Asherah implementation sharing the metastore stops using
the key for new writes (within its cache's revoke-check interval); this process stops at
once (its caches are updated). Values stay readable: decryption ignores revocation.

Shredding deletes every version of a partition's intermediate key: its values can never
be decrypted again. This process forgets the keys at once; other running processes stop
within ``CHECK_INTERVAL`` (their read path re-checks cached keys in the metastore). The
blind index columns of the partition's rows are cleared (:mod:`..blind_index.shred`).
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..core.errors import AsherahError, UnreadableKeyError
from ..core.key_ids import KeyKind
from ..core.kms.vault_errors import VaultKMSError
from ..core.records import EnvelopeKeyRecord, KeyMeta
from ..maintenance.summary import Summary, when

if TYPE_CHECKING:
    from ..core.session import SessionFactory
    from ..metastore import DjangoMetastore

logger = logging.getLogger("asherah_django.rotation")


class RotationError(AsherahError):
    """A rotation step cannot run (wrong KMS or metastore, bad arguments)."""


@dataclass(frozen=True)
class KeyChange:
    """One key revoked, rewrapped or destroyed (or that would be, in a dry run)."""

    action: str
    meta: KeyMeta
    note: str = ""


def metastore_of(factory: SessionFactory) -> DjangoMetastore:
    """The factory's DjangoMetastore; rotation needs the shared table."""
    from ..metastore import DjangoMetastore

    store = factory.metastore
    if not isinstance(store, DjangoMetastore):
        raise RotationError(
            "asherah_rotate works on the shared encryption_key table: set METASTORE=django "
            "(an in-memory metastore lives and dies with its process)"
        )
    return store


def stored_versions(factory: SessionFactory, key_id: str) -> list[tuple[int, str]]:
    """(created epoch, key_record text) of every stored version of ``key_id``, oldest first."""
    from ..models import EncryptionKey

    rows = EncryptionKey.objects.using(metastore_of(factory).using).filter(id=key_id)
    return [(row.created_epoch, row.key_record) for row in rows.order_by("created")]


# -- revocation ---------------------------------------------------------------------------


def revoke_system_key(
    factory: SessionFactory, summary: Summary, *, dry_run: bool = False
) -> list[KeyChange]:
    """Mark the current system key revoked: the next write creates a new one (and, as in
    Asherah's Go code, new intermediate keys under it)."""
    return _revoke_latest(factory, factory.system_key_id, "system key", summary, dry_run)


def revoke_partitions(
    factory: SessionFactory,
    partitions: Sequence[str],
    summary: Summary,
    *,
    dry_run: bool = False,
) -> list[KeyChange]:
    """Mark the current intermediate key of each partition revoked."""
    changes: list[KeyChange] = []
    for partition in partitions:
        key_id = _ik_id(factory, partition)
        what = f"intermediate key of partition '{partition}'"
        changes += _revoke_latest(factory, key_id, what, summary, dry_run)
    return changes


def _ik_id(factory: SessionFactory, partition: str) -> str:
    """The intermediate key id of ``partition`` (InvalidPartitionError if it is not one)."""
    return factory.ids.intermediate(factory.ids.check_partition(partition))


def all_partitions(factory: SessionFactory) -> list[str]:
    """Every partition of this service and product that has an intermediate key."""
    from ..models import EncryptionKey

    prefix, suffix = factory.ids.like(KeyKind.INTERMEDIATE)
    ids = (
        EncryptionKey.objects.using(metastore_of(factory).using)
        .filter(id__startswith=prefix, id__endswith=suffix)
        .values_list("id", flat=True)
        .distinct()
        .order_by("id")
    )
    found = (factory.ids.partition_of(key_id) for key_id in ids)
    return [partition for partition in found if partition is not None]


def _revoke_latest(
    factory: SessionFactory, key_id: str, what: str, summary: Summary, dry_run: bool
) -> list[KeyChange]:
    try:
        record = metastore_of(factory).load_latest(key_id)
    except UnreadableKeyError as exc:
        # A corrupt row must not stop the revocation of every other key (issue #14).
        summary.say(f"The current {what} ({key_id}) is unreadable, left alone: {exc.args[0]}")
        summary.count("key(s) unreadable")
        logger.warning("asherah_rotate: %s", exc.args[0])
        return []
    if record is None:
        summary.say(f"No {what} ({key_id}) exists yet: nothing to revoke.")
        return []
    meta = KeyMeta(key_id, record.created)
    if record.revoked:
        summary.say(
            f"The current {what} ({key_id} created {when(meta.created)}) is already revoked."
        )
        return []
    if not dry_run:
        metastore_of(factory).revoke(key_id, record.created)
        forget_revoked(factory, meta)
        logger.info("asherah_rotate: revoked %s %s created %s", what, key_id, meta.created)
    summary.say(f"{summary.verb('Revoked')} {what}: {key_id} created {when(meta.created)}.")
    summary.count(
        "system key(s) revoked"
        if key_id == factory.system_key_id
        else "intermediate key(s) revoked"
    )
    return [KeyChange("revoked", meta)]


def forget_revoked(factory: SessionFactory, meta: KeyMeta) -> None:
    """Make this process stop using a revoked key for writes at once (see
    :meth:`~asherah_django.core.session.SessionFactory.key_revoked`)."""
    factory.key_revoked(meta)


# -- rewrap -------------------------------------------------------------------------------


def rewrap_system_keys(
    factory: SessionFactory, summary: Summary, *, dry_run: bool = False
) -> list[KeyChange]:
    """Re-encrypt every stored system key under Vault's newest key version (inside Vault).

    The system keys themselves do not change, so nothing else does. Each row is updated
    only if it still holds the record that was read.
    """
    from ..core.kms.vault import VaultTransitKMS
    from ..models import EncryptionKey

    kms = factory.kms
    if not isinstance(kms, VaultTransitKMS):
        raise RotationError("--rewrap needs the Vault Transit KMS (KMS=vault)")
    sk_id = factory.system_key_id
    stored = [
        (c, text, EnvelopeKeyRecord.from_json(text)) for c, text in stored_versions(factory, sk_id)
    ]
    if not stored:
        summary.say(f"No system key ({sk_id}) exists yet: nothing to rewrap.")
        return []
    old = [kms.key_version(record.encrypted_key) for _, _, record in stored]
    if dry_run:
        latest = _latest_version(kms)
        todo = [v for v in old if latest is None or v < latest]
        target = f"version {latest}" if latest is not None else "the newest version"
        summary.say(
            f"Would rewrap {len(todo)} of {len(stored)} stored system key(s) to Vault key "
            f"{target} (now under {_histogram(old)})."
        )
        summary.count("system key(s) rewrapped", len(todo))
        return []
    try:
        blobs = kms.rewrap_keys([record.encrypted_key for _, _, record in stored])
    except VaultKMSError as exc:
        raise RotationError(str(exc.args[0]), hint=exc.hint) from exc
    changes: list[KeyChange] = []
    rows = EncryptionKey.objects.using(metastore_of(factory).using)
    for (created, text, record), before, blob in zip(stored, old, blobs, strict=True):
        after = kms.key_version(blob)
        meta = KeyMeta(sk_id, created)
        if after == before:
            summary.count("system key(s) already on the newest Vault key version")
            continue
        new = EnvelopeKeyRecord(record.created, blob, record.parent, record.revoked)
        row = rows.filter(id=sk_id, created=_aware(created), key_record=text)
        if row.update(key_record=new.to_json()) == 0:
            summary.say(
                f"System key {sk_id} created {when(created)} changed meanwhile: left alone."
            )
            continue
        note = f"v{before} -> v{after}"
        summary.say(f"Rewrapped system key {sk_id} created {when(created)}: Vault key {note}.")
        summary.count("system key(s) rewrapped")
        changes.append(KeyChange("rewrapped", meta, note))
        logger.info("asherah_rotate: rewrapped system key %s created %s: %s", sk_id, created, note)
    return changes


def _latest_version(kms: object) -> int | None:
    from ..core.kms.vault import VaultTransitKMS

    assert isinstance(kms, VaultTransitKMS)
    try:
        return kms.transit_key_info().latest_version
    except VaultKMSError:
        return None  # reading the key's configuration is not allowed


def _histogram(versions: Sequence[int]) -> str:
    counts = {v: versions.count(v) for v in sorted(set(versions))}
    return ", ".join(f"v{v}: {n}" for v, n in counts.items())


def _aware(created: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(created, datetime.UTC)


# -- shredding ----------------------------------------------------------------------------


def shred_partition(
    factory: SessionFactory, partition: str, summary: Summary, *, dry_run: bool = False
) -> int:
    """Delete every intermediate key of ``partition``; its values become undecryptable.

    Returns how many keys were (or, in a dry run, would be) destroyed.
    """
    from ..blind_index.keyring import index_keys
    from ..blind_index.shred import clear_shredded_indexes

    key_id = _ik_id(factory, partition)
    # The partition's blind-index key too (per-partition scope): otherwise whoever can still
    # compute its index values could test which values the partition held.
    bidx_id = factory.ids.index(partition)
    store = metastore_of(factory)
    destroyed = [KeyMeta(key_id, created) for created, _ in stored_versions(factory, key_id)]
    if dry_run:
        count = len(destroyed)
        index_count = len(stored_versions(factory, bidx_id))
    else:
        count = store.delete_key_id(key_id)
        _forget_key_id(factory, key_id)
        index_count = store.delete_key_id(bidx_id)
        index_keys(factory).forget(bidx_id)
        logger.warning(
            "asherah_rotate: shredded partition %r: %d intermediate key version(s) of %s and "
            "%d blind index key version(s) destroyed",
            partition,
            count,
            key_id,
            index_count,
        )
    summary.say(
        f"{summary.verb('Shredded')} partition '{partition}': {count} intermediate key "
        f"version(s) of {key_id} {'would be ' if dry_run else ''}destroyed"
        + ("; its values can never be decrypted again." if count else ".")
    )
    if index_count:
        summary.say(
            f"  and {index_count} blind index key version(s) of {bidx_id} "
            f"{'would be ' if dry_run else ''}destroyed."
        )
    summary.count("intermediate key version(s) destroyed", count)
    # The global-scope blind indexes of its rows could still confirm guesses: clear them.
    clear_shredded_indexes(destroyed, summary, dry_run=dry_run)
    return count


def _forget_key_id(factory: SessionFactory, key_id: str) -> None:
    """Drop and wipe every cached version of ``key_id`` (this process stops at once)."""
    factory.key_shredded(key_id)
