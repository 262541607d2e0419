"""Fixtures of the interop tests: those on our Django table share the Django-layer ones."""

from __future__ import annotations

from tests.unit.conftest import (  # noqa: F401 - fixtures re-exported
    _fresh_runtime,
    metastore,
    service,
)
