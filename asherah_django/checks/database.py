"""asherah.W201-W206: the ``encryption_key`` table exists, is migrated and fits.

Run only when ``databases`` are given (``migrate``, ``check --database``); warnings, so
that ``migrate`` can still run to fix them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from django.apps import AppConfig
from django.core.checks import CheckMessage, Warning
from django.db import DatabaseError, connections
from django.db.migrations.recorder import MigrationRecorder

from ..conf import asherah_settings
from ..core.integrity import ADD_TAG_COLUMN_SQL, TAG_COLUMN

_COLUMNS: Final = ("id", "created", "key_record")


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
    from ..models import EncryptionKey

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
