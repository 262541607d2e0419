"""Live checks of the settings, the metastore, the current system key, and a full write."""

from __future__ import annotations

import datetime
import os
import time
from typing import Final

from django.core.checks import ERROR, CheckMessage
from django.db import connections
from django.db.migrations.executor import MigrationExecutor

from ..checks import check_deployment, check_settings
from ..conf import asherah_settings
from ..core.errors import AsherahError
from ..core.kms.vault_errors import HINT_BLOB, VaultKMSError
from ..core.records import parse_data_row
from ..models import EncryptionKey
from .aws import system_key_findings  # issue 24: the AWS regions wrapping the key
from .context import Context, Outcome, combine, fail, ok, warn
from .vault import duration

#: The partition ``asherah_check --write`` encrypts through (it gets its own key chain).
HEALTH_PARTITION: Final = "asherah-health"
_APP: Final = "asherah_django"


def iso(epoch: float) -> str:
    moment = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def crypto_path() -> str:
    """Which implementation does the per-value AES-GCM work: ``C accelerator`` (the
    ``_speedups`` extension, built at install time) or ``pure Python`` (not built, or
    ``ASHERAH_DJANGO_PURE_PYTHON`` set)."""
    from ..core.session import SPEEDUPS

    return "C accelerator" if SPEEDUPS else "pure Python"


def settings(ctx: Context) -> Outcome:
    """The static system checks (settings, and deployment ones when DEBUG is off)."""
    messages: list[CheckMessage] = [*check_settings(), *check_deployment()]
    errors = [m for m in messages if m.level >= ERROR]
    warnings = [m for m in messages if m.level < ERROR]
    findings: list[Outcome] = []
    for message in errors[:1]:
        more = (
            f" (and {len(errors) - 1} more error(s): manage.py check --deploy)"
            if errors[1:]
            else ""
        )
        findings.append(fail(f"{message.msg} [{message.id}]{more}", message.hint or ""))
    if ctx.factory_error is not None and not errors:
        error = ctx.factory_error
        findings.append(fail(str(error.args[0]), error.hint))
    for message in warnings[:1]:
        findings.append(warn(f"{message.msg} [{message.id}]", message.hint or ""))
    conf = asherah_settings.snapshot().values
    data = {
        "kms": conf.get("KMS"),
        "metastore": conf.get("METASTORE"),
        "service_name": conf.get("SERVICE_NAME"),
        "product_id": conf.get("PRODUCT_ID"),
        "database": conf.get("DATABASE") if conf.get("METASTORE") == "django" else None,
        "crypto": crypto_path(),
        "errors": [str(m.id) for m in errors],
        "warnings": [str(m.id) for m in warnings],
    }
    kms = str(conf.get("KMS"))
    if ctx.vault is not None:
        kms += f" ({ctx.vault.config.auth_method} auth)"
    store = str(conf.get("METASTORE"))
    if conf.get("METASTORE") == "django":
        store += f" (database '{conf.get('DATABASE')}')"
    detail = (
        f"KMS={kms}, METASTORE={store}, SERVICE_NAME={conf.get('SERVICE_NAME')}, "
        f"PRODUCT_ID={conf.get('PRODUCT_ID')}, crypto={crypto_path()}"
    )
    return combine(findings, detail, data)


def metastore(ctx: Context) -> Outcome:
    """The encryption_key table exists, has Asherah's columns, is migrated and readable."""
    if not ctx.django_metastore:
        return warn(
            "METASTORE=memory: keys live in this process only and are lost when it exits",
            "set METASTORE to django (the in-memory metastore is for tests only)",
        )
    alias = ctx.alias
    connection = connections[alias]
    table = EncryptionKey._meta.db_table
    migrate = f"manage.py migrate {_APP} --database {alias}"
    data = {"database": alias, "vendor": connection.vendor, "table": table}
    with connection.cursor() as cursor:
        if table not in connection.introspection.table_names(cursor):
            return fail(
                f"the metastore table '{table}' does not exist in database '{alias}'",
                f"run {migrate}",
                **data,
            )
        columns = {c.name for c in connection.introspection.get_table_description(cursor, table)}
    missing = [column for column in ("id", "created", "key_record") if column not in columns]
    if missing:
        return fail(
            f"the metastore table '{table}' in database '{alias}' has no column "
            f"{', '.join(missing)}",
            "Asherah's table is encryption_key(id varchar(255), created timestamp, key_record "
            "text, primary key (id, created))",
            **data,
        )
    executor = MigrationExecutor(connection)
    leaves = [node for node in executor.loader.graph.leaf_nodes() if node[0] == _APP]
    unapplied = [m.name for m, back in executor.migration_plan(leaves) if m.app_label == _APP]
    if unapplied:
        return fail(
            f"{_APP} migrations not applied in database '{alias}': {', '.join(unapplied)}",
            f"run {migrate} (an existing Asherah table is adopted with --fake-initial)",
            **data,
            unapplied=unapplied,
        )
    versions = EncryptionKey.objects.using(alias).filter(id=_factory_sk_id(ctx)).count()
    return ok(
        f"table '{table}' in database '{alias}' ({connection.vendor}): present, migrations "
        f"applied, readable",
        **data,
        system_key_versions=versions,
    )


def _factory_sk_id(ctx: Context) -> str:
    assert ctx.factory is not None
    return ctx.factory.system_key_id


def system_key(ctx: Context) -> Outcome:
    """The current system key: age, expiry, revoked, and the Vault key version wrapping it."""
    factory = ctx.factory
    assert factory is not None
    keys = ctx.system_keys()
    sk_id = factory.system_key_id
    if not keys:
        return ok(f"no system key {sk_id} yet: the first write creates one", key_id=sk_id)
    latest = keys[-1]
    record = latest.record
    if record is None:
        return fail(
            f"the latest system key {sk_id} created {iso(latest.created)} has a malformed "
            "key record",
            "restore the row from a backup, or revoke the key so that a new one is created",
        )
    now = time.time()
    expires = record.created + factory.policy.expire_after
    data: dict[str, object] = {
        "key_id": sk_id,
        "created": record.created,
        "age": int(now - record.created),
        "expires": expires,
        "revoked": record.revoked,
        "versions": len(keys),
    }
    state = "revoked" if record.revoked else "not revoked"
    if factory.policy.is_expired(record.created, now):
        lifetime = f"expired {duration(now - expires)} ago (the next write creates a new one)"
    else:
        lifetime = f"expires {iso(expires)} (in {duration(expires - now)})"
    detail = (
        f"{sk_id} created {iso(record.created)} ({duration(now - record.created)} old), "
        f"{lifetime}, {state}"
    )
    findings: list[Outcome] = []
    kms = ctx.vault
    if kms is not None:
        try:
            version = kms.key_version(record.encrypted_key)
        except VaultKMSError as exc:
            findings.append(fail(f"{detail}: {exc.args[0]}", exc.hint or HINT_BLOB))
        else:
            data["vault_key_version"] = version
            detail += f", wrapped under Vault key version {version}"
        counts: dict[str, int] = {}
        for stored in keys:
            try:
                label = f"v{kms.key_version(stored.record.encrypted_key)}" if stored.record else "?"
            except VaultKMSError:
                label = "?"
            counts[label] = counts.get(label, 0) + 1
        data["vault_key_versions"] = counts
        histogram = ", ".join(f"{label}: {n}" for label, n in sorted(counts.items()))
        detail += f"; stored versions by Vault key version: {histogram}"

    aws_detail, aws_data, aws_findings = system_key_findings(ctx, record)
    detail += aws_detail
    data.update(aws_data)
    findings += aws_findings
    if record.revoked:
        findings.append(
            warn(
                f"{detail}: the next write creates a new system key",
                "nothing to do if it was revoked on purpose (asherah_rotate --system)",
            )
        )
    return combine(findings, detail, data)


def write(ctx: Context) -> Outcome:
    """A full envelope round trip (keys created if needed) through the health partition."""
    factory = ctx.factory
    assert factory is not None
    session = factory.get_session(HEALTH_PARTITION)
    secret = os.urandom(16)
    record = session.encrypt(secret)
    if session.decrypt(record) != secret:
        raise AsherahError("the envelope round trip returned different bytes")
    parent = parse_data_row(record).parent
    return ok(
        f"encrypted and decrypted through partition '{HEALTH_PARTITION}' with intermediate "
        f"key {parent.key_id} created {iso(parent.created)}",
        partition=HEALTH_PARTITION,
        intermediate_key=parent.key_id,
        intermediate_key_created=parent.created,
    )


def database_is_in_memory(alias: str) -> bool:
    """An in-memory SQLite database is per connection: checks must use the caller's."""
    connection = connections[alias]
    return connection.vendor == "sqlite" and bool(
        getattr(connection, "is_in_memory_db", lambda: False)()
    )
