"""Compare-and-swap writes: ``UPDATE t SET c = new WHERE pk = ? AND c = old``.

A value is replaced only if the row still holds what was read, so a row the application
changed meanwhile is left alone (the swap "lost the race") and counted, never overwritten.
No ``save()`` runs: no signals, no ``auto_now``, no other column touched. The rows of one
window are sent together (``executemany``, grouped by statement shape), which is what
makes a pass fast on a server; the counts come from the driver's summed row count.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, connections, models, transaction

#: A column name (Django types ``Field.column`` as optional; a concrete field has one).
Column = str | None


@dataclass(frozen=True)
class Change:
    """New values for ``pk``'s columns, written only while the row holds ``expect``
    (column -> value read; None: the column must be NULL)."""

    pk: Any
    new: dict[Column, Any]
    expect: dict[Column, Any]


class Changes(list[Change]):
    """A window's changes, built value by value (the values of a row one after another)."""

    def add(self, pk: Any, column: Column, new: Any, old: Any) -> None:
        if self and self[-1].pk == pk:
            self[-1].new[column] = new
            self[-1].expect[column] = old
        else:
            self.append(Change(pk, {column: new}, {column: old}))


@dataclass
class Swapped:
    """What a batch of swaps did: rows (and values, a row's new columns) written or lost
    to a concurrent change, and rows refused by a unique constraint (``isolate``)."""

    rows: int = 0
    values: int = 0
    lost_rows: int = 0
    lost_values: int = 0
    conflicts: list[Any] = field(default_factory=list)


class CompareAndSwap:
    """Compare-and-swap updates of ``model``'s table on the database ``using``."""

    def __init__(self, model: type[models.Model], using: str) -> None:
        self.using = using
        connection = connections[using]
        self._quote = connection.ops.quote_name
        self._table = self._quote(model._meta.db_table)
        pk = model._meta.pk
        assert pk is not None
        assert pk.column is not None
        self._pk_field = pk
        self._pk = self._quote(pk.column)
        self._sql: dict[tuple[tuple[Column, ...], tuple[tuple[Column, bool], ...]], str] = {}

    def swap(self, changes: Iterable[Change], *, isolate: bool = False) -> Swapped:
        """Write ``changes``; with ``isolate``, each row in a savepoint of its own, so a
        row that breaks a unique constraint is refused alone (its pk in ``conflicts``)."""
        groups: dict[str, list[list[Any]]] = {}
        width: dict[str, int] = {}
        connection = connections[self.using]
        for change in changes:
            sql = self._statement(change)
            key = self._pk_field.get_db_prep_value(change.pk, connection)  # (a UUID on SQLite)
            olds = [value for value in change.expect.values() if value is not None]
            groups.setdefault(sql, []).append([*change.new.values(), key, *olds, change.pk])
            width[sql] = len(change.new)
        result = Swapped()
        for sql, rows in groups.items():
            refused = len(result.conflicts)
            written = self._each(sql, rows, result) if isolate else self._many(sql, rows)
            result.rows += written
            result.values += written * width[sql]
            lost = len(rows) - written - (len(result.conflicts) - refused)
            result.lost_rows += lost
            result.lost_values += lost * width[sql]
        return result

    def _statement(self, change: Change) -> str:
        shape = (tuple(change.new), tuple((c, v is None) for c, v in change.expect.items()))
        sql = self._sql.get(shape)
        if sql is None:
            quote = self._quote_column
            sets = ", ".join(f"{quote(column)} = %s" for column in change.new)
            tests = "".join(
                f" AND {quote(column)} IS NULL" if null else f" AND {quote(column)} = %s"
                for column, null in shape[1]
            )
            sql = self._sql[shape] = f"UPDATE {self._table} SET {sets} WHERE {self._pk} = %s{tests}"  # noqa: S608 - quoted names only
        return sql

    def _quote_column(self, column: Column) -> str:
        assert column is not None
        return self._quote(column)

    def _many(self, sql: str, rows: list[list[Any]]) -> int:
        with connections[self.using].cursor() as cursor:
            cursor.executemany(sql, [row[:-1] for row in rows])
            count: int = cursor.rowcount
            return max(count, 0)

    def _each(self, sql: str, rows: list[list[Any]], result: Swapped) -> int:
        written = 0
        connection = connections[self.using]
        for row in rows:
            try:
                with transaction.atomic(using=self.using), connection.cursor() as cursor:
                    cursor.execute(sql, row[:-1])
                    written += cursor.rowcount
            except IntegrityError:
                result.conflicts.append(row[-1])
        return written
