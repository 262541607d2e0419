"""Fixtures of the reliability and security suite: real OpenBao, real databases, figures.

* ``rel_bao``: one OpenBao server for the session (load, hostile input, fork), with AppRole;
* ``vault_asherah``: switches ``settings.ASHERAH`` to Vault Transit on ``rel_bao`` with a
  service name of the test's own (key rows outlive each test on PostgreSQL and MariaDB),
  and gives a fresh runtime factory;
* ``report(title, **figures)``: prints a test's figures (operations, errors, calls,
  memory) and repeats them in a "reliability figures" section at the end of the run, so
  that they are in the CI log without ``-s``.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connections

from asherah_django import runtime
from asherah_django.testing.openbao import TRANSIT_POLICY, OpenBaoServer
from tests.support.common import ROOT

POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/test"
MYSQL_URL = "mysql://root@127.0.0.1:3306/test"
APPROLE = "rel-app"

_FIGURES: list[tuple[str, dict[str, Any]]] = []
_names = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}{next(_names)}{uuid.uuid4().hex[:6]}"


def report(title: str, **figures: Any) -> None:
    """Print figures now and again in the terminal summary."""
    _FIGURES.append((title, figures))
    print(f"\n[figures] {title}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in figures.items()))


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _FIGURES:
        return
    terminalreporter.section("reliability figures", sep="-")
    for title, figures in _FIGURES:
        terminalreporter.write_line(f"{title}:")
        for key, value in figures.items():
            terminalreporter.write_line(f"    {key}: {_fmt(value)}")


def vendor() -> str:
    return connections["default"].vendor


def require(*vendors: str) -> None:
    """Skip unless the test database is one of ``vendors``, naming DATABASE_URL."""
    if vendor() in vendors:
        return
    urls = {"postgresql": POSTGRES_URL, "mysql": MYSQL_URL}
    wanted = " or ".join(f"DATABASE_URL={urls[v]}" for v in vendors if v in urls)
    pytest.skip(f"needs {' or '.join(vendors)} (this run uses {vendor()}); run with {wanted}")


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


def subprocess_env(config: dict[str, Any]) -> dict[str, str]:
    """Environment of a worker (tests.integration.reliability.worker) on the test database."""
    import json

    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": database_url(),
        "ASHERAH_REL_WORKER": json.dumps(config),
    }


def provision(server: OpenBaoServer) -> None:
    server.api("POST", "sys/auth/approle", {"type": "approle"})
    server.api(
        "POST",
        f"auth/approle/role/{APPROLE}",
        {"token_policies": [TRANSIT_POLICY], "token_ttl": "1h", "token_max_ttl": "4h"},
    )


def approle_credentials(server: OpenBaoServer) -> tuple[str, str]:
    role_id = server.api("GET", f"auth/approle/role/{APPROLE}/role-id")["data"]["role_id"]
    secret_id = server.api("POST", f"auth/approle/role/{APPROLE}/secret-id")["data"]["secret_id"]
    return role_id, secret_id


@pytest.fixture(scope="session")
def rel_bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBaoServer]:
    with OpenBaoServer(tmp_path_factory.mktemp("openbao-reliability")) as server:
        provision(server)
        yield server


def vault_config(server: OpenBaoServer, **overrides: Any) -> dict[str, Any]:
    """ASHERAH settings on ``server`` with a fresh asherah-transit token and service name."""
    config: dict[str, Any] = {
        "SERVICE_NAME": unique("rel"),
        "PRODUCT_ID": "prod",
        "KMS": "vault",
        **server.settings(VAULT_TOKEN=server.create_token([TRANSIT_POLICY], ttl="2h")),
        "VAULT_TIMEOUT": 5,
        "VAULT_CONNECT_TIMEOUT": 2,
        "VAULT_MAX_RETRIES": 1,
    }
    config.update(overrides)
    return config


@pytest.fixture
def vault_asherah(settings: Any, rel_bao: OpenBaoServer) -> Iterator[dict[str, Any]]:
    """settings.ASHERAH on Vault Transit (``rel_bao``); a fresh runtime factory."""
    runtime.reset_session_factory()
    settings.ASHERAH = vault_config(rel_bao)
    yield settings.ASHERAH
    runtime.reset_session_factory()
