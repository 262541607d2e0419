"""Shredding reaches other processes (issue #14 item 1).

A separate, long-running process (``shred_worker.py``) decrypts a value of partition P every
20 ms with its key cached; this process shreds P with ``asherah_rotate``. The worker must
fail with KeyNotFoundError within ``CHECK_INTERVAL`` of the shred. The shred is made right
after the worker loaded the key, the worst case: its next re-check is a full interval away.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

import pytest

from asherah_django import runtime
from tests.support.common import ROOT
from tests.unit.management.commands.conftest import database_url, run_command, unique

CHECK_INTERVAL = 2


@pytest.mark.django_db(transaction=True)
def test_other_process_stops_decrypting_within_check_interval(settings: Any) -> None:
    service = unique("shr")
    settings.ASHERAH = {**settings.ASHERAH, "SERVICE_NAME": service}
    record = runtime.get_session_factory().get_session("victim").encrypt(b"erase me")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": database_url(),
    }
    env.pop("ASHERAH_TEST_DB_NAME", None)
    with subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.integration.lifecycle.shred_worker",
            service,
            "victim",
            str(CHECK_INTERVAL),
        ],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as worker:
        assert worker.stdin is not None and worker.stdout is not None
        worker.stdin.write(record + "\n")
        worker.stdin.flush()
        ready = worker.stdout.readline().split()
        assert ready and ready[0] == "ready", worker.stderr.read() if worker.stderr else ""
        loaded = float(ready[1])
        status, _, _ = run_command("asherah_rotate", "--shred-partition", "victim", "--yes")
        shredded = time.time()
        assert status == 0
        outcome = worker.stdout.readline().split()
        worker.communicate(timeout=30)
    assert outcome[0] == "failed", "the other process still decrypts the shredded partition"
    assert outcome[2] == "KeyNotFoundError"
    delay = float(outcome[1]) - shredded
    since_load = float(outcome[1]) - loaded
    print(f"\nshred -> other process refuses: {delay:.3f} s (key loaded {since_load:.3f} s before)")
    assert 0 < delay <= CHECK_INTERVAL + 0.25  # one interval, plus the 20 ms poll and a query
    assert since_load >= CHECK_INTERVAL  # no re-check sooner than the interval
