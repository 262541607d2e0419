"""One pass of a maintenance command over a table: windows, transactions, checkpoint.

Each window is read, handed to the command's ``work`` and written inside one
transaction; then the checkpoint (if any) records its last pk, the progress and the
per-window log line are reported, and the throttle sleeps if asked. A re-run with the same
checkpoint resumes after the last window done; since every write is a compare-and-swap
that only replaces a value by a converted one, a window done twice changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypedDict

from django.db import models, router, transaction

from ..core.errors import AsherahError
from .progress import Progress, ProgressReporter
from .windows import Row, Shard, pk_windows

if TYPE_CHECKING:
    from .summary import Summary


class Checkpoints(Protocol):
    """Where a pass records its progress (:class:`asherah_django.rotation.Checkpoint`)."""

    path: Any

    def start(self, key: str) -> dict[str, Any] | None: ...
    def save(self, key: str, last_pk: Any, cutoff: int | None) -> None: ...
    def finish(self, key: str) -> None: ...


class PassOptions(TypedDict, total=False):
    """The options every pass takes (keyword arguments of the pass functions)."""

    batch_size: int
    dry_run: bool
    using: str | None
    checkpoint: Checkpoints | None
    progress: Progress | None
    log: Callable[[str], None] | None
    pause: float
    throttle: float | None
    shard: Shard | None


#: Notes a pass may add to its line: (attribute, what).
CHANGED = ("changed", "changed by the application meanwhile (left alone)")
NOT_ENCRYPTED = ("not_encrypted", "not encrypted (see asherah_encrypt)")
FOREIGN = ("foreign", "encrypted for another service or product (left alone)")
UNREADABLE = ("unreadable", "unreadable: key missing or record corrupt (see the log)")


@dataclass
class PassStats:
    """Counts every pass keeps; a subclass adds its own and names them in ``DONE`` (the
    values converted: attribute, noun, past participle), ``ALREADY`` (the values found
    converted) and ``NOTES`` (said when not 0), for :meth:`line`."""

    DONE: ClassVar[tuple[str, str, str]] = ("rows", "row(s) ", "done")
    ALREADY: ClassVar[tuple[str, str] | None] = None
    NOTES: ClassVar[tuple[tuple[str, str], ...]] = ()

    label: str
    dry_run: bool = False
    rows: int = 0
    changed: int = 0
    not_encrypted: int = 0
    foreign: int = 0
    unreadable: int = 0
    resumed_after: Any = None

    @property
    def done(self) -> int:
        return int(getattr(self, self.DONE[0]))

    def line(self) -> str:
        """``label: N row(s) read, N value(s) <done>, N already ..., N <note>...``."""
        _, noun, past = self.DONE
        text = f"{self.label}: {self.rows} row(s) read, {self.done} {noun}"
        text += f"would be {past}" if self.dry_run else past
        for attribute, what in (self.ALREADY, *self.NOTES) if self.ALREADY else self.NOTES:
            count = getattr(self, attribute)
            if count or (attribute, what) == self.ALREADY:
                text += f", {count} {what}"
        return text + "."

    def tell(self, summary: Summary, *counts: tuple[str, int]) -> None:
        """Say :meth:`line`; count the first of ``counts`` always, the others if not 0."""
        summary.say(self.line())
        for index, (what, n) in enumerate(counts):
            if n or index == 0:
                summary.count(what, n)


class Throttle:
    """Sleeps ``pause`` seconds after each window and, with ``rate``, as long as it takes
    to keep the pass at or under ``rate`` rows per second (so the database stays
    responsive to the application while a pass runs)."""

    def __init__(
        self,
        pause: float = 0.0,
        rate: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate is not None and rate <= 0:
            raise AsherahError("--throttle must be a positive number of rows per second")
        self.pause = pause
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        self._start = clock()
        self._rows = 0

    def wait(self, rows: int) -> None:
        if self.pause:
            self._sleep(self.pause)
        if self.rate:
            self._rows += rows
            ahead = self._rows / self.rate - (self._clock() - self._start)
            if ahead > 0:
                self._sleep(ahead)


class Pass:
    """A pass over ``model``'s rows; ``key`` names it in the checkpoint (None: none);
    without ``resume`` the pass starts afresh (and still records its progress)."""

    def __init__(
        self,
        model: type[models.Model],
        stats: PassStats,
        summary: Summary | None,
        key: str | None,
        options: PassOptions,
        *,
        resume: bool = True,
    ) -> None:
        pk = model._meta.pk
        if pk is None or isinstance(pk, models.CompositePrimaryKey):
            raise AsherahError(f"{model._meta.label} has no single-column primary key")
        batch_size = options.get("batch_size", 500)
        if batch_size < 1:
            raise AsherahError("--batch-size must be at least 1")
        self.model = model
        self.stats = stats
        self.batch_size = batch_size
        self.using = options.get("using") or router.db_for_write(model)
        self.dry_run = options.get("dry_run", False)
        checkpoint = options.get("checkpoint")
        self.checkpoint = checkpoint if key is not None and not self.dry_run else None
        self.shard = options.get("shard")
        if self.shard is not None and key is not None:
            key += f"@{self.shard}"  # (each shard resumes on its own)
        self.key = key or ""
        self.progress = options.get("progress")
        self.log = options.get("log")
        self.throttle = Throttle(options.get("pause", 0.0), options.get("throttle"))
        self.after: Any = None
        self.entry = self.checkpoint.start(self.key) if self.checkpoint and resume else None
        if self.entry is not None:
            self.after = stats.resumed_after = pk.to_python(self.entry["last_pk"])
            if summary is not None:
                summary.say(
                    f"{stats.label}: resuming after pk {self.after} "
                    f"(checkpoint {self.checkpoint.path})."  # type: ignore[union-attr]
                )

    def rows(self) -> models.QuerySet[Any]:
        rows = self.model._base_manager.db_manager(self.using).all()
        return rows if self.shard is None else self.shard.filter(rows)

    def windows(self, columns: list[Any]) -> Iterator[list[Row]]:
        return pk_windows(self.rows(), columns, self.batch_size, self.after)

    def run(
        self,
        columns: list[Any],
        work: Callable[[list[Row]], None],
        cutoff: int | None = None,
    ) -> None:
        """``work`` each window of ``columns`` in a transaction (``cutoff``: kept in the
        checkpoint for a resumed run)."""
        total = self.rows().count()
        seen = self.rows().filter(pk__lte=self.after).count() if self.after is not None else 0
        if isinstance(self.progress, ProgressReporter):
            self.progress.start(seen)  # (the rate counts this run's rows only)
        for rows in self.windows(columns):
            before = self.stats.done
            with transaction.atomic(using=self.using):
                work(rows)
            if self.checkpoint is not None:
                self.checkpoint.save(self.key, rows[-1][0], cutoff)
            seen += len(rows)
            if self.log is not None:
                self.log(
                    f"{self.stats.label}: pk {rows[0][0]}..{rows[-1][0]}: "
                    f"{self.stats.done - before} {self.stats.DONE[2]}"
                )
            if self.progress is not None:
                self.progress(seen, max(total, seen))
            self.throttle.wait(len(rows))
        if self.checkpoint is not None:
            self.checkpoint.finish(self.key)
