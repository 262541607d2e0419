"""django-filter over encrypted fields (``pip install asherah-django[filter]``).

    from asherah_django.contrib.django_filters import EncryptedFilterSet

    class ContactFilter(EncryptedFilterSet):
        bio = django_filters.CharFilter(lookup_expr="icontains")   # not possible: a 400

        class Meta:
            model = Contact
            fields = {"email": ["exact", "iexact", "in"], "code": ["exact"]}

A blind-indexed field answers ``exact``, ``in`` and, when its index casefolds (e-mail
fields by default), ``iexact``; each is one query on the indexed column. Every other
lookup on an encrypted field (``icontains``, ranges, transforms, ordering, or any lookup
on a field with no blind index) cannot be answered by a database that holds ciphertext:
with :class:`EncryptedFilterSet` (or :class:`EncryptedFilterSetMixin` before your own
``FilterSet`` base) such a request is a form error, so DRF's ``DjangoFilterBackend``
answers 400 with a message saying what is possible, and django-filter's views show the
form error, instead of the 500 a plain ``FilterSet`` gives. ``Meta.fields`` that ask for
an impossible lookup already fail when the class is defined (django-filter's check).
"""

from __future__ import annotations

from typing import Any

import django_filters
from django import forms
from django.core.exceptions import FieldDoesNotExist
from django.db.models import Model
from django_filters.constants import EMPTY_VALUES
from django_filters.utils import get_model_field

from ..fields.base import EncryptedField

__all__ = [
    "EncryptedFilterSet",
    "EncryptedFilterSetMixin",
    "lookup_problem",
]


def lookup_problem(field: EncryptedField, lookup_expr: str) -> str | None:
    """Why ``lookup_expr`` cannot be used on ``field`` (``None`` when it can)."""
    label = f"{field.model._meta.label}.{field.name}"
    if lookup_expr == "isnull":
        return None
    if field.blind_index is None:
        return (
            f"{label} is encrypted and has no blind index, so the database cannot match "
            f"its values ({lookup_expr!r} is not possible; only isnull is)"
        )
    allowed = ["exact", "in"]
    if field.blind_config.casefold:
        allowed.append("iexact")
    if lookup_expr in allowed:
        return None
    return (
        f"{label} is encrypted: its blind index answers only exact matches "
        f"({', '.join(allowed)}), not {lookup_expr!r}"
    )


def _encrypted_target(model: type[Model] | None, field_name: str) -> EncryptedField | None:
    if model is None or not field_name:
        return None
    try:
        field = get_model_field(model, field_name)
    except FieldDoesNotExist:
        return None
    return field if isinstance(field, EncryptedField) else None


def _ordering_problem(model: type[Model] | None, filter_: Any, value: Any) -> str | None:
    param_map = getattr(filter_, "param_map", {})
    for param in value or ():
        name = param_map.get(str(param).lstrip("-"), str(param).lstrip("-"))
        field = _encrypted_target(model, name)
        if field is not None:
            return (
                f"{field.model._meta.label}.{field.name} is encrypted: the database "
                "cannot sort by it"
            )
    return None


class EncryptedFilterSetMixin:
    """Put before ``django_filters.FilterSet``: impossible lookups on encrypted fields
    become form errors (a 400 through ``DjangoFilterBackend``) rather than 500s."""

    def get_form_class(self) -> type[forms.Form]:
        form_class: type[forms.Form] = super().get_form_class()  # type: ignore[misc]
        filterset = self

        class EncryptedLookupsForm(form_class):  # type: ignore[valid-type,misc]
            def clean(self) -> dict[str, Any]:
                cleaned: dict[str, Any] = super().clean()
                for name, problem in filterset.encrypted_lookup_problems(cleaned).items():
                    self.add_error(name, problem)
                return cleaned

        EncryptedLookupsForm.__name__ = form_class.__name__
        return EncryptedLookupsForm

    def encrypted_lookup_problems(self, cleaned: dict[str, Any]) -> dict[str, str]:
        """The filters given a value whose lookup an encrypted field cannot answer."""
        model = getattr(getattr(self, "_meta", None), "model", None)
        problems: dict[str, str] = {}
        filters: dict[str, Any] = getattr(self, "filters", {})
        for name, filter_ in filters.items():
            value = cleaned.get(name)
            if value in EMPTY_VALUES or getattr(filter_, "method", None) is not None:
                continue  # (a filter with its own method= decides what it queries)
            if isinstance(filter_, django_filters.OrderingFilter):
                problem = _ordering_problem(model, filter_, value)
            else:
                field = _encrypted_target(model, filter_.field_name)
                if field is None:
                    continue
                lookup = filter_.lookup_expr
                if isinstance(value, django_filters.fields.Lookup):  # LookupChoiceFilter
                    lookup = value.lookup_expr
                problem = lookup_problem(field, lookup)
            if problem is not None:
                problems[name] = problem
        return problems


class EncryptedFilterSet(EncryptedFilterSetMixin, django_filters.FilterSet):  # type: ignore[misc]
    """``django_filters.FilterSet`` with :class:`EncryptedFilterSetMixin`."""
