"""Where a pass records the last primary key it finished, to resume after a crash."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..core.errors import AsherahError
from .atomic_file import write_json


class Checkpoint:
    """Progress of passes in a JSON file (one entry per pass), to resume after a crash."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"version": 1, "targets": {}}
        except (OSError, ValueError) as exc:
            raise AsherahError(f"the checkpoint file {self.path} is unreadable: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("targets"), dict):
            return {"version": 1, "targets": {}}
        return data

    def _store(self, data: dict[str, Any]) -> None:
        if not data["targets"]:
            self.path.unlink(missing_ok=True)
            return
        write_json(self.path, data)

    def start(self, key: str) -> dict[str, Any] | None:
        entry = self._load()["targets"].get(key)
        return entry if isinstance(entry, dict) else None

    def save(self, key: str, last_pk: Any, cutoff: int | None) -> None:
        data = self._load()
        data["targets"][key] = {"last_pk": str(last_pk), "cutoff": cutoff}
        self._store(data)

    def finish(self, key: str) -> None:
        data = self._load()
        data["targets"].pop(key, None)
        self._store(data)
