"""Fixtures of the attacks through the database: the Django-layer ones."""

from __future__ import annotations

from tests.unit.conftest import (  # noqa: F401 - fixtures re-exported
    _fresh_runtime,
    metastore,
    service,
)
