"""manage.py asherah_encrypt: batches, dry run, partitions, resumability after SIGKILL."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

import asherah_django
from asherah_django.core.records import looks_like_data_row
from asherah_django.management.commands.asherah_encrypt import encrypt_column
from tests.support.common import RATE, ROOT
from tests.testapp.models import LegacyNote, TenantNote
from tests.unit.fields.conftest import factory, raw_column, write_raw

#: The rate and ETA that end each progress line.


def _plain_rows(
    count: int, column: str = "body", owner: str = "o", value: str = "plain {pk}"
) -> list[int]:
    """Rows whose ``column`` holds plaintext, as before the field was encrypted."""
    quote = connection.ops.quote_name
    with transaction.atomic():
        notes = LegacyNote.objects.bulk_create(LegacyNote(owner=owner) for _ in range(count))
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(
            f"UPDATE testapp_legacynote SET {quote(column)} = %s WHERE id = %s",
            [(value.format(pk=n.pk), n.pk) for n in notes],
        )
    return [n.pk for n in notes]


@pytest.mark.django_db
def test_encrypts_plaintext_in_batches_and_leaves_the_rest_alone() -> None:
    pks = _plain_rows(7)
    with asherah_django.session("cmd"):
        done = LegacyNote.objects.create(body="already encrypted")
    LegacyNote.objects.create(owner="null")
    before = raw_column(LegacyNote, done.pk, "body")
    progress: list[tuple[int, int]] = []
    result = encrypt_column(
        "testapp.LegacyNote.body",
        batch_size=3,
        partition="cmd",
        progress=lambda *a: progress.append(a),
    )
    assert (result.encrypted, result.already, result.null, result.total) == (7, 1, 1, 9)
    assert progress == [(3, 9), (6, 9), (9, 9)]
    assert raw_column(LegacyNote, done.pk, "body") == before
    session = factory().get_session("cmd")
    for pk in pks:
        assert session.decrypt_text(raw_column(LegacyNote, pk, "body")) == f"plain {pk}"
    again = encrypt_column("testapp.LegacyNote.body", partition="cmd")
    assert (again.encrypted, again.already) == (0, 8)


@pytest.mark.django_db
def test_dry_run_writes_nothing_and_creates_no_key() -> None:
    pks = _plain_rows(4)
    with CaptureQueriesContext(connection) as queries:
        result = encrypt_column("testapp.LegacyNote.body", dry_run=True, partition="dry")
    assert result.encrypted == 4 and result.dry_run
    writes = [q["sql"] for q in queries.captured_queries if "SAVEPOINT" not in q["sql"]]
    assert all(sql.startswith("SELECT") for sql in writes), writes
    assert [raw_column(LegacyNote, pk, "body") for pk in pks] == [f"plain {pk}" for pk in pks]


@pytest.mark.django_db
def test_command_output_and_options() -> None:
    _plain_rows(2, column="number", owner="42", value=" 7")
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "asherah_encrypt",
        "testapp.LegacyNote.number",
        "--partition-field=owner",
        "--batch-size=1",
        stdout=out,
        stderr=err,
    )
    assert out.getvalue() == (
        "testapp.LegacyNote.number: encrypted 2 value(s); 0 already encrypted, 0 NULL, "
        "2 row(s) in all\n"
    )
    assert re.sub(RATE, "", err.getvalue(), flags=re.M) == "1/2 rows\n2/2 rows\n"
    with asherah_django.session("42"):
        assert list(LegacyNote.objects.values_list("number", flat=True)) == [7, 7]
    out = io.StringIO()
    call_command(
        "asherah_encrypt",
        "testapp.LegacyNote.number",
        "--partition=x",
        "--dry-run",
        stdout=out,
        stderr=io.StringIO(),
    )
    assert out.getvalue().startswith("testapp.LegacyNote.number: would encrypt 0 value(s); 2")


@pytest.mark.django_db
def test_row_partitioned_fields_use_each_rows_partition() -> None:
    notes = [TenantNote.objects.create(tenant_id=t, body="x") for t in ("ra", "rb")]
    for note in notes:
        write_raw(TenantNote, note.pk, "body", f"legacy of {note.tenant_id}")
    result = encrypt_column("testapp.TenantNote.body")
    assert result.encrypted == 2
    assert {n.tenant_id: n.body for n in TenantNote.objects.all()} == {
        "ra": "legacy of ra",
        "rb": "legacy of rb",
    }
    with pytest.raises(CommandError, match="has partition='tenant_id'"):
        encrypt_column("testapp.TenantNote.body", partition="p")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("label", "options", "message"),
    [
        ("testapp.LegacyNote", {}, "expected app_label.Model.field"),
        ("testapp.Nope.body", {}, "Nope"),
        ("testapp.LegacyNote.nope", {}, "no field 'nope'"),
        ("testapp.LegacyNote.owner", {}, "not an encrypted field"),
        ("testapp.LegacyNote.body", {}, "give either --partition"),
        ("testapp.LegacyNote.body", {"partition": "a", "partition_field": "owner"}, "either"),
        ("testapp.LegacyNote.body", {"partition_field": "nope"}, "no field 'nope'"),
        ("testapp.LegacyNote.body", {"partition": "a", "batch_size": 0}, "at least 1"),
    ],
)
def test_bad_arguments(label: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        encrypt_column(label, **options)


def test_the_command_resumes_after_being_killed(transactional_db: None) -> None:
    """A real run is SIGKILLed mid-way; a second run finishes: every row is encrypted
    exactly once (it decrypts to its original plaintext, not to another record)."""
    pks = _plain_rows(600)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": _database_url(),
        "PYTHONPATH": str(ROOT),
    }
    env.pop("PYTHONDEVMODE", None)  # a child killed by SIGKILL has nothing to report
    command = [
        sys.executable, "-m", "django", "asherah_encrypt", "testapp.LegacyNote.body",
        "--partition=killed", "--batch-size=10",
    ]  # fmt: skip
    child = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert child.stderr is not None
        deadline = time.monotonic() + 60
        for line in child.stderr:
            if " rows, " in line and int(line.split("/")[0]) >= 100:
                break
            assert time.monotonic() < deadline, "no progress from the child"
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=30)
        if child.stdout:
            child.stdout.close()
        if child.stderr:
            child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    stored = {pk: raw_column(LegacyNote, pk, "body") for pk in pks}
    encrypted = sum(looks_like_data_row(v) for v in stored.values())
    assert 100 <= encrypted < len(pks), encrypted  # killed in the middle

    second = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=True
    )
    assert f"encrypted {len(pks) - encrypted} value(s); {encrypted} already" in second.stdout
    session = factory().get_session("killed")
    for pk in pks:
        record = raw_column(LegacyNote, pk, "body")
        assert looks_like_data_row(record)
        assert session.decrypt_text(record) == f"plain {pk}"


def _database_url() -> str:
    """A URL for the test database (django-environ's form) that a child process can use."""
    settings = connection.settings_dict
    vendor = connection.vendor
    if vendor == "sqlite":
        return f"sqlite:///{settings['NAME']}"
    scheme = {"postgresql": "postgres", "mysql": "mysql"}[vendor]
    user = settings.get("USER") or ""
    password = f":{settings['PASSWORD']}" if settings.get("PASSWORD") else ""
    host = settings.get("HOST") or "127.0.0.1"
    port = f":{settings['PORT']}" if settings.get("PORT") else ""
    return f"{scheme}://{user}{password}@{host}{port}/{settings['NAME']}"
