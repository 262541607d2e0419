"""The connections of :class:`~asherah_django.metastore.DjangoMetastore`'s key queries and
the statement runner: one dedicated autocommit connection per thread, closed from another
thread, abandoned (never closed) in a forked child; a stale connection retried once; async
callers sent to a helper thread."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from django.db import DatabaseError, InterfaceError, OperationalError, connections
from django.db.backends.base.base import BaseDatabaseWrapper

from .core.errors import MetastoreError
from .metastore_sql import MYSQL_RETRYABLE, Row, hint_for, mysql_code

logger = logging.getLogger("asherah_django.metastore")


@dataclass
class Held:
    """A dedicated connection and the thread that owns it."""

    wrapper: BaseDatabaseWrapper
    thread: threading.Thread


def loop_running() -> bool:
    """True in a thread that runs an asyncio event loop (Django's async-unsafe test)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def close_connection(wrapper: BaseDatabaseWrapper) -> None:
    """Close a connection possibly owned by another thread."""
    wrapper.inc_thread_sharing()
    try:
        wrapper.close()
    except DatabaseError:
        logger.warning("could not close an asherah key connection cleanly", exc_info=True)
    finally:
        wrapper.dec_thread_sharing()


GRAVEYARD: list[BaseDatabaseWrapper] = []


def abandon(wrapper: BaseDatabaseWrapper) -> None:
    """In a forked child: never use nor close the parent's connection. Its socket is pointed
    at /dev/null so that a driver's goodbye at exit cannot end the parent's session."""
    raw = wrapper.connection
    if raw is None:
        return
    try:
        fd = raw.fileno()
    except Exception:  # sqlite3 and others have no socket
        fd = None
    if isinstance(fd, int) and fd >= 0:
        devnull = os.open(os.devnull, os.O_RDWR)
        try:
            os.dup2(devnull, fd)
        finally:
            os.close(devnull)
    GRAVEYARD.append(wrapper)


class KeyConnections:
    """Where a DjangoMetastore's statements run: a dedicated autocommit connection per
    thread (the caller's own on SQLite), a stale one replaced and the statement retried
    once, database errors turned into MetastoreError, async callers sent to a helper
    thread. A base class of DjangoMetastore."""

    using: str
    table: str
    integrity_tags: bool
    #: Statements executed (for tests and metrics).
    queries: int
    _vendor: str | None

    def _init_process_state(self) -> None:
        self._lock = threading.Lock()
        self._local = threading.local()
        self._held: list[Held] = []
        #: Runs key queries asked for from a thread with a running event loop (see _run).
        self._loop_helper: ThreadPoolExecutor | None = None

    @property
    def vendor(self) -> str:
        vendor = self._vendor
        if vendor is None:
            vendor = self._vendor = connections[self.using].vendor
        return vendor

    def _shares_caller_connection(self) -> bool:
        return self.vendor == "sqlite"

    def connection(self) -> BaseDatabaseWrapper:
        """The connection key queries of this thread use (opened lazily)."""
        if self._shares_caller_connection():
            return connections[self.using]
        held: Held | None = getattr(self._local, "held", None)
        if held is None:
            main = connections[self.using]
            settings_dict = {**main.settings_dict, "AUTOCOMMIT": True}
            wrapper = type(main)(settings_dict, alias=self.using)
            held = Held(wrapper, threading.current_thread())
            with self._lock:
                self._prune_dead_threads()
                self._held.append(held)
            self._local.held = held
        return held.wrapper

    def close_old_connections(self) -> None:
        """Django's request-boundary rule for this thread's connection; closes those of
        threads that have ended."""
        held: Held | None = getattr(self._local, "held", None)
        if held is not None:
            held.wrapper.close_if_unusable_or_obsolete()
        with self._lock:
            self._prune_dead_threads()

    def _prune_dead_threads(self) -> None:
        alive = []
        for item in self._held:
            if item.thread.is_alive():
                alive.append(item)
            else:
                close_connection(item.wrapper)
        self._held = alive

    def _close_connections(self) -> None:
        """Close every dedicated connection (all threads) and the helper thread."""
        with self._lock:
            held, self._held = self._held, []
            helper, self._loop_helper = self._loop_helper, None
        self._local = threading.local()
        for item in held:
            close_connection(item.wrapper)
        if helper is not None:
            if self._shares_caller_connection():  # the helper thread's own connection
                helper.submit(connections[self.using].close)
            helper.shutdown(wait=False)

    def _abandon_connections(self) -> None:
        for item in self._held:
            abandon(item.wrapper)
        self._init_process_state()

    def _query(self, sql: str, params: Sequence[Any]) -> list[Row]:
        """Run one query and return its rows."""
        return self._run(sql, params, fetch=True)[0]

    def _execute(self, sql: str, params: Sequence[Any]) -> int:
        """Run one statement and return how many rows it changed."""
        return self._run(sql, params, fetch=False)[1]

    def _run(self, sql: str, params: Sequence[Any], *, fetch: bool) -> tuple[list[Row], int]:
        if loop_running():
            # An encrypted attribute read in async code (an async view, ``async for`` over a
            # queryset) whose key is not cached yet. Django forbids database calls from a
            # thread running an event loop (SynchronousOnlyOperation), so the query runs on
            # a helper thread with its own key connection; the caller waits for it, as it
            # waits for Vault. Only cold keys get here: cached ones need no query.
            return self._helper().submit(self._run_on_helper, sql, params, fetch).result()
        return self._run_here(sql, params, fetch)

    def _run_on_helper(self, sql: str, params: Sequence[Any], fetch: bool) -> tuple[list[Row], int]:
        try:
            return self._run_here(sql, params, fetch)
        finally:
            if self._shares_caller_connection():
                # SQLite: the helper thread's own connection to the caller's database.
                # Closed now rather than left to the garbage collector when the helper
                # ends (unclosed, Python 3.13 warns); cold keys only come here.
                connections[self.using].close()

    def _helper(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._loop_helper is None:
                self._loop_helper = ThreadPoolExecutor(1, thread_name_prefix="asherah-keys")
            return self._loop_helper

    def _run_here(self, sql: str, params: Sequence[Any], fetch: bool) -> tuple[list[Row], int]:
        for attempt in (0, 1):
            conn = self.connection()
            reused = conn.connection is not None
            try:
                with conn.cursor() as cursor:
                    self.queries += 1
                    cursor.execute(sql, params)
                    rows = list(cursor.fetchall()) if fetch else []
                    return rows, cursor.rowcount
            except (OperationalError, InterfaceError) as exc:
                dedicated = not self._shares_caller_connection()
                if dedicated and not conn.is_usable():
                    close_connection(conn)
                    if reused and attempt == 0 and mysql_code(exc) not in MYSQL_RETRYABLE:
                        logger.info("asherah key connection was stale; reconnecting once")
                        continue
                raise MetastoreError(
                    f"metastore query failed on database {self.using!r}: {exc}",
                    hint=self._hint_for(exc),
                ) from exc
            except DatabaseError as exc:
                raise MetastoreError(
                    f"metastore query failed on database {self.using!r}: {exc}",
                    hint=self._hint_for(exc),
                ) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _hint_for(self, exc: Exception) -> str:
        return hint_for(exc, integrity_tags=self.integrity_tags, table=self.table)
