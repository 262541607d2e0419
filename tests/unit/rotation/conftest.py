"""Fixtures of the rotation tests: those of the maintenance commands (OpenBao, unique names)."""

from __future__ import annotations

from tests.unit.management.commands.conftest import (  # noqa: F401 - fixtures re-exported
    _close_key_connections,
    _fresh_runtime,
    bao,
    vault,
)
