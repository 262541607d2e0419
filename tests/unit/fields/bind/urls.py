"""An admin site with the bound-value test model (EncryptedFieldsAdminMixin)."""

from __future__ import annotations

from django.contrib import admin
from django.urls import path

from asherah_django.admin import EncryptedFieldsAdminMixin
from tests.bindapp.models import Patient

site = admin.AdminSite(name="bind_admin")


@admin.register(Patient, site=site)
class PatientAdmin(EncryptedFieldsAdminMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["tenant_id", "diagnosis", "notes"]
    fields = ["tenant_id", "diagnosis", "notes", "summary"]


urlpatterns = [path("admin/", site.urls)]
