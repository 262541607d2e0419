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

Writes: one ``UPDATE ... SET col = new WHERE pk = ? AND col = old`` per row (a
compare-and-swap on the ciphertext that was read), so a row the application changed
meanwhile is skipped and counted, never overwritten. No ``save()``: no signals, no
``auto_now``, no other column touched. Each window of rows is one transaction.

Crash safety: a value is only ever replaced by an encryption of its *plaintext*, and an
already re-encrypted value is not stale any more, so a run killed at any point and run
again finishes the job with every value decryptable and none encrypted twice. With a
checkpoint file the re-run also skips the windows already done (the cutoff is kept).
"""

from __future__ import annotations

import calendar
import datetime
import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.db import connections, transaction

from ..core.errors import (
    DecryptionError,
    KeyCreationError,
    KMSError,
    UnreadableKeyError,
)
from ..core.records import EnvelopeKeyRecord, KeyMeta, parse_data_row
from .keys import metastore_of
from .summary import Summary
from .targets import Target, parse, partition_of, windows

if TYPE_CHECKING:
    from ..core.session import SessionFactory
    from ..metastore import DjangoMetastore

logger = logging.getLogger("asherah_django.rotation")

Progress = Callable[[int, int], None]

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


@dataclass
class ReencryptStats:
    """What a run did to one target (or, in a dry run, would do)."""

    label: str
    dry_run: bool = False
    rows: int = 0
    reencrypted: int = 0
    current: int = 0
    changed: int = 0
    not_encrypted: int = 0
    foreign: int = 0
    unreadable: int = 0
    key_too_old: int = 0
    resumed_after: Any = None
    extra: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        verb = "would be re-encrypted" if self.dry_run else "re-encrypted"
        text = (
            f"{self.label}: {self.rows} row(s) read, {self.reencrypted} value(s) {verb}, "
            f"{self.current} already on current keys"
        )
        for count, what in (
            (self.changed, "changed by the application meanwhile (left alone)"),
            (self.not_encrypted, "not encrypted (see asherah_encrypt)"),
            (self.foreign, "encrypted for another service or product (left alone)"),
            (self.unreadable, "unreadable: key missing or record corrupt (see the log)"),
            (
                self.key_too_old,
                "left alone: their partition's current key is older than --older-than too "
                "(revoke it first: --partition or --all-partitions)",
            ),
        ):
            if count:
                text += f", {count} {what}"
        return text + "."


class Checkpoint:
    """Progress of ``--reencrypt`` runs in a JSON file, to resume after a crash."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"version": 1, "targets": {}}
        except (OSError, ValueError) as exc:
            from .keys import RotationError

            raise RotationError(f"the checkpoint file {self.path} is unreadable: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("targets"), dict):
            return {"version": 1, "targets": {}}
        return data

    def _store(self, data: dict[str, Any]) -> None:
        if not data["targets"]:
            self.path.unlink(missing_ok=True)
            return
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(temporary, self.path)

    def start(self, key: str) -> dict[str, Any] | None:
        entry = self._load()["targets"].get(key)
        return entry if isinstance(entry, dict) else None

    def save(self, key: str, last_pk: Any, cutoff: int | None) -> None:
        data = self._load()
        data["targets"][key] = {"last_pk": str(last_pk), "cutoff": cutoff}
        self._store(data)

    def finish(self, key: str) -> None:
        data = self._load()
        data["targets"].pop(key, None)
        self._store(data)


def reencrypt(
    factory: SessionFactory,
    target: Target,
    summary: Summary,
    *,
    cutoff: int | None = None,
    batch_size: int = 500,
    dry_run: bool = False,
    using: str | None = None,
    checkpoint: Checkpoint | None = None,
    progress: Progress | None = None,
    log: Callable[[str], None] | None = None,
    pause: float = 0.0,
) -> ReencryptStats:
    """Re-encrypt ``target``'s stale values (see the module docs); returns the counts."""
    using = target.database(using)
    model = target.model
    pk_field = model._meta.pk
    assert pk_field is not None
    key = f"{model._meta.label_lower}:{','.join(f.attname for f in target.fields)}"
    key += ":older-than" if cutoff is not None else ":revoked"
    stats = ReencryptStats(target.label, dry_run=dry_run)
    after = None
    entry = checkpoint.start(key) if checkpoint is not None and not dry_run else None
    if entry is not None:
        after = pk_field.to_python(entry["last_pk"])
        cutoff = entry.get("cutoff", cutoff)
        stats.resumed_after = after
        summary.say(f"{target.label}: resuming after pk {after} (checkpoint {checkpoint.path}).")  # type: ignore[union-attr]
    manager = model._base_manager.db_manager(using)
    total = manager.count()
    done = manager.filter(pk__lte=after).count() if after is not None else 0
    status = KeyStatus(factory, cutoff)
    writer = _Writer(factory, target, using, cutoff)
    for rows in windows(target, using, batch_size, after):
        before = stats.reencrypted
        with transaction.atomic(using=using):
            _window(factory, target, rows, status, writer, stats, dry_run)
        if checkpoint is not None and not dry_run:
            checkpoint.save(key, rows[-1][0], cutoff)
        done += len(rows)
        if log is not None:
            log(
                f"{target.label}: pk {rows[0][0]}..{rows[-1][0]}: "
                f"{stats.reencrypted - before} re-encrypted"
            )
        if progress is not None:
            progress(done, max(total, done))
        if pause:
            time.sleep(pause)
    if checkpoint is not None and not dry_run:
        checkpoint.finish(key)
    summary.say(stats.line())
    summary.count("value(s) re-encrypted", stats.reencrypted)
    if stats.changed:
        summary.count("value(s) left alone (changed meanwhile)", stats.changed)
    if stats.unreadable:
        summary.count(UNREADABLE, stats.unreadable)
    return stats


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
    for row, records in zip(rows, parsed, strict=True):
        stats.rows += 1
        changes: dict[int, tuple[str, str]] = {}
        for index, (text, record) in enumerate(zip(row[1:], records, strict=True)):
            if record is None:
                stats.not_encrypted += text is not None and text != ""
                continue
            partition = partition_of(factory, record.parent.key_id)
            if partition is None:
                stats.foreign += 1
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
            changes[index] = (new_text, text)
        if changes:
            if writer.update(row[0], changes):
                stats.reencrypted += len(changes)
            else:
                stats.changed += len(changes)


class _Writer:
    """Encrypts with each partition's current key and writes with compare-and-swap."""

    def __init__(
        self, factory: SessionFactory, target: Target, using: str, cutoff: int | None
    ) -> None:
        self.factory = factory
        self.target = target
        self.using = using
        self.cutoff = cutoff
        self._fresh: dict[str, bool] = {}
        connection = connections[using]
        self._quote = connection.ops.quote_name
        self._table = self._quote(target.model._meta.db_table)
        pk = target.model._meta.pk
        assert pk is not None
        pk_column = pk.column
        assert pk_column is not None
        self._pk = self._quote(pk_column)
        self._pk_field = pk

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

    def update(self, pk: Any, changes: dict[int, tuple[str, str]]) -> bool:
        """One compare-and-swap UPDATE; False when the row changed since it was read."""
        fields = self.target.fields
        sets, conditions, new, old = [], [], [], []
        for index, (new_text, old_text) in changes.items():
            name = fields[index].column
            assert name is not None
            column = self._quote(name)
            sets.append(f"{column} = %s")
            conditions.append(f"{column} = %s")
            new.append(new_text)
            old.append(old_text)
        sql = (
            f"UPDATE {self._table} SET {', '.join(sets)} "  # noqa: S608 - quoted names only
            f"WHERE {self._pk} = %s AND {' AND '.join(conditions)}"
        )
        connection = connections[self.using]
        key = self._pk_field.get_db_prep_value(pk, connection)  # (a UUID pk on SQLite: text)
        with connection.cursor() as cursor:
            cursor.execute(sql, [*new, key, *old])
            return bool(cursor.rowcount)
