"""Faults injected for real, through Django (runtime factory, DjangoMetastore, fields).

Vault (an OpenBao of this module's own): stopped, paused (SIGSTOP: connections hang)
longer than VAULT_TIMEOUT, sealed, its token revoked while running. The database: key
connection terminated between system key creation and intermediate key store (transient
and lasting), PostgreSQL restarted, a worker SIGKILLed mid-write and between storing a key
and committing its data.

Each test checks the same four things:

1. partitions whose keys are cached keep working (the running process's factory);
2. work that needs the missing part fails fast with our typed error (KMSError or
   MetastoreError subclasses; the type and a bound on the time are asserted): it is done
   by a "cold" factory built from the same settings, as a worker started during the
   outage would be;
3. after recovery both work, without being rebuilt;
4. a full scan decrypts every row the test wrote, exactly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.signals import request_finished, request_started
from django.db import connection, connections

from asherah_django import runtime
from asherah_django.conf import asherah_settings
from asherah_django.core import KMSError, MetastoreError, SessionFactory
from asherah_django.core.key_ids import KeyIds
from asherah_django.core.kms.vault import VaultTransitKMS
from asherah_django.core.kms.vault_errors import (
    VaultAuthError,
    VaultConnectionError,
    VaultUnavailableError,
)
from asherah_django.metastore import DjangoMetastore
from asherah_django.models import EncryptionKey
from asherah_django.testing.openbao import OpenBaoServer
from tests.testapp.models import TenantNote

from .conftest import (
    ROOT,
    approle_credentials,
    provision,
    report,
    require,
    subprocess_env,
    unique,
    vault_config,
)
from .mix import full_scan, plaintext

pytestmark = [pytest.mark.vault, pytest.mark.slow]

#: Fail-fast bounds (seconds) for VAULT_TIMEOUT=1, VAULT_CONNECT_TIMEOUT=1, one retry.
FAST = 2.0
PG_VERSION = "15"


@pytest.fixture(scope="module")
def fault_bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBaoServer]:
    with OpenBaoServer(tmp_path_factory.mktemp("openbao-faults")) as server:
        provision(server)
        yield server


@pytest.fixture
def fault_settings(settings: Any, fault_bao: OpenBaoServer) -> Iterator[dict[str, Any]]:
    runtime.reset_session_factory()
    settings.ASHERAH = vault_config(
        fault_bao, VAULT_TIMEOUT=1, VAULT_CONNECT_TIMEOUT=1, VAULT_MAX_RETRIES=1
    )
    yield settings.ASHERAH
    fault_bao.resume()  # whatever the test did, leave it running and unsealed
    fault_bao.start()
    if fault_bao.request("GET", "sys/seal-status")[1].get("sealed") is not False:
        fault_bao.restart()
    runtime.reset_session_factory()


def cold_factory() -> SessionFactory:
    """A factory built from the current settings with empty caches: a worker that starts
    now (the runtime factory of another process)."""
    conf = asherah_settings
    service, product = conf.SERVICE_NAME, conf.PRODUCT_ID
    return SessionFactory(
        service,
        product,
        VaultTransitKMS(conf.vault_config()),
        DjangoMetastore(conf.DATABASE, system_key_id=KeyIds(service, product).system),
    )


def close(factory: SessionFactory) -> None:
    factory.close()
    factory.metastore.close()  # type: ignore[attr-defined]


def write(partition: str, title: str) -> TenantNote:
    return TenantNote.objects.create(
        tenant_id=partition, title=title, body=plaintext(partition, title)
    )


def timed(action: Callable[[], object], error: type[Exception]) -> tuple[Exception, float]:
    """Run ``action``, which must raise ``error``; (the error, seconds it took)."""
    started = time.monotonic()
    with pytest.raises(error) as raised:
        action()
    return raised.value, time.monotonic() - started


class Scene:
    """Warm partitions (rows written, keys cached), and a cold factory with a record of each."""

    def __init__(self, prefix: str, count: int = 3) -> None:
        self.prefix = prefix
        self.partitions = [f"{prefix}-w{n}" for n in range(count)]
        for partition in self.partitions:
            write(partition, "before")
        factory = runtime.get_session_factory()
        self.records = {
            p: factory.get_session(p).encrypt(plaintext(p, "rec").encode()) for p in self.partitions
        }
        self.cold = cold_factory()

    def cached_partitions_work(self, step: str) -> None:
        """ORM writes and reads, and session round trips, for the warm partitions, and a
        new partition (its intermediate key is made under the cached system key)."""
        factory = runtime.get_session_factory()
        for partition in [*self.partitions, f"{self.prefix}-new-{step}"]:
            note = write(partition, step)
            assert TenantNote.objects.get(pk=note.pk).body == plaintext(partition, step)
            session = factory.get_session(partition)
            assert session.decrypt(session.encrypt(b"x")) == b"x"
        for partition, record in self.records.items():
            assert factory.get_session(partition).decrypt_text(record) == plaintext(
                partition, "rec"
            )

    def cold_decrypt(self) -> None:
        partition = self.partitions[0]
        got = self.cold.get_session(partition).decrypt_text(self.records[partition])
        assert got == plaintext(partition, "rec")

    def cold_works(self) -> None:
        self.cold_decrypt()
        session = self.cold.get_session(f"{self.prefix}-cold")
        assert session.decrypt(session.encrypt(b"y")) == b"y"

    def finish(self, title: str, **figures: Any) -> None:
        try:
            rows, bad = full_scan(self.prefix)
        finally:
            close(self.cold)
        report(title, **figures, full_scan_rows=rows, full_scan_wrong=bad)
        assert bad == 0 and rows >= len(self.partitions) * 2


# -- Vault ---------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_vault_stopped(fault_settings: dict[str, Any], fault_bao: OpenBaoServer) -> None:
    scene = Scene(unique("stop"))
    fault_bao.stop()
    try:
        scene.cached_partitions_work("during")
        error, seconds = timed(scene.cold_decrypt, VaultConnectionError)
        assert "connection refused" in str(error) and seconds < FAST
    finally:
        fault_bao.start()
    scene.cold_works()
    scene.cached_partitions_work("after")
    scene.finish("fault: Vault stopped", error=type(error).__name__, fail_seconds=round(seconds, 3))


@pytest.mark.django_db(transaction=True)
def test_vault_paused_longer_than_its_timeout(
    fault_settings: dict[str, Any], fault_bao: OpenBaoServer
) -> None:
    scene = Scene(unique("pause"))
    fault_bao.pause()
    try:
        scene.cached_partitions_work("during")
        error, seconds = timed(scene.cold_decrypt, VaultConnectionError)
        # a hang, not a refusal: the read timeout (VAULT_TIMEOUT=1s), never retried
        assert "no answer within VAULT_TIMEOUT=1s" in str(error)
        assert 1.0 <= seconds < 1.0 + FAST
        time.sleep(1.5)  # paused well beyond the timeout
    finally:
        fault_bao.resume()
    scene.cold_works()
    scene.cached_partitions_work("after")
    scene.finish(
        "fault: Vault paused (SIGSTOP) 3s with VAULT_TIMEOUT=1s",
        error=type(error).__name__,
        fail_seconds=round(seconds, 3),
    )


@pytest.mark.django_db(transaction=True)
def test_vault_sealed(fault_settings: dict[str, Any], fault_bao: OpenBaoServer) -> None:
    """``sys/seal``, then unsealed. The test server has a static (auto-unseal) seal, which
    unseals only when the server starts: a restart is its unseal (a Shamir-sealed Vault
    waits for its operators' keys; the application recovers the same way either way)."""
    scene = Scene(unique("seal"))
    fault_bao.api("PUT", "sys/seal")
    assert fault_bao.request("GET", "sys/seal-status")[1]["sealed"] is True
    scene.cached_partitions_work("during")
    error, seconds = timed(scene.cold_decrypt, VaultUnavailableError)
    assert error.status == 503 and "Vault is sealed" in str(error) and seconds < FAST
    started = time.monotonic()
    fault_bao.restart()  # same port, same data: unsealed by its seal at start
    unseal_seconds = time.monotonic() - started
    scene.cold_works()
    scene.cached_partitions_work("after")
    scene.finish(
        "fault: Vault sealed",
        error=type(error).__name__,
        fail_seconds=round(seconds, 3),
        unseal_by_restart_seconds=round(unseal_seconds, 1),
    )


@pytest.mark.django_db(transaction=True)
def test_static_token_revoked_while_running(
    fault_settings: dict[str, Any], fault_bao: OpenBaoServer, settings: Any
) -> None:
    scene = Scene(unique("revs"))
    factory = runtime.get_session_factory()
    fault_bao.api("POST", "auth/token/revoke", {"token": fault_settings["VAULT_TOKEN"]})
    scene.cached_partitions_work("during")
    error, seconds = timed(scene.cold_decrypt, VaultAuthError)
    assert "Vault does not accept VAULT_TOKEN" in str(error) and seconds < FAST
    assert isinstance(error, KMSError)
    # Recovery for a static credential: configure a new token (the factory is rebuilt
    # from the new settings; nothing else is restarted).
    settings.ASHERAH = {
        **fault_settings,
        "VAULT_TOKEN": fault_bao.create_token(["asherah-transit"]),
    }
    assert factory.closed and runtime.get_session_factory() is not factory
    scene.cached_partitions_work("after")
    close(scene.cold)
    scene.cold = cold_factory()
    scene.cold_works()
    scene.finish(
        "fault: static VAULT_TOKEN revoked while running",
        error=type(error).__name__,
        fail_seconds=round(seconds, 3),
    )


@pytest.mark.django_db(transaction=True)
def test_login_token_revoked_while_running_logs_in_again(
    fault_settings: dict[str, Any], fault_bao: OpenBaoServer, settings: Any
) -> None:
    role_id, secret_id = approle_credentials(fault_bao)
    settings.ASHERAH = {
        **{k: v for k, v in fault_settings.items() if k != "VAULT_TOKEN"},
        "VAULT_AUTH_METHOD": "approle",
        "VAULT_APPROLE_ROLE_ID": role_id,
        "VAULT_APPROLE_SECRET_ID": secret_id,
    }
    scene = Scene(unique("revl"))
    factory = runtime.get_session_factory()
    kms: VaultTransitKMS = factory.kms  # type: ignore[assignment]
    lease = kms._tokens._lease
    assert lease is not None and kms.stats.logins == 1
    fault_bao.api("POST", "auth/token/revoke", {"token": lease.token})
    scene.cached_partitions_work("during")
    # Work that needs Vault in the same factory: its system key is no longer cached (as
    # after an eviction). The KMS sees 403, finds its token dead, logs in, repeats once.
    factory._keys.system_keys.clear()
    factory._keys.intermediate_keys.clear()
    started = time.monotonic()
    scene.cached_partitions_work("relogin")
    seconds = time.monotonic() - started
    assert kms.stats.logins == 2 and kms._tokens._lease is not lease
    scene.cold_works()
    scene.finish(
        "fault: AppRole token revoked while running",
        recovered_by="login again, same factory",
        vault_logins=kms.stats.logins,
        seconds=round(seconds, 3),
    )


# -- the database ---------------------------------------------------------------------------------


def key_connection_id(metastore: DjangoMetastore) -> int:
    """The server-side id of this thread's key connection (opened if needed)."""
    wrapper = metastore.connection()
    sql = (
        "SELECT pg_backend_pid()" if metastore.vendor == "postgresql" else "SELECT CONNECTION_ID()"
    )
    with wrapper.cursor() as cursor:
        cursor.execute(sql)
        (ident,) = cursor.fetchone()
    return int(ident)


def kill_connection(ident: int) -> None:
    """Terminate a server session from the test's own connection: a real connection loss."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_terminate_backend(%s)", [ident])
        else:
            cursor.execute(f"KILL CONNECTION {int(ident)}")


def allow_connections(allowed: bool) -> None:
    """PostgreSQL: refuse (or accept again) new connections to the test database only
    (other databases on the server are untouched). Sent from the ``postgres`` database:
    PostgreSQL refuses this for the database one is connected to."""
    import psycopg

    params = connection.get_connection_params()
    params = {k: v for k, v in params.items() if k in ("host", "port", "user", "password")}
    name = connection.ops.quote_name(connection.settings_dict["NAME"])
    with psycopg.connect(dbname="postgres", autocommit=True, **params) as admin:
        admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS {str(allowed).lower()}")  # type: ignore[arg-type]


def key_rows(service: str) -> list[str]:
    return sorted(
        EncryptionKey.objects.filter(id__endswith=f"_{service}_prod").values_list("id", flat=True)
    )


@pytest.mark.django_db(transaction=True)
def test_key_connection_lost_between_system_key_creation_and_intermediate_key_store(
    fault_settings: dict[str, Any],
) -> None:
    """The first write of a service creates its system key (Vault, then the metastore) and
    then the partition's intermediate key; the key connection is terminated by the server
    in between. The insert finds the connection dead, reconnects once and succeeds."""
    require("postgresql", "mysql")
    service = fault_settings["SERVICE_NAME"]
    factory = runtime.get_session_factory()
    metastore: DjangoMetastore = factory.metastore  # type: ignore[assignment]
    store = metastore.store
    killed: list[str] = []

    def store_after_losing_the_connection(key_id: str, created: int, record: Any) -> bool:
        if key_id.startswith("_IK_") and not killed:
            killed.append(key_id)
            kill_connection(key_connection_id(metastore))
        return store(key_id, created, record)

    metastore.store = store_after_losing_the_connection  # type: ignore[method-assign]
    prefix = unique("lost")
    started = time.monotonic()
    note = write(f"{prefix}-a", "first")
    seconds = time.monotonic() - started
    assert killed == [KeyIds(service, "prod").intermediate(f"{prefix}-a")]
    assert key_rows(service) == [killed[0], KeyIds(service, "prod").system]
    assert TenantNote.objects.get(pk=note.pk).body == plaintext(f"{prefix}-a", "first")
    rows, bad = full_scan(prefix)
    report(
        "fault: key connection terminated between SK creation and IK store (transient)",
        outcome="reconnected once, insert retried, no error",
        seconds=round(seconds, 3),
        full_scan_rows=rows,
    )
    assert rows == 1 and bad == 0


@pytest.mark.django_db(transaction=True)
def test_database_gone_between_system_key_creation_and_intermediate_key_store(
    fault_settings: dict[str, Any],
) -> None:
    """As above, but new connections to the database are refused until the test allows them
    again: the write fails fast with MetastoreError and writes nothing; the system key made
    just before is kept and used by the next write, which needs no Vault call."""
    require("postgresql")
    service = fault_settings["SERVICE_NAME"]
    factory = runtime.get_session_factory()
    metastore: DjangoMetastore = factory.metastore  # type: ignore[assignment]
    store = metastore.store
    cut: list[str] = []

    def store_while_the_database_is_gone(key_id: str, created: int, record: Any) -> bool:
        if key_id.startswith("_IK_") and not cut:
            cut.append(key_id)
            allow_connections(False)
            try:
                kill_connection(key_connection_id(metastore))
                return store(key_id, created, record)
            finally:
                allow_connections(True)
        return store(key_id, created, record)

    metastore.store = store_while_the_database_is_gone  # type: ignore[method-assign]
    prefix = unique("gone")
    partition = f"{prefix}-a"
    error, seconds = timed(lambda: write(partition, "lost"), MetastoreError)
    assert seconds < FAST and "not currently accepting connections" in str(error.__cause__)
    assert key_rows(service) == [KeyIds(service, "prod").system]  # the SK, no IK
    assert not TenantNote.objects.filter(tenant_id=partition).exists()
    kms: VaultTransitKMS = factory.kms  # type: ignore[assignment]
    assert kms.stats.encrypt == 1
    write(partition, "after")  # recovery: same factory
    assert kms.stats.encrypt == 1  # the IK is made under the SK already stored
    assert key_rows(service) == [KeyIds(service, "prod").intermediate(partition),
                                 KeyIds(service, "prod").system]  # fmt: skip
    rows, bad = full_scan(prefix)
    report(
        "fault: database gone between SK creation and IK store (lasting)",
        error=type(error).__name__,
        fail_seconds=round(seconds, 3),
        full_scan_rows=rows,
    )
    assert rows == 1 and bad == 0


def pg_ctl(action: str) -> None:
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", PG_VERSION, "main", action],
        check=True,
        capture_output=True,
        timeout=60,
    )


def sessions_of_others(samples: int = 10, interval: float = 0.1) -> list[str]:
    """Databases other than ours with client sessions during the next second (other test
    runs; sampled, since a run may connect and disconnect around every request)."""
    found: set[str] = set()
    with connection.cursor() as cursor:
        for _ in range(samples):
            cursor.execute(
                "SELECT DISTINCT datname FROM pg_stat_activity WHERE backend_type = "
                "'client backend' AND datname IS NOT NULL AND datname <> current_database()"
            )
            found.update(row[0] for row in cursor.fetchall())
            time.sleep(interval)
    return sorted(found)


@pytest.mark.django_db(transaction=True)
def test_postgresql_restarted(fault_settings: dict[str, Any], postgresql_is_up: None) -> None:
    """PostgreSQL stopped and started (``pg_ctlcluster``), the outage kept to the checks
    below (about two seconds). A restart ends every session on the server, so it is not
    done under other test runs sharing it (a developer machine): the test then skips,
    naming them; CI runs the PostgreSQL tests alone. ``ASHERAH_TEST_PG_RESTART=1`` forces it.
    """
    require("postgresql")
    others = sessions_of_others()
    if others and os.environ.get("ASHERAH_TEST_PG_RESTART") != "1":
        pytest.skip(
            f"PostgreSQL is in use by other sessions (databases {', '.join(others)}): not "
            "restarting it under them; set ASHERAH_TEST_PG_RESTART=1 to force"
        )
    scene = Scene(unique("pgre"))
    factory = runtime.get_session_factory()
    metastore: DjangoMetastore = factory.metastore  # type: ignore[assignment]
    key_connection_id(metastore)  # the key connection is open when the server goes
    outage = time.monotonic()
    pg_ctl("stop")
    try:
        session = factory.get_session(scene.partitions[0])  # cached keys: no I/O at all
        assert session.decrypt(session.encrypt(b"x")) == b"x"
        new = factory.get_session(f"{scene.prefix}-during")  # needs the metastore
        error, seconds = timed(lambda: new.encrypt(b"x"), MetastoreError)
        _, cold_seconds = timed(scene.cold_decrypt, MetastoreError)
        assert seconds < FAST and cold_seconds < FAST
    finally:
        pg_ctl("start")
        outage = time.monotonic() - outage
    # The next request: Django and asherah_django drop connections that died.
    request_finished.send(sender=None)
    request_started.send(sender=None)
    scene.cached_partitions_work("after")
    scene.cold_works()  # the same cold factory, which failed during the outage
    assert new.decrypt(new.encrypt(b"x")) == b"x"
    scene.finish(
        "fault: PostgreSQL restarted",
        error=type(error).__name__,
        fail_seconds=round(max(seconds, cold_seconds), 3),
        outage_seconds=round(outage, 2),
    )


@pytest.fixture
def postgresql_is_up() -> Iterator[None]:
    """Whatever happened, leave PostgreSQL running for the other tests and processes."""
    yield
    if os.path.exists(f"/etc/postgresql/{PG_VERSION}/main"):
        status = subprocess.run(
            ["pg_ctlcluster", PG_VERSION, "main", "status"], capture_output=True, check=False
        )
        if status.returncode != 0:
            pg_ctl("start")


# -- killed workers -------------------------------------------------------------------------------


def start_worker(job: dict[str, Any]) -> subprocess.Popen[str]:
    job = {"db_name": connections["default"].settings_dict["NAME"], **job}
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.reliability.worker"],
        cwd=ROOT,
        env=subprocess_env(job),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert worker.stdout is not None and worker.stdin is not None
    line = worker.stdout.readline()
    assert line.strip() == "ready", worker.stderr.read() if worker.stderr else line
    worker.stdin.write("go\n")
    worker.stdin.flush()
    return worker


def kill(worker: subprocess.Popen[str]) -> None:
    worker.send_signal(signal.SIGKILL)
    worker.communicate(timeout=30)
    assert worker.returncode == -signal.SIGKILL


@pytest.mark.database
@pytest.mark.django_db(transaction=True)
def test_worker_killed_between_storing_a_key_and_committing_its_data(
    fault_settings: dict[str, Any],
) -> None:
    """A worker writes rows in one transaction; the last one is the first of a new
    partition, whose intermediate key is stored (committed on the key connection; on SQLite
    inside the transaction) and then the worker is SIGKILLed before it commits."""
    prefix = unique("kill")
    old, new = f"{prefix}-old", f"{prefix}-new"
    write(old, "committed")
    service = fault_settings["SERVICE_NAME"]
    worker = start_worker(
        {"mode": "kill-after-key-store", "asherah": fault_settings,
         "partition": old, "new_partition": new}
    )  # fmt: skip
    assert worker.stdout is not None
    line = worker.stdout.readline()
    assert line.strip() == f"stored {KeyIds(service, 'prod').intermediate(new)}", line
    kill(worker)
    orphans = EncryptionKey.objects.filter(id=KeyIds(service, "prod").intermediate(new)).count()
    # PostgreSQL/MariaDB: the key was committed on its own; SQLite: rolled back with the rows.
    assert orphans == (0 if connection.vendor == "sqlite" else 1)
    assert list(TenantNote.objects.filter(tenant_id__startswith=prefix).values_list("title", flat=True)) == ["committed"]  # fmt: skip
    # No orphan breaks anything: the next writes (another process, this one) use or make
    # the key and everything committed decrypts.
    runtime.reset_session_factory()
    write(new, "after")
    write(old, "after")
    rows, bad = full_scan(prefix)
    report(
        "fault: worker SIGKILLed between key store and commit",
        orphan_intermediate_keys=orphans,
        uncommitted_rows_left=0,
        full_scan_rows=rows,
    )
    assert rows == 3 and bad == 0


@pytest.mark.database
@pytest.mark.django_db(transaction=True)
def test_worker_killed_mid_write(fault_settings: dict[str, Any]) -> None:
    prefix = unique("loop")
    partitions = [f"{prefix}-{n}" for n in range(5)]
    worker = start_worker(
        {"mode": "write-loop", "asherah": fault_settings, "partitions": partitions}
    )
    assert worker.stdout is not None
    acknowledged = 0
    while acknowledged < 25:  # let it commit some rows, then kill it mid-stream
        assert worker.stdout.readline().startswith("wrote ")
        acknowledged += 1
    kill(worker)
    runtime.reset_session_factory()
    for partition in partitions:  # this process goes on writing to the same partitions
        write(partition, "after")
    rows, bad = full_scan(prefix)
    report(
        "fault: worker SIGKILLed mid-write",
        rows_acknowledged_before_kill=acknowledged,
        full_scan_rows=rows,
        full_scan_wrong=bad,
    )
    assert rows >= acknowledged + len(partitions) and bad == 0
