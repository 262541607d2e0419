"""The partition scope: which partition's keys encrypted fields use right now.

    import asherah_django

    with asherah_django.session("tenant-42"):
        Note.objects.create(body="hello")        # encrypted under tenant-42's key

    async with asherah_django.session("tenant-42"):
        note = await Note.objects.aget(pk=1)

    @asherah_django.session("tenant-42")          # sync or async function
    def nightly_job() -> None: ...

The state lives in a :class:`contextvars.ContextVar`, so threads, asyncio tasks and ASGI
requests each see their own scope (asgiref's ``sync_to_async``/``async_to_sync`` carry it
across the sync/async boundary). Scopes nest: the innermost wins and leaving it restores
the outer one. A scope holds only the partition id; the keys come from the process-wide
:func:`asherah_django.get_session_factory`, looked up when a value is encrypted or read.

With no scope open, encrypting or decrypting a field that has no ``partition=`` of its own
raises :class:`~asherah_django.core.errors.NoActiveSessionError`: a value is never stored
in plaintext for lack of a key.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from contextvars import ContextVar, Token
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast, overload

from . import runtime
from .core.errors import InvalidPartitionError, NoActiveSessionError

if TYPE_CHECKING:
    from .core.session import Session

__all__ = ["current_partition", "current_session", "session"]

P = ParamSpec("P")
R = TypeVar("R")

#: The innermost open partition id of this context, or None.
_partition: ContextVar[str | None] = ContextVar("asherah_django_partition", default=None)

_NO_SESSION_HINT = (
    "open one with `with asherah_django.session(partition_id):`, add "
    "asherah_django.middleware.AsherahSessionMiddleware to MIDDLEWARE, or give the field "
    "a partition= of its own"
)


def current_partition() -> str | None:
    """The partition id of the innermost open scope, or ``None``."""
    return _partition.get()


def require_partition(what: str = "encrypted field") -> str:
    """The open partition id; :class:`NoActiveSessionError` when there is none."""
    partition_id = _partition.get()
    if partition_id is None:
        raise NoActiveSessionError(
            f"{what}: no asherah_django.session() is open, so there is no key to use",
            hint=_NO_SESSION_HINT,
        )
    return partition_id


def current_session() -> Session:
    """The core :class:`~asherah_django.core.session.Session` of the open scope.

    Raises :class:`NoActiveSessionError` when no scope is open.
    """
    return runtime.get_session_factory().get_session(require_partition("current_session()"))


class session:
    """Open a partition scope: ``with``, ``async with``, or as a decorator.

    ``partition_id`` must be a non-empty string (a tenant id, a user's pk as text, ...).
    ``None`` is accepted and means "no partition": the block runs with no scope open
    (inner code then gets :class:`NoActiveSessionError` for encrypted fields). This lets
    callers write ``with session(resolver(request)):`` without a branch.

    Entering returns ``self``; :attr:`partition_id` is the partition. One object may be
    entered several times (nested or one after the other); as a decorator, each call of
    the function opens a fresh scope, so a decorated function is safe to run from many
    threads and tasks at once.
    """

    __slots__ = ("_tokens", "partition_id")

    def __init__(self, partition_id: str | None) -> None:
        if partition_id is not None:
            if not isinstance(partition_id, str):
                raise InvalidPartitionError(
                    f"partition id must be a string, not {type(partition_id).__name__}",
                    hint="convert ids to text, e.g. str(user.pk)",
                )
            if not partition_id:
                raise InvalidPartitionError("partition id cannot be empty")
        self.partition_id = partition_id
        self._tokens: list[Token[str | None]] = []

    def __repr__(self) -> str:
        return f"<asherah_django.session partition={self.partition_id!r}>"

    def __enter__(self) -> session:
        self._tokens.append(_partition.set(self.partition_id))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _partition.reset(self._tokens.pop())

    async def __aenter__(self) -> session:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    @overload
    def __call__(self, func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]: ...

    @overload
    def __call__(self, func: Callable[P, R]) -> Callable[P, R]: ...

    def __call__(self, func: Callable[P, Any]) -> Callable[P, Any]:
        partition_id = self.partition_id
        if inspect.iscoroutinefunction(func):
            async_func = cast("Callable[P, Awaitable[Any]]", func)

            @functools.wraps(func)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                with session(partition_id):
                    return await async_func(*args, **kwargs)

            return async_wrapper

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            with session(partition_id):
                return func(*args, **kwargs)

        return wrapper
