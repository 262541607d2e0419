"""Fixtures and helpers of the bound-value tests (``bind=``).

The real runtime factory (static KMS from tests/settings.py, DjangoMetastore on the test
database); raw SQL to play the database writer who moves records around.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection

from asherah_django import runtime


@pytest.fixture(autouse=True)
def _fresh_runtime(settings: Any) -> Iterator[None]:
    # A service of its own: key rows committed by other tests never interfere.
    settings.ASHERAH = {**settings.ASHERAH, "SERVICE_NAME": f"bind{uuid.uuid4().hex[:8]}"}
    runtime.reset_session_factory()
    yield
    runtime.reset_session_factory()


def _where(model: Any, pk: Any) -> tuple[str, Any]:
    pk_field = model._meta.pk
    quote = connection.ops.quote_name
    return f"{quote(pk_field.column)} = %s", pk_field.get_db_prep_value(pk, connection)


def stored(model: Any, pk: Any, field: str) -> Any:
    """The column's text exactly as the database holds it."""
    quote = connection.ops.quote_name
    column = model._meta.get_field(field).column
    where, key = _where(model, pk)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {quote(column)} FROM {quote(model._meta.db_table)} WHERE {where}", [key]
        )
        row = cursor.fetchone()
    assert row is not None
    value = row[0]
    return value.decode() if isinstance(value, bytes) else value


def write_raw(model: Any, pk: Any, field: str, value: Any) -> None:
    """What a database writer does: store ``value`` in the column, bypassing the ORM."""
    quote = connection.ops.quote_name
    column = model._meta.get_field(field).column
    where, key = _where(model, pk)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {quote(model._meta.db_table)} SET {quote(column)} = %s WHERE {where}",
            [value, key],
        )
