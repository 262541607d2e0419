"""``asherah_rotate --reencrypt``: move stored values off revoked or old keys.

A value is *stale* when the intermediate key it names, or that key's system key, is
revoked, expired (``EXPIRE_AFTER``) or superseded (a newer version of the same key id is
stored), or (with a cutoff, ``--older-than``) when the intermediate key was created before
the cutoff. A stale value is decrypted with its own partition's session and encrypted again
with that partition's current key. So after ``--system --all-partitions``, one
``--reencrypt`` leaves no value under any key that existed before (the incident runbook in
SECURITY.md).

Bad rows never stop a run: a value whose key is missing, malformed, out of range or not
unwrapped by the KMS, or whose record does not decrypt, is counted as unreadable, logged
with its primary key, and left as it is; the command then exits with status 3.

Writes: ``UPDATE ... SET col = new WHERE pk = ? AND col = old`` for each row (a
compare-and-swap on the ciphertext that was read; a window's rows sent together, see
:mod:`asherah_django.maintenance.swap`), so a row the application changed meanwhile is
skipped and counted, never overwritten. No ``save()``: no signals, no ``auto_now``, no
other column touched. Each window of rows is one transaction. With ``shard=``
(``--shard I/N``) a run reads one of N disjoint parts of the table, so N processes can
share the work; runs that overlap are harmless (the compare-and-swap lets one of them
write each value, the other counts it as changed meanwhile).

Crash safety: a value is only ever replaced by an encryption of its *plaintext*, and an
already re-encrypted value is not stale any more, so a run killed at any point and run
again finishes the job with every value decryptable and none encrypted twice. With a
checkpoint file the re-run also skips the windows already done (the cutoff is kept).
"""

from __future__ import annotations

import calendar
import datetime
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Unpack

from ..core.errors import (
    DecryptionError,
    KeyCreationError,
    KMSError,
    UnreadableKeyError,
)
from ..core.records import DataRowRecord, EnvelopeKeyRecord, KeyMeta, parse_data_row
from ..maintenance import Changes, CompareAndSwap, Pass, PassOptions, PassStats
from ..maintenance import Checkpoint as Checkpoint  # (rotation.Checkpoint)
from ..maintenance.passes import CHANGED, FOREIGN, NOT_ENCRYPTED
from ..maintenance.passes import UNREADABLE as UNREADABLE_NOTE
from ..maintenance.summary import Summary
from .keys import metastore_of
from .targets import Target, check_pk, parse, partition_of

if TYPE_CHECKING:
    from ..core.session import SessionFactory
    from ..metastore import DjangoMetastore

logger = logging.getLogger("asherah_django.rotation")

#: The summary counter of values that could not be read (the commands then exit 3).
UNREADABLE = "value(s) unreadable"
#: A value (or its partition) that cannot be processed: counted as unreadable, run goes on.
ROW_ERRORS = (DecryptionError, KMSError, UnreadableKeyError, KeyCreationError)


class KeyStatus:
    """Whether keys are stale, read from the metastore once per run (batched)."""

    def __init__(self, factory: SessionFactory, cutoff: int | None) -> None:
        self.factory = factory
        self.cutoff = cutoff
        self.now = factory.clock()
        self.records: dict[KeyMeta, EnvelopeKeyRecord | None] = {}
        #: The newest stored ``created`` of each key id seen (None: no readable version).
        self.latest: dict[str, int | None] = {}

    def load(self, metas: Iterable[KeyMeta]) -> None:
        store = metastore_of(self.factory)
        wanted = {meta for meta in metas if meta not in self.records}
        for _ in range(2):  # the intermediate keys, then their system keys
            if not wanted:
                break
            found = _load_many(store, wanted)
            for meta in wanted:
                self.records[meta] = found.get(meta)
            parents = {r.parent for r in found.values() if r.parent is not None}
            wanted = {meta for meta in parents if meta not in self.records}
        ids = {meta.key_id for meta in self.records} - set(self.latest)
        if ids:
            self.latest.update(dict.fromkeys(ids))
            self.latest.update(_latest_created(store, ids))

    def why_stale(self, meta: KeyMeta) -> str | None:
        """``revoked``, ``expired``, ``superseded`` (each also for the ``system key``),
        ``old``, ``missing``; None when current."""
        record = self.records.get(meta)
        if record is None:
            return "missing"
        parent = self.records.get(record.parent) if record.parent is not None else None
        policy = self.factory.policy
        for what, key, key_meta in (("", record, meta), ("system key ", parent, record.parent)):
            if key is None or key_meta is None:
                continue
            if key.revoked:
                return f"{what}revoked"
            if policy.is_expired(key.created, self.now):
                return f"{what}expired"
            latest = self.latest.get(key_meta.key_id)
            if latest is not None and latest > key_meta.created:
                return f"{what}superseded"
        if self.cutoff is not None and record.created < self.cutoff:
            return "old"
        return None


def _load_many(store: DjangoMetastore, metas: set[KeyMeta]) -> dict[KeyMeta, EnvelopeKeyRecord]:
    """``load_many``; when a malformed row spoils the batch, one by one (a malformed key
    is then simply not found: its values count as unreadable)."""
    try:
        return dict(store.load_many(metas))
    except UnreadableKeyError:
        found = {}
        for meta in metas:
            try:
                record = store.load(meta.key_id, meta.created)
            except UnreadableKeyError as exc:
                logger.warning("asherah_rotate: %s", exc.args[0])
                continue
            if record is not None:
                found[meta] = record
        return found


def _latest_created(store: DjangoMetastore, ids: set[str]) -> dict[str, int]:
    """The newest ``created`` stored for each of ``ids`` (one query per 500 ids)."""
    from django.db.models import Max

    from ..models import EncryptionKey

    latest: dict[str, int] = {}
    ordered = sorted(ids)
    for start in range(0, len(ordered), 500):
        rows = (
            EncryptionKey.objects.using(store.using)
            .filter(id__in=ordered[start : start + 500])
            .values("id")
            .annotate(newest=Max("created"))
        )
        for row in rows:
            newest = row["newest"]
            if isinstance(newest, datetime.datetime):
                latest[row["id"]] = calendar.timegm(newest.utctimetuple())
    return latest


_KEY_TOO_OLD = (
    "key_too_old",
    "left alone: their partition's current key is older than --older-than too (revoke it "
    "first: --partition or --all-partitions)",
)


@dataclass
class ReencryptStats(PassStats):
    """What a run did to one target (or, in a dry run, would do)."""

    DONE = ("reencrypted", "value(s) ", "re-encrypted")
    ALREADY = ("current", "already on current keys")
    NOTES = (CHANGED, NOT_ENCRYPTED, FOREIGN, UNREADABLE_NOTE, _KEY_TOO_OLD)

    reencrypted: int = 0
    current: int = 0
    key_too_old: int = 0
    extra: dict[str, int] = field(default_factory=dict)


def reencrypt(
    factory: SessionFactory,
    target: Target,
    summary: Summary,
    *,
    cutoff: int | None = None,
    **options: Unpack[PassOptions],
) -> ReencryptStats:
    """Re-encrypt ``target``'s stale values (see the module docs); returns the counts."""
    check_pk(target)
    key = f"{target.model._meta.label_lower}:{','.join(f.attname for f in target.fields)}"
    key += ":older-than" if cutoff is not None else ":revoked"
    stats = ReencryptStats(target.label, dry_run=options.get("dry_run", False))
    run = Pass(target.model, stats, summary, key, target_options(target, options))
    if run.entry is not None:
        cutoff = run.entry.get("cutoff", cutoff)
    status = KeyStatus(factory, cutoff)
    writer = _Writer(factory, target, run.using, cutoff)
    run.run(
        target.columns(),
        lambda rows: _window(factory, target, rows, status, writer, stats, run.dry_run),
        cutoff=cutoff,
    )
    stats.tell(
        summary,
        ("value(s) re-encrypted", stats.reencrypted),
        ("value(s) left alone (changed meanwhile)", stats.changed),
        (UNREADABLE, stats.unreadable),
    )
    return stats


def target_options(target: Target, options: PassOptions) -> PassOptions:
    """``options`` with the target's database (the router's when none is given)."""
    return {**options, "using": target.database(options.get("using"))}


def ours(
    factory: SessionFactory, text: Any, record: DataRowRecord | None, stats: PassStats
) -> str | None:
    """The partition of a value encrypted by this service; None (counted in ``stats``) for
    a value not encrypted or another service's."""
    if record is None:
        stats.not_encrypted += text is not None and text != ""
        return None
    partition = partition_of(factory, record.parent.key_id)
    if partition is None:
        stats.foreign += 1
    return partition


def _window(
    factory: SessionFactory,
    target: Target,
    rows: list[tuple[Any, ...]],
    status: KeyStatus,
    writer: _Writer,
    stats: ReencryptStats,
    dry_run: bool,
) -> None:
    parsed = [[parse(text) for text in row[1:]] for row in rows]
    status.load(r.parent for records in parsed for r in records if r is not None)
    stale = {r.parent for records in parsed for r in records if r and status.why_stale(r.parent)}
    if not dry_run:
        factory.preload(stale)
    changes = Changes()
    for row, records in zip(rows, parsed, strict=True):
        stats.rows += 1
        for field_, text, record in zip(target.fields, row[1:], records, strict=True):
            partition = ours(factory, text, record, stats)
            if partition is None or record is None:
                continue
            why = status.why_stale(record.parent)
            if why is None:
                stats.current += 1
                continue
            if why == "missing":
                stats.unreadable += 1
                logger.warning(
                    "asherah_rotate: %s pk %s: key %s is missing",
                    target.label,
                    row[0],
                    record.parent,
                )
                continue
            if dry_run:
                stats.reencrypted += 1
                continue
            try:
                if not writer.current_key_new_enough(partition):
                    stats.key_too_old += 1
                    continue
                new_text = writer.reencrypt(partition, text)
            except ROW_ERRORS as exc:
                stats.unreadable += 1
                logger.warning("asherah_rotate: %s pk %s: %s", target.label, row[0], exc.args[0])
                continue
            if parse_data_row(new_text).parent == record.parent:
                stats.current += 1  # the partition's write key is this one: nothing newer
                continue
            changes.add(row[0], field_.column, new_text, text)
    swapped = writer.swap(changes)
    stats.reencrypted += swapped.values
    stats.changed += swapped.lost_values


class _Writer:
    """Encrypts with each partition's current key; writes with compare-and-swap."""

    def __init__(
        self, factory: SessionFactory, target: Target, using: str, cutoff: int | None
    ) -> None:
        self.factory = factory
        self.target = target
        self.cutoff = cutoff
        self._fresh: dict[str, bool] = {}
        self.swap = CompareAndSwap(target.model, using).swap

    def current_key_new_enough(self, partition: str) -> bool:
        """Whether the partition's write key was created after the cutoff (creates it if
        needed: a revoked or expired key is replaced here)."""
        if self.cutoff is None:
            return True
        fresh = self._fresh.get(partition)
        if fresh is None:
            key = self.factory.latest_intermediate_key(partition)
            fresh = self._fresh[partition] = key.created >= self.cutoff
        return fresh

    def reencrypt(self, partition: str, text: str) -> str:
        session = self.factory.get_session(partition)
        return session.encrypt(session.decrypt(text))
