from django.contrib import admin

from asherah_django.admin import EncryptedFieldsAdminMixin

from .models import Clinic, Note, Patient, StaffMember


@admin.register(Clinic)
class ClinicAdmin(admin.ModelAdmin):
    list_display = ["name", "id"]


@admin.register(StaffMember)
class StaffMemberAdmin(admin.ModelAdmin):
    list_display = ["user", "clinic"]


@admin.register(Patient)
class PatientAdmin(EncryptedFieldsAdminMixin, admin.ModelAdmin):
    list_display = ["id", "clinic", "name", "email", "date_of_birth"]
    list_filter = ["clinic"]
    sortable_by = ["id", "clinic"]  # encrypted columns cannot be sorted


@admin.register(Note)
class NoteAdmin(EncryptedFieldsAdminMixin, admin.ModelAdmin):
    list_display = ["id", "clinic", "patient", "body", "written"]
    list_filter = ["clinic"]
    sortable_by = ["id", "clinic", "written"]  # encrypted columns cannot be sorted
