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
        spare = "(to spare the database)"
        options: list[tuple[str, dict[str, Any]]] = [
            ("--batch-size", {"type": int, "default": 500, "help": "rows per window"}),
            ("--pause", {"type": float, "default": 0.0, "metavar": "SECONDS",
                         "help": f"sleep between windows {spare}"}),
            ("--throttle", {"type": float, "metavar": "ROWS_PER_SECOND",
                            "help": f"at most this many rows per second {spare}"}),
            ("--shard", {"metavar": "I/N", "help": "only shard I of N of the rows (by primary "
                         "key): run N processes at once"}),
            ("--database", {"default": database, "help": "database alias of the models "
                            f"(default: {database or 'router'})"}),
            ("--dry-run", {"action": "store_true", "help": "change nothing; count"}),
        ]  # fmt: skip
        if checkpoint:
            help_ = "record progress in FILE and resume from it"
            options.insert(1, ("--checkpoint", {"metavar": "FILE", "help": help_}))
        for flag, spec in options:
            parser.add_argument(flag, **spec)

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
