"""Fixtures of the readiness view tests: OpenBao and a transit key of each test's own."""

from __future__ import annotations

from tests.unit.management.commands.conftest import (  # noqa: F401 - fixtures re-exported
    _close_key_connections,
    _fresh_runtime,
    bao,
    vault,
)
