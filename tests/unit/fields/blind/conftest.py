"""Fixtures of the blind index field tests: those of tests/unit/blind_index/conftest.py.

The models live in tests/bidxapp, which must be in INSTALLED_APPS (tests/settings.py);
without it every module but test_setup.py is left out, and test_setup.py says why.
"""

from __future__ import annotations

from tests.unit.blind_index.conftest import (  # noqa: F401 - fixtures re-exported
    INSTALLED,
    _fresh_runtime,
    _index_keys_are_secrets,
    own_service,
)

if not INSTALLED:
    collect_ignore_glob = ["test_[!s]*.py"]
