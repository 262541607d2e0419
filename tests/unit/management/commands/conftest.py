"""Fixtures for the asherah_check / asherah_rotate / readiness tests.

One real OpenBao server for the whole session (``bao``); each test gets a transit key of
its own (``vault``), so rotating or breaking it never leaks into another test. Service
names are unique per test: key rows written on a dedicated connection (PostgreSQL,
MariaDB) are committed and outlive the test's transaction.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connections

from asherah_django import health, runtime
from asherah_django import metastore as metastore_module
from asherah_django.testing.openbao import OpenBaoServer, rotate_policy, transit_policy

_names = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}{next(_names)}x{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="session")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBaoServer]:
    with OpenBaoServer(tmp_path_factory.mktemp("openbao-commands")) as server:
        yield server


@pytest.fixture(scope="session", autouse=True)
def _close_key_connections(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """Close every key connection before the test database is dropped."""
    yield
    with django_db_blocker.unblock():
        runtime.reset_session_factory()
        for store in list(metastore_module._LIVE):
            store.close()


@pytest.fixture(autouse=True)
def _fresh_runtime() -> Iterator[None]:
    runtime.reset_session_factory()
    yield
    assert health.wait_for_abandoned(15), "a health check thread is still hanging"
    runtime.reset_session_factory()


@dataclass
class Vault:
    """A transit key of this test's own on ``bao``, and settings that use it."""

    bao: OpenBaoServer
    key: str
    service: str

    def token(self, *policies: str, **options: Any) -> str:
        return self.bao.create_token(list(policies), ttl="1h", **options)

    def policy(self, name: str, hcl: str) -> str:
        self.bao.write_policy(name, hcl)
        return name

    def full_policy(self) -> str:
        """encrypt and decrypt (asherah-transit) plus rewrap and read (asherah-rotate)."""
        return self.policy(
            f"full-{self.key}",
            transit_policy("transit", self.key) + rotate_policy("transit", self.key),
        )

    def asherah(self, token: str | None = None, **overrides: Any) -> dict[str, Any]:
        values: dict[str, Any] = {
            "SERVICE_NAME": self.service,
            "PRODUCT_ID": "prod",
            "KMS": "vault",
            **self.bao.settings(VAULT_TOKEN=token or self.token(self.full_policy())),
            "VAULT_TRANSIT_KEY": self.key,
            "VAULT_MAX_RETRIES": 0,
        }
        values.update(overrides)
        return values

    def create_key(self, name: str | None = None) -> None:
        self.bao.api(
            "POST",
            f"transit/keys/{name or self.key}",
            {"type": "aes256-gcm96", "auto_rotate_period": "2160h"},
        )


@pytest.fixture
def vault(bao: OpenBaoServer) -> Vault:
    made = Vault(bao, unique("key"), unique("svc"))
    made.create_key()
    return made


def run_command(name: str, *args: str) -> tuple[int, str, str]:
    """``call_command``: (exit status, stdout, stderr); SystemExit becomes the status."""
    out, err = StringIO(), StringIO()
    try:
        call_command(name, *args, stdout=out, stderr=err)
    except SystemExit as exc:
        return int(exc.code or 0), out.getvalue(), err.getvalue()
    return 0, out.getvalue(), err.getvalue()


def database_url() -> str:
    """A DATABASE_URL (django-environ) for the test database, for subprocesses."""
    settings = connections["default"].settings_dict
    name = settings["NAME"]
    engine = settings["ENGINE"].rsplit(".", 1)[-1]
    if engine == "sqlite3":
        return f"sqlite:///{name}"
    scheme = {"postgresql": "postgres", "mysql": "mysql"}[engine]
    user = settings.get("USER") or ""
    password = f":{settings['PASSWORD']}" if settings.get("PASSWORD") else ""
    host = settings.get("HOST") or "127.0.0.1"
    port = f":{settings['PORT']}" if settings.get("PORT") else ""
    return f"{scheme}://{user}{password}@{host}{port}/{name}"
