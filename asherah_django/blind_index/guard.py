"""The UPDATE guard: an UPDATE that sets a blind-indexed value must set its index too."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import FieldError
from django.db.models.sql.compiler import SQLUpdateCompiler

from .options import SourceField

__all__ = ["UpdateGuard"]


class UpdateGuard:
    """The encrypted field's ``get_placeholder``: refuses an UPDATE that sets the value
    without its blind index (``QuerySet.update()``, Django's ``bulk_update()``,
    ``save(update_fields=[field])``)."""

    __slots__ = ("index_name", "label")

    def __init__(self, index_name: str, field: SourceField) -> None:
        self.index_name = index_name
        self.label = f"{field.model._meta.label}.{field.name}"

    def __call__(self, value: Any, compiler: Any, connection: Any) -> str:
        """``get_placeholder`` (Django 5.2, 6.0)."""
        if isinstance(compiler, SQLUpdateCompiler):
            self.check(compiler)
        return "%s"

    def placeholder_sql(self, value: Any, compiler: Any, connection: Any) -> tuple[str, Any]:
        """``get_placeholder_sql`` (Django 6.1+): the placeholder and its parameters."""
        if isinstance(compiler, SQLUpdateCompiler):
            self.check(compiler)
        if hasattr(value, "as_sql"):
            return compiler.compile(value)  # type: ignore[no-any-return]
        return "%s", (value,)

    def check(self, compiler: SQLUpdateCompiler) -> None:
        name = self.index_name
        query: Any = compiler.query
        if not any(f.name == name for f, _, _ in query.values):
            raise FieldError(
                f"this UPDATE sets {self.label} but not its blind index {name!r}, which "
                "would go stale: use save() (with update_fields naming both), or "
                "asherah_django.fields.bulk_update(), which update both"
            )
