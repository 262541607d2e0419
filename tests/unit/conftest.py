"""Fixtures for the Django-layer tests: metastores, factories and extra database aliases.

Key rows written through a dedicated connection (PostgreSQL, MariaDB) are committed and
outlive each test's transaction, so tests use fresh service names or partitions.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from django.db import connection

from asherah_django import runtime
from asherah_django.core import CryptoPolicy, SessionFactory, StaticKMS
from asherah_django.core.key_ids import KeyIds
from asherah_django.core.kms.static import TEST_MASTER_KEY_HEX
from asherah_django.metastore import DjangoMetastore

SQLITE_ONLY = "SQLite-only: other databases keep keys on a dedicated connection"
NOT_SQLITE = (
    "needs a dedicated key connection (PostgreSQL or MariaDB); run with "
    "DATABASE_URL=postgres://postgres@127.0.0.1:5432/test or "
    "DATABASE_URL=mysql://root@127.0.0.1:3306/test"
)
POSTGRES_ONLY = "PostgreSQL-only; run with DATABASE_URL=postgres://postgres@127.0.0.1:5432/test"
MYSQL_ONLY = "MariaDB/MySQL-only; run with DATABASE_URL=mysql://root@127.0.0.1:3306/test"


def vendor() -> str:
    return connection.vendor


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@pytest.fixture(autouse=True)
def _fresh_runtime() -> Iterator[None]:
    runtime.reset_session_factory()
    yield
    runtime.reset_session_factory()


@pytest.fixture
def service() -> str:
    return unique("svc")


@pytest.fixture
def metastore(service: str) -> Iterator[DjangoMetastore]:
    store = DjangoMetastore(system_key_id=KeyIds(service, "prod").system)
    yield store
    store.close()


def make_factory(
    metastore: DjangoMetastore, service: str, policy: CryptoPolicy | None = None
) -> SessionFactory:
    return SessionFactory(
        service, "prod", StaticKMS.from_hex(TEST_MASTER_KEY_HEX), metastore, policy
    )
