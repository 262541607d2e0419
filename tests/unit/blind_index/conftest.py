"""Fixtures for the blind index tests.

The models live in tests/bidxapp, which must be in INSTALLED_APPS (tests/settings.py);
without it every module but test_setup.py is left out, and test_setup.py says why.
Key rows written through a dedicated connection (PostgreSQL, MariaDB) are committed and
outlive each test's transaction: tests that rotate keys or count key queries use a
service name of their own (:func:`own_service`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.db import connections
from django.test import override_settings

from asherah_django import runtime
from asherah_django.blind_index import IndexKeys, index_keys, keyring
from asherah_django.core.session import SessionFactory

INSTALLED = "tests.bidxapp" in settings.INSTALLED_APPS
if not INSTALLED:
    collect_ignore_glob = ["test_[!s]*.py", "options/test_[!s]*.py"]


@pytest.fixture(autouse=True)
def _fresh_runtime() -> Iterator[None]:
    runtime.reset_session_factory()
    yield
    runtime.reset_session_factory()


@pytest.fixture(autouse=True)
def _index_keys_are_secrets(_fresh_runtime: None) -> Iterator[None]:
    """Hand every blind index key (and field key) this test used to the run-wide secrets
    check (tests/hygiene.py), which knows the engine's keys by itself but not these."""
    yield
    from tests.hygiene import register_secret

    for index_keys_ in list(keyring._registry.values()):
        for ring in list(index_keys_._rings.values()):
            for version in ring.versions:
                if version._secret is not None:
                    register_secret(bytes(version._secret))
                for derived in list(version._derived.values()):
                    register_secret(derived)


def unique(prefix: str = "p") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def factory() -> SessionFactory:
    return runtime.get_session_factory()


def keys() -> IndexKeys:
    return index_keys(factory())


@pytest.fixture
def own_service() -> Iterator[str]:
    """A service name of this test's own (its key ids are unique to it)."""
    service = unique("svc")
    with override_settings(ASHERAH={**settings.ASHERAH, "SERVICE_NAME": service}):
        yield service


def raw_row(model: Any, pk: Any, *columns: str, using: str = "default") -> tuple[Any, ...]:
    """The columns exactly as the database holds them (no field conversion)."""
    conn = connections[using]
    quote = conn.ops.quote_name
    names = ", ".join(quote(c) for c in columns)
    table = quote(model._meta.db_table)
    with conn.cursor() as cursor:
        cursor.execute(f"SELECT {names} FROM {table} WHERE id = %s", [pk])
        row = cursor.fetchone()
    assert row is not None
    return tuple(v.decode() if isinstance(v, bytes) else v for v in row)


def write_raw(model: Any, pk: Any, using: str = "default", **values: Any) -> None:
    """Store column values directly (bypassing the fields)."""
    conn = connections[using]
    quote = conn.ops.quote_name
    sets = ", ".join(f"{quote(c)} = %s" for c in values)
    with conn.cursor() as cursor:
        cursor.execute(
            f"UPDATE {quote(model._meta.db_table)} SET {sets} WHERE id = %s",
            [*values.values(), pk],
        )


def digest_of(stored: str) -> str:
    """The hex digest part of a stored index value (``tag.profile:digest``)."""
    head, _, digest = stored.partition(":")
    assert "." in head
    return digest
