"""pytest fixtures for projects that use asherah_django (auto-loaded through the
``pytest11`` entry point when the package is installed).

- ``asherah_settings``: switches ``settings.ASHERAH`` to a static KMS with a random master key
  (no Vault needed) and a product id of the test's own, keeping the metastore on your test
  database.
- ``asherah_session``: an open session for the partition ``"test-partition"``; encrypted fields
  read and write through it.
- ``asherah_assert_kms_calls``: ``with asherah_assert_kms_calls(1): ...`` fails unless the block
  makes exactly that many KMS calls (like ``django_assert_num_queries``).

This module imports Django lazily so that loading the plugin never configures Django.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ..core.session import Session, SessionFactory
    from .counting import CountingKMS

TEST_PARTITION = "test-partition"


@pytest.fixture
def asherah_settings(settings: Any) -> dict[str, Any]:
    """Static KMS with a fresh random master key; everything else from your settings."""
    config = dict(getattr(settings, "ASHERAH", {}) or {})
    config.setdefault("SERVICE_NAME", "test-service")
    # Keys are committed outside each test's transaction: a product id of its own keeps this
    # test from meeting system keys that earlier tests wrapped with their own master keys.
    config["PRODUCT_ID"] = f"{config.get('PRODUCT_ID') or 'test'}-{secrets.token_hex(4)}"
    config["KMS"] = "static"
    config["STATIC_MASTER_KEY_HEX"] = secrets.token_hex(32)
    settings.ASHERAH = config
    return config


@pytest.fixture
def asherah_session(asherah_settings: dict[str, Any]) -> Iterator[Session]:
    """An open partition scope for ``TEST_PARTITION``; yields its core Session."""
    from .. import get_session_factory, session

    with session(TEST_PARTITION):
        yield get_session_factory().get_session(TEST_PARTITION)


@pytest.fixture
def asherah_assert_kms_calls(
    asherah_settings: dict[str, Any],
) -> Callable[[int], contextlib.AbstractContextManager[CountingKMS]]:
    """``with asherah_assert_kms_calls(n) as kms:`` asserts the block made n KMS calls."""

    @contextlib.contextmanager
    def assert_calls(expected: int) -> Iterator[CountingKMS]:
        from .. import get_session_factory
        from .counting import CountingKMS

        factory: SessionFactory = get_session_factory()
        counter = CountingKMS(factory.keys.kms)
        factory.keys.kms = counter
        try:
            yield counter
        finally:
            factory.keys.kms = counter.inner
        if counter.calls != expected:
            pytest.fail(
                f"expected {expected} KMS call(s), got {counter.calls} "
                f"({counter.encrypts} encrypt, {counter.decrypts} decrypt)"
            )

    return assert_calls
