"""Parsers of the general (not KMS-specific) settings, one per kind of value.

Each takes the setting's name and its raw value and returns the value to use, or raises
:class:`~asherah_django.core.setting.SettingError` naming the setting. The registry
(:mod:`.registry`) gives each setting its parser; nothing else parses settings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from django.conf import settings

from ..core.key_ids import check_names
from ..core.policy import KEY_INTEGRITY_MODES
from ..core.setting import SettingError

#: KMS names accepted in ``KMS`` and what they mean.
KMS_ALIASES: Final[Mapping[str, str]] = {
    "vault": "vault",
    "vault-transit": "vault",
    "static": "static",
    # The Rust core's name: the static KMS, with Asherah's public test key when
    # STATIC_MASTER_KEY_HEX is unset. Tests and local development only.
    "test-debug-static": "test-debug-static",
    # AWS KMS with Asherah's multi-region envelope (REGION_MAP, PREFERRED_REGION).
    "aws": "aws",
    "aws-kms": "aws",
    # A static master key kept in AWS Secrets Manager: for migrating away from it only.
    "secrets-manager": "secrets-manager",
}
METASTORES: Final = ("django", "memory")
GENERATE_KEY_HINT: Final = (
    'generate one with: python -c "import secrets; print(secrets.token_hex(32))"'
)
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
DOTTED: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")


def parse_name(name: str, raw: object) -> object:
    """SERVICE_NAME, PRODUCT_ID: required, and short enough for the key id column."""
    if raw is None:
        raise SettingError(f"{name} is not set", setting=name, problem="missing")
    if isinstance(raw, str):
        raw = raw.strip()
    check_names(raw if name == "SERVICE_NAME" else "x", raw if name == "PRODUCT_ID" else "x")
    return raw


def parse_kms(name: str, raw: object) -> str:
    """One of :data:`KMS_ALIASES` (normalized), or the dotted path of a KMS class."""
    kms = KMS_ALIASES.get(raw.strip().lower()) if isinstance(raw, str) else None
    if kms is None and isinstance(raw, str) and DOTTED.fullmatch(raw.strip()):
        return raw.strip()  # a user's KMS class, imported by AsherahSettings.kms_class()
    if kms is None:
        raise SettingError(
            f"{name} {raw!r} is unknown: expected vault (or vault-transit), aws, "
            "secrets-manager, static, or the dotted path of a KMS class",
            setting=name,
            fix="to vault in production; static is for tests",
        )
    return kms


def parse_hex_key(name: str, raw: object) -> str | None:
    """64 hex characters (a 32-byte key), lower-cased; unset is allowed here."""
    if raw is None:
        return None
    if not isinstance(raw, str) or not _HEX64.fullmatch(raw.strip()):
        raise SettingError(
            f"{name} must be 64 hex characters (a 32-byte key)",
            setting=name,
            hint=GENERATE_KEY_HINT,
        )
    return raw.strip().lower()


def _positive(name: str, raw: object, unit: str) -> int:
    value: object = raw
    if isinstance(raw, str) and raw.strip().isdigit():
        value = int(raw.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SettingError(
            f"{name} must be a positive whole number of {unit}, got {raw!r}", setting=name
        )
    return value


def parse_positive_seconds(name: str, raw: object) -> int:
    return _positive(name, raw, "seconds")


def parse_positive_entries(name: str, raw: object) -> int:
    return _positive(name, raw, "entries")


def parse_metastore(name: str, raw: object) -> object:
    value = raw.strip().lower() if isinstance(raw, str) else raw
    if value not in METASTORES:
        raise SettingError(
            f"{name} {raw!r} is unknown: expected django (the EncryptionKey table) "
            "or memory (tests only)",
            setting=name,
        )
    return value


def parse_database(name: str, raw: object) -> str:
    databases = getattr(settings, "DATABASES", {})
    if not isinstance(raw, str) or raw not in databases:
        raise SettingError(
            f"{name} {raw!r} is not an alias in settings.DATABASES "
            f"(known: {', '.join(sorted(databases)) or 'none'})",
            setting=name,
        )
    return raw


def parse_dotted(name: str, raw: object) -> str:
    """The dotted path of a function (imported where it is used)."""
    if not isinstance(raw, str) or not DOTTED.fullmatch(raw.strip()):
        raise SettingError(
            f"{name} must be the dotted path of a function, got {raw!r}", setting=name
        )
    return raw.strip()


def parse_key_integrity(name: str, raw: object) -> object:
    value = raw.strip().lower() if isinstance(raw, str) else raw
    if value not in KEY_INTEGRITY_MODES:
        raise SettingError(
            f"{name} {raw!r} is unknown: expected off, sign (tag key rows; "
            "accept untagged ones from other Asherah implementations) or require "
            "(refuse key rows without a valid tag)",
            setting=name,
            fix="to off, sign or require",
        )
    return value
