"""Bound values: a record that decrypts only where it was written (column and row).

Asherah's DataRowRecord has no associated data, so within one partition a record can be
moved to another row or column and still decrypt. A *bound* value carries, inside the
encrypted plaintext, a header naming where it belongs; on read the header must equal
the one expected for the place it is read from, or the read fails.

Why a header inside the plaintext and not AES-GCM associated data: the record stays a
standard DataRowRecord, so everything that handles records without decrypting them
(key preloading, rotation, ``--reencrypt``, inventory, crypto-shredding, the C fast
path) works unchanged, and re-encryption keeps the binding because it re-encrypts the
plaintext bytes as they are. The header is authenticated exactly like the value (same
AES-GCM key and tag, a fresh data key per record), so a database writer without the keys
can neither forge nor alter it. The price: another Asherah implementation decrypts a
bound record to ``header || value``, not to the bare value (it can strip the header,
whose format is below, but does not verify it unless it implements this).

Format, version 1 (all lengths unsigned 32-bit big-endian)::

    MAGIC (b"\\xffAB") | version (1 byte: 0x01) | body length | body | value
    body = item(label) [ item(name) item(value) ]*      item = length | UTF-8 bytes

``label`` names the column (``app_label.model.field``); each ``name``/``value`` pair is
a row field and its canonical text. Everything is length-prefixed, so two different
bindings never have the same header. ``\\xff`` never occurs in UTF-8, so no text value
written unbound starts with the magic; a binary value could (then it reads as a broken
binding, refused, never as another value).

Nothing here imports Django.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from .errors import BindingMismatchError, UnboundRecordError

__all__ = ["MAGIC", "VERSION", "Binding", "has_header", "parse_header", "unbind"]

MAGIC: Final = b"\xffAB"
VERSION: Final = 1
_LEAD: Final = MAGIC + bytes([VERSION])
_LEN: Final = 4
_MAX_ITEM: Final = 2**32 - 1


def _item(text: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) > _MAX_ITEM:  # pragma: no cover - a 4 GiB key is not a key
        raise ValueError("binding item longer than 4 GiB")
    return len(raw).to_bytes(_LEN, "big") + raw


class Binding:
    """Where a column's values belong: its label and the names of its row fields.

    Built once per column; :meth:`header` is called per value with the row's values
    (canonical text, in the order of ``names``).
    """

    __slots__ = ("_fixed", "_label_item", "_name_items", "label", "names")

    def __init__(self, label: str, names: Sequence[str] = ()) -> None:
        if not label:
            raise ValueError("a binding needs a non-empty label")
        self.label = label
        self.names = tuple(names)
        self._label_item = _item(label)
        self._name_items = tuple(_item(name) for name in self.names)
        self._fixed = None if self.names else _frame(self._label_item)

    def __repr__(self) -> str:
        return f"Binding(label={self.label!r}, names={self.names!r})"

    def header(self, values: Sequence[str] = ()) -> bytes:
        """The header of a value of this column in the row whose fields are ``values``."""
        fixed = self._fixed
        if fixed is not None:
            return fixed
        items = self._name_items
        if len(values) != len(items):
            raise ValueError(f"{self.label}: {len(items)} row value(s) expected")
        body = self._label_item
        for index, value in enumerate(values):
            raw = value.encode("utf-8")
            body += items[index] + len(raw).to_bytes(_LEN, "big") + raw
        return _LEAD + len(body).to_bytes(_LEN, "big") + body


def _frame(body: bytes) -> bytes:
    return _LEAD + len(body).to_bytes(_LEN, "big") + body


def has_header(plaintext: bytes) -> bool:
    """Whether ``plaintext`` starts like a bound value (any version)."""
    return plaintext[: len(MAGIC)] == MAGIC


def parse_header(plaintext: bytes) -> tuple[str, tuple[tuple[str, str], ...], int]:
    """``(label, ((name, value), ...), header length)`` of a bound plaintext.

    :class:`BindingMismatchError` when the header is not a version-1 header.
    """
    if not has_header(plaintext):
        raise BindingMismatchError("the value carries no binding header")
    if len(plaintext) < len(_LEAD) + _LEN or plaintext[len(MAGIC)] != VERSION:
        raise BindingMismatchError(
            "the value's binding header has an unknown format version",
            hint="it was written by a newer asherah_django, or it is not a bound value",
        )
    start = len(_LEAD) + _LEN
    end = start + int.from_bytes(plaintext[len(_LEAD) : start], "big")
    items: list[str] = []
    position = start
    try:
        if end > len(plaintext):
            raise ValueError
        while position < end:
            size = int.from_bytes(plaintext[position : position + _LEN], "big")
            position += _LEN
            if position + size > end:
                raise ValueError
            items.append(plaintext[position : position + size].decode("utf-8"))
            position += size
        if position != end or not items or len(items) % 2 != 1:
            raise ValueError
    except ValueError:
        raise BindingMismatchError("the value's binding header is malformed") from None
    pairs = tuple(zip(items[1::2], items[2::2], strict=True))
    return items[0], pairs, end


def unbind(expected: bytes, plaintext: bytes, *, accept_unbound: bool = False) -> bytes:
    """The value of a bound plaintext whose header is ``expected``.

    An unbound plaintext (no header) is returned as it is with ``accept_unbound`` (a
    column being converted), else :class:`UnboundRecordError`. Any other header raises
    :class:`BindingMismatchError` saying which part differs (names only, never values).
    """
    if plaintext.startswith(expected):
        return plaintext[len(expected) :]
    if not has_header(plaintext):
        if accept_unbound:
            return plaintext
        raise UnboundRecordError(
            f"{parse_header(expected)[0]}: the value is not bound to its row and column "
            "(written before bind= was set, or by another Asherah implementation); a bound "
            "field refuses such values",
            hint="convert the column with `manage.py asherah_rotate --bind LABEL`, or "
            "accept unbound values while converting with Bind(..., unbound='read')",
        )
    label, pairs, _ = parse_header(plaintext)
    want_label, want_pairs, _ = parse_header(expected)
    if label != want_label:
        raise BindingMismatchError(
            f"the value belongs to another column ({label}), not {want_label}: "
            "it was moved or copied there"
        )
    names = tuple(name for name, _ in pairs)
    want_names = tuple(name for name, _ in want_pairs)
    if names != want_names:
        raise BindingMismatchError(
            f"{want_label}: the value is bound to row field(s) ({', '.join(names)}), this "
            f"column binds ({', '.join(want_names)})",
            hint="bind= changed since the value was written; a value bound one way is "
            "never accepted under another binding: write it again",
        )
    differ = [n for (n, v), (_, w) in zip(pairs, want_pairs, strict=True) if v != w]
    raise BindingMismatchError(
        f"{want_label}: the value belongs to another row (differing: "
        f"{', '.join(differ or names)}): it was moved or copied there"
    )
