"""``asherah_rotate --bind``: convert stored values of fields with ``bind=`` to bound records.

For a column whose field gained ``bind=`` (with ``Bind(..., unbound="read")`` while the
conversion runs), each stored value is decrypted with its own partition's session and,
when it carries no binding yet, encrypted again with the header of its column and row
(:mod:`asherah_django.core.binding`). A value already bound to its row is left alone; one
bound to another row or column (moved there) is counted, logged (pk only) and left alone.

Writes and crash safety are those of ``--reencrypt`` (the same windows, compare-and-swap
UPDATE and checkpoint file): a value is only replaced by a bound encryption of its own
plaintext, and a bound value is never converted again, so a run killed at any point and
run again finishes the job. The run decrypts every value of the column (there is no way
to tell a bound record from an unbound one without decrypting it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.db import transaction

from ..core.binding import has_header, unbind
from ..core.errors import BindingMismatchError, DecryptionError
from .keys import RotationError
from .reencrypt import Checkpoint, Progress, _Writer
from .summary import Summary
from .targets import Target, parse, partition_of, windows

if TYPE_CHECKING:
    from ..core.session import SessionFactory

logger = logging.getLogger("asherah_django.rotation")


@dataclass(frozen=True)
class BindTarget(Target):
    """A :class:`Target` whose rows also carry the raw row fields its bindings name."""

    extra: tuple[str, ...] = ()

    def columns(self) -> list[Any]:
        return [*super().columns(), *self.extra]


def bind_target(target: Target) -> BindTarget:
    """``target`` with the row fields of its fields' bindings; every field must be bound."""
    extra: list[str] = []
    for field in target.fields:
        if field.bind is None:
            raise RotationError(
                f"{target.model._meta.label}.{field.name} has no bind= option: nothing to "
                "convert (add bind=Bind(..., unbound='read') to the field first)"
            )
        extra += [name for name in field.binder.attnames if name not in extra]
    return BindTarget(target.model, target.fields, tuple(extra))


@dataclass
class BindStats:
    """What a ``--bind`` run did to one target (or, in a dry run, would do)."""

    label: str
    dry_run: bool = False
    rows: int = 0
    bound: int = 0
    already: int = 0
    changed: int = 0
    mismatched: int = 0
    not_encrypted: int = 0
    foreign: int = 0
    unreadable: int = 0
    resumed_after: Any = None

    def line(self) -> str:
        verb = "would be bound" if self.dry_run else "bound"
        text = (
            f"{self.label}: {self.rows} row(s) read, {self.bound} value(s) {verb}, "
            f"{self.already} already bound"
        )
        for count, what in (
            (self.changed, "changed by the application meanwhile (left alone)"),
            (self.mismatched, "bound to another row or column (left alone, see the log)"),
            (self.not_encrypted, "not encrypted (see asherah_encrypt)"),
            (self.foreign, "encrypted for another service or product (left alone)"),
            (self.unreadable, "unreadable (see the log)"),
        ):
            if count:
                text += f", {count} {what}"
        return text + "."


def bind_values(
    factory: SessionFactory,
    target: Target,
    summary: Summary,
    *,
    batch_size: int = 500,
    dry_run: bool = False,
    using: str | None = None,
    checkpoint: Checkpoint | None = None,
    progress: Progress | None = None,
    log: Callable[[str], None] | None = None,
    pause: float = 0.0,
) -> BindStats:
    """Convert ``target``'s unbound values to bound records (see the module docs)."""
    bound = bind_target(target)
    using = bound.database(using)
    model = bound.model
    pk_field = model._meta.pk
    assert pk_field is not None
    key = f"{model._meta.label_lower}:{','.join(f.attname for f in bound.fields)}:bind"
    stats = BindStats(bound.label, dry_run=dry_run)
    after = None
    entry = checkpoint.start(key) if checkpoint is not None and not dry_run else None
    if entry is not None:
        after = pk_field.to_python(entry["last_pk"])
        stats.resumed_after = after
        summary.say(f"{bound.label}: resuming after pk {after} (checkpoint {checkpoint.path}).")  # type: ignore[union-attr]
    manager = model._base_manager.db_manager(using)
    total = manager.count()
    done = manager.filter(pk__lte=after).count() if after is not None else 0
    writer = _Writer(factory, bound, using, None)
    for rows in windows(bound, using, batch_size, after):
        before = stats.bound
        with transaction.atomic(using=using):
            _window(factory, bound, rows, writer, stats, dry_run)
        if checkpoint is not None and not dry_run:
            checkpoint.save(key, rows[-1][0], None)
        done += len(rows)
        if log is not None:
            log(f"{bound.label}: pk {rows[0][0]}..{rows[-1][0]}: {stats.bound - before} bound")
        if progress is not None:
            progress(done, max(total, done))
        if pause:
            time.sleep(pause)
    if checkpoint is not None and not dry_run:
        checkpoint.finish(key)
    summary.say(stats.line())
    summary.count("value(s) bound", stats.bound)
    if stats.mismatched:
        summary.count("value(s) bound elsewhere", stats.mismatched)
    if stats.unreadable:
        summary.count("value(s) unreadable", stats.unreadable)
    return stats


def _window(
    factory: SessionFactory,
    target: BindTarget,
    rows: list[tuple[Any, ...]],
    writer: _Writer,
    stats: BindStats,
    dry_run: bool,
) -> None:
    count = len(target.fields)
    parsed = [[parse(text) for text in row[1 : 1 + count]] for row in rows]
    factory.preload({r.parent for records in parsed for r in records if r is not None})
    for row, records in zip(rows, parsed, strict=True):
        stats.rows += 1
        values = dict(zip(target.extra, row[1 + count :], strict=True))
        changes: dict[int, tuple[str, str]] = {}
        for index, (field, text, record) in enumerate(
            zip(target.fields, row[1 : 1 + count], records, strict=True)
        ):
            if record is None:
                stats.not_encrypted += text is not None and text != ""
                continue
            partition = partition_of(factory, record.parent.key_id)
            if partition is None:
                stats.foreign += 1
                continue
            binder = field.binder
            try:
                header = binder.header_from([values[name] for name in binder.attnames])
                session = factory.get_session(partition)
                plaintext = session.decrypt(text)
                if has_header(plaintext):
                    unbind(header, plaintext)  # raises unless bound to this very place
                    stats.already += 1
                    continue
                if dry_run:
                    stats.bound += 1
                    continue
                changes[index] = (session.encrypt(header + plaintext), text)
            except BindingMismatchError as exc:
                stats.mismatched += 1
                logger.warning("asherah_rotate --bind: %s pk %s: %s", target.label, row[0], exc)
            except (DecryptionError, ValueError) as exc:
                stats.unreadable += 1
                logger.warning(
                    "asherah_rotate --bind: %s pk %s: %s", target.label, row[0], exc.args[0]
                )
        if changes:
            if writer.update(row[0], changes):
                stats.bound += len(changes)
            else:
                stats.changed += len(changes)
