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

Progress goes to stderr (a bar on a terminal, a line per batch otherwise, with the rate
and the time left); the summary to stdout. ``--dry-run`` reads and counts but writes
nothing and creates no key. ``--shard I/N`` encrypts one of N disjoint parts of the table
(run N processes at once), ``--throttle`` caps the rows per second and ``--pause`` sleeps
between batches, to spare the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Unpack

from django.apps import apps
from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, models
from django.db.models import ExpressionWrapper, F

from ...core.records import looks_like_data_row
from ...fields.base import EncryptedField
from ...maintenance import (
    Change,
    CompareAndSwap,
    Pass,
    PassCommand,
    PassOptions,
    PassStats,
    Row,
)


@dataclass
class EncryptResult(PassStats):
    """What a run did (or, with ``dry_run``, would do)."""

    DONE = ("encrypted", "value(s) ", "encrypted")

    encrypted: int = 0
    already: int = 0
    null: int = 0

    @property
    def total(self) -> int:
        return self.rows

    @property
    def changed_meanwhile(self) -> int:
        return self.changed

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
    partition: str | None = None,
    partition_field: str | None = None,
    **options: Unpack[PassOptions],
) -> EncryptResult:
    """Encrypt, in place and in batches, the plaintext values of ``label``'s column."""
    model, field = resolve_field(label)
    if options.get("batch_size", 500) < 1:
        raise CommandError("--batch-size must be at least 1")
    row_key = _row_partition(model, field, partition, partition_field)
    dry_run = options.get("dry_run", False)
    result = EncryptResult(label=f"{model._meta.label}.{field.name}", dry_run=dry_run)
    raw = ExpressionWrapper(F(field.attname), output_field=models.TextField())
    columns: list[Any] = ["pk", raw]
    if row_key is not None:
        columns.append(row_key)
    # A field with bind= to row fields: read them too, to bind each value to its row.
    bound_to = list(field.binder.attnames) if field.bind is not None else []
    first_bound = len(columns)
    columns += bound_to
    run = Pass(model, result, None, None, {"using": DEFAULT_DB_ALIAS, **options})
    swap = CompareAndSwap(model, run.using).swap
    column = field.column
    assert column is not None

    def work(rows: list[Row]) -> None:
        changes: list[Change] = []
        for row in rows:
            pk, text = row[0], row[1]
            result.rows += 1
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
                    changes.append(Change(pk, {column: record}, {column: text}))
                result.encrypted += 1
        lost = swap(changes).lost_rows  # written by the application meanwhile
        result.changed += lost
        result.encrypted -= lost

    run.run(columns, work)
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


class Command(PassCommand, BaseCommand):
    help = "Encrypt, in place, plaintext already stored in an encrypted field's column."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("field", help="app_label.Model.field")
        parser.add_argument("--partition", help="the partition of every row")
        parser.add_argument("--partition-field", help="a field holding each row's partition")
        self.add_pass_arguments(parser, checkpoint=False, database=DEFAULT_DB_ALIAS)

    def handle(self, *args: Any, **options: Any) -> None:
        run = self.pass_options(options)
        result = encrypt_column(
            options["field"],
            partition=options["partition"],
            partition_field=options["partition_field"],
            **run,
        )
        self.end_progress(run)
        self.stdout.write(result.summary())
