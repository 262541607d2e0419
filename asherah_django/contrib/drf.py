"""Django REST framework over encrypted fields (``pip install asherah-django[drf]``).

A plain ``ModelSerializer`` already does the right thing for most of it: each encrypted
field is a subclass of its plain Django field, so DRF maps it to the serializer field of
the plaintext type (``CharField`` with ``max_length``, ``EmailField``, ``JSONField``,
``DateField``, ``DecimalField``...), and ``unique=True`` with a blind index gives DRF's
``UniqueValidator``, whose ``filter(field=value)`` is one query on the indexed column.
Two things need this module:

* DRF would show the blind index columns (``email_bidx``) as read-only fields of a
  ``fields = "__all__"`` serializer: :class:`EncryptedSerializerMixin` leaves them out.
* :class:`EncryptedModelSerializer` (or :class:`EncryptedSerializerMixin`) adds
  :class:`PartitionUniqueValidator` for ``unique=True`` fields whose blind index is per
  row partition (``partition="tenant_id"`` with ``BlindIndex(scope="partition")``): there
  the value is unique per tenant, which DRF cannot see from the model field.
* :func:`exception_handler` (``REST_FRAMEWORK["EXCEPTION_HANDLER"]``) turns an unsupported
  lookup on an encrypted field (``?bio__icontains=x`` through a filter, ``ordering=bio``)
  into a 400 with a message saying what is possible, and any other encryption error into
  a 500 whose body names no partition, key or record (the full error is logged).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import FieldError
from django.db.models import Model
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from ..core.errors import AsherahError
from ..fields.base import encrypted_fields

__all__ = [
    "EncryptedModelSerializer",
    "EncryptedSerializerMixin",
    "PartitionUniqueValidator",
    "exception_handler",
    "is_encrypted_lookup_error",
]

logger = logging.getLogger("asherah_django.contrib.drf")

#: The body of a 500 caused by an encryption error: nothing about the data or keys.
ENCRYPTION_ERROR_DETAIL = "The server could not encrypt or decrypt this data."


class PartitionUniqueValidator:
    """``unique=True`` of a row-partitioned field with a per-partition blind index: no
    other row of the same partition holds an equal value (one indexed query)."""

    requires_context = True
    message = "A {model_name} with this {field_name} already exists."

    def __init__(self, queryset: Any, field_name: str, partition_field: str) -> None:
        self.queryset = queryset
        self.field_name = field_name
        self.partition_field = partition_field

    def __call__(self, attrs: Mapping[str, Any], serializer: Any) -> None:
        instance = getattr(serializer, "instance", None)
        value = attrs.get(self.field_name, getattr(instance, self.field_name, None))
        partition = attrs.get(self.partition_field, getattr(instance, self.partition_field, None))
        if value is None or partition in (None, ""):
            return
        rows = self.queryset.filter(**{self.partition_field: partition, self.field_name: value})
        if instance is not None and instance.pk is not None:
            rows = rows.exclude(pk=instance.pk)
        if rows.exists():
            meta = self.queryset.model._meta
            field = meta.get_field(self.field_name)
            raise serializers.ValidationError(
                {
                    self.field_name: self.message.format(
                        model_name=meta.verbose_name, field_name=field.verbose_name
                    )
                },
                code="unique",
            )

    def __repr__(self) -> str:
        return f"<PartitionUniqueValidator {self.field_name} per {self.partition_field}>"


def partition_unique_fields(model: type[Model]) -> list[tuple[str, str]]:
    """(field, partition field) of each field unique per row partition through its index."""
    found = []
    for field in encrypted_fields(model):
        if (
            field.blind_unique
            and not field.unique
            and isinstance(field.partition, str)
            and field.blind_index is not None
        ):
            found.append((field.name, field.partition))
    return found


class EncryptedSerializerMixin:
    """For a ``ModelSerializer``: leaves the blind index columns out of ``fields =
    "__all__"`` (and ``exclude``), and adds :class:`PartitionUniqueValidator` where needed."""

    def get_field_names(self, declared_fields: Mapping[str, Any], info: Any) -> list[str]:
        names: list[str] = list(super().get_field_names(declared_fields, info))  # type: ignore[misc]
        meta = getattr(self, "Meta", None)
        model = getattr(meta, "model", None)
        if model is None or not isinstance(getattr(meta, "fields", None), str):
            return names  # an explicit list is taken as it is
        hidden = blind_index_names(model)
        return [name for name in names if name not in hidden or name in declared_fields]

    def get_validators(self) -> list[Any]:
        validators = list(super().get_validators())  # type: ignore[misc]
        meta = getattr(self, "Meta", None)
        model = getattr(meta, "model", None)
        if model is None:
            return validators
        for name, partition in partition_unique_fields(model):
            validators.append(
                PartitionUniqueValidator(model._default_manager.all(), name, partition)
            )
        return validators


class EncryptedModelSerializer(EncryptedSerializerMixin, serializers.ModelSerializer):  # type: ignore[misc]
    """``ModelSerializer`` with :class:`EncryptedSerializerMixin`."""


def is_encrypted_lookup_error(exc: BaseException) -> bool:
    """Whether ``exc`` is the ``FieldError`` of an unsupported lookup, transform or
    ordering on an encrypted field (not some other ``FieldError``)."""
    text = str(exc)
    return isinstance(exc, FieldError) and "encrypted field" in text


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus: encrypted-field lookups are 400s, encryption errors safe 500s."""
    if is_encrypted_lookup_error(exc):
        return Response(
            {"detail": str(exc), "code": "unsupported_lookup"}, status=status.HTTP_400_BAD_REQUEST
        )
    if isinstance(exc, AsherahError):
        logger.error("encryption error in %s: %s", _view_name(context), exc, exc_info=exc)
        return Response(
            {"detail": ENCRYPTION_ERROR_DETAIL, "code": "encryption_error"},
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    return drf_exception_handler(exc, context)


def _view_name(context: Mapping[str, Any]) -> str:
    view = context.get("view")
    return type(view).__name__ if view is not None else "a view"


def blind_index_names(model: type[Model]) -> set[str]:
    """The names of ``model``'s blind index columns (keyed digests: not for API clients)."""
    return {f.blind_config.field_name for f in encrypted_fields(model) if f.blind_index}
