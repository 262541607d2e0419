"""EncryptedField: how an encrypted column's values go in and out of the database.

The column holds the DataRowRecord text (TEXT on every backend). ``None`` stays NULL;
every other value, empty strings included, is encrypted. Subclasses in ``types.py`` only
say how their Python value becomes bytes and back (``normalize``/``encode``/``decode``).
The field is built in layers, one module each: its options and partitions
(:mod:`.options`), the read path (:mod:`.reading`), the write path (:mod:`.writing`) and,
here, the schema, system checks, lookups and forms.

Lookups other than ``isnull`` (and ``=None``), transforms and ordering raise ``FieldError``
naming the field and pointing to searchable fields. A field with ``blind_index=...`` also
answers ``exact``, ``in`` (and ``iexact`` when it casefolds) through its blind index
column, and may be ``unique``; see :mod:`asherah_django.blind_index`.

Nothing is stored on the field per call: per-query state lives in the converter's closure
(its ReadBatch), per-row state in the instance's ``__dict__``, the partition in a
contextvar.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from django.core import checks
from django.core.exceptions import FieldError
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, Model
from django.db.models.expressions import Col
from django.utils.functional import cached_property

from .. import django_internals
from ..blind_index import column as blind_column
from ..blind_index import lookups as blind_lookups
from ..blind_index.options import IndexConfig, resolve
from ..core.records import looks_like_data_row
from .declaration_checks import check_field
from .descriptors import EncryptedAttribute
from .options import PlaintextValueError, RowPartitionRequiredError
from .sealed import VerbatimValue
from .sql import SEARCHABLE_HINT, EncryptedCol, EncryptedExact, EncryptedIsNull, label
from .writing import WritingField

__all__ = ["EncryptedField", "PlaintextValueError", "RowPartitionRequiredError", "encrypted_fields"]


class EncryptedField(WritingField):
    """Base class of the encrypted fields; :mod:`.options`, :mod:`.reading` and
    :mod:`.writing` describe the data flow.

    Options (besides the usual field options):

    - ``partition``: ``None`` (the open session), the name of another field of the model
      (``"tenant_id"``, or a foreign key ``"tenant"``), or a callable
      ``(instance) -> str``. The callable must be importable (a module-level function)
      for migrations.
    - ``legacy``: ``"reject"`` (default) or ``"read"``, for stored values that are not
      DataRowRecords (see :mod:`.reading`).

    - ``blind_index``: ``True`` or a :class:`~asherah_django.blind_index.BlindIndex`:
      keep a keyed index of the value in a column of its own (``<name>_bidx``), so that
      exact-match lookups and ``unique=True`` work (:mod:`~asherah_django.blind_index`).
    - ``bind``: ``True``, a tuple of row field names or a
      :class:`~asherah_django.fields.bind.Bind`: values decrypt only in the column (and
      row) they were written for (:mod:`~asherah_django.fields.bind`).

    ``db_index`` and ``primary_key`` are refused by system checks, and ``unique`` too
    unless the field has a blind index (the index column is then the unique one).
    """

    descriptor_class = EncryptedAttribute
    #: Marks encrypted fields (checks and other modules test it without importing this).
    is_encrypted: ClassVar[bool] = True

    # -- schema, deconstruction, checks -----------------------------------------------

    def get_internal_type(self) -> str:
        return "TextField"

    def db_type(self, connection: BaseDatabaseWrapper) -> str | None:
        return connection.data_types["TextField"]

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        if self.partition is not None:
            kwargs["partition"] = self.partition
        if self.legacy != "reject":
            kwargs["legacy"] = self.legacy
        if self.blind_index is not None:
            kwargs["blind_index"] = True if self.blind_index.is_default else self.blind_index
            # The schema's UNIQUE goes on the index column (its field says so); the
            # ciphertext column gets none.
            kwargs.pop("unique", None)
        if self.bind is not None:
            kwargs["bind"] = self.bind
        cls = type(self)
        if cls.__module__.startswith("asherah_django.fields"):
            path = f"asherah_django.fields.{cls.__qualname__}"
        return name, path, args, kwargs

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        return [*super().check(**kwargs), *check_field(self)]

    def contribute_to_class(
        self, cls: type[Model], name: str, private_only: bool = False, **kwargs: Any
    ) -> None:
        super().contribute_to_class(cls, name, private_only=private_only, **kwargs)
        self.__dict__.pop("blind_config", None)  # (a copy from an abstract parent)
        self.__dict__.pop("binder", None)
        if self.blind_index is not None:
            blind_column.attach(self, cls)

    @property  # (Django's is a cached_property; this one depends on who asks)
    def unique(self) -> bool:
        """As Django's, except that a schema editor never sees a blind-indexed field
        unique: the UNIQUE constraint belongs to its index column, not to its ciphertext."""
        if self.primary_key:
            return True
        if not self._unique:  # type: ignore[attr-defined]
            return False
        return self.blind_index is None or not django_internals.schema_editor_asking()

    @cached_property
    def blind_config(self) -> IndexConfig:
        """The blind index options resolved for this field (only with ``blind_index``)."""
        return resolve(self)

    # -- lookups and ordering ------------------------------------------------------------

    def get_lookup(self, lookup_name: str) -> Any:
        if lookup_name == "isnull":
            return EncryptedIsNull
        if self.blind_index is not None:
            if lookup_name == "exact":
                return blind_lookups.BlindExact
            if lookup_name == "in":
                return blind_lookups.BlindIn
            if lookup_name == "iexact" and self.blind_config.casefold:
                return blind_lookups.BlindIExact
            raise FieldError(
                f"unsupported lookup {lookup_name!r} on encrypted field {label(self)}: its "
                "blind index answers only exact matches (=, in, get(); iexact when it "
                "casefolds) and isnull; the database holds only ciphertext and a keyed "
                "index, so it cannot search, compare or sort the values."
            )
        if lookup_name == "exact":
            return EncryptedExact
        raise FieldError(
            f"unsupported lookup {lookup_name!r} on encrypted field {label(self)}: "
            f"{SEARCHABLE_HINT}."
        )

    def get_transform(self, lookup_name: str) -> Any:
        raise FieldError(
            f"unsupported transform {lookup_name!r} on encrypted field {label(self)}: "
            f"{SEARCHABLE_HINT}."
        )

    def get_col(self, alias: str, output_field: Field[Any, Any] | None = None) -> Col:
        if alias == self.model._meta.db_table and (output_field is None or output_field == self):
            return self.cached_col
        return EncryptedCol(alias, self, output_field)

    @cached_property
    def cached_col(self) -> Col:
        return EncryptedCol(self.model._meta.db_table, self)

    # -- placeholders (INSERT and UPDATE) --------------------------------------------------

    def get_placeholder_sql(self, value: Any, compiler: Any, connection: Any) -> tuple[str, Any]:
        """Django's default placeholder (Django 6.1+; :meth:`get_placeholder` before).

        Having one at all keeps PostgreSQL's ``bulk_create()`` from its UNNEST form, which
        sends each column as one text array that psycopg escapes in Python, quote by
        quote: DataRowRecords are JSON, a dozen quotes each, and the plain ``VALUES`` form
        stores them faster (benchmarks/orm_bench.py). A blind-indexed field's UPDATE
        guard replaces both methods on the field (:mod:`asherah_django.blind_index`).
        """
        if hasattr(value, "as_sql"):
            return compiler.compile(value)  # type: ignore[no-any-return]
        return "%s", (value,)

    def get_placeholder(self, value: Any, compiler: Any, connection: Any) -> str:
        """``get_placeholder_sql`` of Django 5.2 and 6.0 (the expression compiled by them)."""
        return "%s"

    def select_format(self, compiler: Any, sql: str, params: Any) -> Any:
        return sql, params  # the column is TEXT: no JSON casts, whatever the plain type

    # -- forms, validation, serialization ------------------------------------------------

    def to_python(self, value: Any) -> Any:
        """As the plain field, except that DataRowRecord text becomes a SealedValue.

        That is how ``loaddata`` stores fixture ciphertext unchanged (the instance it builds
        then shows that SealedValue, not plaintext); plaintext fixture values are encrypted
        when saved. Form and model validation use :meth:`clean`, which never does this, so
        text typed into a form is always encrypted, whatever it looks like.
        """
        if type(value) is str and value[:1] == "{" and looks_like_data_row(value):
            return VerbatimValue(value)
        return self.plain_to_python(value)

    def clean(self, value: Any, model_instance: Model | None) -> Any:
        value = self.plain_to_python(value)
        self.validate(value, model_instance)
        self.run_validators(value)
        if self.blind_unique and not self.unique and model_instance is not None:
            blind_column.validate_unique_in_partition(self, value, model_instance)
        return value


def encrypted_fields(model: type[Model]) -> Sequence[EncryptedField]:
    """The encrypted concrete fields of ``model``."""
    return [f for f in model._meta.concrete_fields if isinstance(f, EncryptedField)]
