"""The plan of an erasure (what ``asherah_erase --dry-run`` lists) and who runs it."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..conf import asherah_settings
from ..core.records import KeyMeta


@dataclass
class Plan:
    """What an erasure changes (``--dry-run`` prints it)."""

    partition: str
    doomed_ids: tuple[str, ...]
    destroyed: list[KeyMeta]
    survivors: list[KeyMeta]
    old_system_keys: list[tuple[int, int]]  # (created, master-key version)
    rotate: bool
    floor_before: int
    floor: int
    blockers: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"Erasure of partition '{self.partition}':"]
        how = (
            f"after rotating the master key to version {self.floor}"
            if self.rotate
            else (f"under master-key version {self.floor} (the newest)")
        )
        out.append(f"  a new system key is created {how}")
        for meta in self.survivors:
            out.append(f"  re-wrap {meta.key_id} created {meta.created} under the new system key")
        for meta in self.destroyed:
            out.append(f"  destroy {meta.key_id} created {meta.created}")
        for created, version in self.old_system_keys:
            out.append(f"  retire system key created {created} (master-key version {version})")
        out.append(
            f"  raise the master-key decryption floor from {self.floor_before} to {self.floor}"
        )
        return out


def operator() -> str:
    """Who runs the erasure: the ``ERASURE_OPERATOR`` setting, else the OS user."""
    import getpass

    name = str(asherah_settings.get("ERASURE_OPERATOR") or "").strip()
    if name:
        return name
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
