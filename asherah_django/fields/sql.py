"""SQL on encrypted columns: what may be compiled, and when rows become instances.

- :class:`EncryptedCol` refuses to be ordered by; :class:`EncryptedIsNull` and
  :class:`EncryptedExact` (only ``= None``) are the lookups an encrypted field offers.
- :func:`check_stored_expression` refuses expressions the database would compute in
  plaintext before storing them in an encrypted column.
"""

from __future__ import annotations

from typing import Any, Final

from django.core.exceptions import FieldError
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.expressions import Case, Col, ExpressionWrapper, Value, When
from django.db.models.functions import Cast
from django.db.models.lookups import Exact, IsNull

SEARCHABLE_HINT: Final = (
    "the database holds only ciphertext (a fresh key per value), so SQL cannot compare, "
    "search or sort it; only isnull works. For exact-match lookups (=, in, get, unique) "
    "give the field blind_index=True; for anything else filter on another field and "
    "compare in Python"
)


def label(field: object) -> str:
    """``app_label.Model.field`` for messages."""
    model = getattr(field, "model", None)
    name = getattr(field, "name", "?")
    return f"{model._meta.label}.{name}" if model is not None else str(name)


class EncryptedCol(Col):
    """A column of an encrypted field. Ordering by it raises a clear error.

    Two ways in: Django resolves the columns of ``order_by("field")`` and
    ``Meta.ordering`` once more before compiling them (selected columns are not resolved
    again), and it compiles ``order_by(F("field"))`` after the select list is built but
    before the WHERE clause is split out (``SQLCompiler.pre_sql_setup``), a window in
    which nothing else is compiled. If a future Django changes that order, the second
    check simply never fires.
    """

    def resolve_expression(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("for_save") or (len(args) > 4 and args[4]):
            return super().resolve_expression(*args, **kwargs)  # update(x=F("field"))
        raise FieldError(_ordering_message(self.target))

    def as_sql(self, compiler: Any, connection: BaseDatabaseWrapper) -> Any:
        if compiler.select is not None and not hasattr(compiler, "where"):
            raise FieldError(_ordering_message(self.target))
        return super().as_sql(compiler, connection)


def _ordering_message(field: object) -> str:
    return f"cannot order by encrypted field {label(field)}: {SEARCHABLE_HINT}."


class EncryptedIsNull(IsNull):
    """``field__isnull``: NULL is stored as NULL, so this one test works on ciphertext."""

    def __init__(self, lhs: Any, rhs: Any) -> None:
        if isinstance(lhs, EncryptedCol):
            lhs = Col(lhs.alias, lhs.target, lhs.output_field)
        super().__init__(lhs, rhs)


class EncryptedExact(Exact):
    """Only ``field=None`` (which Django turns into ``isnull``); anything else raises."""

    def __init__(self, lhs: Any, rhs: Any) -> None:
        if rhs is not None:
            raise FieldError(
                f"encrypted field {label(getattr(lhs, 'target', lhs))} cannot be compared "
                f"with exact: {SEARCHABLE_HINT}."
            )
        super().__init__(lhs, rhs)


def check_stored_expression(field: Any, expression: Any) -> None:
    """Refuse an expression whose result the database would compute in plaintext.

    Allowed: ``Case``/``When``/``Cast``/``ExpressionWrapper`` around values typed as an
    encrypted field (Django encrypts them through the field when compiling) or NULL,
    and columns of encrypted fields (their ciphertext is copied as it is).
    """
    if isinstance(expression, Value):
        output = expression._output_field_or_none  # type: ignore[attr-defined]
        if expression.value is None or getattr(output, "is_encrypted", False):
            return
    elif isinstance(expression, Col):
        if getattr(expression.target, "is_encrypted", False):
            return
    elif isinstance(expression, Case):
        for case in expression.cases:
            check_stored_expression(field, case)
        check_stored_expression(field, expression.default)
        return
    elif isinstance(expression, When):
        check_stored_expression(field, expression.result)
        return
    elif isinstance(expression, Cast | ExpressionWrapper):
        for source in expression.get_source_expressions():
            check_stored_expression(field, source)
        return
    raise FieldError(computed_message(field, expression))


def computed_message(field: object, expression: object) -> str:
    return (
        f"cannot store {type(expression).__name__} in encrypted field {label(field)}: the "
        "database would compute the value in plaintext; assign the Python value instead"
    )
