from django.contrib import admin
from django.urls import include, path

from asherah_django.health.views import ReadinessView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("ready/", ReadinessView.as_view(), name="readiness"),
    path("", include("clinics.urls")),
]

# Prometheus metrics (#18): the asherah_django metrics at /metrics when the `prometheus`
# extra is installed. Expose it to your monitoring network only.
try:
    from asherah_django.contrib.prometheus import install as install_metrics
    from asherah_django.contrib.prometheus import metrics_view
except ImportError:  # pip install asherah-django[prometheus]
    pass
else:
    install_metrics()
    urlpatterns.append(path("metrics", metrics_view, name="metrics"))
