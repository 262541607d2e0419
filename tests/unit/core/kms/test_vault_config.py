"""VaultTransitConfig.from_mapping: the upstream setting names, defaults, and exact errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from asherah_django.core import ConfigurationError
from asherah_django.core.kms.vault import VaultTransitKMS
from asherah_django.core.kms.vault_config import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_K8S_TOKEN_PATH,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    VaultTransitConfig,
)

BASE = {"VAULT_ADDR": "https://vault.example.com:8200/", "VAULT_TRANSIT_KEY": "asherah-master"}
TOKEN = "hvs.CAESIJ-not-a-real-token"
SECRET_ID = "6a174c20-f6de-a53c-74d2-6018fcceff64"


def config(**values: object) -> VaultTransitConfig:
    return VaultTransitConfig.from_mapping({**BASE, **values})


def test_token_auth_and_upstream_defaults() -> None:
    c = config(VAULT_TOKEN=TOKEN)
    assert c.addr == "https://vault.example.com:8200"  # trailing "/" ignored
    assert (c.transit_key, c.transit_mount, c.auth_method) == ("asherah-master", "transit", "token")
    assert c.k8s_token_path == DEFAULT_K8S_TOKEN_PATH
    assert (c.timeout, c.connect_timeout, c.max_retries) == (
        DEFAULT_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_RETRIES,
    )  # fmt: skip
    assert c.ca_cert is None and c.client_cert is None


def test_mount_slashes_are_ignored_and_unknown_keys_too() -> None:
    c = config(VAULT_TOKEN=TOKEN, VAULT_TRANSIT_MOUNT="/secrets/transit/", SERVICE_NAME="x")
    assert c.transit_mount == "secrets/transit"


@pytest.mark.parametrize(
    ("method", "expected", "mount"),
    [
        ("kubernetes", "kubernetes", "kubernetes"),
        ("k8s", "kubernetes", "kubernetes"),
        ("K8S", "kubernetes", "kubernetes"),
        ("approle", "approle", "approle"),
        ("cert", "cert", "cert"),
        ("tls", "cert", "cert"),
    ],
)
def test_auth_method_aliases_and_default_mounts(method: str, expected: str, mount: str) -> None:
    c = config(
        VAULT_AUTH_METHOD=method, VAULT_AUTH_ROLE="asherah-role", VAULT_APPROLE_ROLE_ID="role-id",
        VAULT_CLIENT_CERT="/c.pem", VAULT_CLIENT_KEY="/k.pem",
    )  # fmt: skip
    assert c.auth_method == expected
    assert c.login_mount == mount
    assert c.logs_in


def test_auth_mount_overrides_the_default() -> None:
    c = config(VAULT_AUTH_METHOD="kubernetes", VAULT_AUTH_ROLE="r", VAULT_AUTH_MOUNT="/k8s-prod/")
    assert c.login_mount == "k8s-prod"


def test_a_named_method_wins_over_vault_token() -> None:
    c = config(VAULT_TOKEN=TOKEN, VAULT_AUTH_METHOD="approle", VAULT_APPROLE_ROLE_ID="role-id")
    assert c.auth_method == "approle"


def test_no_credentials_gives_the_upstream_message() -> None:
    with pytest.raises(ConfigurationError) as raised:
        config()
    assert str(raised.value) == (
        "Vault authentication required: set VAULT_TOKEN, or VAULT_AUTH_METHOD "
        "(kubernetes, approle, cert) with the appropriate credentials"
    )


def test_unknown_method_gives_the_upstream_message() -> None:
    with pytest.raises(ConfigurationError) as raised:
        config(VAULT_AUTH_METHOD="LDAP")
    assert str(raised.value) == (
        "unsupported VAULT_AUTH_METHOD 'ldap': expected kubernetes, approle, or cert"
    )


@pytest.mark.parametrize(
    ("values", "setting"),
    [
        ({"VAULT_ADDR": None}, "VAULT_ADDR"),
        ({"VAULT_ADDR": "vault:8200"}, "VAULT_ADDR"),
        ({"VAULT_ADDR": "ftp://vault"}, "VAULT_ADDR"),
        ({"VAULT_ADDR": "https://user:pw@vault"}, "VAULT_ADDR"),
        ({"VAULT_TRANSIT_KEY": ""}, "VAULT_TRANSIT_KEY"),
        ({"VAULT_TRANSIT_KEY": "a/b"}, "VAULT_TRANSIT_KEY"),
        ({"VAULT_TRANSIT_MOUNT": "a/../b"}, "VAULT_TRANSIT_MOUNT"),
        ({"VAULT_AUTH_METHOD": "kubernetes"}, "VAULT_AUTH_ROLE"),
        ({"VAULT_AUTH_METHOD": "approle"}, "VAULT_APPROLE_ROLE_ID"),
        ({"VAULT_AUTH_METHOD": "cert"}, "VAULT_CLIENT_CERT"),
        ({"VAULT_CLIENT_CERT": "/c.pem"}, "VAULT_CLIENT_KEY"),
        ({"VAULT_TIMEOUT": "soon"}, "VAULT_TIMEOUT"),
        ({"VAULT_TIMEOUT": 0}, "VAULT_TIMEOUT"),
        ({"VAULT_CONNECT_TIMEOUT": -1}, "VAULT_CONNECT_TIMEOUT"),
        ({"VAULT_MAX_RETRIES": "2.5"}, "VAULT_MAX_RETRIES"),
        ({"VAULT_MAX_RETRIES": 11}, "VAULT_MAX_RETRIES"),
        ({"VAULT_TOKEN": 42}, "VAULT_TOKEN"),
    ],
)
def test_each_invalid_setting_is_named(values: dict[str, object], setting: str) -> None:
    with pytest.raises(ConfigurationError, match=setting):
        config(**{"VAULT_TOKEN": TOKEN, **values})


def test_cert_auth_needs_https() -> None:
    with pytest.raises(ConfigurationError, match="VAULT_AUTH_METHOD=cert needs an https://"):
        VaultTransitConfig.from_mapping(
            {**BASE, "VAULT_ADDR": "http://vault:8200", "VAULT_AUTH_METHOD": "cert",
             "VAULT_CLIENT_CERT": "/c.pem", "VAULT_CLIENT_KEY": "/k.pem"}
        )  # fmt: skip


def test_numbers_may_be_strings_as_in_the_environment() -> None:
    c = config(
        VAULT_TOKEN=TOKEN, VAULT_TIMEOUT="2.5", VAULT_CONNECT_TIMEOUT=1, VAULT_MAX_RETRIES="0"
    )
    assert (c.timeout, c.connect_timeout, c.max_retries) == (2.5, 1.0, 0)


def test_repr_and_errors_never_show_the_token_or_secret_id() -> None:
    c = config(
        VAULT_TOKEN=TOKEN, VAULT_AUTH_METHOD="approle", VAULT_APPROLE_ROLE_ID="role-id",
        VAULT_APPROLE_SECRET_ID=SECRET_ID,
    )  # fmt: skip
    text = repr(c)
    assert TOKEN not in text and SECRET_ID not in text
    assert "token='<redacted>'" in text and "approle_secret_id='<redacted>'" in text
    kms = VaultTransitKMS(c)
    try:
        assert TOKEN not in repr(kms) and SECRET_ID not in repr(kms)
    finally:
        kms.close()
    with pytest.raises(ConfigurationError) as raised:
        config(VAULT_TOKEN=TOKEN, VAULT_APPROLE_SECRET_ID=SECRET_ID, VAULT_TIMEOUT="x")
    assert TOKEN not in str(raised.value) and SECRET_ID not in str(raised.value)


def test_missing_certificate_files_are_reported_when_the_kms_is_built(tmp_path: Path) -> None:
    c = config(VAULT_TOKEN=TOKEN, VAULT_CACERT=str(tmp_path / "missing-ca.pem"))
    with pytest.raises(ConfigurationError, match="VAULT_CACERT is not a readable file"):
        VaultTransitKMS(c)


def test_hvac_is_imported_by_vault_py_only_and_core_stays_django_free() -> None:
    package = Path(__file__).resolve().parents[4] / "asherah_django"
    importers = sorted(
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if any(
            line.startswith(("import hvac", "from hvac"))
            for line in path.read_text().splitlines()
        )
    )  # fmt: skip
    assert importers == ["core/kms/vault.py"]
    code = (
        "import sys, asherah_django.core.kms.vault; "
        "assert 'django' not in sys.modules, 'django imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=package.parent)


def test_problems_lists_every_missing_setting_with_its_kind() -> None:
    from asherah_django.core.kms.vault_config import problems
    from asherah_django.core.setting import SettingError

    found = problems({})
    assert [(p.setting, p.problem) for p in found] == [
        ("VAULT_ADDR", "missing"), ("VAULT_TRANSIT_KEY", "missing"), ("VAULT_TOKEN", "auth"),
    ]  # fmt: skip
    assert all(isinstance(p, SettingError) for p in found)
    cert = problems({**BASE, "VAULT_AUTH_METHOD": "tls"})
    assert [(p.setting, str(p)) for p in cert] == [
        ("VAULT_CLIENT_CERT", "VAULT_CLIENT_CERT is required for Vault cert auth (VAULT_AUTH_METHOD=tls)"),
        ("VAULT_CLIENT_KEY", "VAULT_CLIENT_KEY is required for Vault cert auth (VAULT_AUTH_METHOD=tls)"),
    ]  # fmt: skip
    assert problems({**BASE, "VAULT_AUTH_METHOD": "agent"}) == []
    assert problems({**BASE, "VAULT_TOKEN_FILE": "/run/token"}) == []


@pytest.mark.parametrize(
    "values",
    [{}, {"VAULT_ADDR": None}, {"VAULT_AUTH_METHOD": "ldap"}, {"VAULT_AUTH_METHOD": "k8s"}],
)
def test_from_mapping_raises_the_first_problem_in_the_same_words(values: dict[str, object]) -> None:
    from asherah_django.core.kms.vault_config import problems

    first = problems({**BASE, **values})[0]
    with pytest.raises(ConfigurationError) as raised:
        config(**values)
    assert raised.value is not first and str(raised.value) == str(first)


def test_a_config_built_directly_follows_the_same_auth_rule() -> None:
    with pytest.raises(ConfigurationError) as raised:
        VaultTransitConfig(addr="https://vault:8200", transit_key="k", auth_method="kubernetes")
    assert str(raised.value) == (
        "VAULT_AUTH_ROLE is required for Vault kubernetes auth (VAULT_AUTH_METHOD=kubernetes)"
    )
    assert VaultTransitConfig(addr="https://v", transit_key="k", token_file="/t").token is None
