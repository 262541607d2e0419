"""The PARTITION_RESOLVER of the example project: the signed-in staff member's clinic."""

from __future__ import annotations

from django.http import HttpRequest

from .models import StaffMember


def clinic_of_staff_member(request: HttpRequest) -> str | None:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    member = StaffMember.objects.filter(user=user).only("clinic_id").first()
    return None if member is None else str(member.clinic_id)
