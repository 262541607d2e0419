"""Suite-wide pytest configuration.

Tests that touch the Django database get the ``database`` marker automatically, so the
runner can repeat exactly those on PostgreSQL and MariaDB (see scripts/test.sh).
Tests that reach a database some other way (separate processes, raw connections)
mark themselves with ``@pytest.mark.database``.
"""

from __future__ import annotations

import pytest

_DB_FIXTURES = {"db", "transactional_db", "django_db_setup", "live_server", "admin_client"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if item.get_closest_marker("django_db") or fixtures & _DB_FIXTURES:
            item.add_marker(pytest.mark.database)
