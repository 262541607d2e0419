"""A URLconf for the mixin tests: an admin site of its own with the test models' ModelAdmins
(the project's admin.site stays as the app leaves it)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.urls import path

from asherah_django.admin import EncryptedFieldsAdminMixin, register
from tests.testapp.models import Secret, TenantNote

site = admin.AdminSite(name="mixin_admin")
register(site)


@admin.register(TenantNote, site=site)
class TenantNoteAdmin(EncryptedFieldsAdminMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["title", "tenant_id", "body"]
    list_display_links = ["body"]
    fields = ["title", "tenant_id", "body", "extra"]


@admin.register(Secret, site=site)
class SecretAdmin(EncryptedFieldsAdminMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    """Session-partitioned: the partition of each secret is its owner."""

    list_display = ["owner", "body"]

    def get_asherah_partition(self, request: HttpRequest, obj: Any) -> str | None:
        return obj.owner if obj is not None and obj.owner else None


class BareSecretAdmin(EncryptedFieldsAdminMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    """The same model without a partition hook: no session is open in the admin."""

    list_display = ["__str__", "owner", "body"]


bare_site = admin.AdminSite(name="bare_admin")
bare_site.register(Secret, BareSecretAdmin)

urlpatterns = [
    path("admin/", site.urls),
    path("bare/", bare_site.urls),
]
