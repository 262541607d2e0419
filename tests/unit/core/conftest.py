"""Fixtures for the Django-free core tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from asherah_django.core import CryptoPolicy, InMemoryMetastore, SessionFactory, StaticKMS
from asherah_django.core.kms.static import TEST_MASTER_KEY_HEX


class FakeClock:
    """A settable wall clock (epoch seconds) for expiry and revoke-check tests."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def kms() -> StaticKMS:
    return StaticKMS.from_hex(TEST_MASTER_KEY_HEX)


@pytest.fixture
def metastore() -> InMemoryMetastore:
    return InMemoryMetastore()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def factory(kms: StaticKMS, metastore: InMemoryMetastore) -> Iterator[SessionFactory]:
    with SessionFactory("service", "product", kms, metastore) as built:
        yield built


@pytest.fixture
def make_factory(kms: StaticKMS, metastore: InMemoryMetastore, clock: FakeClock):  # type: ignore[no-untyped-def]
    """Build factories sharing one metastore and fake clock (like several processes)."""
    built: list[SessionFactory] = []

    def make(policy: CryptoPolicy | None = None, **kwargs: object) -> SessionFactory:
        factory = SessionFactory(
            "service",
            "product",
            kwargs.pop("kms", kms),
            kwargs.pop("metastore", metastore),  # type: ignore[arg-type]
            policy,
            clock=clock,
        )
        built.append(factory)
        return factory

    yield make
    for factory in built:
        factory.close()
