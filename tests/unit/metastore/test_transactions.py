"""The transaction rule: a key a stored value names is always durable.

On PostgreSQL and MariaDB keys are committed on a dedicated connection, outside the
caller's transaction. On SQLite (one writer) they join the caller's transaction and the
runtime drops keys whose transaction rolled back from its caches.
"""

from __future__ import annotations

import contextlib
import datetime
import threading
import uuid
from collections.abc import Iterator

import pytest
from django.contrib.sessions.models import Session as StoredValue
from django.db import connection, transaction
from django.test import override_settings
from django.utils import timezone

from asherah_django.core import DecryptionError, KeyMeta
from asherah_django.metastore import DjangoMetastore
from asherah_django.models import EncryptionKey
from asherah_django.runtime import get_session_factory, reset_session_factory
from tests.unit.conftest import NOT_SQLITE, SQLITE_ONLY, make_factory, unique, vendor
from tests.unit.test_metastore import MINUTE, record


class Boom(Exception):
    pass


def keep(value: str) -> None:
    """Store an encrypted value in an ordinary table, in the current transaction."""
    StoredValue.objects.create(
        session_key=uuid.uuid4().hex,
        session_data=value,
        expire_date=timezone.now() + datetime.timedelta(days=1),
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("nested", [False, True], ids=["transaction", "savepoint"])
def test_rollback_after_encrypt_never_leaves_an_undecryptable_value(nested: bool) -> None:
    partition = unique("tenant-")
    with override_settings(ASHERAH={**_settings(), "SERVICE_NAME": unique("svc")}):
        outer = transaction.atomic() if nested else _nothing()
        with outer:
            with pytest.raises(Boom), transaction.atomic():
                escaped = get_session_factory().get_session(partition).encrypt(b"inside")
                keep(escaped)
                raise Boom
            # The same process carries on with the same partition.
            keep(get_session_factory().get_session(partition).encrypt(b"after"))
        reset_session_factory()  # cold caches, as in another process
        session = get_session_factory().get_session(partition)
        stored = [row.session_data for row in StoredValue.objects.all()]
        assert [session.decrypt(value) for value in stored] == [b"after"]
        if vendor() == "sqlite":
            # The key joined the rolled-back transaction, and so did the value stored with
            # it; a copy kept elsewhere names a key version that no longer exists (or was
            # made again, with other bytes, in the same minute).
            with pytest.raises(DecryptionError):
                session.decrypt(escaped)
        else:
            assert session.decrypt(escaped) == b"inside"  # even a value kept elsewhere


@pytest.mark.django_db
def test_duplicate_store_does_not_break_the_callers_transaction(
    metastore: DjangoMetastore,
) -> None:
    key_id = unique("_IK_dup_")
    with transaction.atomic():
        EncryptionKey.objects.filter(id="nothing").count()
        assert metastore.store(key_id, MINUTE, record(MINUTE)) is True
        assert metastore.store(key_id, MINUTE, record(MINUTE)) is False
        keep("still usable")  # the transaction was not aborted
    assert StoredValue.objects.filter(session_data="still usable").exists()


@pytest.mark.skipif("vendor() == 'sqlite'", reason=NOT_SQLITE)
@pytest.mark.django_db(transaction=True)
def test_keys_use_a_dedicated_autocommit_connection(metastore: DjangoMetastore) -> None:
    key_id = unique("_IK_own_")
    with pytest.raises(Boom), transaction.atomic():
        assert metastore.connection() is not connection
        assert metastore.store(key_id, MINUTE, record(MINUTE))
        assert metastore.connection().get_autocommit()
        raise Boom
    assert EncryptionKey.objects.filter(id=key_id).exists()  # committed regardless


@pytest.mark.skipif("vendor() == 'sqlite'", reason=NOT_SQLITE)
@pytest.mark.django_db(transaction=True)
def test_reload_after_lost_race_sees_the_winner_inside_a_repeatable_read_snapshot(
    metastore: DjangoMetastore,
) -> None:
    key_id = unique("_IK_rr_")
    with _repeatable_read():
        # The caller's transaction takes its snapshot.
        assert not EncryptionKey.objects.filter(id=key_id).exists()
        _store_elsewhere(key_id)  # another process wins the race
        assert metastore.store(key_id, MINUTE, record(MINUTE)) is False  # we lose it
        assert metastore.load_latest(key_id) == record(MINUTE)  # and see the winner,
        # which a read inside the caller's snapshot could not:
        assert not EncryptionKey.objects.filter(id=key_id).exists()


@contextlib.contextmanager
def _repeatable_read() -> Iterator[None]:
    """A caller's transaction at REPEATABLE READ (MySQL's server default; Django's MySQL
    backend asks for READ COMMITTED unless OPTIONS say otherwise)."""
    with connection.cursor() as cursor:
        if vendor() == "mysql":
            cursor.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        try:
            with transaction.atomic():
                if vendor() == "postgresql":
                    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                yield
        finally:
            if vendor() == "mysql":
                cursor.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")


def _store_elsewhere(key_id: str) -> None:
    def winner() -> None:
        other = DjangoMetastore()
        try:
            assert other.store(key_id, MINUTE, record(MINUTE))
        finally:
            other.close()

    thread = threading.Thread(target=winner)
    thread.start()
    thread.join()


@pytest.mark.skipif("vendor() != 'sqlite'", reason=SQLITE_ONLY)
@pytest.mark.django_db(transaction=True)
def test_sqlite_keys_follow_the_callers_transaction(metastore: DjangoMetastore) -> None:
    committed, rolled_back, nested = (unique("_IK_s_") for _ in range(3))
    with transaction.atomic():
        metastore.store(committed, MINUTE, record(MINUTE))
        with pytest.raises(Boom), transaction.atomic():
            metastore.store(nested, MINUTE, record(MINUTE))
            raise Boom
        assert metastore.has_pending
        assert metastore.take_rolled_back() == [KeyMeta(nested, MINUTE)]
    assert metastore.take_rolled_back() == []
    assert not metastore.has_pending
    with pytest.raises(Boom), transaction.atomic():
        metastore.store(rolled_back, MINUTE, record(MINUTE))
        raise Boom
    assert metastore.take_rolled_back() == [KeyMeta(rolled_back, MINUTE)]
    assert metastore.load(committed, MINUTE) is not None
    assert metastore.load(rolled_back, MINUTE) is None


@pytest.mark.skipif("vendor() != 'sqlite'", reason=SQLITE_ONLY)
@pytest.mark.django_db(transaction=True)
def test_sqlite_rolled_back_keys_leave_the_caches(service: str) -> None:
    with override_settings(ASHERAH={**_settings(), "SERVICE_NAME": service, "PRODUCT_ID": "prod"}):
        factory = get_session_factory()
        with pytest.raises(Boom), transaction.atomic():
            factory.get_session("p").encrypt(b"x")
            raise Boom
        assert len(factory._keys.intermediate_keys) == 1
        assert get_session_factory() is factory
        assert len(factory._keys.intermediate_keys) == 0
        assert len(factory._keys.system_keys) == 0
        value = factory.get_session("p").encrypt(b"y")
    fresh_store = DjangoMetastore(system_key_id=factory.system_key_id)
    try:
        with make_factory(fresh_store, service) as fresh:
            assert fresh.get_session("p").decrypt(value) == b"y"
    finally:
        fresh_store.close()


def _settings() -> dict[str, object]:
    from django.conf import settings

    return dict(settings.ASHERAH)


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
