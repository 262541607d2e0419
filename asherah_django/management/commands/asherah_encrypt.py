"""``manage.py asherah_encrypt app_label.Model.field``: encrypt plaintext already stored.

For a column that holds plaintext, for example after a migration turned a TextField into
an EncryptedTextField while keeping the data. Rows are read in primary-key order, in
batches of ``--batch-size``; each batch is one transaction. A value that already is a
DataRowRecord (by structure) is left alone, so the command can be stopped (even killed)
and run again: it carries on, and no value is ever encrypted twice. Each update is
conditional on the column still holding the plaintext that was read, so a value the
application writes meanwhile is never overwritten.

The key used: the field's own ``partition=`` when it has one; otherwise ``--partition``
(one partition for every row) or ``--partition-field`` (a field of the row whose value
is the partition, e.g. the owner's id when the middleware uses the user's pk).

Progress goes to stderr (a bar on a terminal, a line per batch otherwise); the summary to
stdout. ``--dry-run`` reads and counts but writes nothing and creates no key.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from django.apps import apps
from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, connections, models, transaction
from django.db.models import ExpressionWrapper, F

from ...core.records import looks_like_data_row
from ...fields.base import EncryptedField

Progress = Callable[[int, int], None]


@dataclass
class EncryptResult:
    """What a run did (or, with ``dry_run``, would do)."""

    label: str
    total: int = 0
    encrypted: int = 0
    already: int = 0
    null: int = 0
    changed_meanwhile: int = 0
    dry_run: bool = False

    def summary(self) -> str:
        verb = "would encrypt" if self.dry_run else "encrypted"
        text = (
            f"{self.label}: {verb} {self.encrypted} value(s); {self.already} already "
            f"encrypted, {self.null} NULL, {self.total} row(s) in all"
        )
        if self.changed_meanwhile:
            text += f"; {self.changed_meanwhile} changed meanwhile and were left alone"
        return text


def resolve_field(label: str) -> tuple[type[models.Model], EncryptedField]:
    """The model and encrypted field named ``app_label.Model.field``."""
    parts = label.split(".")
    if len(parts) != 3:
        raise CommandError(f"expected app_label.Model.field, got {label!r}")
    app_label, model_name, field_name = parts
    try:
        model = apps.get_model(app_label, model_name)
    except LookupError as exc:
        raise CommandError(str(exc)) from None
    try:
        field = model._meta.get_field(field_name)
    except FieldDoesNotExist:
        raise CommandError(f"{model._meta.label} has no field {field_name!r}") from None
    if not isinstance(field, EncryptedField):
        raise CommandError(
            f"{model._meta.label}.{field_name} is not an encrypted field; change it to one "
            "(keeping the data) with a migration first"
        )
    return model, field


def encrypt_column(
    label: str,
    *,
    batch_size: int = 500,
    dry_run: bool = False,
    partition: str | None = None,
    partition_field: str | None = None,
    using: str = DEFAULT_DB_ALIAS,
    progress: Progress | None = None,
) -> EncryptResult:
    """Encrypt, in place and in batches, the plaintext values of ``label``'s column."""
    model, field = resolve_field(label)
    if batch_size < 1:
        raise CommandError("--batch-size must be at least 1")
    row_key = _row_partition(model, field, partition, partition_field)
    result = EncryptResult(label=f"{model._meta.label}.{field.name}", dry_run=dry_run)
    manager = model._base_manager.db_manager(using)
    raw = ExpressionWrapper(F(field.attname), output_field=models.TextField())
    columns: list[Any] = ["pk", raw]
    if row_key is not None:
        columns.append(row_key)
    # A field with bind= to row fields: read them too, to bind each value to its row.
    bound_to = list(field.binder.attnames) if field.bind is not None else []
    first_bound = len(columns)
    columns += bound_to
    pk_field = model._meta.pk
    todo = manager.count()
    connection = connections[using]
    quote = connection.ops.quote_name
    pk_column, column = model._meta.pk.column, field.column
    assert pk_column is not None
    assert column is not None
    sql = (
        f"UPDATE {quote(model._meta.db_table)} SET {quote(column)} = %s "  # noqa: S608
        f"WHERE {quote(pk_column)} = %s AND {quote(column)} = %s"
    )
    last_pk: Any = None
    while True:
        with transaction.atomic(using=using):
            batch = manager.order_by("pk")
            if last_pk is not None:
                batch = batch.filter(pk__gt=last_pk)
            rows = list(batch.values_list(*columns)[:batch_size])
            if not rows:
                break
            last_pk = rows[-1][0]
            updates: list[tuple[str, Any, str]] = []
            for row in rows:
                pk, text = row[0], row[1]
                result.total += 1
                if text is None:
                    result.null += 1
                elif looks_like_data_row(text):
                    result.already += 1
                else:
                    try:
                        value = field.parse_legacy(text)
                    except (ValueError, TypeError, ValidationError):
                        raise CommandError(
                            f"row {pk!r}: the stored plaintext is not valid {field.plain_type}"
                        ) from None
                    if not dry_run:
                        partition_id = _partition_of(row, partition, field)
                        values = dict(zip(bound_to, row[first_bound:], strict=True))
                        record = field.encrypt(value, partition_id, SimpleNamespace(**values))  # type: ignore[arg-type]
                        key = pk_field.get_db_prep_value(pk, connection)  # (UUID pks)
                        updates.append((record, key, text))
                    result.encrypted += 1
            if updates:
                with connection.cursor() as cursor:
                    for params in updates:
                        cursor.execute(sql, params)
                        if cursor.rowcount == 0:  # written by the application meanwhile
                            result.changed_meanwhile += 1
                            result.encrypted -= 1
        if progress is not None:
            progress(result.total, todo)
    return result


def _row_partition(
    model: type[models.Model],
    field: EncryptedField,
    partition: str | None,
    partition_field: str | None,
) -> str | None:
    """The column to read each row's partition from (None: a constant partition)."""
    if field.partition is not None:
        if partition is not None or partition_field is not None:
            raise CommandError(
                f"{model._meta.label}.{field.name} has partition={field._partition_name!r}; "
                "--partition and --partition-field are for fields without one"
            )
        if not isinstance(field.partition, str):
            raise CommandError(
                f"{model._meta.label}.{field.name}'s partition is a callable; the command "
                "supports partition=<field name> only"
            )
        return model._meta.get_field(field.partition).attname  # type: ignore[union-attr]
    if (partition is None) == (partition_field is None):
        raise CommandError(
            f"{model._meta.label}.{field.name} uses the open session's partition: give "
            "either --partition (one partition for every row) or --partition-field"
        )
    if partition_field is not None:
        try:
            return model._meta.get_field(partition_field).attname  # type: ignore[union-attr]
        except FieldDoesNotExist:
            raise CommandError(f"{model._meta.label} has no field {partition_field!r}") from None
    return None


def _partition_of(row: tuple[Any, ...], partition: str | None, field: EncryptedField) -> str:
    if partition is not None:
        return partition
    value = row[2]
    if value is None or value == "":
        raise CommandError(f"row {row[0]!r} of {field.model._meta.label} has no partition")
    return str(value)


class Command(BaseCommand):
    help = "Encrypt, in place, plaintext already stored in an encrypted field's column."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("field", help="app_label.Model.field")
        parser.add_argument("--batch-size", type=int, default=500, help="rows per transaction")
        parser.add_argument("--dry-run", action="store_true", help="count, write nothing")
        parser.add_argument("--partition", help="the partition of every row")
        parser.add_argument("--partition-field", help="a field holding each row's partition")
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS, help="database alias")

    def handle(self, *args: Any, **options: Any) -> None:
        result = encrypt_column(
            options["field"],
            batch_size=options["batch_size"],
            dry_run=options["dry_run"],
            partition=options["partition"],
            partition_field=options["partition_field"],
            using=options["database"],
            progress=self._progress,
        )
        if sys.stderr.isatty():
            self.stderr.write("")
        self.stdout.write(result.summary())

    def _progress(self, done: int, total: int) -> None:
        total = max(total, done)
        if sys.stderr.isatty():
            width = 30
            filled = width * done // total if total else width
            bar = "#" * filled + "-" * (width - filled)
            self.stderr.write(f"\r[{bar}] {done}/{total}", ending="")
            self.stderr.flush()
        else:
            self.stderr.write(f"{done}/{total} rows")
            self.stderr.flush()
