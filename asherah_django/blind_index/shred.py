"""Clear the blind indexes of a shredded partition's rows (issue #14).

Shredding destroys a partition's intermediate keys, so its values can never be decrypted;
but an index under the *global* scope stays computable by everyone who can query: without
this step ``filter(email="guess@example.org")`` would still confirm which shredded rows held
that address. So after the keys are deleted, every blind-indexed field of every installed
model is scanned in primary-key windows, and each row whose value names one of the
destroyed intermediate key versions (the DataRowRecord's ``ParentKeyMeta``, which is how
session- and row-partitioned fields alike record their partition) gets its index column set
to NULL, with a compare-and-swap on the value read. The scan reads only rows whose index is
set; it costs one pass over each blind-indexed table, once per shred.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from django.db import connections, models, router, transaction
from django.db.models import ExpressionWrapper, F

from ..core.records import KeyMeta
from ..rotation.targets import parse
from .reindex import IndexedField, indexed_fields

if TYPE_CHECKING:
    from ..maintenance.summary import Summary

logger = logging.getLogger("asherah_django.blind_index")

_WINDOW = 1000


def clear_shredded_indexes(
    destroyed: Iterable[KeyMeta], summary: Summary, *, dry_run: bool = False
) -> int:
    """NULL the blind index of every row whose value is under one of ``destroyed``; how many."""
    doomed = set(destroyed)
    if not doomed:
        return 0
    total = 0
    for target in indexed_fields(()):
        count = _clear(target, doomed, dry_run)
        if count:
            verb = "would be cleared" if dry_run else "cleared"
            summary.say(f"  {count} blind index value(s) of {target.label} {verb}.")
            total += count
    if total:
        summary.count("blind index value(s) cleared", total)
        if not dry_run:
            logger.warning(
                "asherah_rotate: cleared %d blind index value(s) of shredded rows", total
            )
    return total


def _clear(target: IndexedField, doomed: set[KeyMeta], dry_run: bool) -> int:
    model = target.model
    using = router.db_for_write(model)
    value = ExpressionWrapper(F(target.field.attname), output_field=models.TextField())
    rows = (
        model._base_manager.db_manager(using)
        .filter(**{f"{target.column.attname}__isnull": False})
        .order_by("pk")
    )
    quote = connections[using].ops.quote_name
    pk = model._meta.pk
    assert pk is not None
    assert pk.column is not None
    assert target.field.column is not None
    assert target.column.column is not None
    sql = (
        f"UPDATE {quote(model._meta.db_table)} SET {quote(target.column.column)} = NULL "  # noqa: S608
        f"WHERE {quote(pk.column)} = %s AND {quote(target.field.column)} = %s"
    )
    cleared, last = 0, None
    while True:
        window = rows if last is None else rows.filter(pk__gt=last)
        batch: list[tuple[Any, Any]] = list(window.values_list("pk", value)[:_WINDOW])
        if not batch:
            return cleared
        last = batch[-1][0]
        hits = [(key, text) for key, text in batch if _under(text, doomed)]
        if dry_run:
            cleared += len(hits)
            continue
        with transaction.atomic(using=using), connections[using].cursor() as cursor:
            for key, text in hits:
                cursor.execute(sql, [key, text])
                cleared += cursor.rowcount


def _under(text: Any, doomed: set[KeyMeta]) -> bool:
    record = parse(text)
    return record is not None and record.parent in doomed
