"""Async views for the asyncio load test (``ROOT_URLCONF`` overridden), behind
``AsherahSessionMiddleware`` with the partition taken from the ``X-Tenant`` header."""

from __future__ import annotations

import json

from django.http import HttpRequest, JsonResponse
from django.urls import path

from asherah_django.context import current_partition
from asherah_django.core import AsherahError
from tests.testapp.models import Secret, TenantNote

from .mix import plaintext


def header_partition(request: HttpRequest) -> str | None:
    """PARTITION_RESOLVER: the tenant named by the X-Tenant header."""
    return request.headers.get("X-Tenant") or None


async def write(request: HttpRequest) -> JsonResponse:
    """Write a Secret (the middleware's partition) and a TenantNote (its own tenant_id)."""
    partition = current_partition()
    assert partition is not None
    label = json.loads(request.body)["label"]
    secret = await Secret.objects.acreate(
        owner=f"{partition}|{label}", body=plaintext(partition, label)
    )
    note = await TenantNote.objects.acreate(
        tenant_id=partition, title=label, body=plaintext(partition, label)
    )
    return JsonResponse({"secret": secret.pk, "note": note.pk})


async def read(request: HttpRequest, pk: int) -> JsonResponse:
    """A Secret by pk, decrypted under the request's partition; and the tenant's notes."""
    partition = current_partition()
    secret = await Secret.objects.aget(pk=pk)
    try:
        body = secret.body
    except AsherahError as exc:
        return JsonResponse({"error": type(exc).__name__}, status=403)
    notes = [
        [note.title, note.body]
        async for note in TenantNote.objects.filter(tenant_id=partition).order_by("-pk")[:5]
    ]
    return JsonResponse({"owner": secret.owner, "body": body, "notes": notes})


urlpatterns = [
    path("rel/write/", write),
    path("rel/read/<int:pk>/", read),
]
