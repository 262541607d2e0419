"""Reading a table in primary-key windows, optionally one shard of it.

A window is one ``SELECT ... WHERE pk > last ORDER BY pk LIMIT n`` (a range scan of the
primary key index, however large the table), read only when the previous window has been
consumed, so a caller may write between windows.

Shards (``--shard I/N``) split the primary keys into N disjoint sets that together hold
every row, so N processes (or machines) can each run one. The split needs no coordination
and does not depend on the data: an integer pk belongs to shard ``pk mod N``, a UUID pk
to the N-th of the UUID space it falls in. Ranges computed from ``MIN(pk)``/``MAX(pk)``
would be cheaper to scan, but each process computes them when it starts, and a row deleted
or inserted at either end meanwhile moves the boundaries: two processes would then
disagree and a row could fall between their ranges, never converted. Modulo (and fixed
UUID ranges) cannot leave such a gap; its cost is that each shard's window query walks the
whole pk index and skips the other shards' rows, which is cheap next to the crypto.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

from django.db import models
from django.db.models import F, QuerySet
from django.db.models.functions import Mod

from ..core.errors import AsherahError

Row = tuple[Any, ...]

_SHARD = re.compile(r"(\d+)/(\d+)")


class Shard(NamedTuple):
    """Shard ``number`` (1-based) of ``of``."""

    number: int
    of: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``I/N`` with ``1 <= I <= N``."""
        match = _SHARD.fullmatch(text.strip())
        if match is None or not 1 <= int(match.group(1)) <= int(match.group(2)):
            raise AsherahError(f"--shard expects I/N with 1 <= I <= N, such as 2/4, not {text!r}")
        return cls(int(match.group(1)), int(match.group(2)))

    def __str__(self) -> str:
        return f"{self.number}/{self.of}"

    def filter(self, rows: QuerySet[Any]) -> QuerySet[Any]:
        """``rows`` restricted to this shard's primary keys."""
        if self.of == 1:
            return rows
        pk = rows.model._meta.pk
        if isinstance(pk, models.UUIDField):
            space = 1 << 128
            low = uuid.UUID(int=(self.number - 1) * space // self.of)
            if self.number == self.of:
                return rows.filter(pk__gte=low)
            return rows.filter(pk__gte=low, pk__lt=uuid.UUID(int=self.number * space // self.of))
        if not isinstance(pk, models.IntegerField | models.AutoField):
            raise AsherahError(
                f"--shard needs an integer or UUID primary key; {rows.model._meta.label}'s is "
                f"a {type(pk).__name__}"
            )
        # SQL's % keeps the sign of the dividend: a negative pk gives 0 or i - N.
        remainder = self.number - 1
        sharded: QuerySet[Any] = rows.alias(_shard=Mod(F("pk"), self.of)).filter(
            _shard__in=[remainder, remainder - self.of]
        )
        return sharded


def pk_windows(
    rows: QuerySet[Any], columns: Sequence[Any], size: int, after: Any = None
) -> Iterator[list[Row]]:
    """``rows.values_list(*columns)`` (``columns[0]`` being ``"pk"``) in pk order,
    ``size`` rows at a time, starting after the pk ``after``."""
    ordered = rows.order_by("pk")
    last = after
    while batch := list(
        (ordered if last is None else ordered.filter(pk__gt=last)).values_list(*columns)[:size]
    ):
        last = batch[-1][0]
        yield batch
