"""The settings registry lists exactly the settings the code reads (the docs render it)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from asherah_django.conf import DEFAULTS, AsherahSettings, asherah_settings
from asherah_django.conf.registry import BY_KEY, SETTINGS, env_names, well_known, where
from asherah_django.core.errors import ConfigurationError
from asherah_django.core.kms.aws_settings import AWS_SETTINGS
from asherah_django.core.kms.aws_settings import SETTING_NAMES as AWS_SETTINGS_NAMES
from asherah_django.core.kms.vault_settings import VAULT_SETTINGS
from asherah_django.core.setting import Setting, SettingsReader

PACKAGE = Path(__file__).resolve().parents[3] / "asherah_django"
NAME = re.compile(r"[A-Z][A-Z0-9]*(_[A-Z0-9]+)+|[A-Z]{3,}")
#: Methods that read one setting by name: SettingsReader's, AsherahSettings', a snapshot's.
READERS = frozenset({"text", "number", "integer", "mapping", "value", "get", "source", "variable"})
#: Receivers whose ``.get("NAME")`` reads a setting (settings objects and their values).
SETTINGS_RECEIVER = re.compile(r"(^|\.)(get|conf|asherah_settings|self|values|snapshot)$")


def settings_read(tree: ast.AST, *, settings_class: bool = True) -> set[str]:
    """Setting names read in ``tree`` through the accessors (see READERS).

    ``self.NAME`` counts only where ``self`` is a settings object (``settings_class``: the
    conf package); elsewhere it is an ordinary class constant.
    """
    receivers = (
        ("asherah_settings", "conf", "self") if settings_class else ("asherah_settings", "conf")
    )
    found: set[str] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in receivers
            and NAME.fullmatch(node.attr)
        ):
            found.add(node.attr)  # asherah_settings.DATABASE, conf.KMS, self.KMS (conf)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in READERS
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and NAME.fullmatch(node.args[0].value)
            and SETTINGS_RECEIVER.search(ast.unparse(node.func.value))
        ):
            found.add(node.args[0].value)  # get.text("VAULT_ADDR"), conf.get("KMS")
    return found


def read_by_the_code() -> dict[str, set[str]]:
    """Setting name -> the modules that read it (the registry's own modules excluded)."""
    skip = {"conf/registry.py", "core/kms/vault_settings.py", "core/kms/aws_settings.py"}
    reads: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = str(path.relative_to(PACKAGE))
        if relative in skip or relative.startswith(("migrations/", "testing/")):
            continue
        tree = ast.parse(path.read_text())
        for name in settings_read(tree, settings_class=relative.startswith("conf/")):
            reads.setdefault(name, set()).add(relative)
    return reads


def test_the_code_reads_exactly_the_registered_settings() -> None:
    reads = read_by_the_code()
    unregistered = {name: sorted(at) for name, at in reads.items() if name not in BY_KEY}
    assert unregistered == {}, "read but not in asherah_django.conf.registry.SETTINGS"
    never_read = [setting.key for setting in SETTINGS if setting.key not in reads]
    assert never_read == [], "in the registry but read nowhere"


def test_the_scan_sees_each_kind_of_accessor() -> None:
    """The scan itself: a reader call, a settings attribute, a snapshot read."""
    code = (
        "get.text('VAULT_NEW')\nasherah_settings.BRAND_NEW\nsnapshot.values.get('ALSO_NEW')\n"
        "os.environ.get('HOME_DIR')\n"
    )
    assert settings_read(ast.parse(code)) == {"VAULT_NEW", "BRAND_NEW", "ALSO_NEW"}
    reads = read_by_the_code()
    assert "core/kms/vault_config.py" in reads["VAULT_ADDR"]
    assert "core/kms/aws_config.py" in reads["REGION_MAP"]
    assert "runtime.py" in reads["SESSION_CACHE_DURATION"]


def test_reading_an_unregistered_name_fails_at_run_time() -> None:
    with pytest.raises(KeyError):
        SettingsReader({"VAULT_NEW": "x"}, {s.key: s for s in VAULT_SETTINGS}).text("VAULT_NEW")
    with pytest.raises(KeyError):
        asherah_settings.get("NOT_A_SETTING")


def test_settings_attributes_defaults_and_registry_agree() -> None:
    attributes = [name for name in vars(AsherahSettings) if NAME.fullmatch(name)]
    assert attributes == [s.key for s in SETTINGS if s.key in attributes]  # registry order
    # Read by name (asherah_settings.get), not as attributes: the AWS and erasure settings.
    by_name = {*AWS_SETTINGS_NAMES, "ERASURE_SIGNING_KEY", "ERASURE_OPERATOR"}
    assert {s.key for s in SETTINGS} - set(attributes) == by_name
    assert list(DEFAULTS) == [setting.key for setting in SETTINGS]
    assert {s.key for s in (*VAULT_SETTINGS, *AWS_SETTINGS)} <= set(BY_KEY)


def test_every_setting_is_described() -> None:
    for setting in SETTINGS:
        assert isinstance(setting, Setting)
        assert setting.kind and setting.doc.endswith("."), setting.key
        assert len(setting.doc) < 600, f"{setting.key}: one paragraph"
        assert setting.shown_default, setting.key
        assert setting.env[0] == f"ASHERAH_{setting.key}"
        assert setting.env == env_names(setting.key)
        assert all(kms in ("vault", "aws", "secrets-manager", "static", "test-debug-static")
                   for kms in setting.kms), setting.key  # fmt: skip
        if setting.default is not None:  # every default is valid for its own parser
            assert setting.read(None) == setting.default


def test_unprefixed_names_are_the_ones_asherah_documents() -> None:
    """Behaviour unchanged: VAULT_*, KMS, STATIC_MASTER_KEY_HEX and asherah-ffi's AWS names."""
    unprefixed = {setting.key for setting in SETTINGS if setting.unprefixed}
    expected = {"KMS", "STATIC_MASTER_KEY_HEX", "REGION_MAP", "PREFERRED_REGION", "KMS_KEY_ID",
                "SECRETS_MANAGER_SECRET_ID", "AWS_REGION", "AWS_ENDPOINT_URL"}  # fmt: skip
    assert unprefixed == expected | {key for key in BY_KEY if key.startswith("VAULT_")}
    assert all(well_known(key) == (key in unprefixed) for key in BY_KEY)
    assert env_names("VAULT_ADDR") == ("ASHERAH_VAULT_ADDR", "VAULT_ADDR")
    assert env_names("DATABASE") == ("ASHERAH_DATABASE",)
    assert "(or VAULT_ADDR)" in where("VAULT_ADDR")


def test_parsers_name_the_setting_they_reject() -> None:
    for setting, bad in ((BY_KEY["VAULT_TIMEOUT"], "soon"), (BY_KEY["AWS_MAX_RETRIES"], "-1"),
                         (BY_KEY["EXPIRE_AFTER"], "0"), (BY_KEY["KEY_INTEGRITY"], "maybe"),
                         (BY_KEY["REGION_MAP"], "{not json")):  # fmt: skip
        with pytest.raises(ConfigurationError, match=setting.key):
            setting.read(bad)


def test_settings_errors_are_typed_and_name_the_setting() -> None:
    from django.test import override_settings

    from asherah_django.core.setting import SettingError

    asherah = {"SERVICE_NAME": "svc", "PRODUCT_ID": "prod", "KMS": "vault", "EXPIRE_AFTER": "0"}
    with override_settings(ASHERAH=asherah):
        error = asherah_settings.errors()["EXPIRE_AFTER"]
        assert isinstance(error, SettingError) and error.setting == "EXPIRE_AFTER"
        assert "(from ASHERAH['EXPIRE_AFTER'] in settings.py)" in str(error)
        with pytest.raises(SettingError) as raised:
            asherah_settings.vault_config()
        assert (raised.value.setting, raised.value.problem) == ("VAULT_ADDR", "missing")
        assert "set Vault settings in the ASHERAH dict" in str(raised.value)
