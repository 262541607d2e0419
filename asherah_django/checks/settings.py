"""The settings checks: E001-E013, E021-E023, W001, W002 (every ``manage.py check``).

Each reports what the settings layer's validation says (``asherah_django.conf`` and
the KMS configurations): no rule is written twice.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import Any, Final

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning

from ..conf import DEFAULTS, KMS_ALIASES, asherah_settings, where
from ..conf.parsing import parse_positive_entries, parse_positive_seconds
from ..conf.registry import SETTINGS, hint_for
from ..core.errors import ConfigurationError
from ..core.kms.vault_config import problems as vault_problems

_SIMPLE: Final = {
    "ASHERAH": "asherah.E012",
    "SERVICE_NAME": "asherah.E001",
    "PRODUCT_ID": "asherah.E002",
    "KMS": "asherah.E003",
    "METASTORE": "asherah.E009",
    "DATABASE": "asherah.E010",
    "KEY_INTEGRITY": "asherah.E013",
    # the crypto policy and cache sizes: every positive whole number of the registry
    **dict.fromkeys(
        (s.key for s in SETTINGS if s.parse in (parse_positive_seconds, parse_positive_entries)),
        "asherah.E008",
    ),
}
#: The check id of each kind of Vault problem (the rest: E007).
_VAULT_IDS: Final = {"missing": "asherah.E005", "auth": "asherah.E006"}


def _error(check_id: str, message: str, hint: str) -> Error:
    return Error(message, hint=hint, id=check_id)


def check_settings(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Every ASHERAH setting is present and valid for the chosen KMS and metastore."""
    conf = asherah_settings
    snapshot = conf.snapshot()
    errors = snapshot.errors
    messages: list[CheckMessage] = []
    for name, check_id in _SIMPLE.items():
        if name == "DATABASE" and snapshot.values.get("METASTORE") != "django":
            continue
        if name in errors:
            messages.append(
                _error(check_id, str(errors[name].args[0]), hint_for(errors[name], name))
            )
    for key in snapshot.unknown_keys:
        messages.append(
            Warning(
                f"settings.ASHERAH has an unknown key {key!r}",
                hint=f"check the spelling; known keys: {', '.join(sorted(DEFAULTS))}",
                id="asherah.W001",
            )
        )
    for variable in snapshot.ignored:
        messages.append(
            Warning(
                f"the {variable} environment variable is set to a value that is not an Asherah "
                f"KMS name ({', '.join(KMS_ALIASES)}); asherah_django ignores it (another tool's "
                f"setting?) and uses KMS={snapshot.values.get('KMS')} from "
                f"{snapshot.sources.get('KMS')}",
                hint="to choose the KMS, set ASHERAH['KMS'] in settings.py or ASHERAH_KMS, "
                "which also silences this warning",
                id="asherah.W002",
            )
        )
    kms = snapshot.values.get("KMS")
    if kms in ("static", "test-debug-static") and "STATIC_MASTER_KEY_HEX" in errors:
        error = errors["STATIC_MASTER_KEY_HEX"]
        messages.append(
            _error("asherah.E004", str(error.args[0]), hint_for(error, "STATIC_MASTER_KEY_HEX"))
        )
    if kms == "vault":
        messages += _vault_messages()
    messages += _aws_messages(kms)
    messages += _resolver_messages()
    return messages


def _vault_messages() -> list[CheckMessage]:
    """E005/E006 for every required setting missing, else E007 for the first invalid one."""
    conf = asherah_settings
    try:
        missing = vault_problems(conf.vault_settings())
    except ConfigurationError:
        missing = []  # an invalid value: vault_config() below says which
    messages: list[CheckMessage] = [
        _error(_VAULT_IDS[problem.problem], str(problem.args[0]), hint_for(problem))
        for problem in missing
    ]
    if not messages:
        try:
            conf.vault_config()
        except ConfigurationError as exc:
            messages.append(
                _error(
                    "asherah.E007",
                    str(exc.args[0]),
                    exc.hint or "set the Vault settings in ASHERAH or the environment",
                )
            )
    return messages


def _aws_messages(kms: object) -> list[CheckMessage]:
    """KMS=aws / secrets-manager settings and boto3; a dotted-path KMS class (issue 24)."""
    conf = asherah_settings
    messages: list[CheckMessage] = []
    if kms in ("aws", "secrets-manager"):
        build = conf.aws_config if kms == "aws" else conf.secrets_manager_config
        try:
            build()
        except ConfigurationError as exc:
            messages.append(_error("asherah.E021", str(exc.args[0]), exc.hint or _AWS_HINT))
        if importlib.util.find_spec("boto3") is None:
            messages.append(
                _error(
                    "asherah.E022",
                    f"KMS={kms} needs boto3, which is not installed",
                    "pip install 'asherah-django[aws]'",
                )
            )
    elif isinstance(kms, str) and "." in kms:
        try:
            conf.kms_class()
        except ConfigurationError as exc:
            messages.append(_error("asherah.E023", str(exc.args[0]), exc.hint or _KMS_HINT))
    return messages


_AWS_HINT: Final = "set REGION_MAP and PREFERRED_REGION in ASHERAH or the environment"
_KMS_HINT: Final = "a class with encrypt_key(bytes) -> bytes and decrypt_key(bytes) -> bytes"


def _resolver_messages() -> list[CheckMessage]:
    conf = asherah_settings
    middleware = getattr(settings, "MIDDLEWARE", None) or []
    uses_middleware = any(str(path).startswith("asherah_django.") for path in middleware)
    if conf.source("PARTITION_RESOLVER") == "default" and not uses_middleware:
        return []
    try:
        conf.partition_resolver  # noqa: B018 - imports it
    except ConfigurationError as exc:
        return [
            _error(
                "asherah.E011",
                str(exc.args[0]),
                f"set {where('PARTITION_RESOLVER')} to the dotted path of "
                "resolver(request) -> partition id or None",
            )
        ]
    return []
