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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Unpack

from ..core.binding import has_header, unbind
from ..core.errors import BindingMismatchError, DecryptionError
from ..maintenance import Changes, Pass, PassOptions, PassStats, Row
from ..maintenance.passes import CHANGED, FOREIGN, NOT_ENCRYPTED
from ..maintenance.summary import Summary
from .keys import RotationError
from .reencrypt import _Writer, ours, target_options
from .targets import Target, check_pk, parse

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


_MISMATCHED = ("mismatched", "bound to another row or column (left alone, see the log)")


@dataclass
class BindStats(PassStats):
    """What a ``--bind`` run did to one target (or, in a dry run, would do)."""

    DONE = ("bound", "value(s) ", "bound")
    ALREADY = ("already", "already bound")
    NOTES = (
        CHANGED,
        _MISMATCHED,
        NOT_ENCRYPTED,
        FOREIGN,
        ("unreadable", "unreadable (see the log)"),
    )

    bound: int = 0
    already: int = 0
    mismatched: int = 0


def bind_values(
    factory: SessionFactory,
    target: Target,
    summary: Summary,
    **options: Unpack[PassOptions],
) -> BindStats:
    """Convert ``target``'s unbound values to bound records (see the module docs)."""
    bound = bind_target(target)
    check_pk(bound)
    key = f"{bound.model._meta.label_lower}:{','.join(f.attname for f in bound.fields)}:bind"
    stats = BindStats(bound.label, dry_run=options.get("dry_run", False))
    run = Pass(bound.model, stats, summary, key, target_options(bound, options))
    writer = _Writer(factory, bound, run.using, None)
    run.run(
        bound.columns(),
        lambda rows: _window(writer, bound, rows, stats),
    )
    stats.tell(
        summary,
        ("value(s) bound", stats.bound),
        ("value(s) bound elsewhere", stats.mismatched),
        ("value(s) unreadable", stats.unreadable),
    )
    return stats


def _window(writer: _Writer, target: BindTarget, rows: list[Row], stats: BindStats) -> None:
    factory, dry_run = writer.factory, stats.dry_run
    count = len(target.fields)
    parsed = [[parse(text) for text in row[1 : 1 + count]] for row in rows]
    factory.preload({r.parent for records in parsed for r in records if r is not None})
    changes = Changes()
    for row, records in zip(rows, parsed, strict=True):
        stats.rows += 1
        values = dict(zip(target.extra, row[1 + count :], strict=True))
        for field, text, record in zip(target.fields, row[1 : 1 + count], records, strict=True):
            partition = ours(factory, text, record, stats)
            if partition is None:
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
                changes.add(row[0], field.column, session.encrypt(header + plaintext), text)
            except BindingMismatchError as exc:
                stats.mismatched += 1
                logger.warning("asherah_rotate --bind: %s pk %s: %s", target.label, row[0], exc)
            except (DecryptionError, ValueError) as exc:
                stats.unreadable += 1
                logger.warning(
                    "asherah_rotate --bind: %s pk %s: %s", target.label, row[0], exc.args[0]
                )
    swapped = writer.swap(changes)
    stats.bound += swapped.values
    stats.changed += swapped.lost_values
