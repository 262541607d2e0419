"""pytest fixtures for projects that use asherah_django (auto-loaded through the
``pytest11`` entry point when the package is installed).

- ``asherah_settings``: switches ``settings.ASHERAH`` to a static KMS with a random master key
  (no Vault needed) and a product id of the test's own, keeping the metastore on your test
  database.
- ``asherah_session``: an open session for the partition ``"test-partition"``; encrypted fields
  read and write through it.
- ``asherah_assert_kms_calls``: ``with asherah_assert_kms_calls(1): ...`` fails unless the block
  makes exactly that many KMS calls (like ``django_assert_num_queries``).

Isolation from real KMS servers (like the test database that replaces yours): for the whole
run (session fixtures and the test database's migrations included), if your settings (or
environment) choose a KMS that talks to a server (Vault), the plugin swaps in the static KMS
with Asherah's public test key, on your test database. Tests that do
not use the fixtures above then never reach your Vault, and keep passing while it is down. Opt
out per test with ``@pytest.mark.asherah_live_kms``, or for the whole run with
``asherah_live_kms = true`` in the pytest ini file. A test (or fixture) that configures
``settings.ASHERAH`` itself gets what it configures.

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
LIVE_MARKER = "asherah_live_kms"
#: KMS names that need no server (left alone by the isolation).
_OFFLINE_KMS = frozenset({"static", "test-debug-static"})


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        LIVE_MARKER,
        "asherah_django: use the configured KMS (e.g. Vault) in every test instead of the "
        "static test KMS",
        type="bool",
        default=False,
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{LIVE_MARKER}: this test uses the configured KMS server (e.g. Vault); without it "
        "asherah_django swaps in a static test KMS",
    )


@pytest.fixture(scope="session", autouse=True)
def _asherah_isolated_kms(request: pytest.FixtureRequest) -> Iterator[dict[str, Any] | None]:
    """For the whole run (test database set-up included): the static KMS with the public
    test key instead of a KMS server, unless ``asherah_live_kms = true``. Yields the
    settings it replaced (None when it replaced nothing)."""
    isolated = _isolated_settings(request.config)
    if isolated is None:
        yield None
        return
    from django.conf import settings
    from django.test import override_settings

    original = dict(getattr(settings, "ASHERAH", None) or {})
    with override_settings(ASHERAH=isolated):
        yield original


@pytest.fixture(autouse=True)
def _asherah_live_kms(
    request: pytest.FixtureRequest, _asherah_isolated_kms: dict[str, Any] | None
) -> Iterator[None]:
    """A test marked ``asherah_live_kms`` gets the configured KMS back."""
    if _asherah_isolated_kms is None or not request.node.get_closest_marker(LIVE_MARKER):
        yield
        return
    from django.test import override_settings

    with override_settings(ASHERAH=_asherah_isolated_kms):
        yield


def _isolated_settings(config: pytest.Config) -> dict[str, Any] | None:
    """The ASHERAH dict for isolated tests, or None to leave the settings alone."""
    if config.getini(LIVE_MARKER):
        return None
    try:
        from django.apps import apps
    except ImportError:  # pragma: no cover - the package depends on Django
        return None
    if not apps.ready or not apps.is_installed("asherah_django"):
        return None
    from django.conf import settings

    from ..conf import asherah_settings
    from ..core.kms.static import TEST_MASTER_KEY_HEX

    kms = asherah_settings.snapshot().values.get("KMS")
    if kms is None or kms in _OFFLINE_KMS:  # no server, or invalid (reported by checks)
        return None
    isolated = dict(getattr(settings, "ASHERAH", None) or {})
    isolated.update(KMS="static", STATIC_MASTER_KEY_HEX=TEST_MASTER_KEY_HEX)
    return isolated


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
        counter = CountingKMS(factory.use_kms(factory.kms))
        factory.use_kms(counter)
        try:
            yield counter
        finally:
            factory.use_kms(counter.inner)
        if counter.calls != expected:
            pytest.fail(
                f"expected {expected} KMS call(s), got {counter.calls} "
                f"({counter.encrypts} encrypt, {counter.decrypts} decrypt)"
            )

    return assert_calls
