"""The process-wide SessionFactory: lazy, cached, thread-safe, rebuilt on settings changes,
dropped in forked children; signals for new keys."""

from __future__ import annotations

import os
import threading
from typing import Any

import pytest
from django.conf import settings
from django.core.signals import setting_changed
from django.test import override_settings

import asherah_django
from asherah_django import runtime
from asherah_django.core import InMemoryMetastore, SessionFactory, StaticKMS
from asherah_django.metastore import DjangoMetastore
from asherah_django.signals import key_created

from .conftest import unique


def test_built_lazily_once_and_shared() -> None:
    assert runtime._factory is None
    factory = runtime.get_session_factory()
    assert runtime.get_session_factory() is factory
    assert asherah_django.get_session_factory() is factory
    assert isinstance(factory.kms, StaticKMS)
    assert isinstance(factory.metastore, DjangoMetastore)
    assert factory.service_name == settings.ASHERAH["SERVICE_NAME"]


def test_concurrent_first_calls_build_one_factory() -> None:
    barrier = threading.Barrier(8)
    seen: list[SessionFactory] = []

    def call() -> None:
        barrier.wait()
        seen.append(runtime.get_session_factory())

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(factory) for factory in seen}) == 1


def test_rebuilt_and_closed_when_settings_change() -> None:
    first = runtime.get_session_factory()
    with override_settings(ASHERAH={**settings.ASHERAH, "SERVICE_NAME": "other"}):
        assert first.closed
        second = runtime.get_session_factory()
        assert second.service_name == "other"
    assert second.closed
    assert runtime.get_session_factory().service_name == settings.ASHERAH["SERVICE_NAME"]


def test_rebuilt_when_databases_change() -> None:
    first = runtime.get_session_factory()
    setting_changed.send(sender=None, setting="DATABASES", value=settings.DATABASES, enter=False)
    assert first.closed
    assert runtime.get_session_factory() is not first


def test_unrelated_setting_changes_keep_the_factory() -> None:
    first = runtime.get_session_factory()
    with override_settings(USE_THOUSAND_SEPARATOR=True):
        assert runtime.get_session_factory() is first


def test_reset_rereads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert runtime.get_session_factory().policy.check_interval == 3600
    monkeypatch.setenv("ASHERAH_CHECK_INTERVAL", "120")
    assert runtime.get_session_factory().policy.check_interval == 3600  # cached
    runtime.reset_session_factory()
    assert runtime.get_session_factory().policy.check_interval == 120
    monkeypatch.delenv("ASHERAH_CHECK_INTERVAL")
    runtime.reset_session_factory()


def test_policy_comes_from_the_settings() -> None:
    values = {
        "EXPIRE_AFTER": 600,
        "CHECK_INTERVAL": 30,
        "SESSION_CACHE_SIZE": 5,
        "SESSION_CACHE_DURATION": 7,
        "SYSTEM_KEY_CACHE_SIZE": 11,
        "INTERMEDIATE_KEY_CACHE_SIZE": 13,
    }
    with override_settings(ASHERAH={**settings.ASHERAH, **values}):
        policy = runtime.get_session_factory().policy
    assert (policy.expire_after, policy.check_interval) == (600, 30)
    assert (policy.session_cache_size, policy.session_cache_duration) == (5, 7)
    assert (policy.system_key_cache_size, policy.intermediate_key_cache_size) == (11, 13)


def test_memory_metastore_for_development() -> None:
    with override_settings(ASHERAH={**settings.ASHERAH, "METASTORE": "memory"}):
        factory = runtime.get_session_factory()
        assert isinstance(factory.metastore, InMemoryMetastore)
        value = factory.get_session("p").encrypt(b"x")
        assert factory.get_session("p").decrypt(value) == b"x"


def test_vault_kms_is_built_without_network() -> None:
    from asherah_django.core.kms.vault import VaultTransitKMS

    vault = {
        "KMS": "vault",
        "VAULT_ADDR": "https://vault.invalid:8200",
        "VAULT_TRANSIT_KEY": "asherah",
        "VAULT_TOKEN": "hvs.CAESIJexample",
        "METASTORE": "memory",
    }
    with override_settings(ASHERAH={**settings.ASHERAH, **vault}):
        factory = runtime.get_session_factory()
        assert isinstance(factory.kms, VaultTransitKMS)
        assert factory.kms.config.addr == "https://vault.invalid:8200"


@pytest.mark.django_db
def test_key_created_signal_names_each_new_key() -> None:
    seen: list[tuple[Any, str, int]] = []

    def receiver(sender: Any, key_id: str, created: int, **kwargs: Any) -> None:
        seen.append((sender, key_id, created))

    key_created.connect(receiver)
    service = unique("sig")
    try:
        with override_settings(ASHERAH={**settings.ASHERAH, "SERVICE_NAME": service}):
            session = runtime.get_session_factory().get_session("p")
            session.encrypt(b"x")
            session.encrypt(b"y")  # cached: no new key
    finally:
        key_created.disconnect(receiver)
    prod = settings.ASHERAH["PRODUCT_ID"]
    assert [(s, k) for s, k, _ in seen] == [
        (SessionFactory, f"_SK_{service}_{prod}"),
        (SessionFactory, f"_IK_p_{service}_{prod}"),
    ]
    assert all(created % 60 == 0 for _, _, created in seen)


@pytest.mark.django_db
def test_a_forked_child_builds_its_own_factory() -> None:
    parent = runtime.get_session_factory()
    value = parent.get_session("p").encrypt(b"from the parent")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(read)
            assert runtime._factory is None
            child = runtime.get_session_factory()
            assert child is not parent
            os.write(write, b"ok" if child.get_session("p").decrypt(value) else b"")
            runtime.reset_session_factory()
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    answer = os.read(read, 10)
    os.close(read)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and answer == b"ok"
    assert runtime.get_session_factory() is parent and not parent.closed
    assert parent.get_session("p").decrypt(value) == b"from the parent"


@pytest.mark.django_db
def test_revoke_and_shred_through_the_metastore_apply_to_this_process_at_once() -> None:
    from asherah_django.core import KeyNotFoundError, parse_data_row

    partition = unique("rt")
    with override_settings(ASHERAH={**settings.ASHERAH, "CHECK_INTERVAL": 86400}):
        factory = runtime.get_session_factory()
        session = factory.get_session(partition)
        first = parse_data_row(session.encrypt(b"1")).parent
        metastore = factory.metastore
        assert isinstance(metastore, DjangoMetastore)
        assert metastore.revoke(first.key_id, first.created)  # sends key_revoked
        second = parse_data_row(session.encrypt(b"2")).parent
        assert second != first  # not after CHECK_INTERVAL: now
        record = session.encrypt(b"3")
        assert metastore.delete_key_id(first.key_id) == 2  # sends key_shredded
        with pytest.raises(KeyNotFoundError):
            session.decrypt(record)
