"""A small multi-tenant app: clinics (the partitions), their staff, patients and notes.

Patient data is encrypted under the clinic's intermediate key: ``partition="clinic_id"``
lets the admin and background jobs read rows of many clinics in one queryset, while a row
copied into another clinic cannot be decrypted there.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from asherah_django.fields import (
    EncryptedCharField,
    EncryptedDateField,
    EncryptedEmailField,
    EncryptedJSONField,
    EncryptedTextField,
)


class Clinic(models.Model):
    name = models.CharField(max_length=100)

    def __str__(self) -> str:
        return self.name

    @property
    def partition(self) -> str:
        return str(self.pk)


class StaffMember(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="staff")

    def __str__(self) -> str:
        return f"{self.user} at {self.clinic}"


class Patient(models.Model):
    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="patients")
    name = EncryptedCharField(max_length=100, partition="clinic_id")
    email = EncryptedEmailField(partition="clinic_id", blank=True)
    date_of_birth = EncryptedDateField(partition="clinic_id", null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return f"Patient #{self.pk}"


class Note(models.Model):
    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="notes")
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="notes")
    body = EncryptedTextField(partition="clinic_id")
    vitals = EncryptedJSONField(partition="clinic_id", null=True, blank=True)
    written = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-written"]

    def __str__(self) -> str:
        return f"Note #{self.pk}"
