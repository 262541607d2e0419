"""write_json: the whole new file or the old one, never a part, and no temporary left over."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asherah_django.maintenance.atomic_file import write_json


def test_write_json_writes_sorted_indented_json(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    write_json(target, {"b": 1, "a": [2]})
    assert target.read_text(encoding="utf-8") == json.dumps({"a": [2], "b": 1}, indent=1)
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_write_json_replaces_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    write_json(str(target), {"phase": "plan"})
    write_json(str(target), {"phase": "done"})
    assert json.loads(target.read_text(encoding="utf-8")) == {"phase": "done"}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    write_json(target, {"phase": "plan"})
    with pytest.raises(TypeError):
        write_json(target, {"phase": object()})  # not JSON: fails midway through the dump
    assert json.loads(target.read_text(encoding="utf-8")) == {"phase": "plan"}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]
