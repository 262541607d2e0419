"""Fixtures for the field, session, middleware and command tests.

They use the real runtime factory (static KMS from tests/settings.py, DjangoMetastore on
the test database). Key rows written through a dedicated connection (PostgreSQL, MariaDB)
are committed and outlive each test's transaction, so tests that count key queries use
partitions of their own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection, connections

from asherah_django import runtime
from asherah_django.core.session import SessionFactory


@pytest.fixture(autouse=True)
def _fresh_runtime() -> Iterator[None]:
    runtime.reset_session_factory()
    yield
    runtime.reset_session_factory()


def unique(prefix: str = "p") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def factory() -> SessionFactory:
    return runtime.get_session_factory()


def raw_column(model: Any, pk: Any, column: str | None, using: str = "default") -> Any:
    """The column's value exactly as the database holds it (no field conversion)."""
    assert column is not None
    conn = connections[using]
    quote = conn.ops.quote_name
    table = quote(model._meta.db_table)
    with conn.cursor() as cursor:
        cursor.execute(f"SELECT {quote(column)} FROM {table} WHERE id = %s", [pk])
        row = cursor.fetchone()
    assert row is not None
    value = row[0]
    return value.decode() if isinstance(value, bytes) else value


def write_raw(model: Any, pk: Any, column: str, value: Any) -> None:
    """Store ``value`` in the column directly (legacy plaintext, tampered records)."""
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET {quote(column)} = %s WHERE id = %s",
            [value, pk],
        )
