"""Every assumption about Django's internals that the fields make where Django has no hook.

This is the only module of asherah_django that looks at the call stack (a test enforces
it: tests/unit/test_django_internals.py). Each assumption below names the Django code it
leans on; those tests check each of them on every supported Django version (5.2, 6.0, 6.1:
they run in each combination of the test matrix), and :func:`check_startup` checks what it
can without a database when the app starts (``AsherahDjangoConfig.ready``). A Django that
no longer matches fails closed:

A. **Which query builds model instances** (:func:`building_instances`). Django gives a
   field's converters neither the query nor the instance, and calls ``get_db_converters``
   alike for ``values()`` and for model queries. Assumed: the iterable driving the query
   (``ModelIterable``/``RawModelIterable`` vs the ``Values*Iterable`` classes of
   ``django.db.models.query``) is on the call stack, at most ``_MAX_FRAMES`` frames above
   the caller of ``get_db_converters``. Not found: decrypt at once, which is always
   correct, only not batched (no fail-open case exists).

B. **Who reads ``Field.unique``** (:func:`schema_editor_asking`). ``unique`` means both
   validation (``validate_unique``, forms, auth's ``USERNAME_FIELD`` check, ``in_bulk``)
   and the schema (UNIQUE, indexes); for a blind-indexed field they differ: the encrypted
   field is unique for validation (checked through its index) but its ciphertext column
   gets no constraint, and the index column gets the constraint but no second validation.
   Assumed: every schema read of ``unique`` is made directly by a method of
   ``BaseDatabaseSchemaEditor`` (or a backend's subclass), whose ``self`` is the editor,
   whether it builds tables from migrations or from the models (``migrate --run-syncdb``,
   pytest-django's ``--no-migrations``).
   :func:`verify` checks that the editor's methods that emit UNIQUE and indexes still
   read ``unique`` themselves; if not, the app refuses to start.

C. **How Django's python serializer reads a value** (:func:`python_serializer_asking`).
   ``Serializer._value_from_field`` (``django.core.serializers.python``: dumpdata's json,
   jsonl and yaml) writes the result of ``value_from_object`` as it is when it is a
   "protected" type (numbers, dates, booleans, None) and asks ``value_to_string``
   otherwise; an encrypted field must make it ask ``value_to_string`` (the
   DataRowRecord). Assumed: ``_value_from_field`` calls ``value_from_object`` directly.
   Any other caller that is a serializer (``self`` a ``django.core.serializers.base.
   Serializer`` within ``_MAX_FRAMES`` frames) gets :class:`UnsupportedDjangoError`
   instead of a value, and so does every serializer when ``_value_from_field`` no longer
   reads as assumed (checked on import and by :func:`verify`): dumpdata then refuses,
   never writes plaintext. (Which serializers run is the project's SERIALIZATION_MODULES
   setting, not a hook a field could use.)

D. **How an UPDATE asks a field for its placeholder** (used by the blind index's guard
   against stale indexes, :class:`~asherah_django.blind_index.guard.UpdateGuard`).
   ``SQLUpdateCompiler.as_sql`` calls the field's ``get_placeholder_sql`` (Django 6.1+)
   or ``get_placeholder`` (before), a per-field hook; the guard provides both.
   :func:`verify` checks that the compiler still calls one of them; if not, the app
   refuses to start (an UPDATE could otherwise leave a blind index stale).
"""

from __future__ import annotations

import sys
from types import CodeType, FrameType
from typing import Final

import django
from django.core.exceptions import ImproperlyConfigured
from django.core.serializers import base as serializer_base
from django.core.serializers import python as python_serializer
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.models import query
from django.db.models.sql.compiler import SQLUpdateCompiler

from .core.errors import AsherahError

#: The Django feature releases these assumptions were checked on (by the tests).
VERIFIED_DJANGO: Final = ((5, 2), (6, 0), (6, 1))
#: How far up the stack the queryset iterable or a serializer is looked for.
_MAX_FRAMES: Final = 12


class UnsupportedDjangoError(AsherahError):
    """Django reached an encrypted field through a path asherah_django does not know."""


def _code(function: object) -> CodeType | None:
    code = getattr(function, "__code__", None)
    return code if isinstance(code, CodeType) else None


def _mentions(function: object, *names: str) -> bool:
    code = _code(function)
    if code is None:
        return False
    found = set(code.co_names) | {c for c in code.co_consts if isinstance(c, str)}
    return all(name in found for name in names)


# -- A. which query builds model instances ----------------------------------------------

_LAZY_CODES: Final[frozenset[CodeType]] = frozenset(
    code
    for cls in (query.ModelIterable, query.RawModelIterable)
    if (code := _code(cls.__iter__)) is not None
)
_EAGER_CODES: Final[frozenset[CodeType]] = frozenset(
    code
    for cls in (
        query.ValuesIterable,
        query.ValuesListIterable,
        query.NamedValuesListIterable,
        query.FlatValuesListIterable,
    )
    if (code := _code(cls.__iter__)) is not None
)


def building_instances() -> bool:
    """Whether the query whose converters the caller (``get_db_converters``) builds will
    become model instances (decrypt lazily) rather than rows (``values()``: at once)."""
    frame: FrameType | None = sys._getframe(2)
    for _ in range(_MAX_FRAMES):
        if frame is None:
            break
        code = frame.f_code
        if code in _LAZY_CODES:
            return True
        if code in _EAGER_CODES:
            return False
        frame = frame.f_back
    return False


# -- B. who reads Field.unique ----------------------------------------------------------------


def schema_editor_asking() -> bool:
    """Whether the caller (a ``unique`` property) was read by a schema editor method."""
    caller = sys._getframe(2)
    return isinstance(caller.f_locals.get("self"), BaseDatabaseSchemaEditor)


#: Methods of the base schema editor that turn ``unique`` into UNIQUE or skip an index.
_SCHEMA_READERS: Final = (
    "_iter_column_sql",
    "_field_should_be_indexed",
    "_unique_should_be_added",
    "_alter_field",
)


# -- C. Django's python serializer -----------------------------------------------------------


def _recognised_serializer() -> CodeType | None:
    """The code of ``_value_from_field`` when it still reads as assumed, else None."""
    reader = getattr(python_serializer.Serializer, "_value_from_field", None)
    if _mentions(reader, "value_from_object", "is_protected_type", "value_to_string"):
        return _code(reader)
    return None


def python_serializer_asking() -> bool:
    """Whether the caller (``value_from_object``) was called by Django's python serializer
    as assumption C says. Raises :class:`UnsupportedDjangoError` when a serializer called
    it any other way (a changed Django, or a serializer overriding ``_value_from_field``),
    rather than let it write a plaintext value."""
    caller: FrameType | None = sys._getframe(2)
    if caller is not None and caller.f_code is _serializer_code:
        return True
    frame = caller
    for _ in range(_MAX_FRAMES):
        if frame is None:
            break
        if isinstance(frame.f_locals.get("self"), serializer_base.Serializer):
            raise UnsupportedDjangoError(
                f"a serializer ({type(frame.f_locals['self']).__qualname__}) read an "
                "encrypted field through a path asherah_django does not recognise "
                f"(Django {django.get_version()}); refusing rather than serialize plaintext",
                hint="serialize with Django's own python-based serializers (dumpdata json, "
                "jsonl, yaml) or xml, on a supported Django (5.2, 6.0, 6.1)",
            )
        frame = frame.f_back
    return False


# -- D. the UPDATE compiler's placeholder hook ---------------------------------------------

#: The field hooks that ``SQLUpdateCompiler.as_sql`` may call, newest first.
PLACEHOLDER_HOOKS: Final = ("get_placeholder_sql", "get_placeholder")


# -- the startup check ------------------------------------------------------------------------


def verify() -> list[str]:
    """What no longer holds on the running Django (empty when all is as assumed).

    Also makes assumption C fail closed: when the serializer changed, no caller is
    recognised any more, so every serializer read of an encrypted field is refused.
    """
    global _serializer_code
    problems: list[str] = []
    if not (_LAZY_CODES and len(_EAGER_CODES) == 4):
        problems.append(
            "A: django.db.models.query's iterables changed; values are decrypted at once"
        )
    for name in _SCHEMA_READERS:
        if not _mentions(getattr(BaseDatabaseSchemaEditor, name, None), "unique"):
            problems.append(
                f"B: BaseDatabaseSchemaEditor.{name} no longer reads Field.unique itself; "
                "a blind index's UNIQUE could land on the ciphertext column"
            )
    _serializer_code = _recognised_serializer()
    if _serializer_code is None:
        problems.append(
            "C: django.core.serializers.python.Serializer._value_from_field changed; "
            "serializing encrypted fields is refused"
        )
    if not any(_mentions(SQLUpdateCompiler.as_sql, hook) for hook in PLACEHOLDER_HOOKS):
        problems.append(
            "D: SQLUpdateCompiler.as_sql calls neither get_placeholder_sql nor "
            "get_placeholder; QuerySet.update() could leave a blind index stale"
        )
    return problems


_serializer_code: CodeType | None = _recognised_serializer()


def fatal(problems: list[str]) -> list[str]:
    """The problems after which the app must not start (A and C fail closed by
    themselves: values decrypted at once, serializers refused)."""
    return [p for p in problems if p[:2] in ("B:", "D:")]


def check_startup() -> None:
    """Run by the app's ``ready()``: refuse to start on a Django where an assumption that
    guards data (B, D) no longer holds."""
    found = fatal(verify())
    if found:
        raise ImproperlyConfigured(
            f"asherah_django does not support this Django release ({django.get_version()}): "
            + "; ".join(found),
        )
