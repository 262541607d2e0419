"""Write a JSON file atomically: a temporary file in the same folder, renamed over the old one.

A reader (or a run resumed after a crash) sees the old file or the new one, never half of
one. Used by the passes' checkpoints and the erasure's state file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as JSON (indented, keys sorted) to ``path``, replacing it atomically."""
    target = Path(path)
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=1, sort_keys=True)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
