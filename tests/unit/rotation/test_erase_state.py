"""EraseState: saved after every step, resumed only by the same erasure."""

from __future__ import annotations

from pathlib import Path

import pytest

from asherah_django.rotation.erase_state import EraseState, EraseStateError


def test_state_saves_and_resumes(tmp_path: Path) -> None:
    path = str(tmp_path / "erase.json")
    state = EraseState.start(path, "tenant-42", "svc", "prod")
    state.phase, state.rewrapped, state.retired = "rewrap", 12, [3]
    state.save()
    again = EraseState.resume(path, "tenant-42", "svc", "prod")
    assert (again.phase, again.rewrapped, again.retired) == ("rewrap", 12, [3])
    assert [p.name for p in tmp_path.iterdir()] == ["erase.json"]


def test_start_refuses_an_existing_file_and_resume_another_erasure(tmp_path: Path) -> None:
    path = str(tmp_path / "erase.json")
    EraseState.start(path, "tenant-42", "svc", "prod")
    with pytest.raises(EraseStateError, match="continue it with --resume"):
        EraseState.start(path, "tenant-42", "svc", "prod")
    with pytest.raises(EraseStateError, match="belongs to the erasure of partition 'tenant-42'"):
        EraseState.resume(path, "tenant-7", "svc", "prod")
    with pytest.raises(EraseStateError, match="cannot read"):
        EraseState.resume(str(tmp_path / "missing.json"), "tenant-42", "svc", "prod")
