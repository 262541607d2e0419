"""Fork safety at the Django level: the runtime factory, DjangoMetastore and the fields in
workers forked from a warm parent, as under gunicorn ``--preload``.

tests/integration/vault/test_fork.py covers the Vault client alone (own connection, no second login,
its locks) and tests/unit/test_runtime.py that a child builds its own factory. Here the
parent is a warm Django process (Vault connection open, key connection open, keys cached)
and, at the moment of each fork, another of its threads holds every lock involved (the
runtime's, the factory's key caches and lock stripes, the session cache, the metastore's,
the Vault client's token and HTTP locks). Each child then serves ORM reads and writes
through encrypted fields; the test asserts that:

* no child deadlocks (each answers within a deadline);
* each child talks to Vault over a connection of its own (OpenBao's audit log: its
  requests come from another client port than the parent's) and to the database over its
  own key connection (another server session);
* the parent's Vault connection and key connection survive the children's exit (same
  client port, same server session, still working);
* every row written by the parent and the children decrypts afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import connection, connections

from asherah_django import runtime
from asherah_django.core import CryptoPolicy, SessionFactory
from asherah_django.core.key_ids import KeyIds
from asherah_django.core.kms.vault import VaultTransitKMS
from asherah_django.metastore import DjangoMetastore
from asherah_django.testing.openbao import OpenBaoServer

from .conftest import report, unique
from .mix import full_scan, plaintext

pytestmark = [pytest.mark.vault]

TRANSIT = ("transit/encrypt/asherah-master", "transit/decrypt/asherah-master")
CHILDREN = 2


def transit_log(bao: OpenBaoServer) -> list[int]:
    """Client ports of every Transit request OpenBao answered, in order."""
    found = []
    with open(bao.audit_log_path, encoding="utf-8") as log:
        for line in log:
            entry = json.loads(line)
            if entry.get("type") == "response" and entry["request"].get("path") in TRANSIT:
                found.append(entry["request"]["remote_port"])
    return found


def key_session(metastore: DjangoMetastore) -> int | None:
    """The server session of this thread's key connection (None on SQLite)."""
    if metastore.vendor == "sqlite":
        return None
    sql = (
        "SELECT pg_backend_pid()" if metastore.vendor == "postgresql" else "SELECT CONNECTION_ID()"
    )
    with metastore.connection().cursor() as cursor:
        cursor.execute(sql)
        return int(cursor.fetchone()[0])


@contextlib.contextmanager
def held_by_another_thread(locks: list[Any]) -> Iterator[None]:
    """Another thread holds ``locks`` for the duration of the block."""
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with contextlib.ExitStack() as stack:
            for lock in locks:
                stack.enter_context(lock)
            holding.set()
            release.wait(30)

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert holding.wait(10), "could not take the locks"
    try:
        yield
    finally:
        release.set()
        thread.join(10)


def factory_locks(factory: SessionFactory) -> list[Any]:
    keys = factory._keys
    kms: VaultTransitKMS = factory.kms  # type: ignore[assignment]
    metastore: DjangoMetastore = factory.metastore  # type: ignore[assignment]
    return [
        runtime._lock,
        *keys._locks,
        keys.intermediate_keys._lock,
        keys.system_keys._lock,
        factory._sessions_lock,
        metastore._lock,
        kms._tokens.lock,
        kms._http._lock,
        kms._http._stats_lock,
    ]


def fork_children(
    count: int, work: Callable[[int], dict[str, Any]], timeout: float = 60.0
) -> list[dict[str, Any]]:
    """Fork ``count`` children running ``work(index)``; their JSON answers, in order. A child
    that does not answer within ``timeout`` is killed and fails the test (a deadlock)."""
    children = []
    for index in range(count):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                os.close(read)
                answer = work(index)
                os.write(write, json.dumps(answer).encode())
                code = 0
            except BaseException as exc:  # reported to the parent
                os.write(write, json.dumps({"error": repr(exc)}).encode())
            finally:
                os._exit(code)
        os.close(write)
        children.append((pid, read))
    answers = []
    deadline = time.monotonic() + timeout
    try:
        for pid, read in children:
            while True:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    break
                if time.monotonic() > deadline:
                    pytest.fail(f"a forked child did not answer within {timeout}s (deadlock?)")
                time.sleep(0.02)
            with os.fdopen(read, "rb") as pipe:
                answer = json.loads(pipe.read() or b"{}")
            assert os.waitstatus_to_exitcode(status) == 0, answer
            answers.append(answer)
    finally:
        for pid, _ in children:  # never leave one behind
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(pid, os.WNOHANG) == (0, 0):
                    os.kill(pid, 9)
                    os.waitpid(pid, 0)
    return answers


@pytest.mark.django_db(transaction=True)
def test_preforked_django_workers(vault_asherah: dict[str, Any], rel_bao: OpenBaoServer) -> None:
    from tests.testapp.models import TenantNote

    prefix = unique("fork")
    partitions = [f"{prefix}-{n}" for n in range(4)]
    for partition in partitions:
        TenantNote.objects.create(
            tenant_id=partition, title="parent", body=plaintext(partition, "parent")
        )
    parent = runtime.get_session_factory()
    metastore: DjangoMetastore = parent.metastore  # type: ignore[assignment]
    kms: VaultTransitKMS = parent.kms  # type: ignore[assignment]
    parent._keys.system_keys.clear()  # one more Vault call: the parent's connection is open
    TenantNote.objects.get(tenant_id=partitions[0]).body  # noqa: B018
    before = len(transit_log(rel_bao))
    parent_port = transit_log(rel_bao)[-1]
    parent_session = key_session(metastore)
    connection.close()  # Django's own connection: children open theirs (as gunicorn workers)

    def child(index: int) -> dict[str, Any]:
        assert runtime._factory is None  # the parent's factory was dropped, not used
        for partition in partitions:
            note = TenantNote.objects.get(tenant_id=partition, title="parent")
            assert note.body == plaintext(partition, "parent")
            title = f"child{index}"
            TenantNote.objects.create(
                tenant_id=partition, title=title, body=plaintext(partition, title)
            )
        factory = runtime.get_session_factory()
        child_kms: VaultTransitKMS = factory.kms  # type: ignore[assignment]
        answer = {
            "key_session": key_session(factory.metastore),  # type: ignore[arg-type]
            "vault_decrypts": child_kms.stats.decrypt,
            "vault_logins": child_kms.stats.logins,
            "metastore_queries": factory.metastore.queries,  # type: ignore[attr-defined]
        }
        runtime.reset_session_factory()
        connections.close_all()
        return answer

    started = time.monotonic()
    with held_by_another_thread(factory_locks(parent)):
        answers = fork_children(CHILDREN, child)
    seconds = time.monotonic() - started
    child_ports = transit_log(rel_bao)[before:]

    # The parent: same Vault connection, same key connection, both still working.
    parent._keys.system_keys.clear()
    parent._keys.intermediate_keys.clear()
    assert TenantNote.objects.filter(tenant_id=partitions[1], title="parent").get().body
    assert transit_log(rel_bao)[-1] == parent_port
    assert key_session(metastore) == parent_session
    rows, bad = full_scan(prefix)
    report(
        f"fork: {CHILDREN} workers forked from a warm parent, every lock held by another thread",
        seconds=round(seconds, 2),
        parent_vault_port=parent_port,
        child_vault_ports=sorted(set(child_ports)),
        parent_key_session=parent_session,
        children=answers,
        parent_vault=f"decrypt={kms.stats.decrypt} logins={kms.stats.logins}",
        full_scan_rows=rows,
    )
    assert len(child_ports) == CHILDREN and parent_port not in child_ports
    for answer in answers:
        assert answer["vault_decrypts"] == 1 and answer["vault_logins"] == 0
        if parent_session is not None:
            assert answer["key_session"] not in (None, parent_session)
    assert rows == len(partitions) * (1 + CHILDREN) and bad == 0


def own_factory() -> tuple[SessionFactory, DjangoMetastore, VaultTransitKMS]:
    """A SessionFactory built by the application itself (not the runtime's)."""
    from asherah_django.conf import asherah_settings

    service, product = asherah_settings.SERVICE_NAME, asherah_settings.PRODUCT_ID
    metastore = DjangoMetastore(system_key_id=KeyIds(service, product).system)
    kms = VaultTransitKMS(asherah_settings.vault_config())
    return SessionFactory(service, product, kms, metastore, CryptoPolicy()), metastore, kms


@pytest.mark.django_db(transaction=True)
def test_a_factory_of_ones_own_built_before_fork(
    vault_asherah: dict[str, Any], rel_bao: OpenBaoServer
) -> None:
    """An application's own SessionFactory (Vault Transit KMS, DjangoMetastore) built before
    the fork and used as it is in the children, keys cached, while another parent thread
    holds its key-cache locks, lock stripes, session-cache lock, the metastore's and the
    Vault client's locks."""
    factory, metastore, kms = own_factory()
    try:
        records = {p: factory.get_session(p).encrypt(p.encode()) for p in ("a", "b")}
        parent_session = key_session(metastore)
        connection.close()

        def child(index: int) -> dict[str, Any]:
            session = factory.get_session(f"new-{index}")  # a new partition: new key, stored
            assert session.decrypt(session.encrypt(b"child")) == b"child"
            assert all(factory.get_session(p).decrypt(r) == p.encode() for p, r in records.items())
            factory._keys.system_keys.clear()  # and a Vault call over its own connection
            factory._keys.intermediate_keys.clear()
            assert factory.get_session("a").decrypt(records["a"]) == b"a"
            answer = {"key_session": key_session(metastore), "vault_decrypts": kms.stats.decrypt}
            metastore.close()
            connections.close_all()
            return answer

        keys = factory._keys
        locks = [*keys._locks, keys.intermediate_keys._lock, keys.system_keys._lock,
                 factory._sessions_lock, metastore._lock, kms._tokens.lock, kms._http._lock,
                 kms._http._stats_lock]  # fmt: skip
        with held_by_another_thread(locks):
            answers = fork_children(CHILDREN, child, timeout=30)
        assert key_session(metastore) == parent_session  # the parent's is untouched
        assert factory.get_session("a").decrypt(records["a"]) == b"a"
    finally:
        factory.close()
        metastore.close()
    report("fork: an application's own SessionFactory used in forked children", children=answers)
    for answer in answers:
        assert answer["vault_decrypts"] == 1
        if parent_session is not None:
            assert answer["key_session"] not in (None, parent_session)
