"""Create the demo's clinics, staff and patients (idempotent); print the logins."""

from __future__ import annotations

import datetime
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from clinics.models import Clinic, Note, Patient, StaffMember

CLINICS = {
    "Riverside Clinic": [
        ("Ada Lovelace", "ada@example.org", datetime.date(1815, 12, 10), "Allergic to penicillin."),
        ("Alan Turing", "alan@example.org", datetime.date(1912, 6, 23), "Follow-up in two weeks."),
    ],
    "Hilltop Practice": [
        ("Grace Hopper", "grace@example.org", datetime.date(1906, 12, 9), "Blood pressure 120/80."),
        ("Katherine Johnson", "kj@example.org", datetime.date(1918, 8, 26), "Annual check-up."),
    ],
}
STAFF = {"alice": "Riverside Clinic", "bob": "Hilltop Practice"}


class Command(BaseCommand):
    help = "Create demo clinics, staff users and encrypted patient records."

    def handle(self, *args: Any, **options: Any) -> None:
        users = get_user_model()
        logins = {}
        admin, _ = users.objects.get_or_create(
            username="admin", defaults={"email": "admin@example.org"}
        )
        admin.is_staff = admin.is_superuser = True
        logins["admin"] = secrets.token_urlsafe(9)
        admin.set_password(logins["admin"])
        admin.save()
        for name, patients in CLINICS.items():
            clinic, created = Clinic.objects.get_or_create(name=name)
            if created:
                for full_name, email, born, note in patients:
                    patient = Patient.objects.create(
                        clinic=clinic, name=full_name, email=email, date_of_birth=born
                    )
                    Note.objects.create(
                        clinic=clinic, patient=patient, body=note, vitals={"pulse": 64}
                    )
        for username, clinic_name in STAFF.items():
            user, _ = users.objects.get_or_create(username=username)
            logins[username] = secrets.token_urlsafe(9)
            user.set_password(logins[username])
            user.save()
            StaffMember.objects.update_or_create(
                user=user, defaults={"clinic": Clinic.objects.get(name=clinic_name)}
            )
        for username, password in logins.items():
            self.stdout.write(f"  {username:6} {password}")
