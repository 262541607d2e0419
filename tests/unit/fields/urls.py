"""URLs and views for the middleware and admin tests (``ROOT_URLCONF`` overridden)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.urls import path

from asherah_django.context import current_partition
from tests.testapp.models import AllTypes, Secret, TenantNote

if TYPE_CHECKING:  # generic only in django-stubs
    _ModelAdmin = admin.ModelAdmin[Any]
else:
    _ModelAdmin = admin.ModelAdmin


def header_partition(request: HttpRequest) -> str | None:
    """A PARTITION_RESOLVER: the tenant named by the X-Tenant header."""
    return request.headers.get("X-Tenant") or None


async def async_header_partition(request: HttpRequest) -> str | None:
    await asyncio.sleep(0)
    return header_partition(request)


def sync_view(request: HttpRequest) -> JsonResponse:
    partition = current_partition()
    if "body" in request.GET:
        Secret.objects.create(owner=partition or "", body=request.GET["body"])
    bodies = sorted(s.body for s in Secret.objects.filter(owner=partition or ""))
    return JsonResponse({"partition": partition, "bodies": bodies})


async def async_view(request: HttpRequest) -> JsonResponse:
    partition = current_partition()
    seen = [partition]
    if "body" in request.GET:
        await Secret.objects.acreate(owner=partition or "", body=request.GET["body"])
    await asyncio.sleep(float(request.GET.get("sleep", "0")))  # let other requests run
    seen.append(current_partition())
    bodies = sorted([s.body async for s in Secret.objects.filter(owner=partition or "")])
    seen.append(current_partition())
    return JsonResponse({"partition": partition, "seen": seen, "bodies": bodies})


def streaming_view(request: HttpRequest) -> StreamingHttpResponse:
    owner = current_partition() or ""

    def chunks() -> Iterator[str]:
        # runs while the response is sent, after the view and the middleware returned
        for secret in Secret.objects.filter(owner=owner).order_by("pk"):
            yield f"{current_partition()}:{secret.body}\n"

    return StreamingHttpResponse(chunks())


async def async_streaming_view(request: HttpRequest) -> StreamingHttpResponse:
    owner = current_partition() or ""

    async def chunks() -> AsyncIterator[str]:
        async for secret in Secret.objects.filter(owner=owner).order_by("pk"):
            await asyncio.sleep(0)
            yield f"{current_partition()}:{secret.body}\n"

    return StreamingHttpResponse(chunks())


def no_partition_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse(str(current_partition()))


class AllTypesAdmin(_ModelAdmin):
    list_display = ("label", "text", "number", "flag")
    sortable_by = ("label",)  # encrypted columns cannot be sorted in SQL


class TenantNoteAdmin(_ModelAdmin):
    list_display = ("tenant_id", "title", "body")
    sortable_by = ("tenant_id", "title")


site = admin.AdminSite(name="fields_admin")
site.register(AllTypes, AllTypesAdmin)
site.register(TenantNote, TenantNoteAdmin)

urlpatterns = [
    path("sync/", sync_view),
    path("async/", async_view),
    path("stream/", streaming_view),
    path("astream/", async_streaming_view),
    path("none/", no_partition_view),
    path("admin/", site.urls),
]
