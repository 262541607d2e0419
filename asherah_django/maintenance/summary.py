"""What a rotation run says as it goes, and the summary it ends with."""

from __future__ import annotations

import datetime
from collections.abc import Callable

_DRY: dict[str, str] = {
    "Revoked": "Would revoke",
    "Rewrapped": "Would rewrap",
    "Shredded": "Would shred",
    "Re-encrypted": "Would re-encrypt",
}


def when(epoch: int) -> str:
    """An epoch as ``YYYY-MM-DD HH:MM:SSZ`` (as the number when no calendar date fits:
    a planted key row may name any 64-bit ``Created``)."""
    try:
        moment = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
    except (OverflowError, OSError, ValueError):
        return f"epoch {epoch}"
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


class Summary:
    """Lines said during a run (also passed to ``write`` as they come) and counters."""

    def __init__(
        self, *, dry_run: bool = False, write: Callable[[str], None] | None = None
    ) -> None:
        self.dry_run = dry_run
        self.lines: list[str] = []
        self.counts: dict[str, int] = {}
        self._write = write

    def say(self, line: str) -> None:
        self.lines.append(line)
        if self._write is not None:
            self._write(line)

    def verb(self, past: str) -> str:
        """``Revoked``, or ``Would revoke`` in a dry run."""
        return _DRY.get(past, past) if self.dry_run else past

    def count(self, what: str, n: int = 1) -> None:
        self.counts[what] = self.counts.get(what, 0) + n

    def text(self) -> str:
        """``Summary: 1 system key(s) revoked, ...`` (what changed, or would)."""
        parts = ", ".join(f"{n} {what}" for what, n in self.counts.items())
        if self.dry_run:
            return f"Summary (dry run, nothing was changed): would have {parts or 'done nothing'}."
        return f"Summary: {parts or 'nothing changed'}."
