"""``manage.py asherah_reindex``: compute blind indexes in batches; rotate and retire their keys.

Re-indexing reads a field's rows in primary-key windows (each window one transaction) and
rewrites the index of every row whose index is missing or not under the current key
version and options (its prefix says so: see :mod:`.keyring`), decrypting the value with
the partition its DataRowRecord names. Each write is a compare-and-swap
(``UPDATE ... SET idx = new WHERE pk = ? AND value = old AND idx = old``), so a row the
application changed meanwhile is left alone (it got a fresh index when it was saved), and
no ``save()`` runs (no signals, ``auto_now`` untouched); a window's rows are sent together
(:mod:`asherah_django.maintenance`, which also splits a table into ``--shard`` parts).
A row whose index would duplicate
another's on a unique index (two equal values stored during a rotation, see below) is
left alone and reported.

Crash safety: a row is either done (its index has the current prefix) or not, so a run
killed at any point and run again finishes the job without redoing the rows done; with
``--checkpoint FILE`` the re-run also skips the windows already read.

Rotation: :func:`rotate_keys` stores a new version of each blind index key, active from
``now + activate_in`` (default ``CHECK_INTERVAL`` + 60 seconds, so that every process knows
it before it is used; see :mod:`.keyring`). Until then nothing changes; afterwards new
values use it, lookups compare both versions, and a re-index moves the stored ones.
:func:`retire_unused` then marks retired every older version that no stored index uses
any more, and lookups stop comparing it.

During a rotation a unique index can only compare values under the same version: two
equal values written one before and one after the switch, bypassing ``validate_unique`` /
``get_or_create`` (which look under both versions), are both stored. The re-index then
reports the second as a conflict instead of failing; resolve it and run again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Unpack

from django.apps import apps
from django.db import models, router
from django.db.models import ExpressionWrapper, F

from ..core.errors import AsherahError
from ..core.key_ids import KeyKind
from ..fields.base import EncryptedField, encrypted_fields
from ..maintenance import Change, CompareAndSwap, Pass, PassOptions, PassStats, Row
from ..maintenance.passes import CHANGED
from ..maintenance.passes import UNREADABLE as UNREADABLE_NOTE
from ..rotation.reencrypt import ROW_ERRORS, UNREADABLE
from ..rotation.targets import parse
from .column import BlindIndexField
from .keyring import IndexKeys, index_keys, version_tag
from .options import index_input

if TYPE_CHECKING:
    from ..core.session import SessionFactory
    from ..rotation import Summary

logger = logging.getLogger("asherah_django.blind_index")


class ReindexError(AsherahError):
    """A re-index or rotation step cannot run (bad labels, arguments or metastore)."""


@dataclass(frozen=True)
class IndexedField:
    """An encrypted field with a blind index, and its index column."""

    model: type[models.Model]
    field: EncryptedField
    column: BlindIndexField

    @property
    def label(self) -> str:
        return f"{self.model._meta.label}.{self.field.name}"


def indexed_fields(labels: Sequence[str] = ()) -> list[IndexedField]:
    """``app_label.Model`` (its blind-indexed fields) or ``app_label.Model.field``; every
    blind-indexed field of every installed model when ``labels`` is empty."""
    if not labels:
        return [
            _indexed(model, f)
            for model in apps.get_models()
            for f in encrypted_fields(model)
            if f.blind_index is not None
        ]
    found: list[IndexedField] = []
    from ..rotation.targets import parse_field_label  # (rotation imports this package)

    for label in labels:
        model, chosen = parse_field_label(label, ReindexError)
        if chosen is None:
            fields = [f for f in encrypted_fields(model) if f.blind_index is not None]
            if not fields:
                raise ReindexError(f"{model._meta.label} has no field with a blind index")
        else:
            if not isinstance(chosen, EncryptedField) or chosen.blind_index is None:
                raise ReindexError(f"{model._meta.label}.{chosen.name} has no blind index")
            fields = [chosen]
        for f in fields:
            item = _indexed(model, f)
            if item not in found:
                found.append(item)
    return found


def _indexed(model: type[models.Model], field: EncryptedField) -> IndexedField:
    column = model._meta.get_field(field.blind_config.field_name)
    assert isinstance(column, BlindIndexField)
    return IndexedField(model, field, column)


@dataclass
class ReindexStats(PassStats):
    """What a run did to one field (or, in a dry run, would do)."""

    DONE = ("indexed", "", "indexed")
    ALREADY = ("current", "already current")
    NOTES = (
        ("cleared", "index(es) of NULL values cleared"),
        CHANGED,
        ("not_encrypted", "plaintext not indexed (see asherah_encrypt)"),
        UNREADABLE_NOTE,
        ("conflicts", "would duplicate another row's unique value (left alone)"),
    )

    indexed: int = 0
    current: int = 0
    cleared: int = 0
    conflicts: int = 0
    conflict_pks: list[Any] = field(default_factory=list)


def reindex(
    factory: SessionFactory,
    target: IndexedField,
    summary: Summary,
    *,
    recompute: bool = False,
    **options: Unpack[PassOptions],
) -> ReindexStats:
    """Bring ``target``'s index column up to date (see the module docs)."""
    model = target.model
    key = f"bidx:{model._meta.label_lower}.{target.field.name}"
    stats = ReindexStats(target.label, dry_run=options.get("dry_run", False))
    run = Pass(model, stats, summary, key, options, resume=not recompute)
    writer = _Writer(factory, target, run.using, recompute=recompute)
    field = target.field
    columns: list[Any] = [
        "pk",
        ExpressionWrapper(F(field.attname), output_field=models.TextField()),
        target.column.attname,
    ]
    if isinstance(field.partition, str):
        columns.append(field._partition_attname)
    run.run(
        columns,
        lambda rows: writer.window(rows, stats, run.dry_run),
    )
    stats.tell(
        summary,
        ("index value(s) written" if not run.dry_run else "index value(s)", stats.indexed),
        ("unique conflict(s)", stats.conflicts),
        (UNREADABLE, stats.unreadable),
    )
    return stats


class _Writer:
    """Computes index values and writes them with compare-and-swap updates."""

    def __init__(
        self, factory: SessionFactory, target: IndexedField, using: str, *, recompute: bool
    ) -> None:
        self.factory = factory
        self.target = target
        self.using = using
        self.recompute = recompute
        self.keys: IndexKeys = index_keys(factory)
        self.config = target.field.blind_config
        self.swap = CompareAndSwap(target.model, using).swap
        value, index = target.field.column, target.column.column
        assert value is not None
        assert index is not None
        self.value, self.index = value, index

    def window(self, rows: list[Row], stats: ReindexStats, dry_run: bool) -> None:
        clears: list[Change] = []
        writes: list[Change] = []
        self._window(rows, stats, dry_run, clears, writes)
        unique = self.target.column.schema_unique
        for changes, kind in ((clears, "cleared"), (writes, "indexed")):
            swapped = self.swap(changes, isolate=unique)
            setattr(stats, kind, getattr(stats, kind) + swapped.rows)
            stats.changed += swapped.lost_rows
            stats.conflicts += len(swapped.conflicts)
            stats.conflict_pks += swapped.conflicts
            for pk in swapped.conflicts:
                logger.warning(
                    "asherah_reindex: %s pk %s: another row holds the same value on this unique "
                    "field (stored during a key rotation?); resolve it and run again",
                    self.target.label,
                    pk,
                )

    def _window(
        self,
        rows: list[Row],
        stats: ReindexStats,
        dry_run: bool,
        clears: list[Change],
        writes: list[Change],
    ) -> None:
        parsed = [parse(row[1]) for row in rows]
        metas = {record.parent for record in parsed if record is not None}
        if metas and not dry_run:
            self.factory.preload(metas)
        for row, record in zip(rows, parsed, strict=True):
            stats.rows += 1
            pk, text, stored = row[0], row[1], row[2]
            if text is None:
                if stored is None:
                    stats.current += 1
                elif dry_run:
                    stats.cleared += 1
                else:
                    clears.append(self._change(pk, None, None, stored))
                continue
            if record is not None:
                partition = self._partition_of(record.parent.key_id)
                if partition is None:
                    stats.unreadable += 1
                    logger.warning(
                        "asherah_reindex: %s pk %s: encrypted for another service or product",
                        self.target.label,
                        pk,
                    )
                    continue
            elif self.target.field.legacy == "read":
                partition = str(row[3]) if len(row) > 3 and row[3] not in (None, "") else None
                if partition is None and self.config.scope == "partition":
                    stats.not_encrypted += 1
                    continue
            else:
                stats.not_encrypted += 1
                continue
            key_id = self.keys.key_id(partition if self.config.scope == "partition" else None)
            try:
                version = self.keys.write_version(key_id)
            except ROW_ERRORS as exc:
                stats.unreadable += 1
                logger.warning("asherah_reindex: %s pk %s: %s", self.target.label, pk, exc)
                continue
            prefix = version.prefix(self.config.profile)
            if not self.recompute and isinstance(stored, str) and stored.startswith(prefix):
                stats.current += 1
                continue
            if dry_run:
                stats.indexed += 1
                continue
            try:
                value = self._plaintext(text, record, partition)
            except (*ROW_ERRORS, ValueError, TypeError) as exc:
                stats.unreadable += 1
                logger.warning("asherah_reindex: %s pk %s: %s", self.target.label, pk, exc)
                continue
            data = index_input(self.target.field, value)
            new = version.index_value(
                self.config.context, self.config.profile, data, self.config.digest_size
            )
            if new == stored:
                stats.current += 1
            else:
                writes.append(self._change(pk, new, text, stored))

    def _partition_of(self, key_id: str) -> str | None:
        return self.factory.ids.partition_of(key_id)

    def _plaintext(self, text: str, record: Any, partition: str | None) -> Any:
        field = self.target.field
        if record is None:
            return field.parse_legacy(text)
        assert partition is not None
        data = self.factory.get_session(partition).decrypt(text)
        if field.bind is not None:
            data = field.binder.column_value(data)
        return field.decode(data)

    def _change(self, pk: Any, new: str | None, text: str | None, stored: Any) -> Change:
        """Set the index to ``new`` while the row holds ``text`` and ``stored``."""
        return Change(pk, {self.index: new}, {self.value: text, self.index: stored})


# -- keys: rotation and retirement --------------------------------------------------------


def stored_key_ids(factory: SessionFactory) -> list[str]:
    """This service's blind index key ids in the metastore: the global one first (if it
    exists), then every partition's."""
    from ..models import EncryptionKey
    from ..rotation import keys as rotation_keys

    store = rotation_keys.metastore_of(factory)
    prefix, suffix = factory.ids.like(KeyKind.INDEX)
    ids = (
        EncryptionKey.objects.using(store.using)
        .filter(id__startswith=prefix, id__endswith=suffix)
        .values_list("id", flat=True)
        .distinct()
    )
    ours = []
    for key_id in ids:
        parsed = factory.ids.parse(key_id)
        if parsed.ours:
            ours.append((parsed.partition is not None, key_id))
    return [key_id for _, key_id in sorted(ours)]


def rotate_keys(
    factory: SessionFactory,
    summary: Summary,
    *,
    activate_in: int | None = None,
    dry_run: bool = False,
) -> int | None:
    """Store a new version of every blind index key of this service, active ``activate_in``
    seconds from now (default ``CHECK_INTERVAL`` + 60). Returns the activation time, or
    None when no key exists yet."""
    if activate_in is None:
        activate_in = factory.policy.check_interval + 60
    if activate_in < 0:
        raise ReindexError("--activate-in cannot be negative")
    keys = index_keys(factory)
    key_ids = stored_key_ids(factory)
    if not key_ids:
        summary.say("No blind index key exists yet: nothing to rotate.")
        return None
    activate_at = int(factory.clock()) + activate_in
    if dry_run:
        summary.say(
            f"Would rotate {len(key_ids)} blind index key(s), the new versions active from "
            f"{_when(activate_at)}."
        )
        summary.count("blind index key(s) rotated", len(key_ids))
        return activate_at
    latest = activate_at
    for key_id in key_ids:
        result = keys.rotate(key_id, activate_at)
        if result is None:
            continue
        created, new = result
        latest = max(latest, created)
        if new:
            summary.say(f"Rotated {key_id}: new version {version_tag(created)}.")
            summary.count("blind index key(s) rotated")
            logger.info("asherah_reindex: rotated %s: new version active from %s", key_id, created)
        else:
            summary.say(f"{key_id}: a new version is already pending ({version_tag(created)}).")
    if latest > factory.clock():
        summary.say(
            f"The new versions become active at {_when(latest)}; run asherah_reindex after "
            "that to move the stored indexes to them."
        )
    else:
        summary.say("The new versions are active now.")
    return latest


def retire_unused(factory: SessionFactory, summary: Summary, *, dry_run: bool = False) -> int:
    """Retire every key version older than its key's current one that no stored index value
    (of any blind-indexed field of any installed model) uses any more."""
    keys = index_keys(factory)
    now = factory.clock()
    fields = indexed_fields()
    retired = 0
    for key_id in stored_key_ids(factory):
        keys.forget(key_id)
        ring = keys.ring(key_id)
        if ring is None:
            continue
        current = ring.write_version(now)
        if current is None:
            continue
        scope = "global" if factory.ids.parse(key_id).partition is None else "partition"
        users = [f for f in fields if f.field.blind_config.scope == scope]
        for version in ring.versions:
            if version.retired or version.created >= current.created:
                continue
            in_use = [f.label for f in users if _uses(f, version.tag)]
            if in_use:
                summary.say(
                    f"{key_id} version {version.tag} is still used by {', '.join(in_use)}: "
                    "kept (run asherah_reindex for those fields)."
                )
                continue
            if not dry_run:
                keys.retire(key_id, version.created)
            summary.say(
                f"{'Would retire' if dry_run else 'Retired'} {key_id} version {version.tag}: no "
                "stored index uses it any more."
            )
            summary.count("old blind index key version(s) retired")
            retired += 1
    return retired


def _uses(target: IndexedField, tag: str) -> bool:
    manager = target.model._base_manager.db_manager(router.db_for_read(target.model))
    return manager.filter(**{f"{target.column.attname}__startswith": f"{tag}."}).exists()


def _when(epoch: int) -> str:
    from ..rotation import when

    return when(epoch)
