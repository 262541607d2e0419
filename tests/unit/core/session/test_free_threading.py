"""The C accelerator is refused on a free-threaded interpreter running without the GIL
(issue #14 item 7): its shared cipher contexts rely on the GIL. The decision function, and
the import-time decision in a fresh interpreter whose ``sys._is_gil_enabled`` says False."""

from __future__ import annotations

import os
import subprocess
import sys

from asherah_django.core.session import speedups_allowed
from tests.support.common import ROOT


def test_decision() -> None:
    assert speedups_allowed({}, None)  # no free-threading build (before 3.13, or default)
    assert speedups_allowed({}, lambda: True)  # free-threaded build, GIL enabled
    assert not speedups_allowed({}, lambda: False)  # free-threaded, GIL disabled
    assert not speedups_allowed({"ASHERAH_DJANGO_PURE_PYTHON": "1"}, None)
    assert speedups_allowed({"ASHERAH_DJANGO_PURE_PYTHON": "0"}, lambda: True)


def _speedups_in_fresh_interpreter(gil: bool) -> str:
    code = (
        f"import sys; sys._is_gil_enabled = lambda: {gil}\n"
        "from asherah_django.core import session\n"
        "print(session.SPEEDUPS, session.Session.decrypt is session.Session._decrypt_py)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "ASHERAH_DJANGO_PURE_PYTHON"}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_import_falls_back_to_pure_python_without_the_gil() -> None:
    assert _speedups_in_fresh_interpreter(gil=False) == "False True"
    assert _speedups_in_fresh_interpreter(gil=True) == "True False"
