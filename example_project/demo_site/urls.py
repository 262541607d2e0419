from django.contrib import admin
from django.urls import include, path

from asherah_django.views import ReadinessView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("ready/", ReadinessView.as_view(), name="readiness"),
    path("", include("clinics.urls")),
]
