"""A real ``manage.py asherah_rotate`` process killed with SIGKILL midway through its windows.

Shared by the resumability tests of ``--reencrypt`` (tests/unit/rotation/test_reencrypt.py)
and ``--bind`` (tests/unit/fields/bind/test_convert.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from tests.support.common import ROOT
from tests.unit.management.commands.conftest import database_url


def rotate_killed_after_two_windows(args: list[str]) -> list[str]:
    """Run ``asherah_rotate *args`` (``--pause 0.3 -v 2``) on the test database in another
    process, SIGKILL it once it has reported two windows (``: pk`` lines); its output."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONUNBUFFERED": "1",
        "PYTHONWARNINGS": "ignore",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "django", "asherah_rotate", *args, "--pause", "0.3", "-v", "2"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    seen: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            seen.append(line)
            if sum(": pk " in entry for entry in seen) == 2:
                os.kill(process.pid, signal.SIGKILL)
                break
    finally:
        process.kill()
        _, err = process.communicate()
    assert process.returncode == -signal.SIGKILL, (seen, err)
    return seen
