"""What an erasure cannot reach (issue #15 item 4), shown rather than said.

* A process that holds the erased partition's key in its cache keeps decrypting until its
  ``CHECK_INTERVAL`` re-check, then fails (``shred_worker.py``, a separate process).
* Plaintext kept outside the encrypted values (here a plain column of the same row) is not
  touched: only key rows change; the encrypted column keeps its bytes and no longer decrypts.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

import pytest

from asherah_django import runtime
from asherah_django.context import session
from asherah_django.core.errors import AsherahError
from tests.testapp.models import AllTypes
from tests.unit.management.commands.conftest import run_command, unique

from .erase_support import start_worker

CHECK_INTERVAL = 2


def _erase(tmp_path: Path, partition: str) -> None:
    status, _, err = run_command(
        "asherah_erase", partition, "--receipt", str(tmp_path / "r.json"),
        "--new-static-master-key-hex", secrets.token_hex(32), "--grace", "0", "--poll", "0.1",
    )  # fmt: skip
    assert status == 0, err


@pytest.mark.django_db(transaction=True)
def test_a_process_with_the_key_cached_decrypts_until_its_recheck(
    settings: Any, tmp_path: Path
) -> None:
    service = unique("era")
    settings.ASHERAH = {**settings.ASHERAH, "SERVICE_NAME": service}
    record = runtime.get_session_factory().get_session("victim").encrypt(b"erase me")
    with start_worker("shred_worker", service, "victim", str(CHECK_INTERVAL)) as worker:
        assert worker.stdin is not None and worker.stdout is not None
        worker.stdin.write(record + "\n")
        worker.stdin.flush()
        ready = worker.stdout.readline().split()
        assert ready and ready[0] == "ready", worker.stderr.read() if worker.stderr else ""
        started = time.time()
        _erase(tmp_path, "victim")
        erased = time.time()
        outcome = worker.stdout.readline().split()
        worker.communicate(timeout=30)
    assert outcome[0] == "failed" and outcome[2] == "KeyNotFoundError"
    # It stops after the erasure began, and at most one interval after it ended.
    assert started < float(outcome[1]) <= erased + CHECK_INTERVAL + 0.5


@pytest.mark.django_db(transaction=True)
def test_plaintext_outside_the_encrypted_values_is_not_reached(
    settings: Any, tmp_path: Path
) -> None:
    settings.ASHERAH = {**settings.ASHERAH, "SERVICE_NAME": unique("era")}
    with session("victim"):
        row = AllTypes.objects.create(label="copied plaintext", text="secret text")
    raw_before = _raw_text(row.pk)
    _erase(tmp_path, "victim")
    runtime.reset_session_factory()
    assert _raw_text(row.pk) == raw_before  # the ciphertext is where it was
    assert AllTypes.objects.values_list("label", flat=True).get(pk=row.pk) == "copied plaintext"
    with session("victim"), pytest.raises(AsherahError):
        AllTypes.objects.get(pk=row.pk).text  # noqa: B018


def _raw_text(pk: int) -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        table = connection.ops.quote_name(AllTypes._meta.db_table)
        cursor.execute(f"SELECT text FROM {table} WHERE id = %s", [pk])
        value: str = cursor.fetchone()[0]
    return value
