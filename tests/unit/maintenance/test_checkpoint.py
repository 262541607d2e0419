"""Checkpoint: entries per pass, kept across instances, the file gone once every pass finished."""

from __future__ import annotations

from pathlib import Path

from asherah_django.maintenance.checkpoint import Checkpoint


def test_checkpoint_round_trip_and_finish_removes_the_file(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    Checkpoint(path).save("crm.Contact.email", 42, 1700000000)
    Checkpoint(path).save("crm.Contact.phone", "7", None)
    again = Checkpoint(path)
    assert again.start("crm.Contact.email") == {"last_pk": "42", "cutoff": 1700000000}
    assert again.start("crm.Contact.phone") == {"last_pk": "7", "cutoff": None}
    assert again.start("crm.Other.x") is None
    again.finish("crm.Contact.email")
    assert path.exists()
    again.finish("crm.Contact.phone")
    assert not path.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []
