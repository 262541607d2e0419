"""Models for the field tests: every encrypted field type, row-partitioned models (by a
column, a foreign key and a callable), legacy plaintext, and a session-partitioned note."""

from __future__ import annotations

from django.db import models

from asherah_django.fields import (
    EncryptedBigIntegerField,
    EncryptedBinaryField,
    EncryptedBooleanField,
    EncryptedCharField,
    EncryptedDateField,
    EncryptedDateTimeField,
    EncryptedDecimalField,
    EncryptedEmailField,
    EncryptedIntegerField,
    EncryptedJSONField,
    EncryptedTextField,
)


class AllTypes(models.Model):
    """One nullable field of every encrypted type, under the open session's partition."""

    label = models.CharField(max_length=40, blank=True, default="")
    text = EncryptedTextField(null=True, blank=True)
    char = EncryptedCharField(max_length=40, null=True, blank=True)
    email = EncryptedEmailField(null=True, blank=True)
    blob = EncryptedBinaryField(null=True, blank=True)
    data = EncryptedJSONField(null=True, blank=True)
    number = EncryptedIntegerField(null=True, blank=True)
    big_number = EncryptedBigIntegerField(null=True, blank=True)
    amount = EncryptedDecimalField(max_digits=12, decimal_places=3, null=True, blank=True)
    flag = EncryptedBooleanField(null=True, blank=True)
    day = EncryptedDateField(null=True, blank=True)
    moment = EncryptedDateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"AllTypes {self.pk}"


class Tenant(models.Model):
    name = models.CharField(max_length=40, unique=True)

    def __str__(self) -> str:
        return self.name


class TenantNote(models.Model):
    """Rows of many tenants: each value is encrypted under its row's ``tenant_id``."""

    tenant_id = models.CharField(max_length=40)
    title = models.CharField(max_length=100, blank=True, default="")
    body = EncryptedTextField(partition="tenant_id")
    extra = EncryptedJSONField(partition="tenant_id", null=True, blank=True)

    def __str__(self) -> str:
        return self.title or f"note {self.pk}"


class TenantFKNote(models.Model):
    """Partitioned by a foreign key: the partition is the tenant's primary key."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE)
    body = EncryptedTextField(partition="tenant")

    def __str__(self) -> str:
        return f"note {self.pk}"


def owner_partition(instance: CallableNote) -> str:
    return f"owner-{instance.owner_id}"


class CallableNote(models.Model):
    """Partitioned by a callable on the instance."""

    owner_id = models.IntegerField()
    body = EncryptedTextField(partition=owner_partition)

    def __str__(self) -> str:
        return f"note {self.pk}"


class Secret(models.Model):
    """Session-partitioned: the partition is whatever scope is open (middleware tests)."""

    owner = models.CharField(max_length=40)
    body = EncryptedTextField()

    def __str__(self) -> str:
        return f"secret {self.pk}"


class LegacyNote(models.Model):
    """Columns that may still hold plaintext from before the fields were encrypted."""

    body = EncryptedTextField(legacy="read", null=True, blank=True)
    number = EncryptedIntegerField(legacy="read", null=True, blank=True)
    strict = EncryptedTextField(null=True, blank=True)
    owner = models.CharField(max_length=40, blank=True, default="")

    def __str__(self) -> str:
        return f"legacy {self.pk}"
