"""The process-wide SessionFactory, built lazily from the ``ASHERAH`` settings.

``get_session_factory()`` is cheap after the first call (a global read), thread-safe, and
returns the same factory until ``ASHERAH`` or ``DATABASES`` change (``setting_changed``,
e.g. ``override_settings``) or ``reset_session_factory()`` is called; either closes the old
factory (its cached keys are wiped, its KMS client and database connections closed).
A child process made by ``fork()`` (gunicorn ``--preload``, multiprocessing) drops the
parent's factory without touching it and builds its own on first use.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from django.core.signals import request_finished, request_started, setting_changed

from .conf import asherah_settings
from .core import observability
from .core.forking import after_fork_in_child
from .core.kms.static import StaticKMS
from .core.policy import CryptoPolicy
from .core.protocols import KeyManagementService, Metastore, close_kms
from .core.records import KeyMeta
from .core.session import SessionFactory
from .signals import key_revoked, key_shredded

if TYPE_CHECKING:
    from .metastore import DjangoMetastore

logger = logging.getLogger("asherah_django")

_lock = threading.Lock()
_factory: SessionFactory | None = None
#: The factory's DjangoMetastore when it tracks keys inside callers' SQLite transactions.
_tracker: DjangoMetastore | None = None

__all__ = ["connect_signals", "get_session_factory", "reset_session_factory"]


def get_session_factory() -> SessionFactory:
    """The process-wide SessionFactory built from the ``ASHERAH`` settings.

    Raises :class:`~asherah_django.core.errors.ConfigurationError` naming the setting to fix.
    """
    factory = _factory
    if factory is None:
        return _build()
    tracker = _tracker
    # (tracker.has_pending, read without its two Python calls: this runs for every value.)
    if tracker is not None and tracker.pending_keys.entries:
        _discard_rolled_back_keys(factory, tracker)
    return factory


def reset_session_factory() -> None:
    """Close the current factory (if any) and re-read the settings and environment on the
    next :func:`get_session_factory` call."""
    global _factory, _tracker
    with _lock:
        factory, _factory, _tracker = _factory, None, None
        asherah_settings.reload()
    if factory is not None:
        _close(factory)


def connect_signals() -> None:
    """Called by ``AppConfig.ready()``: rebuild on settings changes, and give the key
    connections Django's request-boundary treatment (CONN_MAX_AGE, health checks)."""
    setting_changed.connect(_on_setting_changed, dispatch_uid="asherah_django.runtime.reset")
    request_started.connect(_close_old_connections, dispatch_uid="asherah_django.runtime.rs")
    request_finished.connect(_close_old_connections, dispatch_uid="asherah_django.runtime.rf")
    # A key revoked or shredded by this process (admin, asherah_rotate, your code) stops
    # being used at once; other processes notice within CHECK_INTERVAL.
    key_revoked.connect(_on_key_revoked, dispatch_uid="asherah_django.runtime.revoked")
    key_shredded.connect(_on_key_shredded, dispatch_uid="asherah_django.runtime.shredded")


def _build() -> SessionFactory:
    global _factory, _tracker
    with _lock:
        if _factory is not None:
            return _factory
        conf = asherah_settings
        conf.validate()
        service, product = conf.SERVICE_NAME, conf.PRODUCT_ID
        policy = CryptoPolicy(
            expire_after=conf.EXPIRE_AFTER,
            check_interval=conf.CHECK_INTERVAL,
            system_key_cache_size=conf.SYSTEM_KEY_CACHE_SIZE,
            intermediate_key_cache_size=conf.INTERMEDIATE_KEY_CACHE_SIZE,
            session_cache_size=conf.SESSION_CACHE_SIZE,
            session_cache_duration=conf.SESSION_CACHE_DURATION,
            key_integrity=conf.KEY_INTEGRITY,
        )
        metastore: Metastore
        if conf.METASTORE == "memory":
            from .core.metastore.memory import InMemoryMetastore

            metastore = InMemoryMetastore()
            tracker: DjangoMetastore | None = None
        else:
            from .core.key_ids import KeyIds
            from .metastore import DjangoMetastore

            tracker = DjangoMetastore(
                conf.DATABASE,
                system_key_id=KeyIds(service, product).system,
                integrity_tags=policy.key_integrity != "off",
            )
            metastore = tracker
        kms = _build_kms()
        try:
            factory = SessionFactory(service, product, kms, metastore, policy)
        except BaseException:
            close_kms(kms)
            raise
        factory.subscribe(_send_key_signal)
        observability.attach(factory)  # instrumented only while an observer is registered
        _factory, _tracker = factory, tracker
        logger.debug("asherah_django built %r", factory)
        return factory


def _build_kms() -> KeyManagementService:
    conf = asherah_settings
    if conf.KMS == "vault":
        from .core.kms.vault import VaultTransitKMS

        return VaultTransitKMS(conf.vault_config())
    if conf.KMS == "aws":
        from .core.kms.aws import AwsKMS

        return AwsKMS(conf.aws_config())
    if conf.KMS == "secrets-manager":
        from .core.kms.secrets_manager import SecretsManagerKMS

        return SecretsManagerKMS(conf.secrets_manager_config())
    if "." in conf.KMS:
        return conf.kms_class()()
    return StaticKMS.from_hex(conf.static_master_key_hex)


def _discard_rolled_back_keys(factory: SessionFactory, tracker: DjangoMetastore) -> None:
    """Drop keys whose SQLite transaction rolled back: the database no longer has them."""
    rolled_back = tracker.take_rolled_back()
    if not rolled_back:
        return
    logger.info(
        "asherah_django: %d key(s) created in a rolled-back transaction were dropped from "
        "the caches",
        len(rolled_back),
    )
    factory.forget(system_keys=any(key_id == factory.system_key_id for key_id, _ in rolled_back))


def _send_key_signal(event: str, key_id: str, created: int) -> None:
    if event == "created":
        from .signals import key_created

        key_created.send(sender=SessionFactory, key_id=key_id, created=created)


def _close(factory: SessionFactory) -> None:
    try:
        factory.close()
    finally:
        factory.key_store.close()


def _on_setting_changed(*, setting: str, **kwargs: object) -> None:
    if setting in ("ASHERAH", "DATABASES"):
        reset_session_factory()


def _on_key_revoked(*, key_id: str, created: int, **kwargs: object) -> None:
    factory = _factory
    if factory is not None:
        factory.key_revoked(KeyMeta(key_id, created))


def _on_key_shredded(*, key_id: str, **kwargs: object) -> None:
    factory = _factory
    if factory is not None:
        factory.key_shredded(key_id)


def _close_old_connections(**kwargs: object) -> None:
    tracker = _tracker
    if tracker is not None:
        tracker.close_old_connections()


@after_fork_in_child
def _after_fork_in_child() -> None:
    global _lock, _factory, _tracker
    _lock = threading.Lock()
    _factory = _tracker = None  # the parent's; never closed here (its locks may be held)
