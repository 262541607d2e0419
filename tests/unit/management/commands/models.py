"""A model for the rotation tests that tests/testapp does not have: ``auto_now``.

Its app label is not installed, so migrations and ``makemigrations --check`` never see it;
the test that uses it creates and drops its table.
"""

from __future__ import annotations

from django.db import models

from asherah_django.fields import EncryptedTextField


class StampedNote(models.Model):
    tenant_id = models.CharField(max_length=40)
    body = EncryptedTextField(partition="tenant_id")
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        app_label = "asherah_commands_tests"

    def __str__(self) -> str:
        return f"stamped {self.pk}"
