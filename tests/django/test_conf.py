"""The ASHERAH settings: defaults, environment fallback, precedence, validation."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings

from asherah_django.conf import DEFAULTS, asherah_settings
from asherah_django.core import ConfigurationError
from asherah_django.core.kms.static import TEST_MASTER_KEY_HEX
from asherah_django.core.kms.vault_config import SETTING_NAMES as VAULT_NAMES
from asherah_django.runtime import get_session_factory

MINIMAL = {"SERVICE_NAME": "svc", "PRODUCT_ID": "prod", "KMS": "static"}
HEX = "ab" * 32


def resolver(request: object) -> str | None:
    return "from-test"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in DEFAULTS:
        monkeypatch.delenv(name, raising=False)
    asherah_settings.reload()
    yield
    monkeypatch.undo()
    asherah_settings.reload()


def configured(**values: Any) -> Any:
    return override_settings(ASHERAH={**MINIMAL, "STATIC_MASTER_KEY_HEX": HEX, **values})


def test_defaults_are_asherahs() -> None:
    with configured():
        conf = asherah_settings
        assert conf.EXPIRE_AFTER == 7_776_000
        assert conf.CHECK_INTERVAL == 3600
        assert conf.SESSION_CACHE_SIZE == 1000
        assert conf.SESSION_CACHE_DURATION == 7200
        assert conf.SYSTEM_KEY_CACHE_SIZE == 1000
        assert conf.INTERMEDIATE_KEY_CACHE_SIZE == 10_000
        assert conf.METASTORE == "django"
        assert conf.DATABASE == "default"
        assert conf.PARTITION_RESOLVER == "asherah_django.middleware.user_partition"
        assert conf.VAULT_ADDR is None
        assert conf.source("EXPIRE_AFTER") == "default"
        assert conf.source("SERVICE_NAME") == "settings"


def test_kms_defaults_to_vault() -> None:
    with override_settings(ASHERAH={"SERVICE_NAME": "svc", "PRODUCT_ID": "prod"}):
        assert asherah_settings.KMS == "vault"


def test_every_key_can_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "SERVICE_NAME": "envsvc",
        "PRODUCT_ID": "envprod",
        "KMS": "vault-transit",
        "VAULT_ADDR": "https://vault.example.com:8200/",
        "VAULT_TRANSIT_KEY": "asherah",
        "VAULT_TOKEN": "hvs.CAESIexample",
        "VAULT_TIMEOUT": "2.5",
        "VAULT_MAX_RETRIES": "0",
        "EXPIRE_AFTER": "86400",
        "CHECK_INTERVAL": "60",
        "SESSION_CACHE_SIZE": "10",
        "SESSION_CACHE_DURATION": "30",
        "SYSTEM_KEY_CACHE_SIZE": "11",
        "INTERMEDIATE_KEY_CACHE_SIZE": "12",
        "METASTORE": "memory",
        "DATABASE": "default",
        "PARTITION_RESOLVER": "tests.django.test_conf.resolver",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with override_settings(ASHERAH={}):
        conf = asherah_settings
        assert (conf.SERVICE_NAME, conf.PRODUCT_ID, conf.KMS) == ("envsvc", "envprod", "vault")
        assert conf.EXPIRE_AFTER == 86400 and conf.CHECK_INTERVAL == 60
        assert conf.SESSION_CACHE_SIZE == 10 and conf.SESSION_CACHE_DURATION == 30
        assert (conf.SYSTEM_KEY_CACHE_SIZE, conf.INTERMEDIATE_KEY_CACHE_SIZE) == (11, 12)
        assert conf.METASTORE == "memory"
        assert conf.VAULT_TIMEOUT == 2.5 and conf.VAULT_MAX_RETRIES == 0
        assert conf.partition_resolver(None) == "from-test"
        assert all(conf.source(name) == "environment" for name in env)
        vault = conf.vault_config()
        assert vault.addr == "https://vault.example.com:8200"
        assert vault.transit_key == "asherah" and vault.timeout == 2.5
        conf.validate()


def test_settings_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVICE_NAME", "from-env")
    monkeypatch.setenv("CHECK_INTERVAL", "99")
    with configured(SERVICE_NAME="from-settings", CHECK_INTERVAL=None):
        assert asherah_settings.SERVICE_NAME == "from-settings"
        assert asherah_settings.CHECK_INTERVAL == 99  # None means "not set here"
        assert asherah_settings.source("CHECK_INTERVAL") == "environment"


def test_empty_environment_values_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPIRE_AFTER", "")
    with configured():
        assert asherah_settings.EXPIRE_AFTER == 7_776_000


def test_settings_changes_are_seen_and_environment_changes_after_reload(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with configured(SERVICE_NAME="one"):
        assert asherah_settings.SERVICE_NAME == "one"
        with configured(SERVICE_NAME="two"):  # setting_changed
            assert asherah_settings.SERVICE_NAME == "two"
        assert asherah_settings.SERVICE_NAME == "one"
        assert asherah_settings.CHECK_INTERVAL == 3600
        monkeypatch.setenv("CHECK_INTERVAL", "120")
        assert asherah_settings.CHECK_INTERVAL == 3600  # read once, cached
        asherah_settings.reload()
        assert asherah_settings.CHECK_INTERVAL == 120


@pytest.mark.parametrize("value", ["abc", "ab" * 31, "zz" * 32, "ab" * 33, 1234], ids=str)
def test_invalid_static_master_key_names_the_setting(value: object) -> None:
    with configured(STATIC_MASTER_KEY_HEX=value):
        with pytest.raises(ConfigurationError, match="STATIC_MASTER_KEY_HEX") as caught:
            get_session_factory()
        assert "ASHERAH['STATIC_MASTER_KEY_HEX'] in settings.py" in str(caught.value)


def test_invalid_static_master_key_from_the_environment_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STATIC_MASTER_KEY_HEX", "nothex")
    with override_settings(ASHERAH=MINIMAL):
        with pytest.raises(ConfigurationError) as caught:
            get_session_factory()
    assert "STATIC_MASTER_KEY_HEX" in str(caught.value)
    assert "STATIC_MASTER_KEY_HEX environment variable" in str(caught.value)


def test_static_kms_requires_a_master_key() -> None:
    with override_settings(ASHERAH=MINIMAL):
        with pytest.raises(ConfigurationError, match="STATIC_MASTER_KEY_HEX is required"):
            get_session_factory()


def test_test_debug_static_uses_asherahs_public_test_key() -> None:
    with override_settings(ASHERAH={**MINIMAL, "KMS": "test-debug-static"}):
        assert asherah_settings.KMS == "test-debug-static"
        assert asherah_settings.static_master_key_hex == TEST_MASTER_KEY_HEX


@pytest.mark.parametrize("value", ["gcp", "", "Static ", 3])
def test_unknown_kms_names_the_setting(value: object) -> None:
    with configured(KMS=value):
        if value == "":
            assert asherah_settings.KMS == "vault"  # empty = unset = the default
            return
        if value == "Static ":
            assert asherah_settings.KMS == "static"  # case and spaces are forgiven
            return
        with pytest.raises(ConfigurationError, match="KMS") as caught:
            get_session_factory()
        assert "ASHERAH['KMS']" in str(caught.value)
        assert "vault" in str(caught.value) and "static" in str(caught.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("EXPIRE_AFTER", "soon"),
        ("CHECK_INTERVAL", 0),
        ("SESSION_CACHE_SIZE", -1),
        ("SESSION_CACHE_DURATION", True),
        ("SYSTEM_KEY_CACHE_SIZE", 1.5),
        ("INTERMEDIATE_KEY_CACHE_SIZE", "many"),
        ("METASTORE", "dynamodb"),
        ("DATABASE", "nowhere"),
        ("SERVICE_NAME", ""),
        ("PRODUCT_ID", None),
        ("PARTITION_RESOLVER", "not a path"),
    ],
)
def test_invalid_values_name_their_setting(name: str, value: object) -> None:
    with override_settings(ASHERAH={**MINIMAL, "STATIC_MASTER_KEY_HEX": HEX, name: value}):
        with pytest.raises(ConfigurationError, match=name):
            asherah_settings.get(name)
        if name != "PARTITION_RESOLVER":  # the resolver is only checked where it is used
            with pytest.raises(ConfigurationError, match=name):
                get_session_factory()


def test_unimportable_partition_resolver_names_the_setting() -> None:
    with configured(PARTITION_RESOLVER="tests.django.nowhere.resolver"):
        with pytest.raises(ConfigurationError, match="PARTITION_RESOLVER"):
            asherah_settings.partition_resolver  # noqa: B018


def test_vault_settings_are_gathered_for_the_vault_kms() -> None:
    with configured(
        KMS="vault",
        VAULT_ADDR="https://vault:8200",
        VAULT_TRANSIT_KEY="k",
        VAULT_AUTH_METHOD="approle",
        VAULT_APPROLE_ROLE_ID="role",
        VAULT_APPROLE_SECRET_ID="s3cr3t-value",
    ):
        values = asherah_settings.vault_settings()
        assert set(values) <= set(VAULT_NAMES)
        assert values["VAULT_APPROLE_ROLE_ID"] == "role"
        config = asherah_settings.vault_config()
        assert config.auth_method == "approle"
        assert "s3cr3t-value" not in repr(config)


def test_vault_errors_name_the_setting() -> None:
    with configured(KMS="vault", VAULT_ADDR="https://vault:8200", VAULT_TRANSIT_KEY="k"):
        with pytest.raises(ConfigurationError, match="VAULT_TOKEN") as caught:
            get_session_factory()
        assert "ASHERAH dict in settings.py" in str(caught.value)
    with configured(KMS="vault", VAULT_ADDR="https://vault:8200", VAULT_TOKEN="t"):
        with pytest.raises(ConfigurationError, match="VAULT_TRANSIT_KEY"):
            get_session_factory()
    with configured(KMS="vault", VAULT_TIMEOUT="soon"):
        with pytest.raises(ConfigurationError, match="VAULT_TIMEOUT"):
            get_session_factory()


def test_asherah_must_be_a_dict() -> None:
    with override_settings(ASHERAH=["SERVICE_NAME"]):
        assert "ASHERAH" in asherah_settings.errors()
        with pytest.raises(ConfigurationError, match=r"settings\.ASHERAH must be a dict"):
            asherah_settings.validate()
