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
        monkeypatch.delenv(f"ASHERAH_{name}", raising=False)
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
        "PARTITION_RESOLVER": "tests.unit.test_conf.resolver",
    }
    for name, value in env.items():
        monkeypatch.setenv(f"ASHERAH_{name}", value)
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
        assert all(conf.variable(name) == f"ASHERAH_{name}" for name in env)
        vault = conf.vault_config()
        assert vault.addr == "https://vault.example.com:8200"
        assert vault.transit_key == "asherah" and vault.timeout == 2.5
        conf.validate()


def test_settings_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASHERAH_SERVICE_NAME", "from-env")
    monkeypatch.setenv("ASHERAH_CHECK_INTERVAL", "99")
    with configured(SERVICE_NAME="from-settings", CHECK_INTERVAL=None):
        assert asherah_settings.SERVICE_NAME == "from-settings"
        assert asherah_settings.CHECK_INTERVAL == 99  # None means "not set here"
        assert asherah_settings.source("CHECK_INTERVAL") == "environment"


def test_empty_environment_values_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASHERAH_EXPIRE_AFTER", "")
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
        monkeypatch.setenv("ASHERAH_CHECK_INTERVAL", "120")
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


# -- environment variable names (issue 20) ----------------------------------------------------

#: What hosting platforms and other tools put in the environment of every process.
PLATFORM_ENVIRONMENT = {
    "DATABASE": "postgres://app:pw@db.internal:5432/app",
    "SERVICE_NAME": "web-7f9c",
    "PRODUCT_ID": "platform-product",
    "METASTORE": "s3",
    "EXPIRE_AFTER": "soon",
    "CHECK_INTERVAL": "1",
    "PARTITION_RESOLVER": "not a path",
    "KMS": "projects/p/locations/l/keyRings/r/cryptoKeys/k",
}


def test_a_platform_environment_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Generic unprefixed names are never read; another tool's KMS is ignored, not an error."""
    from asherah_django.checks import check_settings

    for name, value in PLATFORM_ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    with configured():
        conf = asherah_settings
        assert (conf.SERVICE_NAME, conf.PRODUCT_ID, conf.KMS) == ("svc", "prod", "static")
        assert conf.DATABASE == "default" and conf.METASTORE == "django"
        assert conf.EXPIRE_AFTER == 7_776_000 and conf.CHECK_INTERVAL == 3600
        assert conf.PARTITION_RESOLVER == "asherah_django.middleware.user_partition"
        assert conf.errors() == {}
        assert [m.id for m in check_settings()] == []  # KMS in settings: env not consulted
    with override_settings(ASHERAH={"SERVICE_NAME": "svc", "PRODUCT_ID": "prod"}):
        assert asherah_settings.KMS == "vault"  # the default, not the platform's value
        assert asherah_settings.source("KMS") == "default"
        assert asherah_settings.DATABASE == "default"
        warning = [m for m in check_settings() if m.id == "asherah.W002"]
        assert len(warning) == 1 and "ignores it" in warning[0].msg
        assert "projects/" not in warning[0].msg  # another tool's value is not echoed


def test_prefixed_names_win_over_the_well_known_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KMS", "vault")
    monkeypatch.setenv("ASHERAH_KMS", "static")
    monkeypatch.setenv("VAULT_ADDR", "http://127.0.0.1:1")
    monkeypatch.setenv("ASHERAH_VAULT_ADDR", "https://vault.example.com")
    monkeypatch.setenv("STATIC_MASTER_KEY_HEX", HEX)
    with override_settings(ASHERAH={"SERVICE_NAME": "svc", "PRODUCT_ID": "prod"}):
        conf = asherah_settings
        assert conf.KMS == "static" and conf.variable("KMS") == "ASHERAH_KMS"
        assert conf.VAULT_ADDR == "https://vault.example.com"
        assert conf.STATIC_MASTER_KEY_HEX == HEX
        assert conf.variable("STATIC_MASTER_KEY_HEX") == "STATIC_MASTER_KEY_HEX"
    with override_settings(ASHERAH={"SERVICE_NAME": "svc", "PRODUCT_ID": "prod", "KMS": "vault"}):
        assert asherah_settings.KMS == "vault"  # the settings dict wins over both


@pytest.mark.parametrize("value", ["vault", "vault-transit", "static", "test-debug-static"])
def test_the_well_known_kms_variable_is_honoured_with_our_values(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """Asherah's documentation sets KMS=vault; that keeps working unprefixed."""
    monkeypatch.setenv("KMS", value)
    monkeypatch.setenv("VAULT_ADDR", "https://vault.example.com")
    monkeypatch.setenv("VAULT_TRANSIT_KEY", "asherah-master")
    monkeypatch.setenv("VAULT_TOKEN", "hvs.CAESIexample")
    with override_settings(ASHERAH={"SERVICE_NAME": "svc", "PRODUCT_ID": "prod"}):
        assert {"vault-transit": "vault"}.get(value, value) == asherah_settings.KMS
        assert asherah_settings.variable("KMS") == "KMS"
        assert asherah_settings.vault_config().transit_key == "asherah-master"


def test_generic_names_are_read_only_with_the_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    generic = [name for name in DEFAULTS if name not in VAULT_NAMES]
    generic.remove("KMS")
    generic.remove("STATIC_MASTER_KEY_HEX")
    for aws_name in ("REGION_MAP", "PREFERRED_REGION", "KMS_KEY_ID",  # issue 24: asherah-ffi's
                     "SECRETS_MANAGER_SECRET_ID", "AWS_REGION", "AWS_ENDPOINT_URL"):  # fmt: skip
        generic.remove(aws_name)
    assert {"AWS_PROFILE_NAME", "AWS_KMS_ENDPOINTS", "AWS_TIMEOUT"} <= set(generic)
    assert {"SERVICE_NAME", "PRODUCT_ID", "DATABASE", "METASTORE"} <= set(generic)
    for name in generic:
        monkeypatch.setenv(name, "from-the-platform")
    with configured():
        assert not any(asherah_settings.source(name) == "environment" for name in generic)
