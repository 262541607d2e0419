"""A real DRF API over the integration models: routers, viewsets, DjangoFilterBackend,
the browsable API; the partition comes from the X-Tenant header (AsherahSessionMiddleware
with PARTITION_RESOLVER pointing at :func:`tenant_from_header`)."""

from __future__ import annotations

import django_filters
from django.contrib import admin
from django.http import HttpRequest
from django.urls import include, path
from django_filters.rest_framework import DjangoFilterBackend
from prometheus_client import CollectorRegistry
from rest_framework import routers, serializers, viewsets

from asherah_django.contrib.admin_search import EncryptedSearchMixin
from asherah_django.contrib.django_filters import EncryptedFilterSet
from asherah_django.contrib.drf import EncryptedModelSerializer
from asherah_django.contrib.prometheus import metrics_view
from tests.integrationsapp.models import Contact, TenantNote

#: The registry the observability tests install their PrometheusObserver on.
METRICS = CollectorRegistry(auto_describe=True)


def tenant_from_header(request: HttpRequest) -> str | None:
    return request.headers.get("X-Tenant") or None


class PlainContactSerializer(serializers.ModelSerializer):  # as DRF is
    class Meta:
        model = Contact
        fields = "__all__"


class ContactSerializer(EncryptedModelSerializer):
    class Meta:
        model = Contact
        fields = "__all__"


class TenantNoteSerializer(EncryptedModelSerializer):
    class Meta:
        model = TenantNote
        fields = "__all__"


class ContactFilter(EncryptedFilterSet):
    bio = django_filters.CharFilter(field_name="bio", lookup_expr="icontains")
    email_in = django_filters.BaseInFilter(field_name="email", lookup_expr="in")
    score_gt = django_filters.NumberFilter(field_name="score", lookup_expr="gt")
    order = django_filters.OrderingFilter(fields=["id"])

    class Meta:
        model = Contact
        fields = {"email": ["exact", "iexact"], "code": ["exact"]}


class PlainContactFilter(django_filters.FilterSet):  # without the mixin: the 500 of today
    bio = django_filters.CharFilter(field_name="bio", lookup_expr="icontains")

    class Meta:
        model = Contact
        fields = ["email"]


class ContactViewSet(viewsets.ModelViewSet):
    queryset = Contact.objects.order_by("id")
    serializer_class = ContactSerializer
    filter_backends = [DjangoFilterBackend]
    filterset_class = ContactFilter


class PlainContactViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Contact.objects.order_by("id")
    serializer_class = ContactSerializer
    filter_backends = [DjangoFilterBackend]
    filterset_class = PlainContactFilter


class TenantNoteViewSet(viewsets.ModelViewSet):
    queryset = TenantNote.objects.order_by("id")
    serializer_class = TenantNoteSerializer
    filter_backends = [DjangoFilterBackend]
    filterset_fields = ["tenant"]


class ContactAdmin(EncryptedSearchMixin, admin.ModelAdmin):
    search_fields = ["=email", "code", "bio", "id"]


site = admin.AdminSite(name="integrations_admin")
site.register(Contact, ContactAdmin)

router = routers.DefaultRouter()
router.register("contacts", ContactViewSet)
router.register("plain-contacts", PlainContactViewSet, basename="plain-contact")
router.register("notes", TenantNoteViewSet)

urlpatterns = [
    path("metrics", metrics_view, {"registry": METRICS}),  # as example_project's /metrics
    path("api/", include(router.urls)),
    path("admin/", site.urls),
]
