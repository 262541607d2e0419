"""Progress of a maintenance pass on stderr: a bar on a terminal, a line per window
otherwise (for logs), each with the rows done so far, the rate and the time left."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.core.management.base import OutputWrapper

#: ``progress(done, total)``, called after each window.
Progress = Callable[[int, int], None]


class ProgressReporter:
    """Writes ``done/total rows`` to ``stream`` (a bar when it is a terminal)."""

    def __init__(self, stream: OutputWrapper, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self._clock = clock
        self._start = (clock(), 0)

    def __call__(self, done: int, total: int) -> None:
        total = max(total, done)
        text = f"{done}/{total} rows, {self.rate(done, total)}"
        if self.tty:
            width = 30
            filled = width * done // total if total else width
            bar = "#" * filled + "-" * (width - filled)
            self.stream.write(f"\r[{bar}] {text}", ending="")
        else:
            self.stream.write(text)
        self.stream.flush()

    def start(self, done: int) -> None:
        """A pass starts with ``done`` rows done already (resumed from a checkpoint)."""
        self._start = (self._clock(), done)

    def rate(self, done: int, total: int) -> str:
        """``N rows/s, ETA H:MM:SS`` since :meth:`start`."""
        started, base = self._start
        rate = (done - base) / max(self._clock() - started, 1e-6)
        left = int((total - done) / rate) if rate > 0 else 0
        return f"{rate:,.0f} rows/s, ETA {left // 3600}:{left // 60 % 60:02}:{left % 60:02}"

    def end(self) -> None:
        """Ends the bar's line (on a terminal)."""
        if self.tty:
            self.stream.write("")
