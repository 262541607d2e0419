"""System checks for the ASHERAH settings, registered under the tag ``asherah``.

Ids are stable and unique (see :data:`CHECK_IDS`); every message says what to set and
where. No check makes a network call: live Vault probes belong to ``asherah_check``.

- settings (always): E001-E012, W001, W002;
- admin (always, tag ``admin``): W003 (a plain ModelAdmin of encrypted fields, no middleware);
- deployment (``check --deploy``): E101 static KMS, W102 dev-looking Vault token,
  W103 Vault over plain http;
- database (only when ``databases`` are given, e.g. ``migrate`` or ``check --database``):
  W201-W206. They are warnings so that ``migrate`` can still run to fix them.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from typing import Any, Final
from urllib.parse import urlsplit

from django.apps import AppConfig
from django.conf import settings
from django.core import checks
from django.core.checks import CheckMessage, Error, Warning
from django.db import DatabaseError, connections
from django.db.migrations.recorder import MigrationRecorder

from .conf import KMS_ALIASES, asherah_settings, where
from .core.errors import ConfigurationError
from .core.integrity import ADD_TAG_COLUMN_SQL, TAG_COLUMN
from .core.kms.vault_config import redact_userinfo

TAG: Final = "asherah"

#: Every id this module can report, with what it means.
CHECK_IDS: Final[dict[str, str]] = {
    "asherah.E001": "SERVICE_NAME is missing or invalid",
    "asherah.E002": "PRODUCT_ID is missing or invalid",
    "asherah.E003": "KMS is unknown",
    "asherah.E004": "STATIC_MASTER_KEY_HEX is missing or invalid for the static KMS",
    "asherah.E005": "VAULT_ADDR or VAULT_TRANSIT_KEY is missing for the Vault KMS",
    "asherah.E006": "Vault auth settings are incomplete for the chosen VAULT_AUTH_METHOD",
    "asherah.E007": "another Vault setting is invalid",
    "asherah.E008": "a crypto policy or cache setting is not a positive whole number",
    "asherah.E009": "METASTORE is unknown",
    "asherah.E010": "DATABASE is not an alias in settings.DATABASES",
    "asherah.E011": "PARTITION_RESOLVER cannot be imported",
    "asherah.E012": "settings.ASHERAH is not a dict",
    "asherah.E013": "KEY_INTEGRITY is not off, sign or require",
    "asherah.W001": "settings.ASHERAH has a key asherah_django does not know",
    "asherah.W002": "the KMS environment variable holds another tool's value and is ignored",
    "asherah.W003": "a plain ModelAdmin shows encrypted fields and no middleware renders them",
    "asherah.E021": "an AWS KMS setting is missing or invalid (REGION_MAP, PREFERRED_REGION, ...)",
    "asherah.E022": "boto3 is not installed, and KMS=aws or KMS=secrets-manager needs it",
    "asherah.E023": "the KMS class named by a dotted-path KMS cannot be used",
    "asherah.E101": "the static KMS is used with DEBUG = False",
    "asherah.W102": "VAULT_TOKEN looks like a development root token with DEBUG = False",
    "asherah.W103": "VAULT_ADDR uses plain http to a non-local host with DEBUG = False",
    "asherah.W121": "KMS=secrets-manager (a static master key) is used with DEBUG = False",
    "asherah.W122": "an AWS endpoint uses plain http to a non-local host with DEBUG = False",
    "asherah.W201": "the encryption_key table is missing although its migration is applied",
    "asherah.W202": "the encryption_key table exists but asherah_django's migration is unapplied",
    "asherah.W203": "the encryption_key table lacks a column Asherah needs",
    "asherah.W204": "the key database could not be inspected",
    "asherah.W205": "the id column compares case-insensitively (MySQL/MariaDB collation)",
    "asherah.W206": "KEY_INTEGRITY is on but the encryption_key table has no integrity_tag",
}
_SIMPLE: Final = {
    "ASHERAH": "asherah.E012",
    "SERVICE_NAME": "asherah.E001",
    "PRODUCT_ID": "asherah.E002",
    "KMS": "asherah.E003",
    "METASTORE": "asherah.E009",
    "DATABASE": "asherah.E010",
    "KEY_INTEGRITY": "asherah.E013",
    **dict.fromkeys(
        (
            "EXPIRE_AFTER",
            "CHECK_INTERVAL",
            "SESSION_CACHE_SIZE",
            "SESSION_CACHE_DURATION",
            "SYSTEM_KEY_CACHE_SIZE",
            "INTERMEDIATE_KEY_CACHE_SIZE",
        ),
        "asherah.E008",
    ),
}
_AUTH_REQUIREMENTS: Final[dict[str, tuple[str, ...]]] = {
    "token": ("VAULT_TOKEN",),
    "kubernetes": ("VAULT_AUTH_ROLE",),
    "k8s": ("VAULT_AUTH_ROLE",),
    "approle": ("VAULT_APPROLE_ROLE_ID",),
    "cert": ("VAULT_CLIENT_CERT", "VAULT_CLIENT_KEY"),
    "tls": ("VAULT_CLIENT_CERT", "VAULT_CLIENT_KEY"),
    "agent": (),
}
#: Values people give ``vault server -dev -dev-root-token-id=...``.
_DEV_TOKENS: Final = frozenset(
    {"root", "dev", "devroot", "dev-root", "myroot", "dev-only-token", "token", "test"}
)
_TOKEN_PREFIXES: Final = ("hvs.", "hvb.", "hvr.", "s.", "b.", "r.")
_LOOPBACK: Final = frozenset({"localhost", "127.0.0.1", "::1"})
_COLUMNS: Final = ("id", "created", "key_record")


def register() -> None:
    """Register the checks (called by ``AppConfig.ready()``; idempotent)."""
    checks.register(check_settings, TAG)
    checks.register(check_admin, checks.Tags.admin)  # not under TAG: it is about your admin
    checks.register(check_deployment, TAG, deploy=True)
    checks.register(check_database, TAG, checks.Tags.database)


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
            messages.append(_error(check_id, str(errors[name].args[0]), _hint(errors[name], name)))
    for key in snapshot.unknown_keys:
        messages.append(
            Warning(
                f"settings.ASHERAH has an unknown key {key!r}",
                hint=f"check the spelling; known keys: {', '.join(sorted(_known()))}",
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
            _error("asherah.E004", str(error.args[0]), _hint(error, "STATIC_MASTER_KEY_HEX"))
        )
    if kms == "vault":
        messages += _vault_messages()
    messages += _aws_messages(kms)
    messages += _resolver_messages()
    return messages


def check_admin(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Without the middleware, a plain ModelAdmin answers 500 on a row it cannot decrypt."""
    from django.apps import apps

    middleware = getattr(settings, "MIDDLEWARE", None) or []
    if not apps.is_installed("django.contrib.admin") or any(
        str(path) == "asherah_django.middleware.AsherahSessionMiddleware" for path in middleware
    ):
        return []
    from django.contrib.admin.sites import all_sites

    from .admin.fields import EncryptedFieldsAdminMixin
    from .fields import encrypted_fields

    messages: list[CheckMessage] = []
    for model in apps.get_models():
        if not encrypted_fields(model):
            continue
        for site in list(all_sites):
            if not site.is_registered(model):
                continue
            model_admin = site.get_model_admin(model)
            if isinstance(model_admin, EncryptedFieldsAdminMixin):
                continue
            messages.append(
                Warning(
                    f"{type(model_admin).__name__} (admin site {site.name!r}) shows the encrypted "
                    f"fields of {model._meta.label} without EncryptedFieldsAdminMixin: a row "
                    "encrypted for another partition makes its pages answer 500",
                    hint="add asherah_django.admin.EncryptedFieldsAdminMixin before ModelAdmin, "
                    "or AsherahSessionMiddleware to MIDDLEWARE (it renders such values locked)",
                    obj=model_admin,
                    id="asherah.W003",
                )
            )
    return messages


def _vault_messages() -> list[CheckMessage]:
    conf = asherah_settings
    values = conf.vault_settings()
    messages: list[CheckMessage] = []
    for name, example in (
        ("VAULT_ADDR", "the Vault server URL, e.g. https://vault.example.com:8200"),
        ("VAULT_TRANSIT_KEY", "the name of the Transit key, e.g. asherah-master"),
    ):
        if not _is_set(values.get(name)):
            messages.append(
                _error(
                    "asherah.E005",
                    f"{name} is required for the Vault Transit KMS (KMS=vault)",
                    f"set {where(name)} to {example}",
                )
            )
    raw_method = values.get("VAULT_AUTH_METHOD")
    method = str(raw_method).strip().lower() if _is_set(raw_method) else None
    if method is not None and method not in _AUTH_REQUIREMENTS:
        messages.append(
            _error(
                "asherah.E006",
                f"unsupported VAULT_AUTH_METHOD '{method}': expected kubernetes, approle, or cert",
                f"set {where('VAULT_AUTH_METHOD')} to kubernetes, approle or cert, or unset it "
                "and set VAULT_TOKEN",
            )
        )
    elif method is None and not any(
        _is_set(values.get(name)) for name in ("VAULT_TOKEN", "VAULT_TOKEN_FILE")
    ):
        messages.append(
            _error(
                "asherah.E006",
                "Vault authentication required: set VAULT_TOKEN, or VAULT_AUTH_METHOD "
                "(kubernetes, approle, cert) with the appropriate credentials",
                f"set {where('VAULT_TOKEN')}, or {where('VAULT_AUTH_METHOD')} and that "
                "method's settings",
            )
        )
    elif method is not None:
        for name in _AUTH_REQUIREMENTS[method]:
            if not _is_set(values.get(name)) and not (
                name == "VAULT_TOKEN" and _is_set(values.get("VAULT_TOKEN_FILE"))
            ):
                messages.append(
                    _error(
                        "asherah.E006",
                        f"{name} is required for Vault {method} auth (VAULT_AUTH_METHOD={method})",
                        f"set {where(name)}",
                    )
                )
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


def check_deployment(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Production safety: no static KMS, no dev token, no plain-http Vault."""
    if settings.DEBUG:
        return []
    conf = asherah_settings
    snapshot = conf.snapshot()
    kms = snapshot.values.get("KMS")
    messages: list[CheckMessage] = []
    if kms in ("static", "test-debug-static"):
        messages.append(
            _error(
                "asherah.E101",
                f"KMS={kms} keeps the master key in process memory; it is for tests and local "
                "development only, and DEBUG is False",
                f"set {where('KMS')} to vault and configure Vault Transit (VAULT_ADDR, "
                "VAULT_TRANSIT_KEY and an auth method)",
            )
        )
    messages += _aws_deployment_messages(kms)
    if kms != "vault":
        return messages
    token = snapshot.values.get("VAULT_TOKEN")
    if isinstance(token, str) and _looks_like_dev_token(token):
        messages.append(
            Warning(
                "VAULT_TOKEN looks like a Vault dev server root token, and DEBUG is False",
                hint="use a periodic token with only the asherah-transit policy, or "
                f"kubernetes/approle/cert auth ({where('VAULT_AUTH_METHOD')})",
                id="asherah.W102",
            )
        )
    addr = snapshot.values.get("VAULT_ADDR")
    nodes = [urlsplit(node.strip()) for node in addr.split(",")] if isinstance(addr, str) else []
    if any(p.scheme == "http" and (p.hostname or "") not in _LOOPBACK for p in nodes):
        messages.append(  # (every node of a comma-separated VAULT_ADDR counts)
            Warning(
                f"VAULT_ADDR {redact_userinfo(str(addr))!r} uses plain http: tokens and system "
                "keys would cross the network unencrypted, and DEBUG is False",
                hint=f"set {where('VAULT_ADDR')} to an https:// URL (and VAULT_CACERT)",
                id="asherah.W103",
            )
        )
    return messages


def check_database(
    app_configs: Sequence[AppConfig] | None = None,
    databases: Sequence[str] | None = None,
    **kwargs: Any,
) -> list[CheckMessage]:
    """The ``encryption_key`` table exists, is migrated and has Asherah's columns."""
    conf = asherah_settings
    snapshot = conf.snapshot()
    alias = snapshot.values.get("DATABASE")
    if not databases or snapshot.values.get("METASTORE") != "django" or alias not in databases:
        return []
    from .models import EncryptionKey

    assert isinstance(alias, str)
    table = EncryptionKey._meta.db_table
    connection = connections[alias]
    migrate = f"manage.py migrate asherah_django --database {alias}"
    try:
        with connection.cursor() as cursor:
            if table not in connection.introspection.table_names(cursor):
                if ("asherah_django", "0001_initial") not in _applied(connection):
                    # Not migrated yet: the next migrate creates it (this check runs at the
                    # start of that very migrate), and runserver lists unapplied migrations.
                    return []
                return [
                    Warning(
                        f"the metastore table {table!r} does not exist in database {alias!r}",
                        hint=f"run {migrate}",
                        id="asherah.W201",
                    )
                ]
            columns = {
                column.name: column
                for column in connection.introspection.get_table_description(cursor, table)
            }
        applied = _applied(connection)
    except DatabaseError as exc:
        return [
            Warning(
                f"could not inspect the metastore table in database {alias!r}: {exc}",
                hint="check DATABASES and that the database is reachable",
                id="asherah.W204",
            )
        ]
    messages: list[CheckMessage] = []
    missing = [column for column in _COLUMNS if column not in columns]
    if missing:
        messages.append(
            Warning(
                f"the metastore table {table!r} in database {alias!r} has no column "
                f"{', '.join(missing)}",
                hint="Asherah's table is encryption_key(id varchar(255), created timestamp, "
                "key_record text, primary key (id, created))",
                id="asherah.W203",
            )
        )
    collation = str(getattr(columns.get("id"), "collation", None) or "")
    if connection.vendor == "mysql" and collation.endswith("_ci"):
        messages.append(
            Warning(
                f"the id column of the metastore table {table!r} in database {alias!r} uses "
                f"the case-insensitive collation {collation}: partitions whose ids differ only "
                "in case would collide on their intermediate key rows",
                hint=f"ALTER TABLE {table} MODIFY id VARCHAR(255) CHARACTER SET utf8mb4 "
                "COLLATE utf8mb4_bin NOT NULL (as asherah_django's migration creates it)",
                id="asherah.W205",
            )
        )
    integrity = snapshot.values.get("KEY_INTEGRITY")
    if integrity in ("sign", "require") and TAG_COLUMN not in columns and not missing:
        messages.append(
            Warning(
                f"KEY_INTEGRITY is {integrity!r} but the metastore table {table!r} in database "
                f"{alias!r} has no {TAG_COLUMN} column: every key query will fail",
                hint=f"run {migrate}, or for a table you manage yourself: {ADD_TAG_COLUMN_SQL}",
                id="asherah.W206",
            )
        )
    if ("asherah_django", "0001_initial") not in applied:
        messages.append(
            Warning(
                f"the metastore table {table!r} exists in database {alias!r} but "
                "asherah_django's migrations are not applied",
                hint=f"if it is an existing Asherah table, adopt it with {migrate} --fake-initial",
                id="asherah.W202",
            )
        )
    return messages


def _applied(connection: Any) -> Any:
    return MigrationRecorder(connection).applied_migrations()


def _hint(error: ConfigurationError, name: str) -> str:
    return error.hint or f"set {where(name)}"


def _is_set(value: object) -> bool:
    return value is not None and str(value).strip() != ""


def _looks_like_dev_token(token: str) -> bool:
    token = token.strip()
    if token.lower() in _DEV_TOKENS:
        return True
    return not token.startswith(_TOKEN_PREFIXES) and len(token) < 40


def _known() -> list[str]:
    from .conf import DEFAULTS

    return list(DEFAULTS)


def _aws_deployment_messages(kms: object) -> list[CheckMessage]:
    if kms not in ("aws", "secrets-manager"):
        return []
    messages: list[CheckMessage] = []
    if kms == "secrets-manager":
        messages.append(
            Warning(
                "KMS=secrets-manager keeps a static master key (read from AWS Secrets Manager) "
                "in process memory: it is for migrating to AWS KMS or Vault only, and DEBUG "
                "is False",
                hint="set KMS=aws (REGION_MAP, PREFERRED_REGION) or KMS=vault, then run "
                "manage.py asherah_rotate --rewrap --from-kms secrets-manager",
                id="asherah.W121",
            )
        )
    values = asherah_settings.aws_settings()
    urls = [values.get("AWS_ENDPOINT_URL")]
    endpoints = values.get("AWS_KMS_ENDPOINTS")
    if isinstance(endpoints, str):  # from the environment: a JSON object
        try:
            endpoints = json.loads(endpoints)
        except ValueError:
            endpoints = None  # reported by E021
    if isinstance(endpoints, dict):
        urls += list(endpoints.values())
    for url in urls:
        if not isinstance(url, str):
            continue
        parts = urlsplit(url.strip())
        if parts.scheme == "http" and (parts.hostname or "") not in _LOOPBACK:
            messages.append(
                Warning(
                    f"AWS endpoint {url!r} uses plain http: data keys would cross the network "
                    "unencrypted, and DEBUG is False",
                    hint="use https:// endpoints (AWS_ENDPOINT_URL, AWS_KMS_ENDPOINTS); they "
                    "are for private (VPC) endpoints and local test servers",
                    id="asherah.W122",
                )
            )
    return messages
