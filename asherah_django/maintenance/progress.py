"""Progress of a maintenance pass on stderr: a bar on a terminal, a line per window
otherwise (for logs), each with the rows done so far."""

from __future__ import annotations

from collections.abc import Callable

from django.core.management.base import OutputWrapper

#: ``progress(done, total)``, called after each window.
Progress = Callable[[int, int], None]


class ProgressReporter:
    """Writes ``done/total rows`` to ``stream`` (a bar when it is a terminal)."""

    def __init__(self, stream: OutputWrapper) -> None:
        self.stream = stream
        self.tty = stream.isatty()

    def __call__(self, done: int, total: int) -> None:
        total = max(total, done)
        if self.tty:
            width = 30
            filled = width * done // total if total else width
            bar = "#" * filled + "-" * (width - filled)
            self.stream.write(f"\r[{bar}] {done}/{total} rows", ending="")
        else:
            self.stream.write(f"{done}/{total} rows")
        self.stream.flush()

    def end(self) -> None:
        """Ends the bar's line (on a terminal)."""
        if self.tty:
            self.stream.write("")
