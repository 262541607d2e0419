"""URLs for the readiness view tests (no result caching, so each request checks)."""

from django.urls import path

from asherah_django.health.views import ReadinessView

urlpatterns = [
    path("ready/", ReadinessView.as_view(cache_seconds=0)),
    path("ready/cached/", ReadinessView.as_view(cache_seconds=60)),
]
