"""asherah_rotate --reencrypt (asherah_django.rotation.reencrypt): compare-and-swap and
auto_now, a run killed midway."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from asherah_django import rotation, runtime
from asherah_django.rotation.reencrypt import _Writer
from tests.support.killed_run import rotate_killed_after_two_windows
from tests.testapp.models import TenantNote
from tests.unit.management.commands.conftest import run_command, unique
from tests.unit.management.commands.models import StampedNote
from tests.unit.management.commands.test_asherah_rotate import (
    assert_no_revoked_keys,
    assert_readable,
    key_of,
    notes,
    raw,
    record,
)


@pytest.mark.django_db(transaction=True)
def test_compare_and_swap_and_auto_now(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A row the application rewrites between the read and the write is left alone; other
    rows are updated without save(): auto_now columns keep their value."""
    settings.ASHERAH = {**settings.ASHERAH, "SERVICE_NAME": unique("stamp")}
    with connection.schema_editor() as editor:
        editor.create_model(StampedNote)
    try:
        rows = [StampedNote.objects.create(tenant_id="t", body=f"v{i}") for i in range(4)]
        stamps = {row.pk: raw(StampedNote, row.pk, "updated") for row in rows}
        racer = rows[1]
        racer_text = raw(StampedNote, racer.pk, "body")
        factory = runtime.get_session_factory()
        summary = rotation.Summary()
        rotation.revoke_partitions(factory, ["t"], summary)
        real = _Writer.reencrypt

        def racing(self: _Writer, partition: str, text: str) -> str:
            new = real(self, partition, text)
            if text == racer_text:  # the application saves this row right now
                note = StampedNote.objects.get(pk=racer.pk)
                note.body = "written by the app"
                note.save()
            return new

        monkeypatch.setattr(_Writer, "reencrypt", racing)
        field = StampedNote._meta.get_field("body")
        target = rotation.Target(StampedNote, (field,))  # type: ignore[arg-type]
        stats = rotation.reencrypt(factory, target, summary, batch_size=3)
        assert (stats.reencrypted, stats.changed, stats.rows) == (3, 1, 4)
        assert summary.lines[-1] == (
            "asherah_commands_tests.StampedNote (body): 4 row(s) read, 3 value(s) re-encrypted, "
            "0 already on current keys, 1 changed by the application meanwhile (left alone)."
        )
        runtime.reset_session_factory()
        bodies = {row.pk: row.body for row in StampedNote.objects.all()}
        assert bodies == {
            rows[0].pk: "v0",
            racer.pk: "written by the app",
            rows[2].pk: "v2",
            rows[3].pk: "v3",
        }
        for row in rows:
            if row.pk != racer.pk:
                assert raw(StampedNote, row.pk, "updated") == stamps[row.pk]
                assert not record(key_of(StampedNote, row.pk)).revoked
    finally:
        runtime.reset_session_factory()
        with connection.schema_editor() as editor:
            editor.delete_model(StampedNote)


@pytest.mark.django_db(transaction=True)
def test_run_killed_midway_then_rerun(tmp_path: Path) -> None:
    """A real asherah_rotate process killed with SIGKILL mid-run, then run again: every
    row decrypts to its value (nothing encrypted twice) and none names a revoked key."""
    partitions = [unique("k") for _ in range(3)]
    expected = notes(partitions, per=8)  # 24 rows, 36 values
    assert run_command("asherah_rotate", "--partition", *partitions)[0] == 0
    checkpoint = tmp_path / "rotate.json"
    args = [
        "--reencrypt",
        "testapp.TenantNote",
        "--batch-size",
        "3",
        "--checkpoint",
        str(checkpoint),
    ]
    seen = rotate_killed_after_two_windows(args)
    moved = [pk for pk in expected if not record(key_of(TenantNote, pk)).revoked]
    assert 0 < len(moved) < len(expected), seen
    assert checkpoint.exists()

    status, out, _ = run_command("asherah_rotate", *args)
    assert status == 0
    lines = out.replace(str(checkpoint), "<FILE>").splitlines()
    assert re.fullmatch(
        r"testapp\.TenantNote \(body, extra\): resuming after pk \d+ \(checkpoint <FILE>\)\.",
        lines[0],
    )
    assert not checkpoint.exists()
    assert_no_revoked_keys(list(expected))
    assert_readable(expected)
    for pk in expected:  # not a DataRowRecord inside a DataRowRecord
        assert not TenantNote.objects.get(pk=pk).body.startswith('{"Key"')
