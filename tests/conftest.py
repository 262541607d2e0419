"""Suite-wide pytest configuration.

Tests that touch the Django database get the ``database`` marker automatically, so the
runner can repeat exactly those on PostgreSQL and MariaDB (see scripts/test.sh).
Tests that reach a database some other way (separate processes, raw connections)
mark themselves with ``@pytest.mark.database``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest_plugins = ["tests.hygiene"]

_DB_FIXTURES = {
    "db",
    "transactional_db",
    "live_server",
    "admin_client",
    "django_db_reset_sequences",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if item.get_closest_marker("django_db") or fixtures & _DB_FIXTURES:
            item.add_marker(pytest.mark.database)


@pytest.fixture(scope="session", autouse=True)
def _close_key_connections(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """Close the metastore's dedicated key connections before the test database is dropped
    (PostgreSQL refuses to drop a database that still has sessions)."""
    yield
    from asherah_django import metastore, runtime

    with django_db_blocker.unblock():
        runtime.reset_session_factory()
        for store in list(metastore._LIVE):
            store.close()
