"""``bind=``: tie an encrypted field's values to their column and row.

    class Patient(models.Model):
        id = models.UUIDField(primary_key=True, default=uuid.uuid4)
        tenant_id = models.CharField(max_length=64)
        diagnosis = EncryptedTextField(partition="tenant_id", bind=("id",))

A bound value is encrypted together with a header naming its column
(``app_label.model.field``) and the canonical text of the named row fields, all inside
the authenticated plaintext (:mod:`asherah_django.core.binding`). Read anywhere else (the
record copied into another row or another column by someone with SQL access), it raises
:class:`~asherah_django.core.errors.BindingMismatchError`.

Options (``bind=True``, ``bind=("id",)`` or ``bind=Bind(...)``)
-----------------------------------------------------------
``row``
    Names of plain fields of the model whose values are known before the INSERT and do
    not change: a UUID primary key with a default, a tenant id, a natural key. Empty
    (``bind=True``): the value is bound to its column only. An auto-increment primary key
    is refused by a system check (asherah.E313): it is not known when the value is
    encrypted.
``label``
    The column's name in the binding; default ``app_label.model.field``. Pin it before
    renaming the model or field (values bound to the old name are refused otherwise).
``unbound``
    ``"reject"`` (default) or ``"read"``: whether values written without a binding
    (before ``bind=`` was added) are accepted. Use ``"read"`` only while converting a
    column (``manage.py asherah_rotate --bind LABEL``), then remove it: while it is on, a
    database writer can still move *unbound* records around.

What needs the row: reading (model instances: yes; ``values()``/``values_list()`` of a
field bound to row fields: no instance, so they raise :class:`BoundRowRequiredError`
instead of returning unverified plaintext; a column-only binding is verified there),
writing (``save()``, ``create()``, ``bulk_create()``; ``QuerySet.update(field=v)`` only
for column-only bindings, else :func:`asherah_django.fields.bulk_update`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from ..core.binding import Binding, has_header, parse_header, unbind
from ..core.errors import AsherahError, BindingMismatchError
from .sql import label as field_label

if TYPE_CHECKING:
    from django.db.models import Field

    from .options import OptionsField

__all__ = ["UNBOUND_CHOICES", "Bind", "Binder", "BindingValueError", "BoundRowRequiredError"]

UNBOUND_CHOICES: Final = ("reject", "read")


class BoundRowRequiredError(AsherahError):
    """A field bound to row fields was read or written without its row."""


class BindingValueError(AsherahError, ValueError):
    """A row field that a bound field names is empty (None) when the value is written or read."""


class Bind:
    """Options of ``bind=`` (see the module docs)."""

    def __init__(
        self, row: Sequence[str] = (), *, label: str | None = None, unbound: str = "reject"
    ) -> None:
        self.row = (row,) if isinstance(row, str) else tuple(row)
        self.label = label
        self.unbound = unbound

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Bind):
            return NotImplemented
        return (self.row, self.label, self.unbound) == (other.row, other.label, other.unbound)

    def __hash__(self) -> int:
        return hash((self.row, self.label, self.unbound))

    def __repr__(self) -> str:
        return f"Bind(row={self.row!r}, label={self.label!r}, unbound={self.unbound!r})"

    def deconstruct(self) -> tuple[str, tuple[()], dict[str, Any]]:
        """For migrations: the options that differ from the defaults, by keyword, so that
        ``Bind(("id",))``, ``Bind(row=["id"])`` and ``bind=("id",)`` migrate alike."""
        kwargs: dict[str, Any] = {}
        if self.row:
            kwargs["row"] = self.row
        if self.label is not None:
            kwargs["label"] = self.label
        if self.unbound != "reject":
            kwargs["unbound"] = self.unbound
        return "asherah_django.fields.Bind", (), kwargs


def normalize(option: object) -> Bind | None:
    """``bind=`` as given -> a :class:`Bind` (or None: not bound)."""
    if option is None or option is False:
        return None
    if option is True:
        return Bind()
    if isinstance(option, Bind):
        return option
    if isinstance(option, str | list | tuple):
        return Bind(row=option)
    raise TypeError(
        f"bind= takes True, a tuple of field names or Bind(...), not {type(option).__name__}"
    )


@dataclass(frozen=True)
class Binder:
    """A field's binding resolved against its model: computes expected headers."""

    binding: Binding
    attnames: tuple[str, ...]
    to_text: tuple[Callable[[Any], str], ...]
    accept_unbound: bool
    field_label: str

    @property
    def by_row(self) -> bool:
        return bool(self.attnames)

    def header_of(self, instance: Any) -> bytes:
        """The header a value of this field has in ``instance``'s row."""
        if not self.attnames:
            return self.binding.header()
        return self.header_from([getattr(instance, name) for name in self.attnames])

    def header_from(self, values: Sequence[Any]) -> bytes:
        """The header for the row fields' ``values`` (in the order of ``attnames``)."""
        texts = []
        to_text = self.to_text
        for index, value in enumerate(values):
            if value is None:
                name = self.attnames[index]
                raise BindingValueError(
                    f"{self.field_label} is bound to {name}, which is empty in this row",
                    hint=f"set {name} before saving or reading the value",
                )
            texts.append(to_text[index](value))
        return self.binding.header(texts)

    def column_value(self, plaintext: bytes) -> bytes:
        """The value of a decrypted plaintext, its column checked but not its row (for
        maintenance that reads values without their rows: blind index rebuilds)."""
        if not has_header(plaintext):  # refused, unless unbound values are accepted
            header = self.binding.header([""] * len(self.attnames))
            return unbind(header, plaintext, accept_unbound=self.accept_unbound)
        label, _, end = parse_header(plaintext)
        if label != self.binding.label:
            raise BindingMismatchError(
                f"the value belongs to another column ({label}), not {self.binding.label}"
            )
        return plaintext[end:]

    def header_without_row(self) -> bytes:
        """The header when Django gives a value without its row (values(), update())."""
        if self.attnames:
            raise BoundRowRequiredError(
                f"{self.field_label} is bound to its row ({', '.join(self.attnames)}), but "
                "this value comes without its row (values(), values_list(), "
                "QuerySet.update(), Value()), so it cannot be verified or bound",
                hint="read model instances (e.g. .only('pk', field)); write with save(), "
                "bulk_create() or asherah_django.fields.bulk_update()",
            )
        return self.binding.header()


def resolve(field: OptionsField) -> Binder:
    """The :class:`Binder` of a field with ``bind=`` (after contribute_to_class)."""
    options = field.bind
    assert options is not None
    meta = field.model._meta
    label = options.label or f"{meta.label_lower}.{field.name}"
    attnames, converters = [], []
    for name in options.row:
        target = meta.get_field(name)
        attnames.append(target.attname)  # type: ignore[union-attr]
        converters.append(_canonical(target))  # type: ignore[arg-type]
    binding = Binding(label, [meta.get_field(n).name for n in options.row])
    return Binder(
        binding, tuple(attnames), tuple(converters), options.unbound == "read", field_label(field)
    )


def _canonical(field: Field[Any, Any]) -> Callable[[Any], str]:
    """Canonical text of a row field's value: its ``to_python`` form as ``str``, so that
    ``"ABC..."`` assigned to a UUIDField and the UUID read back bind alike."""
    to_python = field.to_python

    def convert(value: Any) -> str:
        return str(to_python(value))

    return convert
