"""Optional test dependencies that `make test` requires: a missing one fails there, not skips.

``ASHERAH_DJANGO_REQUIRE_SPEEDUPS=1`` (set by scripts/test.sh) makes the C accelerator
required. The ``asherah`` peer wheel (the Rust core, in the ``test`` extras) is required
unless ``ASHERAH_DJANGO_REQUIRE_PEER=0`` says this run knowingly goes without it: the
interoperability claim must not disappear from a run because a wheel failed to install.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

SPEEDUPS = "asherah_django.core._speedups"


def required(env_var: str, *, default: bool) -> bool:
    value = os.environ.get(env_var, "1" if default else "0").strip().lower()
    return value not in {"0", "false", "no", ""}


def import_or_fail(name: str, env_var: str, *, default: bool, why: str) -> ModuleType:
    """Import ``name``; when it is missing, fail if ``env_var`` requires it, else skip."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        setting = f"{env_var}={os.environ.get(env_var, '(unset: required by default)' if default else '')}"
        if required(env_var, default=default):
            pytest.fail(
                f"{name} is required here ({setting}) but does not import: {exc}. {why}",
                pytrace=False,
            )
        pytest.skip(f"{name} does not import and {setting} allows that", allow_module_level=True)


def speedups() -> ModuleType:
    return import_or_fail(
        SPEEDUPS,
        "ASHERAH_DJANGO_REQUIRE_SPEEDUPS",
        default=False,
        why="build it with `python setup.py build_ext --inplace` (needs libssl-dev)",
    )


def asherah_peer() -> ModuleType:
    return import_or_fail(
        "asherah",
        "ASHERAH_DJANGO_REQUIRE_PEER",
        default=True,
        why="install the test extras (pip install -e '.[test]'), "
        "or set ASHERAH_DJANGO_REQUIRE_PEER=0 to run without the interop tests",
    )


def c_path() -> None:
    """Require (or skip) the C path of Session: the extension built, and not switched off
    for this process with ASHERAH_DJANGO_PURE_PYTHON=1 (the pure-Python suite run)."""
    speedups()
    from asherah_django.core import session

    if not session.SPEEDUPS:
        pytest.skip("ASHERAH_DJANGO_PURE_PYTHON=1: this process runs the pure-Python path only")
