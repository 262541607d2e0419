"""What the maintenance commands share: the options of a pass and its progress output."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser, OutputWrapper

from ..core.errors import AsherahError
from .checkpoint import Checkpoint
from .passes import PassOptions
from .progress import ProgressReporter
from .windows import Shard


class PassCommand:
    """Mixin for a ``BaseCommand`` that runs passes over tables."""

    stdout: OutputWrapper
    stderr: OutputWrapper

    @staticmethod
    def add_pass_arguments(
        parser: CommandParser, *, checkpoint: bool = True, database: str | None = None
    ) -> None:
        """``--batch-size``, ``--pause``, ``--throttle``, ``--shard``, ``--database``
        (default ``database``, else the router's), ``--dry-run`` and, with ``checkpoint``,
        ``--checkpoint``."""
        parser.add_argument("--batch-size", type=int, default=500, help="rows per window")
        if checkpoint:
            parser.add_argument(
                "--checkpoint", metavar="FILE", help="record progress in FILE and resume from it"
            )
        parser.add_argument(
            "--pause", type=float, default=0.0, metavar="SECONDS",
            help="sleep between windows (to spare the database)",
        )  # fmt: skip
        parser.add_argument(
            "--throttle", type=float, metavar="ROWS_PER_SECOND",
            help="at most this many rows per second (to spare the database)",
        )  # fmt: skip
        parser.add_argument(
            "--shard", metavar="I/N",
            help="only shard I of N of the rows (by primary key): run N processes at once",
        )  # fmt: skip
        parser.add_argument(
            "--database", default=database,
            help=f"database alias of the models (default: {database or 'router'})",
        )  # fmt: skip
        parser.add_argument("--dry-run", action="store_true", help="change nothing; count")

    def pass_options(self, options: dict[str, Any], *, tty_only: bool = False) -> PassOptions:
        """The keyword arguments of a pass function, from the command's ``options``; its
        progress reporter (if any) is ``["progress"]``, to :meth:`end_progress` after."""
        path = options.get("checkpoint")
        try:
            shard = Shard.parse(options["shard"]) if options.get("shard") else None
        except AsherahError as exc:
            raise CommandError(str(exc)) from None
        return {
            "batch_size": options["batch_size"],
            "dry_run": options["dry_run"],
            "using": options["database"],
            "checkpoint": Checkpoint(path) if path else None,
            "progress": self.progress(tty_only=tty_only),
            "log": self.stdout.write if options["verbosity"] >= 2 else None,
            "pause": options["pause"],
            "throttle": options.get("throttle"),
            "shard": shard,
        }

    def progress(self, *, tty_only: bool = False) -> ProgressReporter | None:
        """A reporter on stderr; None with ``tty_only`` when stderr is not a terminal."""
        if tty_only and not self.stderr.isatty():
            return None
        return ProgressReporter(self.stderr)

    @staticmethod
    def end_progress(options: PassOptions) -> None:
        reporter = options.get("progress")
        if isinstance(reporter, ProgressReporter):
            reporter.end()
