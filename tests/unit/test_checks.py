"""System checks: every misconfiguration has a stable id, a message and a hint."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core import checks as django_checks
from django.core.checks import CheckMessage
from django.db import DatabaseError, connection
from django.db.migrations.recorder import MigrationRecorder
from django.test import override_settings

from asherah_django import checks
from asherah_django.conf import DEFAULTS, asherah_settings
from asherah_django.models import EncryptionKey

from .conftest import MYSQL_ONLY, unique

STATIC = {
    "SERVICE_NAME": "svc",
    "PRODUCT_ID": "prod",
    "KMS": "static",
    "STATIC_MASTER_KEY_HEX": "ab" * 32,
}
VAULT = {
    "SERVICE_NAME": "svc",
    "PRODUCT_ID": "prod",
    "KMS": "vault",
    "VAULT_ADDR": "https://vault.example.com:8200",
    "VAULT_TRANSIT_KEY": "asherah",
    "VAULT_TOKEN": "hvs.CAESIJ" + "x" * 90,
}


@pytest.fixture(autouse=True)
def _no_environment_and_no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in DEFAULTS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(f"ASHERAH_{name}", raising=False)

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("a system check tried to use the network")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    asherah_settings.reload()
    yield
    monkeypatch.undo()
    asherah_settings.reload()


def ids(messages: list[CheckMessage]) -> list[str]:
    return [message.id or "" for message in messages]


def only(messages: list[CheckMessage], check_id: str) -> CheckMessage:
    assert ids(messages) == [check_id], [str(m) for m in messages]
    message = messages[0]
    assert message.hint, f"{check_id} has no hint"
    return message


def settings_messages(**asherah: Any) -> list[CheckMessage]:
    with override_settings(ASHERAH=asherah):
        return checks.check_settings()


def test_check_ids_are_unique_and_all_documented() -> None:
    source = Path(checks.__file__).read_text()
    block = source[source.index("CHECK_IDS") : source.index("\n}\n", source.index("CHECK_IDS"))]
    declared = re.findall(r'"(asherah\.[EW]\d{3})"', block)
    assert len(declared) == len(set(declared)), "a check id is declared twice"
    package = Path(checks.__file__).parent  # every module of the checks package
    rest = source.replace(block, "") + "".join(
        path.read_text() for path in sorted(package.glob("*.py")) if path.name != "__init__.py"
    )
    used = set(re.findall(r'"(asherah\.[EW]\d{3})"', rest))
    assert {"asherah.E005", "asherah.E006", "asherah.W122", "asherah.W205"} <= used
    assert used <= set(declared), used - set(declared)
    assert set(declared) == set(checks.CHECK_IDS)


def test_checks_are_registered_under_the_asherah_tag() -> None:
    registry = django_checks.registry.registry
    normal = {
        getattr(c, "__name__", "") for c in registry.get_checks(include_deployment_checks=False)
    }
    deploy = {
        getattr(c, "__name__", "") for c in registry.get_checks(include_deployment_checks=True)
    }
    assert {"check_settings", "check_database"} <= normal
    assert "check_deployment" in deploy - normal
    for check in (checks.check_settings, checks.check_deployment, checks.check_database):
        assert "asherah" in vars(check)["tags"]
    assert "database" in vars(checks.check_database)["tags"]
    with override_settings(ASHERAH={**STATIC, "KMS": "nope"}, DEBUG=True):
        # (no database: from Django 6.1 checks run by tag get every alias unless told)
        found = django_checks.run_checks(tags=["asherah"], databases=[])
    assert "asherah.E003" in ids(found)


def test_a_valid_configuration_passes() -> None:
    assert settings_messages(**STATIC) == []
    assert settings_messages(**VAULT) == []
    assert settings_messages(**{**VAULT, "KMS": "vault-transit"}) == []


def test_e001_e002_missing_service_name_and_product_id() -> None:
    messages = settings_messages(KMS="static", STATIC_MASTER_KEY_HEX="ab" * 32)
    assert ids(messages) == ["asherah.E001", "asherah.E002"]
    for message, name in zip(messages, ("SERVICE_NAME", "PRODUCT_ID"), strict=True):
        assert f"{name} is not set" in message.msg
        assert f"ASHERAH['{name}'] in settings.py or the ASHERAH_{name} environment variable" in (
            message.hint or ""
        )
    too_long = only(settings_messages(**{**STATIC, "SERVICE_NAME": "s" * 300}), "asherah.E001")
    assert "too long" in too_long.msg


def test_e003_unknown_kms() -> None:
    # "aws" was the example here until issue 24 made it a KMS.
    message = only(settings_messages(**{**STATIC, "KMS": "gcp"}), "asherah.E003")
    assert "KMS 'gcp' is unknown" in message.msg and "vault" in message.msg
    assert "ASHERAH['KMS']" in (message.hint or "")


def test_e004_static_master_key(monkeypatch: pytest.MonkeyPatch) -> None:
    missing = only(settings_messages(**{**STATIC, "STATIC_MASTER_KEY_HEX": None}), "asherah.E004")
    assert "STATIC_MASTER_KEY_HEX is required with KMS=static" in missing.msg
    assert "secrets.token_hex(32)" in (missing.hint or "")
    invalid = only(settings_messages(**{**STATIC, "STATIC_MASTER_KEY_HEX": "xyz"}), "asherah.E004")
    assert "STATIC_MASTER_KEY_HEX must be 64 hex characters" in invalid.msg
    # Irrelevant with Vault, and optional for test-debug-static (the public test key).
    assert settings_messages(**{**VAULT, "STATIC_MASTER_KEY_HEX": "xyz"}) == []
    debug_static = {**STATIC, "KMS": "test-debug-static", "STATIC_MASTER_KEY_HEX": None}
    assert settings_messages(**debug_static) == []
    monkeypatch.setenv("STATIC_MASTER_KEY_HEX", "12")
    from_env = only(settings_messages(**{**STATIC, "STATIC_MASTER_KEY_HEX": None}), "asherah.E004")
    assert "the STATIC_MASTER_KEY_HEX environment variable" in from_env.msg
    assert ids(settings_messages(**debug_static)) == ["asherah.E004"]


@pytest.mark.parametrize("name", ["VAULT_ADDR", "VAULT_TRANSIT_KEY"])
def test_e005_vault_server_settings(name: str) -> None:
    message = only(settings_messages(**{**VAULT, name: None}), "asherah.E005")
    assert f"{name} is required for the Vault Transit KMS" in message.msg
    where = f"ASHERAH['{name}'] in settings.py or the ASHERAH_{name} (or {name}) environment"
    assert where in (message.hint or "")


@pytest.mark.parametrize(
    ("auth", "missing", "expected"),
    [
        ({}, "VAULT_TOKEN", "Vault authentication required: set VAULT_TOKEN, or VAULT_AUTH_METHOD"),
        (
            {"VAULT_AUTH_METHOD": "token"},
            "VAULT_TOKEN",
            "VAULT_TOKEN is required for Vault token auth",
        ),
        ({"VAULT_AUTH_METHOD": "kubernetes"}, "VAULT_AUTH_ROLE", "VAULT_AUTH_ROLE is required"),
        ({"VAULT_AUTH_METHOD": "k8s"}, "VAULT_AUTH_ROLE", "VAULT_AUTH_ROLE is required"),
        ({"VAULT_AUTH_METHOD": "approle"}, "VAULT_APPROLE_ROLE_ID", "VAULT_APPROLE_ROLE_ID is"),
        (
            {"VAULT_AUTH_METHOD": "cert", "VAULT_CLIENT_KEY": "/k.pem"},
            "VAULT_CLIENT_CERT",
            "VAULT_CLIENT_CERT is",
        ),
        (
            {"VAULT_AUTH_METHOD": "tls", "VAULT_CLIENT_CERT": "/c.pem"},
            "VAULT_CLIENT_KEY",
            "VAULT_CLIENT_KEY is",
        ),
        (
            {"VAULT_AUTH_METHOD": "ldap"},
            "VAULT_AUTH_METHOD",
            "unsupported VAULT_AUTH_METHOD 'ldap'",
        ),
    ],
)
def test_e006_incomplete_vault_auth(auth: dict[str, str], missing: str, expected: str) -> None:
    message = only(settings_messages(**{**VAULT, "VAULT_TOKEN": None, **auth}), "asherah.E006")
    assert expected in message.msg
    assert missing in (message.hint or "")


def test_complete_vault_auth_methods_pass() -> None:
    base = {**VAULT, "VAULT_TOKEN": None}
    assert settings_messages(**base, VAULT_AUTH_METHOD="kubernetes", VAULT_AUTH_ROLE="app") == []
    assert settings_messages(**base, VAULT_AUTH_METHOD="approle", VAULT_APPROLE_ROLE_ID="r") == []


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"VAULT_ADDR": "vault.example.com"}, "VAULT_ADDR must be an http:// or https:// URL"),
        ({"VAULT_TRANSIT_KEY": "a/b"}, "VAULT_TRANSIT_KEY must be a name"),
        ({"VAULT_TIMEOUT": "0"}, "VAULT_TIMEOUT must be a number of seconds"),
        ({"VAULT_MAX_RETRIES": "lots"}, "VAULT_MAX_RETRIES must be a whole number"),
        (
            {"VAULT_AUTH_METHOD": "cert", "VAULT_CLIENT_CERT": "/c", "VAULT_CLIENT_KEY": "/k"},
            "VAULT_AUTH_METHOD=cert needs an https:// VAULT_ADDR",
        ),
    ],
)
def test_e007_other_invalid_vault_settings(extra: dict[str, str], expected: str) -> None:
    if extra.get("VAULT_AUTH_METHOD") == "cert":
        extra = {**extra, "VAULT_ADDR": "http://vault.example.com:8200"}
    message = only(settings_messages(**{**VAULT, **extra}), "asherah.E007")
    assert expected in message.msg


@pytest.mark.parametrize(
    "name",
    [
        "EXPIRE_AFTER",
        "CHECK_INTERVAL",
        "SESSION_CACHE_SIZE",
        "SESSION_CACHE_DURATION",
        "SYSTEM_KEY_CACHE_SIZE",
        "INTERMEDIATE_KEY_CACHE_SIZE",
    ],
)
def test_e008_policy_values(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    message = only(settings_messages(**{**STATIC, name: "0"}), "asherah.E008")
    assert f"{name} must be a positive whole number" in message.msg
    monkeypatch.setenv(f"ASHERAH_{name}", "ten")
    from_env = only(settings_messages(**STATIC), "asherah.E008")
    assert f"the ASHERAH_{name} environment variable" in from_env.msg


def test_e009_unknown_metastore() -> None:
    message = only(settings_messages(**{**STATIC, "METASTORE": "rdbms"}), "asherah.E009")
    assert "METASTORE 'rdbms' is unknown" in message.msg


def test_e010_unknown_database_alias() -> None:
    message = only(settings_messages(**{**STATIC, "DATABASE": "keys"}), "asherah.E010")
    assert "DATABASE 'keys' is not an alias in settings.DATABASES" in message.msg
    assert settings_messages(**{**STATIC, "DATABASE": "keys", "METASTORE": "memory"}) == []


def test_e011_partition_resolver() -> None:
    bad = {**STATIC, "PARTITION_RESOLVER": "tests.django.nowhere.resolver"}
    message = only(settings_messages(**bad), "asherah.E011")
    assert "PARTITION_RESOLVER 'tests.django.nowhere.resolver' cannot be imported" in message.msg
    syntax = only(settings_messages(**{**STATIC, "PARTITION_RESOLVER": "x y"}), "asherah.E011")
    assert "dotted path" in syntax.msg
    ok = {**STATIC, "PARTITION_RESOLVER": "tests.unit.test_conf.resolver"}
    assert settings_messages(**ok) == []


def test_e012_asherah_not_a_dict() -> None:
    with override_settings(ASHERAH="static"):
        messages = checks.check_settings()
    assert "asherah.E012" in ids(messages)


def test_w001_unknown_key() -> None:
    message = only(settings_messages(**{**STATIC, "EXPIRES_AFTER": 60}), "asherah.W001")
    assert "unknown key 'EXPIRES_AFTER'" in message.msg
    assert "EXPIRE_AFTER" in (message.hint or "")


def deploy_messages(asherah: dict[str, Any], debug: bool = False) -> list[CheckMessage]:
    with override_settings(ASHERAH=asherah, DEBUG=debug):
        return checks.check_deployment()


@pytest.mark.parametrize("kms", ["static", "test-debug-static"])
def test_e101_static_kms_without_debug(kms: str) -> None:
    message = only(deploy_messages({**STATIC, "KMS": kms}), "asherah.E101")
    assert f"KMS={kms}" in message.msg and "DEBUG is False" in message.msg
    assert "VAULT_ADDR" in (message.hint or "")
    assert deploy_messages(STATIC, debug=True) == []


@pytest.mark.parametrize("token", ["root", "myroot", "dev-only-token", "s3cr3t"])
def test_w102_dev_root_token_without_debug(token: str) -> None:
    message = only(deploy_messages({**VAULT, "VAULT_TOKEN": token}), "asherah.W102")
    assert "VAULT_TOKEN looks like a Vault dev server root token" in message.msg
    assert deploy_messages({**VAULT, "VAULT_TOKEN": token}, debug=True) == []
    assert deploy_messages(VAULT) == []


def test_w103_plain_http_vault_without_debug() -> None:
    remote = {**VAULT, "VAULT_ADDR": "http://vault.internal:8200"}
    message = only(deploy_messages(remote), "asherah.W103")
    assert "plain http" in message.msg
    assert deploy_messages({**VAULT, "VAULT_ADDR": "http://127.0.0.1:8200"}) == []


@pytest.fixture
def database_messages() -> Any:
    def run(**asherah: Any) -> list[CheckMessage]:
        with override_settings(ASHERAH={**STATIC, **asherah}):
            return checks.check_database(databases=["default"])

    return run


@pytest.mark.django_db
def test_database_checks_need_databases(database_messages: Any) -> None:
    with override_settings(ASHERAH=STATIC):
        assert checks.check_database() == []
        assert checks.check_database(databases=["other"]) == []
    assert database_messages() == []
    assert database_messages(METASTORE="memory") == []


@pytest.mark.django_db
def test_w201_table_missing(database_messages: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(EncryptionKey._meta, "db_table", "asherah_missing_table")
    message = only(database_messages(), "asherah.W201")
    assert "'asherah_missing_table' does not exist in database 'default'" in message.msg
    assert "manage.py migrate asherah_django --database default" in (message.hint or "")


@pytest.mark.django_db
def test_no_w201_before_the_first_migrate(
    database_messages: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``migrate`` runs the database checks before it creates the table: no warning then."""
    monkeypatch.setattr(EncryptionKey._meta, "db_table", "asherah_missing_table")
    monkeypatch.setattr(MigrationRecorder, "applied_migrations", lambda self: {})
    assert database_messages() == []


@pytest.mark.django_db
def test_w202_migration_unapplied(database_messages: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(MigrationRecorder, "applied_migrations", lambda self: {})
    message = only(database_messages(), "asherah.W202")
    assert "--fake-initial" in (message.hint or "")


@pytest.mark.django_db(transaction=True)
def test_w203_columns_missing(database_messages: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    table = unique("asherah_wrong_")
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {table} (id VARCHAR(255) NOT NULL, record TEXT)")
    try:
        monkeypatch.setattr(EncryptionKey._meta, "db_table", table)
        message = only(database_messages(), "asherah.W203")
        assert "has no column created, key_record" in message.msg
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE {table}")


@pytest.mark.skipif("connection.vendor != 'mysql'", reason=MYSQL_ONLY)
@pytest.mark.django_db(transaction=True)
def test_w205_case_insensitive_id_on_mysql(
    database_messages: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert database_messages() == []  # our migration: utf8mb4_bin
    table = unique("asherah_ci_")
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE {table} (id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE "
            "utf8mb4_general_ci NOT NULL, created TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, "
            "key_record TEXT NOT NULL, PRIMARY KEY (id, created))"
        )
    try:
        monkeypatch.setattr(EncryptionKey._meta, "db_table", table)
        message = only(database_messages(), "asherah.W205")
        assert "utf8mb4_general_ci" in message.msg
        assert "COLLATE utf8mb4_bin" in (message.hint or "")
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE {table}")


@pytest.mark.django_db
def test_w204_database_unreachable(database_messages: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(*args: object) -> list[str]:
        raise DatabaseError("connection refused")

    monkeypatch.setattr(connection.introspection, "table_names", unreachable)
    message = only(database_messages(), "asherah.W204")
    assert "connection refused" in message.msg


@pytest.mark.parametrize(
    "auth",
    [
        {"VAULT_ADDR": None, "VAULT_TRANSIT_KEY": None},
        {"VAULT_TOKEN": None},
        {"VAULT_TOKEN": None, "VAULT_AUTH_METHOD": "cert"},
        {"VAULT_TOKEN": None, "VAULT_AUTH_METHOD": "nope"},
    ],
)
def test_vault_checks_report_the_configs_own_words(auth: dict[str, object]) -> None:
    """E005/E006 are vault_config.problems(): one rule, the same message, a hint saying where."""
    from asherah_django.conf.registry import where
    from asherah_django.core.kms.vault_config import problems

    asherah = {**VAULT, **auth}
    expected = problems({k: v for k, v in asherah.items() if k.startswith("VAULT_")})
    found = settings_messages(**asherah)
    assert len(found) == len(expected) >= 1
    for message, problem in zip(found, expected, strict=True):
        assert message.id == {"missing": "asherah.E005", "auth": "asherah.E006"}[problem.problem]
        assert message.msg == str(problem)
        assert (message.hint or "").startswith(f"set {where(problem.setting)}")


def test_e008_names_are_the_registrys_positive_numbers() -> None:
    from asherah_django.checks.settings import _SIMPLE

    e008 = sorted(name for name, check_id in _SIMPLE.items() if check_id == "asherah.E008")
    assert e008 == sorted(["EXPIRE_AFTER", "CHECK_INTERVAL", "SESSION_CACHE_SIZE",
                           "SESSION_CACHE_DURATION", "SYSTEM_KEY_CACHE_SIZE",
                           "INTERMEDIATE_KEY_CACHE_SIZE"])  # fmt: skip
