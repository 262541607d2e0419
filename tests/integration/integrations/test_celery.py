"""Celery: the sender's partition travels with each task to a real worker process, over a
real broker (RabbitMQ and Redis), with a Redis result backend.

The worker is ``celery -A tests.integration.integrations.celery_app worker`` in a subprocess (threads
pool, 4 threads, so tasks of different tenants run at the same time in one process), on a
queue of its own, against this run's test database (committed data: transactional_db).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from celery import chain, chord, group
from django.db import connection

import asherah_django
from asherah_django.contrib.celery import partition_headers
from asherah_django.core.errors import DecryptionError, InvalidPartitionError
from asherah_django.runtime import reset_session_factory
from tests.hygiene import assert_clean_text
from tests.integration.integrations.celery_app import make_app
from tests.integrationsapp.models import Contact
from tests.support.common import ROOT
from tests.support.services import ensure_rabbitmq, ensure_redis

BROKERS = {
    "rabbitmq": "amqp://guest:guest@127.0.0.1:5672//",
    "redis": "redis://127.0.0.1:6379/14",
}
BACKEND = "redis://127.0.0.1:6379/15"
TIMEOUT = 60
STARTUP_TIMEOUT = 180

pytestmark = [pytest.mark.database, pytest.mark.slow]


@pytest.fixture(scope="module", params=sorted(BROKERS))
def broker(request: pytest.FixtureRequest) -> str:
    ensure_redis()
    if request.param == "rabbitmq":
        ensure_rabbitmq()
    return str(request.param)


@pytest.fixture
def worker(broker: str, transactional_db: None) -> Iterator[Any]:
    """A worker subprocess on this broker and the test database; the sending app."""
    queue = f"asherah-tests-{os.getpid()}-{broker}-{time.monotonic_ns()}"
    env = {
        **os.environ,
        "ASHERAH_CELERY_BROKER": BROKERS[broker],
        "ASHERAH_CELERY_BACKEND": BACKEND,
        "ASHERAH_CELERY_QUEUE": queue,
        "ASHERAH_CELERY_DB_NAME": str(connection.settings_dict["NAME"]),
        "PYTHONPATH": str(ROOT),
    }
    env.pop("PYTHONDEVMODE", None)  # the worker's own warnings are not this suite's
    # transactional_db empties the key table between tests: no key cached from before
    reset_session_factory()
    app = make_app(BROKERS[broker], BACKEND, queue)
    log = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")  # noqa: SIM115 (closed in finally)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tests.integration.integrations.celery_app",
            "worker",
            "--pool=threads",
            "--concurrency=4",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
            # A node name of its own: two test runs at once (the matrix) would otherwise both be
            # celery@<host>, whose exclusive pidbox queue RabbitMQ lets only one of them hold.
            "-n",
            f"{queue}@%h",
            "--loglevel=WARNING",
            "-Q",
            queue,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        # A file, not a pipe: a pipe nobody reads until the end would stall a talkative worker.
        stderr=log,
    )
    try:
        # Ready when it answers a task (the first one waits for the worker to connect, which
        # can take long on a loaded machine); a worker that died says why.
        ping = app.tasks["asherah_tests.whoami"].delay()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not ping.ready():
            if process.poll() is not None:
                log.seek(0)
                pytest.fail(f"the celery worker exited ({process.returncode}):\n{log.read()}")
            if time.monotonic() > deadline:
                pytest.fail(f"no celery worker answered within {STARTUP_TIMEOUT} s")
            time.sleep(0.2)
        assert ping.get(timeout=TIMEOUT) is None
        yield app
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        app.close()
        reset_session_factory()
        # The worker's log (failed tasks included) holds no key, token or plaintext.
        log.seek(0)
        assert_clean_text(log.read(), "celery worker log")
        log.close()


def task(app: Any, name: str) -> Any:
    return app.tasks[f"asherah_tests.{name}"]


def test_the_senders_partition_is_open_around_the_task(worker: Any) -> None:
    with asherah_django.session("tenant-a"):
        result = task(worker, "whoami").delay()
    assert result.get(timeout=TIMEOUT) == "tenant-a"
    assert task(worker, "whoami").delay().get(timeout=TIMEOUT) is None  # sent with none


def test_explicit_overrides_per_call_and_per_task(worker: Any) -> None:
    whoami, report = task(worker, "whoami"), task(worker, "report")
    with asherah_django.session("tenant-a"):
        other = whoami.apply_async(headers=partition_headers("tenant-b"))
        none = whoami.apply_async(headers=partition_headers(None))
        fixed = report.delay()
        fixed_overridden = report.apply_async(headers=partition_headers("tenant-c"))
    assert other.get(timeout=TIMEOUT) == "tenant-b"
    assert none.get(timeout=TIMEOUT) is None
    assert fixed.get(timeout=TIMEOUT) == "reports"
    assert fixed_overridden.get(timeout=TIMEOUT) == "tenant-c"
    with pytest.raises(InvalidPartitionError):
        partition_headers("")


def test_encrypted_rows_written_and_read_by_tasks(worker: Any) -> None:
    with asherah_django.session("tenant-a"):
        saved = task(worker, "save_note").delay("ann").get(timeout=TIMEOUT)
        assert saved["partition"] == "tenant-a"
        assert Contact.objects.get(pk=saved["pk"]).name == "ann"  # under tenant-a's key
        read = task(worker, "read_note").delay(saved["pk"]).get(timeout=TIMEOUT)
    assert read == {"name": "ann", "email": "ann@tenant-a.example", "partition": "tenant-a"}
    with asherah_django.session("tenant-b"):  # another tenant's task cannot read it
        failed = task(worker, "read_note").delay(saved["pk"])
        with pytest.raises(DecryptionError, match="another partition"):
            failed.get(timeout=TIMEOUT)


def test_a_chain_and_a_chord_keep_the_partition(worker: Any) -> None:
    with asherah_django.session("tenant-a"):
        linked = chain(task(worker, "save_note").s("cy"), task(worker, "whoami").si())
        assert linked.delay().get(timeout=TIMEOUT) == "tenant-a"
        fanned = chord(
            group(task(worker, "save_note").s(f"n{i}") for i in range(4)),
            task(worker, "read_many").s(),
        )
        assert fanned.delay().get(timeout=TIMEOUT) == ["n0", "n1", "n2", "n3"]


def test_retries_run_in_the_partition_of_the_first_try(worker: Any) -> None:
    with asherah_django.session("tenant-r"):
        pk = Contact.objects.create(email="r@x.org", name="retried").pk
        result = task(worker, "flaky").delay(pk)
    assert result.get(timeout=TIMEOUT) == {
        "name": "retried",
        "retries": 2,
        "partition": "tenant-r",
    }


def test_concurrent_tasks_of_different_tenants_never_cross(worker: Any) -> None:
    tenants = [f"tenant-{i}" for i in range(6)]

    def send(tenant: str) -> list[Any]:
        with asherah_django.session(tenant):
            return [task(worker, "save_note").delay(f"{tenant}-{n}") for n in range(5)]

    with ThreadPoolExecutor(len(tenants)) as pool:
        sent = dict(zip(tenants, pool.map(send, tenants), strict=True))
    for tenant, results in sent.items():
        for result in results:
            saved = result.get(timeout=TIMEOUT)
            assert saved["partition"] == tenant
            with asherah_django.session(tenant):
                contact = Contact.objects.get(pk=saved["pk"])
                assert contact.name.startswith(tenant) and contact.email.endswith(
                    f"@{tenant}.example"
                )
