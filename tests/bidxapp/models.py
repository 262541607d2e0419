"""Models for the blind index tests: global and per-partition index keys, session- and
row-partitioned fields, text, integer and date values, a unique index, a relation."""

from __future__ import annotations

from django.db import models

from asherah_django.fields import (
    BlindIndex,
    EncryptedCharField,
    EncryptedDateField,
    EncryptedEmailField,
    EncryptedIntegerField,
    EncryptedTextField,
)


class Customer(models.Model):
    """Session-partitioned values, global index keys. ``email`` is unique (stripped and
    casefolded); ``nickname`` matches exactly; ``handle`` casefolds (so iexact works)."""

    name = models.CharField(max_length=40, blank=True, default="")
    email = EncryptedEmailField(blind_index=True, unique=True)
    nickname = EncryptedCharField(max_length=40, blind_index=True, null=True, blank=True)
    handle = EncryptedCharField(
        max_length=40, blind_index=BlindIndex(casefold=True, digest_size=12), null=True, blank=True
    )
    account = EncryptedIntegerField(blind_index=True, null=True, blank=True)
    birthday = EncryptedDateField(blind_index=True, null=True, blank=True)
    notes = EncryptedTextField(null=True, blank=True)

    def __str__(self) -> str:
        return self.name or f"customer {self.pk}"


class Order(models.Model):
    """Reaches a blind-indexed field through a relation (``customer__email=...``)."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="orders")
    label = models.CharField(max_length=40, blank=True, default="")

    def __str__(self) -> str:
        return self.label or f"order {self.pk}"


class Subscriber(models.Model):
    """The same kind of value as Customer.email in another field: its own derived key."""

    email = EncryptedEmailField(blind_index=True, null=True, blank=True)
    tag = models.CharField(max_length=40, blank=True, default="")

    def __str__(self) -> str:
        return f"subscriber {self.pk}"


class TenantContact(models.Model):
    """Row-partitioned values and per-partition index keys: unique per tenant."""

    tenant_id = models.CharField(max_length=40)
    email = EncryptedEmailField(
        partition="tenant_id", blind_index=BlindIndex(scope="partition"), unique=True
    )

    def __str__(self) -> str:
        return f"contact {self.pk}"


class SessionContact(models.Model):
    """Session-partitioned values and per-partition index keys."""

    email = EncryptedEmailField(blind_index=BlindIndex(scope="partition"))

    def __str__(self) -> str:
        return f"contact {self.pk}"


class LegacyContact(models.Model):
    """A column that may still hold plaintext (legacy="read"), as before asherah_encrypt."""

    owner = models.CharField(max_length=40, blank=True, default="")
    email = EncryptedEmailField(blind_index=True, legacy="read", null=True, blank=True)

    def __str__(self) -> str:
        return f"legacy {self.pk}"
