"""Views written as if nothing were encrypted: the middleware opened the clinic's session."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from .models import Note, Patient, StaffMember


@login_required
def patient_list(request: HttpRequest) -> HttpResponse:
    member = StaffMember.objects.filter(user=request.user).select_related("clinic").first()
    if member is None:
        return redirect("admin:index")
    patients = Patient.objects.filter(clinic=member.clinic)
    return render(
        request, "clinics/patient_list.html", {"clinic": member.clinic, "patients": patients}
    )


@login_required
def patient_detail(request: HttpRequest, pk: int) -> HttpResponse:
    member = get_object_or_404(StaffMember, user=request.user)
    patient = get_object_or_404(Patient, pk=pk, clinic=member.clinic)
    if request.method == "POST" and request.POST.get("body"):
        Note.objects.create(clinic=member.clinic, patient=patient, body=request.POST["body"])
        return redirect("clinics:patient", pk=pk)
    return render(request, "clinics/patient_detail.html", {"patient": patient})
