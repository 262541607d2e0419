"""Models for the bound-value tests (``bind=``): row-bound fields on a UUID primary key,
a natural key and a tenant id, a column-only binding, an unbound field beside them, a
blind-indexed bound field, and a column being converted (``unbound="read"``)."""

from __future__ import annotations

import uuid

from django.db import models

from asherah_django.fields import (
    Bind,
    EncryptedBinaryField,
    EncryptedCharField,
    EncryptedEmailField,
    EncryptedJSONField,
    EncryptedTextField,
)


class Patient(models.Model):
    """Row-partitioned (``tenant_id``) and bound to the UUID primary key."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    tenant_id = models.CharField(max_length=64)
    diagnosis = EncryptedTextField(partition="tenant_id", bind=("id",))
    notes = EncryptedTextField(partition="tenant_id", bind=("id",), null=True, blank=True)
    # bound to the row and the tenant: a natural key of two fields
    allergies = EncryptedJSONField(partition="tenant_id", bind=("id", "tenant_id"), null=True)
    # the column only: a swap between rows goes undetected, between columns does not
    summary = EncryptedTextField(partition="tenant_id", bind=True, null=True, blank=True)
    # not bound: kept to show what bind= changes
    remarks = EncryptedTextField(partition="tenant_id", null=True, blank=True)
    email = EncryptedEmailField(
        partition="tenant_id", bind=("id",), blind_index=True, null=True, blank=True
    )
    scan = EncryptedBinaryField(partition="tenant_id", bind=("id",), null=True)

    def __str__(self) -> str:
        return f"patient {self.pk}"


class Account(models.Model):
    """Session-partitioned, bound to a natural key (``number``); auto-increment pk."""

    number = models.CharField(max_length=32, unique=True)
    secret = EncryptedCharField(max_length=200, bind=Bind(row=("number",)))
    memo = EncryptedTextField(bind=Bind(label="bindapp.account.memo-v1"), null=True)

    def __str__(self) -> str:
        return self.number


class Migrating(models.Model):
    """A column being converted to bound records: unbound values still read."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    body = EncryptedTextField(bind=Bind(row=("id",), unbound="read"), null=True)
    other = EncryptedTextField(bind=Bind(row=("id",), unbound="read"), null=True)

    def __str__(self) -> str:
        return str(self.pk)
