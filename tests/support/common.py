"""What many test modules share: the repository root, and the progress line's rate and ETA."""

from __future__ import annotations

from pathlib import Path

#: The repository's root (where manage.py-style subprocesses run, docs and examples live).
ROOT = Path(__file__).resolve().parents[2]
#: The end of a maintenance command's progress line: ``, 1,234 rows/s, ETA 0:00:05``.
RATE = r", [\d,]+ rows/s, ETA \d+:\d\d:\d\d$"
