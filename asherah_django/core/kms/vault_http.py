"""HTTP to Vault for the Vault Transit KMS: timeouts, bounded retries, one session per process.

* Every request has a connect timeout (``VAULT_CONNECT_TIMEOUT``) and a read timeout
  (``VAULT_TIMEOUT``).
* Connection errors and 5xx answers (503: sealed or standby) are retried up to
  ``VAULT_MAX_RETRIES`` times with jittered exponential backoff; 4xx answers and read
  timeouts never are (Vault may have acted, and the time is used up).
* A request that spends something (an AppRole login with a secret id) is retried only
  when it provably never reached Vault, or Vault answered 503 (sealed: nothing happened).
* ``VAULT_ADDR`` may list the nodes of one cluster: a request that provably never reached
  the node in use (connection refused, connect timeout) goes to the next one at once, and
  the node that answered stays in use.
* Redirects are followed only to a node ``VAULT_ADDR`` lists (a standby that redirects to
  its leader); any other is refused, so the token is only ever sent to ``VAULT_ADDR``.
* ``VAULT_NAMESPACE`` goes with every request as ``X-Vault-Namespace`` (except those
  sent with ``root_namespace=True``: ``sys/health`` exists in the root namespace only).
* After ``os.fork()`` the child builds its own HTTP session (gunicorn ``--preload``):
  sockets are never shared between processes.

The hvac adapter is built by ``vault.py`` (the only module importing hvac) and handed in.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import requests
import urllib3.exceptions

from ..forking import after_fork_in_child
from .vault_config import VaultTransitConfig
from .vault_errors import (
    HINT_CONNECTION,
    HINT_TIMEOUT,
    HINT_TLS,
    VaultConnectionError,
    VaultKMSError,
    vault_errors_text,
)

logger = logging.getLogger("asherah_django.core.kms.vault")

#: Retry delays: ``BACKOFF_BASE * 2**(attempt-1)`` capped at ``BACKOFF_CAP``, half jittered.
BACKOFF_BASE: Final = 0.1
BACKOFF_CAP: Final = 2.0
_NOT_SENT = (urllib3.exceptions.NewConnectionError, requests.exceptions.ConnectTimeout)
_REASONS: Final[Mapping[type[BaseException], str]] = {
    ConnectionRefusedError: "connection refused",
    socket.gaierror: "cannot resolve the host name",
    ConnectionResetError: "connection reset",
}


@dataclass(frozen=True)
class VaultReply:
    """An HTTP answer from Vault: status and JSON body (``{}`` when there is none)."""

    status: int
    payload: dict[str, Any]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def text(self) -> str:
        """Vault's errors on one line, or ``HTTP <status>``."""
        return vault_errors_text(self.payload.get("errors")) or f"HTTP {self.status}"


@dataclass
class VaultStats:
    """Requests that reached Vault (got an HTTP answer), by kind; retried ones count again."""

    encrypt: int = 0
    decrypt: int = 0
    rewrap: int = 0
    logins: int = 0
    renewals: int = 0
    other: int = 0
    retries: int = 0

    @property
    def transit_calls(self) -> int:
        return self.encrypt + self.decrypt + self.rewrap


class VaultHTTP:
    """Sends requests to one Vault server. Thread-safe; per-process state after fork."""

    def __init__(
        self, config: VaultTransitConfig, ctx: str, make_adapter: Callable[[requests.Session], Any]
    ) -> None:
        self.config = config
        self._ctx = ctx
        self._make_adapter = make_adapter
        self._adapter: Any = None
        #: One adapter per node of ``VAULT_ADDR`` (all on the same session), by base URL.
        self._adapters: dict[str, Any] = {}
        self._addrs = (config.addr, *config.other_addrs)
        self._current = 0  # the index in _addrs of the node requests go to
        #: The nodes requests were sent to, in the order first tried (for asherah_check).
        self._tried: dict[str, None] = {}
        self._closed = False
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self.stats = VaultStats()
        on_fork(self)

    def send(
        self,
        method: str,
        path: str,
        label: str,
        *,
        token: str | None,
        kind: str,
        body: object = None,
        params: Mapping[str, str] | None = None,
        repeatable: bool = True,
        root_namespace: bool = False,
    ) -> VaultReply:
        """Send one request (retrying as the module docs say); count it under ``kind``."""
        headers = {"X-Vault-Token": token} if token else {}
        if self.config.namespace and not root_namespace:
            headers["X-Vault-Namespace"] = self.config.namespace
        attempts = self.config.max_retries + 1
        for attempt in range(1, attempts + 1):
            try:
                response = self._to_some_node(method, path, headers, body, params)
                if self._follow(response):  # a standby named its leader, a node of VAULT_ADDR
                    self.count(kind)
                    response = self._to_some_node(method, path, headers, body, params, 1)
            except requests.RequestException as exc:
                error, not_sent = self._transport_error(label, exc)
                if attempt < attempts and not_sent is not None and (repeatable or not_sent):
                    self._backoff(label, attempt, attempts, error.args[0])
                    continue
                raise error from exc
            self.count(kind)
            try:
                payload = response.json() if response.content else {}
            except ValueError:
                payload = {}
            status = response.status_code
            retry = status >= 500 and status != 501 and (repeatable or status == 503)
            if retry and attempt < attempts:
                self._backoff(label, attempt, attempts, f"HTTP {status}")
                continue
            return VaultReply(status, payload if isinstance(payload, dict) else {})
        raise AssertionError("unreachable")  # pragma: no cover

    def _to_some_node(
        self, method: str, path: str, headers: dict[str, str], body: object,
        params: Mapping[str, str] | None, nodes: int | None = None,
    ) -> Any:  # fmt: skip
        """Send to the node in use; when it provably never got the request, to the next
        nodes of ``VAULT_ADDR`` in turn (the one that answers stays in use). ``nodes``
        limits how many are tried (1: a redirect's target only)."""
        tried = min(nodes or len(self._addrs), len(self._addrs))
        for step in range(tried):
            index = (self._current + step) % len(self._addrs)
            self._tried.setdefault(self._addrs[index])
            try:
                response = self._session_adapter(self._addrs[index]).request(
                    method, path, headers=headers, json=body, params=params, raise_exception=False
                )
            except requests.exceptions.ConnectionError as exc:
                not_sent = any(isinstance(e, _NOT_SENT) for e in _causes(exc))
                if not_sent and step + 1 < tried:
                    logger.warning("Vault node %s unreachable; trying the next", self._addrs[index])
                    continue
                raise
            self._current = index
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    @property
    def node_in_use(self) -> str:
        """The node of ``VAULT_ADDR`` that requests go to: the last one that answered."""
        return self._addrs[self._current]

    @property
    def nodes_tried(self) -> tuple[str, ...]:
        """Every node of ``VAULT_ADDR`` a request was sent to, in the order first tried."""
        return tuple(self._tried)

    def _follow(self, response: Any) -> bool:
        """Whether ``response`` redirects to another node of ``VAULT_ADDR`` (then in use)."""
        if response.status_code not in (307, 308) or len(self._addrs) < 2:
            return False
        try:
            target = urlsplit(response.headers.get("Location") or "")
            origin = f"{target.scheme}://{target.netloc}"
        except ValueError:
            return False
        if origin not in self._addrs:  # not ours: refused, the token stays home
            return False
        self._current = self._addrs.index(origin)
        return True

    def count(self, kind: str) -> None:
        with self._stats_lock:
            setattr(self.stats, kind, getattr(self.stats, kind) + 1)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            adapter, self._adapter = self._adapter, None
            self._adapters = {}
        if adapter is not None:
            adapter.close()
        _FORK_AWARE.discard(self)

    def after_fork(self) -> None:
        """In a forked child: new locks, counters and (lazily) a new HTTP session."""
        inherited, self._adapter = self._adapter, None
        self._adapters = {}
        self._lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._pid = os.getpid()
        self.stats = VaultStats()
        if inherited is not None:  # closes this process's copies only; the parent's stay open
            inherited.close()

    def _session_adapter(self, base: str | None = None) -> Any:
        """The adapter of the node ``base`` (default: the first of ``VAULT_ADDR``)."""
        first = self._first_adapter()
        if base is None or base == self.config.addr:
            return first
        with self._lock:
            adapter = self._adapters.get(base)
            if adapter is None:  # the same session (pool, TLS settings), another base URL
                adapter = self._adapters[base] = self._make_adapter(first.session)
                adapter.base_uri = base
            return adapter

    def _first_adapter(self) -> Any:
        adapter = self._adapter
        if adapter is not None and self._pid == os.getpid():
            return adapter
        with self._lock:
            if self._closed:
                raise VaultKMSError(f"the Vault Transit KMS is closed {self._ctx}")
            if self._adapter is None or self._pid != os.getpid():
                session = requests.Session()
                session.verify = self.config.ca_cert or True
                if self.config.client_cert and self.config.client_key:
                    session.cert = (self.config.client_cert, self.config.client_key)
                self._adapter = self._make_adapter(session)
                self._adapters = {}
                self._pid = os.getpid()
            return self._adapter

    def _transport_error(self, label: str, exc: Exception) -> tuple[VaultKMSError, bool | None]:
        """Our error for a failed request, and: ``None`` = do not retry, True = never sent."""
        c, hint, not_sent = self.config, HINT_CONNECTION, None
        if isinstance(exc, requests.exceptions.SSLError):
            reason, hint = "TLS handshake failed", HINT_TLS
        elif isinstance(exc, requests.exceptions.ConnectTimeout):
            reason, hint = f"connect timed out after {c.connect_timeout:g}s", HINT_TIMEOUT
            not_sent = True
        elif isinstance(exc, requests.exceptions.Timeout):
            reason, hint = f"no answer within VAULT_TIMEOUT={c.timeout:g}s", HINT_TIMEOUT
        elif isinstance(exc, requests.exceptions.ConnectionError):
            chain = _causes(exc)
            not_sent = any(isinstance(e, _NOT_SENT) for e in chain)
            reasons = (text for e in chain for t, text in _REASONS.items() if isinstance(e, t))
            reason = next(reasons, "connection failed")
        else:
            reason = type(exc).__name__
        message = f"{label} request failed: {reason} {self._ctx}"
        return VaultConnectionError(message, hint=hint), not_sent

    def _backoff(self, label: str, attempt: int, attempts: int, why: object) -> None:
        delay = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1))
        delay = delay / 2 + random.uniform(0, delay / 2)
        logger.warning(
            "%s: attempt %d of %d failed (%s); retrying in %.2fs",
            label, attempt, attempts, str(why).split(" (VAULT_ADDR=")[0], delay,
        )  # fmt: skip
        self.count("retries")
        time.sleep(delay)


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it wraps: args, urllib3's ``reason``, causes and contexts."""
    seen: list[BaseException] = []
    todo: list[object] = [exc]
    while todo and len(seen) < 20:
        item = todo.pop()
        if not isinstance(item, BaseException) or any(item is s for s in seen):
            continue
        seen.append(item)
        todo.extend([*item.args, getattr(item, "reason", None), item.__cause__, item.__context__])
    return seen


_FORK_AWARE: weakref.WeakSet[Any] = weakref.WeakSet()


def on_fork(obj: Any) -> None:
    """Call ``obj.after_fork()`` in every child forked while ``obj`` is alive."""
    _FORK_AWARE.add(obj)


@after_fork_in_child
def _after_fork_in_child() -> None:
    for obj in list(_FORK_AWARE):
        obj.after_fork()
