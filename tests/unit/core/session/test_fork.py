"""A SessionFactory built before ``os.fork()`` (gunicorn --preload) works in the child even
when another parent thread held its locks at the moment of the fork: every lock is renewed
in the child (tests/integration/reliability/test_fork.py does the same with Django, Vault and a
database; this one is Django-free and quick, so mutation testing runs it)."""

from __future__ import annotations

import subprocess
import sys

from tests.support.common import ROOT


def test_a_factory_forked_while_its_locks_are_held_works_in_the_child() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tests.unit.core.session.fork_worker"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["ok"]
