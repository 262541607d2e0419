"""A dependency-free hook for metrics and tracing: observers see what the engine does.

    from asherah_django.core import observability

    class Printer(observability.Observer):
        def end(self, name, attributes, token, seconds, error):
            print(name, attributes, f"{seconds * 1000:.1f} ms", error)

    observability.register(Printer())

The Prometheus and OpenTelemetry integrations (``asherah_django.contrib.prometheus`` and
``.otel``) are observers; anything else (StatsD, logs, a test) can be one too.

Events
------
Timed events (``begin`` then ``end``, nested as they happen, so a tracer can parent them):

* ``kms.encrypt_key``, ``kms.decrypt_key``: one call of the KMS (Vault Transit, static).
* ``metastore.load``, ``metastore.load_latest``, ``metastore.load_many``,
  ``metastore.store``: one call of the metastore (attributes ``key_id``/``created`` or
  ``count``).
* ``key.latest``: the write path had no usable cached key (attributes ``kind``,
  ``key_id``); loads or creates one (``new`` is set to ``True`` on ``end`` when created).
* ``key.load``: the read path had no cached key (``kind``, ``key_id``, ``created``).
* anything passed to :func:`timed` (the management commands use ``command.<name>``).

Counted events (``count``):

* ``encrypt``, ``decrypt``: values encrypted or decrypted (from the Django fields'
  sessions). ``decrypt.failed`` with ``reason`` (the error's class name).
* ``cache.miss`` with ``cache`` = ``intermediate`` or ``system``; ``cache.hit`` with
  ``cache="system"``. Hits of the intermediate-key cache are the hot path and are not
  reported one by one: they are ``encrypt`` + ``decrypt`` minus the intermediate misses.
* ``key.created`` with ``kind`` (``system``, ``intermediate``, ``other``: keys the factory
  stores for others, e.g. blind index keys), ``key_id`` and ``created`` (epoch seconds);
  ``key.loaded`` likewise for a key read from the metastore (for key ages).

Attributes hold ids, counts and error class names, never key material, plaintext or
records. Observers must be fast and must not raise (an exception is logged and dropped).

Cost: with no observer registered nothing is wrapped at all. Registering the first one
instruments every attached factory: the KMS and metastore calls (cold), the key caches'
slow paths (cold) and sessions handed out to the fields (one counter call per value).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar, cast

from .key_ids import KeyKind, kind_of
from .protocols import BatchMetastore, KeyManagementService, KeyStore, Metastore
from .records import EnvelopeKeyRecord, KeyMeta
from .session import Session, SessionFactory

if TYPE_CHECKING:
    from .keys import CryptoKey

__all__ = [
    "Observer",
    "active",
    "attach",
    "count",
    "observers",
    "register",
    "timed",
    "unregister",
]

logger = logging.getLogger("asherah_django.observability")

Attributes = Mapping[str, str | int | bool]
_T = TypeVar("_T")


class Observer:
    """Base class of observers: override what you need (every method defaults to nothing)."""

    def begin(self, name: str, attributes: Attributes) -> Any:
        """A timed event starts; the return value comes back as ``end``'s ``token``."""
        return None

    def end(
        self,
        name: str,
        attributes: Attributes,
        token: Any,
        seconds: float,
        error: BaseException | None,
    ) -> None:
        """A timed event ended after ``seconds`` (``error``: what it raised, if anything)."""

    def count(self, name: str, attributes: Attributes, n: int) -> None:
        """``n`` occurrences of a counted event."""


_observers: tuple[Observer, ...] = ()
#: The observers that override ``count`` (the per-value events skip the others).
_counters: tuple[Observer, ...] = ()
_lock = threading.Lock()
_attached: weakref.WeakSet[SessionFactory] = weakref.WeakSet()
_instrumented: weakref.WeakSet[SessionFactory] = weakref.WeakSet()
_EMPTY: Attributes = {}


def observers() -> tuple[Observer, ...]:
    return _observers


def active() -> bool:
    """Whether any observer is registered."""
    return bool(_observers)


def register(observer: Observer) -> None:
    """Add ``observer`` (idempotent); instruments the attached factories on first use."""
    global _observers
    with _lock:
        if observer in _observers:
            return
        _observers = (*_observers, observer)
        _update_counters()
        pending = [f for f in _attached if f not in _instrumented]
    for factory in pending:
        _instrument(factory)


def unregister(observer: Observer) -> None:
    """Remove ``observer``; instrumented factories then skip their hooks (one tuple test)."""
    global _observers
    with _lock:
        _observers = tuple(o for o in _observers if o is not observer)
        _update_counters()


def _update_counters() -> None:
    global _counters
    _counters = tuple(o for o in _observers if type(o).count is not Observer.count)


def attach(factory: SessionFactory) -> None:
    """Make ``factory`` observable: instrumented now if an observer is registered, else as
    soon as one is. The Django runtime attaches the factory it builds."""
    with _lock:
        _attached.add(factory)
        now = bool(_observers)
    if now:
        _instrument(factory)


def count(name: str, attributes: Attributes = _EMPTY, n: int = 1) -> None:
    for observer in _counters:
        try:
            observer.count(name, attributes, n)
        except Exception:
            logger.exception("asherah_django observer %s failed", type(observer).__name__)


@contextmanager
def timed(
    name: str, attributes: dict[str, str | int | bool] | None = None
) -> Iterator[dict[str, Any]]:
    """A timed event around a block; the block may add attributes to the yielded dict."""
    attrs: dict[str, Any] = dict(attributes or {})
    current = _observers
    if not current:
        yield attrs
        return
    tokens = [_begin(o, name, attrs) for o in current]
    started = time.perf_counter()
    error: BaseException | None = None
    try:
        yield attrs
    except BaseException as exc:
        error = exc
        raise
    finally:
        seconds = time.perf_counter() - started
        for observer, token in zip(reversed(current), reversed(tokens), strict=True):
            try:
                observer.end(name, attrs, token, seconds, error)
            except Exception:
                logger.exception("asherah_django observer %s failed", type(observer).__name__)


def _begin(observer: Observer, name: str, attrs: Attributes) -> Any:
    try:
        return observer.begin(name, attrs)
    except Exception:
        logger.exception("asherah_django observer %s failed", type(observer).__name__)
        return None


# -- the instrumentation ---------------------------------------------------------------------


def _kind(factory: SessionFactory, key_id: str) -> str:
    if key_id == factory.system_key_id:
        return "system"
    # other: blind index keys
    return "intermediate" if kind_of(key_id) is KeyKind.INTERMEDIATE else "other"


class ObservedKMS:
    """Times each call of the wrapped KMS."""

    def __init__(self, kms: KeyManagementService) -> None:
        self.wrapped = kms

    def encrypt_key(self, key: bytes) -> bytes:
        with timed("kms.encrypt_key", {"kms": type(self.wrapped).__name__}):
            return self.wrapped.encrypt_key(key)

    def decrypt_key(self, encrypted_key: bytes) -> bytes:
        with timed("kms.decrypt_key", {"kms": type(self.wrapped).__name__}):
            return self.wrapped.decrypt_key(encrypted_key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)


class ObservedMetastore:
    """Times each call of the wrapped metastore."""

    def __init__(self, metastore: Metastore) -> None:
        self.wrapped = metastore

    def load(self, key_id: str, created: int) -> EnvelopeKeyRecord | None:
        with timed("metastore.load", {"key_id": key_id, "created": created}) as attrs:
            record = self.wrapped.load(key_id, created)
            attrs["found"] = record is not None
            return record

    def load_latest(self, key_id: str) -> EnvelopeKeyRecord | None:
        with timed("metastore.load_latest", {"key_id": key_id}) as attrs:
            record = self.wrapped.load_latest(key_id)
            attrs["found"] = record is not None
            return record

    def store(self, key_id: str, created: int, record: EnvelopeKeyRecord) -> bool:
        with timed("metastore.store", {"key_id": key_id, "created": created}) as attrs:
            stored = self.wrapped.store(key_id, created, record)
            attrs["stored"] = stored
            return stored

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)


class ObservedBatchMetastore(ObservedMetastore):
    def load_many(self, metas: Iterable[KeyMeta]) -> Mapping[KeyMeta, EnvelopeKeyRecord]:
        metas = list(metas)
        with timed("metastore.load_many", {"count": len(metas)}) as attrs:
            store: BatchMetastore = self.wrapped  # type: ignore[assignment]
            found = store.load_many(metas)
            attrs["found"] = len(found)
            return found


class ObservedSession(Session):
    """A Session that counts its values (and decryption failures by reason)."""

    __slots__ = ()

    def encrypt(self, data: bytes) -> str:
        for observer in _counters:
            try:
                observer.count("encrypt", _EMPTY, 1)
            except Exception:
                logger.exception("asherah_django observer %s failed", type(observer).__name__)
        return _ENCRYPT(self, data)

    def decrypt(self, record: str | bytes) -> bytes:
        for observer in _counters:
            try:
                observer.count("decrypt", _EMPTY, 1)
            except Exception:
                logger.exception("asherah_django observer %s failed", type(observer).__name__)
        try:
            return _DECRYPT(self, record)
        except Exception as exc:
            count("decrypt.failed", {"reason": type(exc).__name__})
            raise


_ENCRYPT = Session.encrypt
_DECRYPT = Session.decrypt


def _instrument(factory: SessionFactory) -> None:
    """Wrap ``factory``'s KMS, metastore, key-cache slow paths and sessions (once)."""
    with _lock:
        if factory in _instrumented:
            return
        _instrumented.add(factory)
    keys = factory._keys
    keys.kms = ObservedKMS(keys.kms)
    # (The wrapper forwards the KeyStore calls it does not time.)
    keys.metastore = cast("KeyStore", ObservedBatchMetastore(keys.metastore))

    creations = [0]  # keys this factory created: tells key.latest whether it made one

    def created(event: str, key_id: str, created: int) -> None:
        if event == "created":
            creations[0] += 1
        if event == "created" and _observers:
            count(
                "key.created",
                {"kind": _kind(factory, key_id), "key_id": key_id, "created": created},
            )

    keys.listeners.append(created)

    def loaded(key: CryptoKey) -> CryptoKey:
        meta = key.meta
        count(
            "key.loaded",
            {"kind": _kind(factory, meta.key_id), "key_id": meta.key_id, "created": meta.created},
        )
        return key

    latest_ik = keys.latest_intermediate_key
    latest_sk = keys.latest_system_key
    read_ik = keys.intermediate_key
    read_sk = keys.system_key

    def latest_intermediate_key(ik_id: str) -> CryptoKey:
        if not _observers:
            return latest_ik(ik_id)
        count("cache.miss", {"cache": "intermediate"})
        return _latest("intermediate", ik_id, lambda: latest_ik(ik_id))

    def latest_system_key() -> CryptoKey:
        if not _observers:
            return latest_sk()
        return _latest("system", factory.system_key_id, latest_sk)

    def _latest(kind: str, key_id: str, load: Callable[[], CryptoKey]) -> CryptoKey:
        with timed("key.latest", {"kind": kind, "key_id": key_id}) as attrs:
            before = creations[0]
            key = load()
            attrs["created"] = key.meta.created
            attrs["new"] = creations[0] != before
        return loaded(key)

    def intermediate_key(meta: KeyMeta) -> CryptoKey:
        if not _observers:
            return read_ik(meta)
        count("cache.miss", {"cache": "intermediate"})
        with timed(
            "key.load", {"kind": "intermediate", "key_id": meta.key_id, "created": meta.created}
        ):
            return loaded(read_ik(meta))

    def system_key(meta: KeyMeta) -> CryptoKey:
        if not _observers:
            return read_sk(meta)
        if keys.system_keys.get(meta) is not None:
            count("cache.hit", {"cache": "system"})
            return read_sk(meta)
        count("cache.miss", {"cache": "system"})
        with timed("key.load", {"kind": "system", "key_id": meta.key_id, "created": meta.created}):
            return loaded(read_sk(meta))

    keys.latest_intermediate_key = latest_intermediate_key  # type: ignore[method-assign]
    keys.latest_system_key = latest_system_key  # type: ignore[method-assign]
    keys.intermediate_key = intermediate_key  # type: ignore[method-assign]
    keys.system_key = system_key  # type: ignore[method-assign]
    _observe_sessions(factory)


def _observe_sessions(factory: SessionFactory) -> None:
    """Hand out :class:`ObservedSession` instances (sessions are stateless; kept per
    partition, as many as the factory's session cache holds)."""
    plain = factory.get_session
    sessions: dict[str, ObservedSession] = {}
    limit = max(factory.policy.session_cache_size, 1)

    def get_session(partition_id: str) -> Session:
        session = sessions.get(partition_id) if type(partition_id) is str else None
        if session is not None and not factory.closed:
            return session
        plain(partition_id)  # its checks: partition id, closed factory
        session = ObservedSession(factory, partition_id)
        if len(sessions) >= limit:
            sessions.clear()
        sessions[partition_id] = session
        return session

    factory.get_session = get_session  # type: ignore[method-assign]
