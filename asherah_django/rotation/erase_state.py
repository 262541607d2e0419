"""The progress of an erasure, in a JSON file, so a killed run continues (``--resume``).

Written atomically (a temporary file renamed over the old one) after every step. It holds
ids, times, counts and versions: never a key byte.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import AsherahError
from ..maintenance.atomic_file import write_json


class EraseStateError(AsherahError):
    """The state file is missing, unreadable, or belongs to another erasure."""


@dataclass
class EraseState:
    """Where an erasure of ``partition`` stands (see :mod:`.erase` for the phases)."""

    path: str
    partition: str
    service: str
    product: str
    started: float = field(default_factory=time.time)
    phase: str = "plan"
    rotate: bool = False
    trim: bool = False
    trimmed: bool = False
    floor_before: int = 0
    floor: int = 0
    new_sk_created: int = 0
    pending_sk: int = 0
    published: float = 0.0
    rewrapped: int = 0
    meanwhile: int = 0
    verified: int = 0
    indexes_cleared: int = 0
    retired: list[int] = field(default_factory=list)
    destroyed: list[list[Any]] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.phase in ("receipt", "done")

    def save(self) -> None:
        data = {k: v for k, v in asdict(self).items() if k != "path"}
        write_json(self.path, data)

    @classmethod
    def start(cls, path: str, partition: str, service: str, product: str) -> EraseState:
        if Path(path).exists():
            raise EraseStateError(
                f"an erasure state file exists at {path}: continue it with --resume, "
                "or remove it if that erasure is finished"
            )
        state = cls(path, partition, service, product)
        state.save()
        return state

    @classmethod
    def resume(cls, path: str, partition: str, service: str, product: str) -> EraseState:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise EraseStateError(f"cannot read the erasure state file {path}: {exc}") from None
        state = cls(path, **data)
        if (state.partition, state.service, state.product) != (partition, service, product):
            raise EraseStateError(
                f"the state file {path} belongs to the erasure of partition "
                f"'{state.partition}' ({state.service}/{state.product})"
            )
        return state
