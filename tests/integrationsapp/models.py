"""Models for the integration tests (DRF, django-filter, Celery): one of each encrypted
type under the open session's key, and a row-partitioned model with a per-tenant unique
blind index."""

from __future__ import annotations

from django.db import models

from asherah_django.fields import (
    BlindIndex,
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


class Contact(models.Model):
    """Session-partitioned values; ``email`` unique (casefolded index), ``code`` exact."""

    email = EncryptedEmailField(blind_index=True, unique=True)
    name = EncryptedCharField(max_length=20)
    code = EncryptedCharField(max_length=12, blind_index=True, null=True, blank=True)
    bio = EncryptedTextField(blank=True, default="")
    born = EncryptedDateField(null=True, blank=True)
    seen = EncryptedDateTimeField(null=True, blank=True)
    prefs = EncryptedJSONField(null=True, blank=True)
    score = EncryptedIntegerField(null=True, blank=True)
    balance = EncryptedDecimalField(max_digits=8, decimal_places=2, null=True, blank=True)
    vip = EncryptedBooleanField(default=False)

    def __str__(self) -> str:
        return f"contact {self.pk}"


class TenantNote(models.Model):
    """Row-partitioned values: each row under its tenant's key; email unique per tenant."""

    tenant = models.CharField(max_length=40)
    body = EncryptedTextField(partition="tenant")
    email = EncryptedEmailField(
        partition="tenant", blind_index=BlindIndex(scope="partition"), unique=True
    )

    def __str__(self) -> str:
        return f"note {self.pk}"
