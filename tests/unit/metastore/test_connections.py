"""The dedicated key connections: lifecycle, stale connections, fork, session time zone."""

from __future__ import annotations

import os
import threading

import pytest
from django.core.signals import request_finished
from django.db import connection
from django.test import override_settings

from asherah_django import metastore_connections, runtime
from asherah_django.metastore import DjangoMetastore
from tests.unit.conftest import NOT_SQLITE, unique, vendor
from tests.unit.test_metastore import MINUTE, raw_rows, record

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif("vendor() == 'sqlite'", reason=NOT_SQLITE),
]


def backend_id(metastore: DjangoMetastore) -> int:
    with metastore.connection().cursor() as cursor:
        cursor.execute(
            "SELECT pg_backend_pid()" if vendor() == "postgresql" else "SELECT CONNECTION_ID()"
        )
        return int(cursor.fetchone()[0])


def test_request_boundaries_close_it_like_djangos_own(metastore: DjangoMetastore) -> None:
    metastore.load_latest("_SK_x_y")
    wrapper = metastore.connection()
    assert wrapper.connection is not None
    metastore.close_old_connections()  # CONN_MAX_AGE = 0: closed at the end of a request
    assert wrapper.connection is None
    metastore.load_latest("_SK_x_y")  # and opened again on demand
    assert metastore.connection() is wrapper and wrapper.connection is not None


def test_request_finished_reaches_the_runtime_factory() -> None:
    factory = runtime.get_session_factory()
    factory.get_session(unique("p")).encrypt(b"x")
    store = factory.metastore
    assert isinstance(store, DjangoMetastore)
    assert store.connection().connection is not None
    request_finished.send(sender=None)  # as at the end of every request
    assert store.connection().connection is None


def test_persistent_connections_are_kept(metastore: DjangoMetastore) -> None:
    metastore.close()
    connection.settings_dict["CONN_MAX_AGE"] = 60
    try:
        metastore.load_latest("_SK_x_y")
        wrapper = metastore.connection()
        metastore.close_old_connections()
        assert wrapper.connection is not None
    finally:
        connection.settings_dict["CONN_MAX_AGE"] = 0
        metastore.close()


def test_connections_of_finished_threads_are_closed(metastore: DjangoMetastore) -> None:
    wrappers = []

    def work() -> None:
        metastore.load_latest("_SK_x_y")
        wrappers.append(metastore.connection())

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert wrappers[0].connection is not None
    assert wrappers[0] is not metastore.connection()
    metastore.close_old_connections()
    assert wrappers[0].connection is None


def test_a_stale_connection_is_replaced_and_the_query_retried(metastore: DjangoMetastore) -> None:
    key_id = unique("_SK_stale_")
    metastore.store(key_id, MINUTE, record(MINUTE))
    victim = backend_id(metastore)
    with connection.cursor() as cursor:  # the server drops the idle key connection
        if vendor() == "postgresql":
            cursor.execute("SELECT pg_terminate_backend(%s)", [victim])
        else:
            cursor.execute(f"KILL {victim}")
    assert metastore.load_latest(key_id) == record(MINUTE)
    assert backend_id(metastore) != victim


def test_a_forked_child_never_touches_the_parents_connection(metastore: DjangoMetastore) -> None:
    key_id = unique("_SK_fork_")
    metastore.store(key_id, MINUTE, record(MINUTE))
    parent_backend = backend_id(metastore)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running any test machinery
        code = 1
        try:
            os.close(read)
            assert metastore._held == []
            assert metastore.load_latest(key_id) == record(MINUTE)  # its own connection
            child_backend = backend_id(metastore)
            for wrapper in metastore_connections.GRAVEYARD:  # a driver goodbye goes nowhere
                if wrapper.connection is not None:
                    wrapper.connection.close()
            metastore.close()
            os.write(write, str(child_backend).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    child_backend = int(os.read(read, 100) or b"0")
    os.close(read)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert child_backend not in (0, parent_backend)
    assert backend_id(metastore) == parent_backend  # the parent's session is intact
    assert metastore.load_latest(key_id) == record(MINUTE)


def test_created_is_bound_whatever_the_database_session_time_zone(
    metastore: DjangoMetastore,
) -> None:
    key_id = unique("_SK_tz_")
    with metastore.connection().cursor() as cursor:
        if vendor() == "postgresql":
            cursor.execute("SET TIME ZONE 'America/New_York'")
        else:
            cursor.execute("SET time_zone = '-05:00'")
    with override_settings(TIME_ZONE="Asia/Tokyo"):
        assert metastore.store(key_id, 1795866780, record(1795866780))
        assert metastore.load(key_id, 1795866780) == record(1795866780)
    [(created, _)] = raw_rows(key_id)
    assert created.startswith("2026-11-28 11:53:00")
