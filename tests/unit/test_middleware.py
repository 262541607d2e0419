"""AsherahSessionMiddleware through Django's test clients, sync and async (ASGI)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.test import AsyncClient, Client, override_settings

from asherah_django.context import current_partition, session
from asherah_django.core.errors import NoActiveSessionError
from asherah_django.core.records import looks_like_data_row
from asherah_django.middleware import AsherahSessionMiddleware, user_partition
from tests.testapp.models import Secret
from tests.unit.fields.conftest import raw_column

pytestmark = pytest.mark.django_db
MIDDLEWARE = [*settings.MIDDLEWARE, "asherah_django.middleware.AsherahSessionMiddleware"]


def _asherah(resolver: str) -> dict[str, Any]:
    return {**settings.ASHERAH, "PARTITION_RESOLVER": resolver}


@pytest.fixture
def by_user() -> Iterator[None]:
    with override_settings(ROOT_URLCONF="tests.unit.fields.urls", MIDDLEWARE=MIDDLEWARE):
        yield


@pytest.fixture
def by_header() -> Iterator[None]:
    with override_settings(
        ROOT_URLCONF="tests.unit.fields.urls",
        MIDDLEWARE=MIDDLEWARE,
        ASHERAH=_asherah("tests.unit.fields.urls.header_partition"),
    ):
        yield


def test_the_middleware_is_sync_and_async_capable() -> None:
    assert AsherahSessionMiddleware.sync_capable and AsherahSessionMiddleware.async_capable

    async def get_response(request: Any) -> Any:
        return None

    assert asyncio.iscoroutinefunction(AsherahSessionMiddleware(get_response))
    assert not asyncio.iscoroutinefunction(AsherahSessionMiddleware(lambda request: None))


def test_default_resolver_uses_the_authenticated_users_pk(by_user: None) -> None:
    user = User.objects.create(username="alice")
    client = Client()
    client.force_login(user)
    data = client.get("/sync/", {"body": "alice's note"}).json()
    assert data == {"partition": str(user.pk), "bodies": ["alice's note"]}
    secret = Secret.objects.get()
    assert looks_like_data_row(raw_column(Secret, secret.pk, "body"))
    assert f'"_IK_{user.pk}_testsvc_testprod"' in raw_column(Secret, secret.pk, "body")
    assert current_partition() is None  # the scope ended with the request


def test_default_resolver_under_asgi(by_user: None) -> None:
    user = User.objects.create(username="bob")

    async def main() -> dict[str, Any]:
        client = AsyncClient()
        await client.aforce_login(user)
        response = await client.get("/async/", {"body": "bob's note"})
        data: dict[str, Any] = response.json()
        return data

    data = async_to_sync(main)()
    assert data["partition"] == str(user.pk)
    assert data["seen"] == [str(user.pk)] * 3
    assert data["bodies"] == ["bob's note"]


def test_anonymous_requests_get_no_scope_and_cannot_encrypt(by_user: None) -> None:
    client = Client()
    assert client.get("/none/").content == b"None"
    with pytest.raises(NoActiveSessionError), transaction.atomic():
        client.get("/sync/", {"body": "would be plaintext"})
    assert not Secret.objects.exists()
    assert user_partition(type("R", (), {})()) is None


def test_sync_and_async_views_under_wsgi_and_asgi(by_header: None) -> None:
    client = Client(headers={"X-Tenant": "t-sync"})
    assert client.get("/sync/", {"body": "one"}).json()["bodies"] == ["one"]
    assert client.get("/async/", {"body": "two"}).json()["bodies"] == ["one", "two"]

    async def main() -> list[Any]:
        aclient = AsyncClient()  # (AsyncClient(headers=...) does not reach request.headers)
        tenant = {"X-Tenant": "t-async"}
        first = await aclient.get("/async/", {"body": "three"}, headers=tenant)
        second = await aclient.get("/sync/", {"body": "four"}, headers=tenant)  # sync view
        return [first.json(), second.json()]

    first, second = async_to_sync(main)()
    assert first == {"partition": "t-async", "seen": ["t-async"] * 3, "bodies": ["three"]}
    assert second == {"partition": "t-async", "bodies": ["four", "three"]}


@pytest.mark.parametrize("resolver", ["header_partition", "async_header_partition"])
def test_concurrent_asgi_requests_of_two_tenants_never_cross(resolver: str) -> None:
    async def request(client: AsyncClient, tenant: str, n: int) -> dict[str, Any]:
        response = await client.get(
            "/async/", {"body": f"{tenant}-{n}", "sleep": "0.002"}, headers={"X-Tenant": tenant}
        )
        data: dict[str, Any] = response.json()
        return data

    async def main() -> list[dict[str, Any]]:
        client = AsyncClient()
        calls = [request(client, ("blue", "green")[n % 2], n) for n in range(24)]
        return await asyncio.gather(*calls)

    with override_settings(
        ROOT_URLCONF="tests.unit.fields.urls",
        MIDDLEWARE=MIDDLEWARE,
        ASHERAH=_asherah(f"tests.unit.fields.urls.{resolver}"),
    ):
        results = async_to_sync(main)()
    for n, data in enumerate(results):
        tenant = ("blue", "green")[n % 2]
        assert data["partition"] == tenant
        assert data["seen"] == [tenant] * 3
        assert f"{tenant}-{n}" in data["bodies"]
        assert all(body.startswith(f"{tenant}-") for body in data["bodies"])
    for secret in Secret.objects.all():
        record = raw_column(Secret, secret.pk, "body")
        assert f'"_IK_{secret.owner}_testsvc_testprod"' in record


def test_streaming_responses_are_produced_inside_the_scope(by_header: None) -> None:
    client = Client(headers={"X-Tenant": "streamer"})
    client.get("/sync/", {"body": "a"})
    client.get("/sync/", {"body": "b"})
    response = client.get("/stream/")
    assert current_partition() is None  # the request is over; its content is not sent yet
    content: Iterator[bytes] = iter(response.streaming_content)  # type: ignore[attr-defined]
    chunks = []
    for _ in range(2):  # one chunk at a time: the server's code runs between them
        chunks.append(next(content).decode())
        assert current_partition() is None  # the partition is not visible between chunks
    with session("caller"):  # a scope of the caller's own is neither used nor disturbed
        assert next(content, None) is None
        assert current_partition() == "caller"
    assert chunks == ["streamer:a\n", "streamer:b\n"]
    assert current_partition() is None  # nor after the last one
    response.close()


def test_streamed_chunks_ignore_and_keep_the_callers_scope(by_header: None) -> None:
    client = Client(headers={"X-Tenant": "streamer2"})
    client.get("/sync/", {"body": "a"})
    client.get("/sync/", {"body": "b"})
    response = client.get("/stream/")
    content: Iterator[bytes] = iter(response.streaming_content)  # type: ignore[attr-defined]
    with session("caller"):
        first = next(content).decode()
        assert current_partition() == "caller"
    second = next(content).decode()
    assert current_partition() is None
    assert [first, second] == ["streamer2:a\n", "streamer2:b\n"]
    response.close()


def test_async_streaming_responses_are_produced_inside_the_scope(by_header: None) -> None:
    Client(headers={"X-Tenant": "astreamer"}).get("/sync/", {"body": "x"})

    async def main() -> tuple[list[str], list[str | None]]:
        response = await AsyncClient().get("/astream/", headers={"X-Tenant": "astreamer"})
        content: AsyncIterator[bytes] = response.streaming_content  # type: ignore[attr-defined]
        chunks, seen = [], [current_partition()]
        async for chunk in content:  # the caller's context between chunks
            chunks.append(chunk.decode())
            seen.append(current_partition())
        return chunks, [*seen, current_partition()]

    assert async_to_sync(main)() == (["astreamer:x\n"], [None, None, None])
