"""AsherahSessionMiddleware: one partition scope per request, sync or async.

    MIDDLEWARE = [
        ...,
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "asherah_django.middleware.AsherahSessionMiddleware",   # after authentication
        ...,
    ]

For each request the middleware calls the ``PARTITION_RESOLVER`` setting (a dotted path
to ``callable(request) -> str | None``, sync or async; default :func:`user_partition`) and
runs the rest of the request inside ``asherah_django.session(partition)``. ``None`` opens
no scope: encrypted fields without ``partition=`` then raise NoActiveSessionError.

When the scope ends: after the response is returned, except for streaming responses,
whose content is produced later, while the server sends it. Their iterator is wrapped so
that each chunk is produced inside the same partition scope (and nothing else runs in it
between chunks). File responses are left alone.

A plain ModelAdmin's list or change page (GET) that raises because a value belongs to another
partition (or no session is open) is rendered again as ``EncryptedFieldsAdminMixin`` would,
with that value locked, instead of answering 500 (:meth:`process_exception`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from inspect import iscoroutinefunction
from typing import Any

from asgiref.sync import markcoroutinefunction, sync_to_async
from django.http import FileResponse, HttpRequest, HttpResponseBase, StreamingHttpResponse

from .conf import asherah_settings
from .context import session

__all__ = ["AsherahSessionMiddleware", "user_partition"]


def user_partition(request: HttpRequest) -> str | None:
    """The default resolver: the authenticated user's primary key as text, else None."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    return str(user.pk)


class AsherahSessionMiddleware:
    """Opens ``session(PARTITION_RESOLVER(request))`` around the rest of the request."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __repr__(self) -> str:
        return f"<AsherahSessionMiddleware get_response={self.get_response!r}>"

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        partition_id = asherah_settings.partition_resolver(request)
        with session(partition_id):
            response: HttpResponseBase = self.get_response(request)
        if partition_id is not None:
            _wrap_streaming(response, partition_id)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> Any:
        """A plain ModelAdmin's page that meets a value it cannot decrypt (another partition,
        no session) is rendered as EncryptedFieldsAdminMixin would, instead of a 500."""
        if getattr(request, "resolver_match", None) is None:
            return None
        # Imported here: importing the admin registers its ModelAdmin and needs
        # django.contrib.admin, which a project using this middleware may not install.
        from .admin.fields import render_locked

        return render_locked(request, exception)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        resolver = asherah_settings.partition_resolver
        if iscoroutinefunction(resolver):
            partition_id = await resolver(request)
        else:
            partition_id = await sync_to_async(resolver)(request)
        get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]] = self.get_response
        async with session(partition_id):
            response = await get_response(request)
        if partition_id is not None:
            _wrap_streaming(response, partition_id)
        return response


def _wrap_streaming(response: HttpResponseBase, partition_id: str) -> None:
    if not isinstance(response, StreamingHttpResponse) or isinstance(response, FileResponse):
        return
    content = response.streaming_content
    if response.is_async:
        response.streaming_content = _async_chunks(content, partition_id)
    else:
        response.streaming_content = _chunks(content, partition_id)


def _chunks(content: Any, partition_id: str) -> Iterator[Any]:
    iterator = iter(content)
    while True:
        with session(partition_id):
            try:
                chunk = next(iterator)
            except StopIteration:
                return
        yield chunk


async def _async_chunks(content: Any, partition_id: str) -> AsyncIterator[Any]:
    iterator = aiter(content)
    while True:
        async with session(partition_id):
            try:
                chunk = await anext(iterator)
            except StopAsyncIteration:
                return
        yield chunk
