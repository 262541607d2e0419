"""Fixtures for the key lifecycle tests (issue #14): OpenBao, unique names."""

from __future__ import annotations

from tests.unit.management.commands.conftest import (  # noqa: F401 - fixtures re-exported
    _close_key_connections,
    _fresh_runtime,
    bao,
    vault,
)
