"""Every setting asherah_django reads, in one ordered tuple: :data:`SETTINGS`.

Each item is a :class:`~asherah_django.core.setting.Setting` (frozen dataclass) with:

- ``key``: the ``settings.ASHERAH`` key, e.g. ``"VAULT_ADDR"``;
- ``env``: the environment variables read, in order of precedence: ``ASHERAH_<key>``,
  then for Asherah's documented names (``unprefixed=True``) the bare ``<key>``;
- ``default``: the value used when unset (``None``: unset); ``shown_default`` is the text
  to show for it (``default_text`` when the default needs words, e.g. "the method's name");
- ``kind``: the kind of value, for people (``string``, ``seconds``, ``JSON object``, ...);
- ``kms``: the ``KMS`` values it applies to (empty tuple: every KMS);
- ``doc``: one paragraph (reStructuredText/MyST inline markup: double backquotes);
- ``parse``: validates one raw value (not for rendering).

``SETTINGS`` is the order of the reference; :data:`BY_KEY` maps key -> Setting. The
settings layer (``asherah_django.conf``) reads exactly these keys and parses them with
their ``parse``; the Vault and AWS configurations read theirs through the same
descriptors (``core/kms/vault_settings.py``, ``core/kms/aws_settings.py``). A test
(``tests/unit/conf/test_registry.py``) fails when code reads a setting not listed here or
one listed here is read nowhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from ..core.errors import ConfigurationError
from ..core.kms.aws_settings import AWS_SETTINGS
from ..core.kms.vault_settings import VAULT_SETTINGS
from ..core.policy import (
    DEFAULT_CHECK_INTERVAL,
    DEFAULT_EXPIRE_AFTER,
    DEFAULT_INTERMEDIATE_KEY_CACHE_SIZE,
    DEFAULT_SESSION_CACHE_DURATION,
    DEFAULT_SESSION_CACHE_SIZE,
    DEFAULT_SYSTEM_KEY_CACHE_SIZE,
)
from ..core.setting import ENV_PREFIX, Setting, SettingError, by_key, parse_text
from . import parsing

__all__ = [
    "BY_KEY",
    "ENV_PREFIX",
    "SETTINGS",
    "Setting",
    "env_names",
    "hint_for",
    "well_known",
    "where",
]

_STATIC: Final = ("static", "test-debug-static")

_HEAD: Final = (
    Setting(
        "SERVICE_NAME",
        "name",
        "The name of this service; with ``PRODUCT_ID`` it names the system keys "
        "(``_SK_<service>_<product>``). Required; every service sharing a key table "
        "needs its own.",
        parse=parsing.parse_name,
    ),
    Setting(
        "PRODUCT_ID",
        "name",
        "The product (or team) this service belongs to; the second part of the key ids. Required.",
        parse=parsing.parse_name,
    ),
    Setting(
        "KMS",
        "choice or dotted path",
        "The master key service: ``vault`` (alias ``vault-transit``), ``aws`` (alias "
        "``aws-kms``), ``secrets-manager`` (for migrating away from it), ``static`` and "
        "``test-debug-static`` (tests and development only), or the dotted path of your "
        "own KMS class. The unprefixed ``KMS`` variable is read only when it holds one of "
        "these names (other tools set ``KMS`` too).",
        default="vault",
        unprefixed=True,
        parse=parsing.parse_kms,
    ),
    Setting(
        "STATIC_MASTER_KEY_HEX",
        "64 hex characters",
        "The master key of the static KMS (32 bytes as hex). Required with ``KMS=static``; "
        "with ``test-debug-static`` Asherah's public test key is used when unset.",
        kms=_STATIC,
        unprefixed=True,
        parse=parsing.parse_hex_key,
    ),
)

_TAIL: Final = (
    Setting(
        "EXPIRE_AFTER",
        "seconds",
        "How long a system or intermediate key is used for new data before a new one is "
        "made (old keys still decrypt).",
        default=DEFAULT_EXPIRE_AFTER,
        parse=parsing.parse_positive_seconds,
    ),
    Setting(
        "CHECK_INTERVAL",
        "seconds",
        "How long a cached key is trusted before the metastore is asked whether a newer "
        "one exists.",
        default=DEFAULT_CHECK_INTERVAL,
        parse=parsing.parse_positive_seconds,
    ),
    Setting(
        "SESSION_CACHE_SIZE",
        "entries",
        "How many partition sessions are kept ready (least recently used go first).",
        default=DEFAULT_SESSION_CACHE_SIZE,
        parse=parsing.parse_positive_entries,
    ),
    Setting(
        "SESSION_CACHE_DURATION",
        "seconds",
        "How long an unused partition session is kept.",
        default=DEFAULT_SESSION_CACHE_DURATION,
        parse=parsing.parse_positive_seconds,
    ),
    Setting(
        "SYSTEM_KEY_CACHE_SIZE",
        "entries",
        "How many decrypted system keys are cached.",
        default=DEFAULT_SYSTEM_KEY_CACHE_SIZE,
        parse=parsing.parse_positive_entries,
    ),
    Setting(
        "INTERMEDIATE_KEY_CACHE_SIZE",
        "entries",
        "How many decrypted intermediate (partition) keys are cached.",
        default=DEFAULT_INTERMEDIATE_KEY_CACHE_SIZE,
        parse=parsing.parse_positive_entries,
    ),
    Setting(
        "METASTORE",
        "choice",
        "Where the encrypted keys are kept: ``django`` (the ``encryption_key`` table, "
        "through the ORM) or ``memory`` (tests and development only).",
        default="django",
        parse=parsing.parse_metastore,
    ),
    Setting(
        "DATABASE",
        "database alias",
        "The alias in ``settings.DATABASES`` holding the ``encryption_key`` table "
        "(with ``METASTORE=django``).",
        default="default",
        parse=parsing.parse_database,
    ),
    Setting(
        "PARTITION_RESOLVER",
        "dotted path",
        "The function ``resolver(request) -> partition id or None`` the middleware calls "
        "for each request; imported on first use.",
        default="asherah_django.middleware.user_partition",
        parse=parsing.parse_dotted,
    ),
    Setting(
        "KEY_INTEGRITY",
        "choice",
        "Integrity tags on key rows: ``off``, ``sign`` (tag the rows written; accept "
        "untagged ones from other Asherah implementations) or ``require`` (refuse rows "
        "without a valid tag). See the security model.",
        default="off",
        parse=parsing.parse_key_integrity,
    ),
    Setting(
        "ERASURE_SIGNING_KEY",
        "Transit key name",
        "The Vault Transit key (an asymmetric one, e.g. ``ed25519``) that signs the receipts "
        "of ``manage.py asherah_erase``; ``--signing-key`` overrides it. Only the operator's "
        "token needs to reach it.",
        kms=("vault",),
        parse=parse_text,
    ),
    Setting(
        "ERASURE_OPERATOR",
        "name",
        "Who is named as the operator in erasure receipts.",
        default_text="the operating-system user running the command",
        parse=parse_text,
    ),
)

#: Every setting, in the order of the reference.
SETTINGS: Final[tuple[Setting, ...]] = (*_HEAD, *VAULT_SETTINGS, *AWS_SETTINGS, *_TAIL)
#: The settings by key.
BY_KEY: Final[Mapping[str, Setting]] = by_key(SETTINGS)


def well_known(name: str) -> bool:
    """Whether ``name`` is also read from the unprefixed environment variable."""
    setting = BY_KEY.get(name)
    return setting is not None and setting.unprefixed


def env_names(name: str) -> tuple[str, ...]:
    """The environment variables read for ``name``, in order of precedence."""
    setting = BY_KEY.get(name)
    return setting.env if setting is not None else (ENV_PREFIX + name,)


def where(name: str) -> str:
    """Where a setting can be set, for messages and hints."""
    if well_known(name):
        return (
            f"ASHERAH[{name!r}] in settings.py or the {ENV_PREFIX}{name} (or {name}) "
            "environment variable"
        )
    return f"ASHERAH[{name!r}] in settings.py or the {ENV_PREFIX}{name} environment variable"


def hint_for(error: ConfigurationError, name: str | None = None) -> str:
    """The error's hint, else "set <where> <fix>" for the setting it names (or ``name``)."""
    if error.hint:
        return error.hint
    if isinstance(error, SettingError):
        return f"set {where(name or error.setting)} {error.fix}".rstrip()
    return f"set {where(name or '')}"
