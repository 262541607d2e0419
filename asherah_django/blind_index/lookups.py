"""The lookups of a blind-indexed field (``exact``, ``iexact``, ``in``): they compare its
index column with the index values of the plaintexts, computed when the query is compiled."""

from __future__ import annotations

from typing import Any, cast

from django.core.exceptions import EmptyResultSet, FieldError
from django.db.models import Model
from django.db.models.expressions import Col, Value
from django.db.models.lookups import Lookup
from django.db.models.sql.where import AND, WhereNode

from ..context import _partition as _partition_var
from ..context import require_partition
from .column import BlindIndexField
from .options import SourceField, index_input
from .values import lookup_values

__all__ = ["BlindExact", "BlindIExact", "BlindIn", "BlindLookup"]

_current_partition = _partition_var.get


class BlindLookup(Lookup):
    """Compares the blind index column with the index values of the plaintext(s).

    ``rhs`` holds the hashed inputs (bytes); the index values are computed when the query
    is compiled, with the key versions current then.
    """

    prepare_rhs = False
    can_use_none_as_rhs = False
    many = False

    def get_prep_lookup(self) -> Any:
        field = _target(self.lhs)
        rhs = self.rhs
        if rhs is None and not self.many:
            return None
        if self.many:
            if isinstance(rhs, str | bytes) or hasattr(rhs, "resolve_expression"):
                raise FieldError(
                    f"{field.model._meta.label}.{field.name}__in takes a list of values "
                    "(a subquery cannot be compared with a blind index)"
                )
            values = [v for v in rhs if v is not None]
        else:
            values = [rhs]
        inputs = []
        for value in values:
            if isinstance(value, Value):
                value = value.value
            if hasattr(value, "resolve_expression"):
                raise FieldError(
                    f"encrypted field {field.model._meta.label}.{field.name} can be compared "
                    "with values only, not with expressions or other columns: the database "
                    "holds ciphertext and a keyed index"
                )
            inputs.append(index_input(field, value))
        return tuple(inputs)

    def as_sql(self, compiler: Any, connection: Any) -> Any:
        field = _target(self.lhs)
        config = field.blind_config
        partition = self._partition(compiler, field) if config.scope == "partition" else None
        values = lookup_values(field, self.rhs, partition)
        if not values:
            raise EmptyResultSet  # no value, or no key yet: nothing can match
        companion = cast(BlindIndexField, field.model._meta.get_field(config.field_name))
        lhs_sql, lhs_params = compiler.compile(Col(self.lhs.alias, companion))
        if len(values) == 1:
            return f"{lhs_sql} = %s", [*lhs_params, values[0]]
        return f"{lhs_sql} IN ({', '.join(['%s'] * len(values))})", [*lhs_params, *values]

    def _partition(self, compiler: Any, field: SourceField) -> str:
        if isinstance(field.partition, str):
            found = _anded_partitions(compiler, self, field)
            if len(found) > 1:
                raise EmptyResultSet  # two different partitions ANDed: nothing matches
            if found:
                return found.pop()
        partition = _current_partition()
        if partition is not None:
            return partition
        label = f"{field.model._meta.label}.{field.name}"
        if field.partition is None:
            return require_partition(f"{label} (its blind index is per partition)")
        return require_partition(
            f"{label} (its blind index is per partition: filter on "
            f"{field._partition_name} in the same filter(), e.g. "
            f"filter({field._partition_name}=..., {field.name}=...), or open the session "
            "of the partition)"
        )


class BlindExact(BlindLookup):
    lookup_name = "exact"


class BlindIExact(BlindLookup):
    lookup_name = "iexact"


class BlindIn(BlindLookup):
    lookup_name = "in"
    many = True


def _target(lhs: Any) -> SourceField:
    target = getattr(lhs, "target", None)
    if not isinstance(lhs, Col) or getattr(target, "blind_index", None) is None:
        raise FieldError("a blind index lookup needs the encrypted field's column itself")
    return cast("SourceField", target)


def _anded_partitions(compiler: Any, lookup: Lookup, field: SourceField) -> set[str]:
    """Partition values fixed by ``partition_field = value`` conditions ANDed with
    ``lookup`` (on the same table alias) anywhere up the WHERE tree.

    Sound under negation: the lookup's truth only matters for rows where its AND
    siblings hold, i.e. rows of that partition.
    """
    path: list[WhereNode] | None = None
    for root in (getattr(compiler, "where", None), getattr(compiler.query, "where", None)):
        if isinstance(root, WhereNode):
            path = _path_to(root, lookup)
            if path is not None:
                break
    if not path:
        return set()
    option = field.partition
    assert isinstance(option, str)
    attname = field.model._meta.get_field(option).attname  # type: ignore[union-attr]
    alias = lookup.lhs.alias
    found: set[str] = set()
    for node in path:
        if node.connector != AND:
            continue
        for child in node.children:
            _collect(child, alias, attname, found)
    return found


def _path_to(node: WhereNode, target: object) -> list[WhereNode] | None:
    for child in node.children:
        if child is target:
            return [node]
        if isinstance(child, WhereNode):
            below = _path_to(child, target)
            if below is not None:
                return [node, *below]
    return None


def _collect(child: Any, alias: str, attname: str, found: set[str]) -> None:
    if isinstance(child, WhereNode):
        if child.connector == AND and not child.negated:
            for grandchild in child.children:
                _collect(grandchild, alias, attname, found)
        return
    if getattr(child, "lookup_name", None) != "exact":
        return
    lhs = getattr(child, "lhs", None)
    if not isinstance(lhs, Col) or lhs.alias != alias or lhs.target.attname != attname:
        return
    value = child.rhs
    if isinstance(value, tuple | list) and len(value) == 1:
        value = value[0]
    if value is None or hasattr(value, "resolve_expression"):
        return
    if isinstance(value, Model):
        value = value.pk
    found.add(value if type(value) is str else str(value))
