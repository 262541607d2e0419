"""The admin's search box over blind-indexed encrypted fields.

    class ContactAdmin(EncryptedSearchMixin, admin.ModelAdmin):
        search_fields = ["=email", "code", "city"]    # city: a plain field

Django's admin searches ``search_fields`` with ``icontains`` (or ``iexact``/``istartswith``
for ``=``/``^``), which an encrypted field cannot answer (a 500 without this mixin). With
it, an encrypted field with a blind index is matched exactly against the whole search
term (case-insensitively when the index casefolds), ORed with the usual search on the
plain fields; encrypted fields without a blind index are left out of the search.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextvars import ContextVar
from typing import Any

from django.db.models import Model, Q, QuerySet
from django.http import HttpRequest

from ..fields.base import EncryptedField

__all__ = ["EncryptedSearchMixin"]

_plain_only: ContextVar[bool] = ContextVar("asherah_plain_search_fields", default=False)


class EncryptedSearchMixin:
    """Mix into a ``ModelAdmin`` (before it)."""

    model: type[Model]

    def _split_search_fields(self, request: HttpRequest) -> tuple[list[str], list[EncryptedField]]:
        fields: Sequence[str] = super().get_search_fields(request)  # type: ignore[misc]
        plain: list[str] = []
        encrypted: list[EncryptedField] = []
        for entry in fields:
            name = entry.lstrip("=^@")
            try:
                field = self.model._meta.get_field(name)
            except Exception:
                plain.append(entry)
                continue
            if isinstance(field, EncryptedField):
                if field.blind_index is not None:
                    encrypted.append(field)
            else:
                plain.append(entry)
        return plain, encrypted

    def get_search_fields(self, request: HttpRequest) -> Sequence[str]:
        # All of them for the change list (its search box); the plain ones while Django's
        # own search runs (inside get_search_results below).
        if _plain_only.get():
            return self._split_search_fields(request)[0]
        fields: Sequence[str] = super().get_search_fields(request)  # type: ignore[misc]
        return fields

    def _plain_search(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        token = _plain_only.set(True)
        try:
            result: tuple[QuerySet[Any], bool] = super().get_search_results(  # type: ignore[misc]
                request, queryset, search_term
            )
            return result
        finally:
            _plain_only.reset(token)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        plain, encrypted = self._split_search_fields(request)
        term = search_term.strip()
        if not term or not encrypted:
            return self._plain_search(request, queryset, search_term)
        condition = Q()
        for field in encrypted:
            lookup = "iexact" if field.blind_config.casefold else "exact"
            condition |= Q(**{f"{field.name}__{lookup}": term})
        matches = queryset.filter(condition)
        if not plain:
            return matches, False
        found, duplicates = self._plain_search(request, queryset, search_term)
        return found | matches, duplicates
