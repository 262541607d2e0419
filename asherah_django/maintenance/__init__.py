"""Table-scale plumbing shared by the maintenance commands (``asherah_encrypt``,
``asherah_rotate --reencrypt``/``--bind``, ``asherah_reindex``).

- :mod:`.windows`: read a table in primary-key windows, optionally one shard of it;
- :mod:`.swap`: write a window's new values with compare-and-swap ``UPDATE``s;
- :mod:`.passes`: one resumable pass (transaction per window, throttle);
- :mod:`.checkpoint`: the file a pass resumes from;
- :mod:`.progress`: rows done on stderr;
- :mod:`.command`: a mixin for the commands: the options of a pass, its progress.
"""

from __future__ import annotations

from .checkpoint import Checkpoint
from .command import PassCommand
from .passes import Pass, PassOptions, PassStats, Throttle
from .progress import Progress, ProgressReporter
from .swap import Change, Changes, Column, CompareAndSwap, Swapped
from .windows import Row, Shard, pk_windows

__all__ = [
    "Change",
    "Changes",
    "Checkpoint",
    "Column",
    "CompareAndSwap",
    "Pass",
    "PassCommand",
    "PassOptions",
    "PassStats",
    "Progress",
    "ProgressReporter",
    "Row",
    "Shard",
    "Swapped",
    "Throttle",
    "pk_windows",
]
