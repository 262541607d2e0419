"""Load: 8 threads, then 4 processes, then asyncio (async ORM and async middleware), each doing
mixed encrypts and decrypts (ORM fields and core sessions) over 200 partitions, on
PostgreSQL with Vault Transit (a real OpenBao).

Each test asserts: no error; no value decrypted under the wrong partition (every
plaintext names its partition, and records offered to another partition's session are
refused); caches bounded; memory flat once warm (tracemalloc and RSS measured after the
warm-up and after each half of the run); and a full scan afterwards decrypts every row
written. It prints operations, errors, metastore queries, Vault calls (the client's own
counters and OpenBao's audit log) and memory; the figures are repeated at the end of the
run ("reliability figures").

Size: ``ASHERAH_LOAD_OPS`` operations per worker (default 600, so the file takes well
under a minute on 2 cores). The full size of the issue is 20,000:

    ASHERAH_LOAD_OPS=20000 DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \\
        .venv/bin/python -m pytest tests/integration/reliability/test_load.py -s

``ASHERAH_LOAD_TRACEMALLOC=0`` measures RSS only (tracemalloc slows Python down).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.db import connections
from django.test import AsyncClient, override_settings

from asherah_django import session as partition_scope
from asherah_django.runtime import get_session_factory
from asherah_django.testing.openbao import OpenBaoServer
from tests.testapp.models import Secret, TenantNote

from .conftest import ROOT, report, require, subprocess_env, unique
from .mix import MixResult, full_scan, partitions_for, plaintext, rss_kib, run_mix, warm_up

pytestmark = [pytest.mark.slow, pytest.mark.vault]

OPS = int(os.environ.get("ASHERAH_LOAD_OPS", "600"))
TRACE = os.environ.get("ASHERAH_LOAD_TRACEMALLOC", "1") != "0"
THREADS = 8
PROCESSES = 4
PARTITIONS = 200
#: Growth allowed between the two halves of a run, once warm (KiB).
FLAT_TRACED_KIB = 1024
FLAT_RSS_KIB = 16 * 1024
TRANSIT = ("transit/encrypt/asherah-master", "transit/decrypt/asherah-master")


@pytest.fixture
def traced() -> Iterator[None]:
    started = TRACE and not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    yield
    if started:
        tracemalloc.stop()


def memory() -> dict[str, int]:
    gc.collect()
    traced = tracemalloc.get_traced_memory()[0] // 1024 if tracemalloc.is_tracing() else -1
    return {"traced_kib": traced, "rss_kib": rss_kib()}


def audit(bao: OpenBaoServer) -> tuple[int, int]:
    encrypt, decrypt = (bao.audit_count(path) for path in TRANSIT)
    return encrypt, decrypt


def check_flat(label: str, marks: list[dict[str, int]]) -> None:
    """Memory after the second half is within a bound of memory after the first."""
    _, first, second = marks
    if first["traced_kib"] >= 0:
        growth = second["traced_kib"] - first["traced_kib"]
        assert growth < FLAT_TRACED_KIB, f"{label}: traced memory grew {growth} KiB once warm"
    growth = second["rss_kib"] - first["rss_kib"]
    assert growth < FLAT_RSS_KIB, f"{label}: RSS grew {growth} KiB once warm"


def check_mix(label: str, result: MixResult) -> None:
    assert result.errors == {}, f"{label}: {dict(result.errors)}\n" + "\n".join(result.first_errors)
    assert result.wrong_partition == 0 and result.wrong_value == 0
    assert result.ops["session_cross_partition_refused"] > 0  # (mix.py makes one at least)


def writes(result: MixResult) -> int:
    return result.ops["orm_write_row_partition"] + result.ops["orm_write_session_scope"]


@pytest.mark.django_db(transaction=True)
def test_eight_threads(vault_asherah: dict[str, Any], rel_bao: OpenBaoServer, traced: None) -> None:
    require("postgresql")
    prefix = unique("th")
    partitions = partitions_for(prefix, PARTITIONS)
    factory = get_session_factory()
    audit_before = audit(rel_bao)
    started = time.monotonic()
    warm_up(partitions)
    warm_queries = factory.metastore.queries  # type: ignore[attr-defined]
    marks = [memory()]
    result = MixResult()
    for half in (0, 1):
        results: list[MixResult] = []

        def work(worker: int, half: int = half, results: list[MixResult] = results) -> None:
            try:
                part = run_mix(f"w{worker}h{half}", OPS // 2, partitions, seed=worker * 10 + half)
                results.append(part)
            finally:
                connections.close_all()

        threads = [threading.Thread(target=work, args=(n,)) for n in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(results) == THREADS
        for part in results:
            result.merge(part)
        marks.append(memory())
    elapsed = time.monotonic() - started
    rows, bad = full_scan(prefix)
    stats = factory.kms.stats  # type: ignore[attr-defined]
    keys = factory._keys
    audit_after = audit(rel_bao)
    report(
        f"load, {THREADS} threads x {OPS} ops, {PARTITIONS} partitions (PostgreSQL, Vault)",
        operations=result.total,
        by_kind=dict(result.ops),
        errors=sum(result.errors.values()),
        wrong_partition=result.wrong_partition,
        wrong_value=result.wrong_value,
        seconds=elapsed,
        ops_per_second=round(result.total / elapsed),
        metastore_queries_warm_up=warm_queries,
        metastore_queries_total=factory.metastore.queries,  # type: ignore[attr-defined]
        vault_client=f"encrypt={stats.encrypt} decrypt={stats.decrypt} logins={stats.logins} "
        f"other={stats.other} retries={stats.retries}",
        vault_audit_transit=f"encrypt={audit_after[0] - audit_before[0]} "
        f"decrypt={audit_after[1] - audit_before[1]}",
        caches=f"intermediate_keys={len(keys.intermediate_keys)} "
        f"system_keys={len(keys.system_keys)} sessions={len(factory._sessions)}",
        memory_after_warm_up=marks[0],
        memory_after_half_1=marks[1],
        memory_after_half_2=marks[2],
        full_scan_rows=rows,
    )
    check_mix("threads", result)
    assert rows == writes(result) and bad == 0
    assert stats.encrypt == 1 and stats.decrypt == 0  # one system key, made once
    assert len(keys.intermediate_keys) == PARTITIONS and len(keys.system_keys) == 1
    # Once warm, the hot path needs no key query: what remains is the warm-up's.
    assert factory.metastore.queries == warm_queries  # type: ignore[attr-defined]
    check_flat("threads", marks)


@pytest.mark.django_db(transaction=True)
def test_eight_threads_with_caches_smaller_than_the_working_set(
    vault_asherah: dict[str, Any], settings: Any, traced: None
) -> None:
    """200 partitions through caches of 32 intermediate keys and 16 sessions: keys are
    evicted (and wiped) while other threads use them, and loaded again. Still no error, no
    value under the wrong partition, caches within their bounds."""
    require("postgresql")
    ik_cache, session_cache = 32, 16
    settings.ASHERAH = {
        **vault_asherah,
        "INTERMEDIATE_KEY_CACHE_SIZE": ik_cache,
        "SESSION_CACHE_SIZE": session_cache,
    }
    prefix = unique("ch")
    partitions = partitions_for(prefix, PARTITIONS)
    factory = get_session_factory()
    warm_up(partitions)
    warm_queries = factory.metastore.queries  # type: ignore[attr-defined]
    ops = max(100, OPS // 2)
    marks = [memory()]
    result = MixResult()
    started = time.monotonic()
    for half in (0, 1):
        results: list[MixResult] = []

        def work(worker: int, half: int = half, results: list[MixResult] = results) -> None:
            try:
                results.append(run_mix(f"c{worker}h{half}", ops // 2, partitions, seed=worker))
            finally:
                connections.close_all()

        threads = [threading.Thread(target=work, args=(n,)) for n in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for part in results:
            result.merge(part)
        marks.append(memory())
    elapsed = time.monotonic() - started
    rows, bad = full_scan(prefix)
    keys = factory._keys
    stats = factory.kms.stats  # type: ignore[attr-defined]
    reloads = factory.metastore.queries - warm_queries  # type: ignore[attr-defined]
    report(
        f"load, {THREADS} threads x {ops} ops, {PARTITIONS} partitions through caches of "
        f"{ik_cache} keys and {session_cache} sessions",
        operations=result.total,
        errors=sum(result.errors.values()),
        wrong_partition=result.wrong_partition,
        wrong_value=result.wrong_value,
        seconds=elapsed,
        metastore_queries_after_warm_up=reloads,
        vault_client=f"encrypt={stats.encrypt} decrypt={stats.decrypt}",
        caches=f"intermediate_keys={len(keys.intermediate_keys)} "
        f"system_keys={len(keys.system_keys)} sessions={len(factory._sessions)}",
        memory_after_warm_up=marks[0],
        memory_after_half_1=marks[1],
        memory_after_half_2=marks[2],
        full_scan_rows=rows,
    )
    check_mix("threads, small caches", result)
    assert rows == writes(result) and bad == 0
    assert len(keys.intermediate_keys) <= ik_cache and len(factory._sessions) <= session_cache
    assert reloads > 0 and stats.decrypt == 0  # keys reloaded from the metastore, not Vault
    check_flat("threads, small caches", marks)


@pytest.mark.django_db(transaction=True)
def test_four_processes(vault_asherah: dict[str, Any], rel_bao: OpenBaoServer) -> None:
    require("postgresql")
    prefix = unique("pr")
    partitions = partitions_for(prefix, PARTITIONS)
    warm_up(partitions)  # this process creates the keys; the workers load them cold
    audit_before = audit(rel_bao)
    workers = []
    for index in range(PROCESSES):
        job = {
            "mode": "load",
            "db_name": connections["default"].settings_dict["NAME"],
            "asherah": vault_asherah,
            "partitions": partitions,
            "ops": OPS,
            "name": f"p{index}",
            "seed": 1000 + index * 10,
            "tracemalloc": TRACE,
        }
        workers.append(
            subprocess.Popen(
                [sys.executable, "-m", "tests.integration.reliability.worker"],
                cwd=ROOT,
                env=subprocess_env(job),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outputs: list[dict[str, Any]] = []
    started = time.monotonic()
    try:
        for worker in workers:
            assert worker.stdout is not None and worker.stdin is not None
            assert worker.stdout.readline().strip() == "ready", worker.stderr
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        for worker in workers:
            stdout, stderr = worker.communicate(timeout=600)
            assert worker.returncode == 0, stderr[-3000:]
            outputs.append(json.loads(stdout.strip().splitlines()[-1]))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.communicate()
    elapsed = time.monotonic() - started
    result = MixResult()
    for output in outputs:
        result.merge(output)
    rows, bad = full_scan(prefix)
    audit_after = audit(rel_bao)
    per_worker = [
        f"{o['ops'] and sum(o['ops'].values())} ops in {o['seconds']:.1f}s, "
        f"{o['metastore_queries']} metastore queries, vault {o['vault']}, caches {o['caches']}, "
        f"memory {o['memory']}"
        for o in outputs
    ]
    report(
        f"load, {PROCESSES} processes x {OPS} ops, {PARTITIONS} partitions (PostgreSQL, Vault)",
        operations=result.total,
        by_kind=dict(result.ops),
        errors=sum(result.errors.values()),
        wrong_partition=result.wrong_partition,
        wrong_value=result.wrong_value,
        seconds=elapsed,
        ops_per_second=round(result.total / elapsed),
        vault_audit_transit=f"encrypt={audit_after[0] - audit_before[0]} "
        f"decrypt={audit_after[1] - audit_before[1]}",
        **{f"worker_{n}": text for n, text in enumerate(per_worker)},
        full_scan_rows=rows,
    )
    check_mix("processes", result)
    assert rows == writes(result) and bad == 0
    for index, output in enumerate(outputs):
        assert output["vault"]["decrypt"] == 1 and output["vault"]["encrypt"] == 0
        assert output["caches"]["intermediate_keys"] == PARTITIONS
        # cold loads of the 200 keys (+1 to connect) and nothing after the warm-up
        assert output["metastore_queries"] <= PARTITIONS + 2
        check_flat(f"worker {index}", output["memory"])
    assert audit_after[1] - audit_before[1] == PROCESSES


class ASGIResponse:
    def __init__(self, status: int, body: bytes) -> None:
        self.status_code, self.content = status, body

    def json(self) -> Any:
        return json.loads(self.content)


async def asgi_request(
    app: Any, method: str, path: str, tenant: str, body: bytes = b""
) -> ASGIResponse:
    """One HTTP request through Django's ASGI application, as an ASGI server makes it.

    (Not django.test.AsyncClient: it connects and disconnects signal receivers on every
    request, and each connection leaves a weakref.finalize behind, which would be counted
    as our memory.)"""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
        "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
        "query_string": b"", "root_path": "", "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "headers": [(b"host", b"testserver"), (b"x-tenant", tenant.encode()),
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode())],
    }  # fmt: skip
    sent = asyncio.Event()
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    status, chunks = 0, []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await sent.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                sent.set()

    await app(scope, receive, send)
    return ASGIResponse(status, b"".join(chunks))


@pytest.mark.django_db(transaction=True)
def test_asyncio_requests_through_the_async_middleware_and_orm(
    vault_asherah: dict[str, Any], settings: Any, traced: None
) -> None:
    """8 asyncio tasks send requests to Django's ASGI application: AsherahSessionMiddleware
    (async) opens the X-Tenant partition, the views use the async ORM (acreate, aget,
    ``async for``) and read encrypted attributes in the event loop."""
    from django.core.handlers.asgi import ASGIHandler

    require("postgresql")
    prefix = unique("as")
    partitions = partitions_for(prefix, PARTITIONS)
    settings.ASHERAH = {
        **vault_asherah,
        "PARTITION_RESOLVER": "tests.integration.reliability.urls.header_partition",
    }
    tasks, per_task = 8, max(4, OPS // 8)
    counts = {"writes": 0, "reads": 0, "refused": 0, "errors": 0, "wrong": 0}
    failures: list[str] = []

    async def client_task(app: Any, index: int, steps: range) -> None:
        mine: list[tuple[int, str, str]] = []
        for step in steps:
            partition = partitions[(index * 7919 + step * 31) % len(partitions)]
            label = f"a{index}-{step}"
            if step % 3 == 0 or not mine:
                body = json.dumps({"label": label}).encode()
                response = await asgi_request(app, "POST", "/rel/write/", partition, body)
                if response.status_code != 200:
                    counts["errors"] += 1
                    failures.append(response.content.decode()[:300])
                    continue
                mine.append((response.json()["secret"], partition, label))
                counts["writes"] += 1
            elif step % 7 == 1:  # another tenant's secret: refused, never shown
                pk, owner, _ = mine[-1]
                other = partitions[(partitions.index(owner) + 1) % len(partitions)]
                response = await asgi_request(app, "GET", f"/rel/read/{pk}/", other)
                refused = response.status_code == 403
                refused = refused and response.json() == {"error": "PartitionMismatchError"}
                counts["refused" if refused else "wrong"] += 1
            else:
                pk, owner, written = mine[step % len(mine)]
                response = await asgi_request(app, "GET", f"/rel/read/{pk}/", owner)
                data = response.json()
                ok = response.status_code == 200 and data["body"] == plaintext(owner, written)
                ok = ok and all(body == plaintext(owner, title) for title, body in data["notes"])
                counts["reads" if ok else "wrong"] += 1

    async def run(app: Any, steps: range) -> None:
        try:
            await asyncio.gather(*(client_task(app, n, steps) for n in range(tasks)))
        finally:  # the ORM ran in this (sync) thread's executor: close its connections
            await sync_to_async(connections.close_all)()

    factory = get_session_factory()
    warm_up(partitions)
    marks = [memory()]
    started = time.monotonic()
    with override_settings(
        ROOT_URLCONF="tests.integration.reliability.urls",
        MIDDLEWARE=["asherah_django.middleware.AsherahSessionMiddleware"],
    ):
        factory = get_session_factory()
        app = ASGIHandler()
        for steps in (range(per_task // 2), range(per_task // 2, per_task)):
            async_to_sync(run)(app, steps)
            marks.append(memory())
    elapsed = time.monotonic() - started
    rows, bad = full_scan(prefix)
    stats = factory.kms.stats  # type: ignore[attr-defined]
    report(
        f"load, asyncio: {tasks} tasks x {per_task} ASGI requests, {PARTITIONS} partitions",
        requests=tasks * per_task,
        **counts,
        seconds=elapsed,
        requests_per_second=round(tasks * per_task / elapsed),
        metastore_queries=factory.metastore.queries,  # type: ignore[attr-defined]
        vault_client=f"encrypt={stats.encrypt} decrypt={stats.decrypt} logins={stats.logins}",
        memory_after_warm_up=marks[0],
        memory_after_half_1=marks[1],
        memory_after_half_2=marks[2],
        full_scan_rows=rows,
    )
    assert counts["errors"] == 0 and counts["wrong"] == 0, failures[:3]
    assert counts["refused"] > 0 and counts["reads"] > 0
    assert rows == 2 * counts["writes"] and bad == 0
    check_flat("asyncio", marks)


@pytest.mark.django_db(transaction=True)
def test_async_views_read_values_whose_keys_are_not_cached(
    vault_asherah: dict[str, Any], settings: Any
) -> None:
    """A worker that has just started (empty caches) serves an async view: the first read of
    each value loads its key from the metastore, from the event loop's thread."""
    settings.ASHERAH = {
        **vault_asherah,
        "PARTITION_RESOLVER": "tests.integration.reliability.urls.header_partition",
    }
    prefix = unique("cold")
    partitions = partitions_for(prefix, 3)
    written = {}
    for partition in partitions:
        with partition_scope(partition):
            written[partition] = Secret.objects.create(
                owner=f"{partition}|x", body=plaintext(partition, "x")
            ).pk
        TenantNote.objects.create(tenant_id=partition, title="n", body=plaintext(partition, "n"))
    factory = get_session_factory()
    factory._keys.intermediate_keys.clear()  # as in a process that never used these keys
    factory._keys.system_keys.clear()
    before = factory.metastore.queries  # type: ignore[attr-defined]

    async def main() -> list[tuple[int, Any]]:
        client = AsyncClient()
        try:
            return [
                (response.status_code, response.json())
                for response in [
                    await client.get(f"/rel/read/{pk}/", headers={"X-Tenant": partition})
                    for partition, pk in written.items()
                ]
            ]
        finally:
            await sync_to_async(connections.close_all)()

    with override_settings(
        ROOT_URLCONF="tests.integration.reliability.urls",
        MIDDLEWARE=["asherah_django.middleware.AsherahSessionMiddleware"],
    ):
        answers = async_to_sync(main)()
    for (status, data), partition in zip(answers, partitions, strict=True):
        assert status == 200, data
        assert data["body"] == plaintext(partition, "x")
        assert data["notes"] == [["n", plaintext(partition, "n")]]
    queries = factory.metastore.queries - before  # type: ignore[attr-defined]
    stats = factory.kms.stats  # type: ignore[attr-defined]
    report(
        "async views, cold keys",
        values_read=2 * len(partitions),
        metastore_queries=queries,
        vault_decrypts=stats.decrypt,
    )
    assert stats.decrypt == 1 and 0 < queries <= 2 * len(partitions)
