"""Fixtures of the maintenance commands' tests: those of the commands' unit tests."""

from __future__ import annotations

from tests.unit.management.commands.conftest import (  # noqa: F401 - fixtures re-exported
    _close_key_connections,
    _fresh_runtime,
)
