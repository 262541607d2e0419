"""The write path's SQL: bulk inserts use the plain placeholders (no PostgreSQL UNNEST)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

import asherah_django
from tests.testapp.models import Secret
from tests.unit.fields.conftest import unique

pytestmark = pytest.mark.django_db


def test_a_bulk_insert_uses_the_plain_placeholders() -> None:
    partition = unique()
    with asherah_django.session(partition), CaptureQueriesContext(connection) as queries:
        Secret.objects.bulk_create([Secret(body="one"), Secret(body="two")])
    inserts = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("INSERT")]
    assert inserts
    assert all("UNNEST" not in sql for sql in inserts)  # (PostgreSQL's array form)
    with asherah_django.session(partition):
        assert sorted(Secret.objects.values_list("body", flat=True)) == ["one", "two"]
