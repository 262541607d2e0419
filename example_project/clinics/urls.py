from django.urls import path

from . import views

app_name = "clinics"
urlpatterns = [
    path("", views.patient_list, name="patients"),
    path("patients/<int:pk>/", views.patient_detail, name="patient"),
]
