"""PostgreSQL read replica and failover, with real application processes (issue #23).

* Read replica under lag: reads go to a hot standby that applies WAL 4 s late
  (``recovery_min_apply_delay``), writes to the primary (``pg_worker.ReplicaRouter``).
  Processes racing to the first writes of the same tenants create exactly one key per id
  and never fail: the key path reads its own writes on ``ASHERAH["DATABASE"]``, the
  primary, whatever the router does. The replica is shown to lag (it lacks the key rows
  when every writer is done); once it has caught up, a fresh process decrypts every value
  read through the router from the replica.
* Promotion under load: ``default`` is a libpq multi-host entry (primary, standby) with
  ``target_session_attrs=read-write``; replication is synchronous. Under load, the primary
  is stopped the crash way (``pg_ctl stop -m immediate``) and the standby promoted 1 s
  later. Figures printed: failed operations (typed errors only), their window, the time
  until all succeed again (no restart of the application), values lost (must be 0), and
  every value acknowledged decrypts in a fresh process afterwards.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from asherah_django.testing.postgres_pair import PostgresPair

from . import pg_worker

pytestmark = [pytest.mark.topology]
LAG_MS = 4000  # far above the race's duration, even on a loaded machine
PROCESSES = 4  # racing first writers
LOADERS = 3  # processes under load during the promotion
TENANTS = [f"race-{n}" for n in range(6)]
BEFORE, DETECT, AFTER = 3.0, 1.0, 6.0  # load before the crash; crash to promotion; after
SPAWN = multiprocessing.get_context("spawn")
#: The multi-host entry's options, as the topologies guide recommends them.
FAILOVER_OPTIONS = {"target_session_attrs": "read-write", "connect_timeout": 3}
FAILOVER_CONN = {"CONN_MAX_AGE": 60, "CONN_HEALTH_CHECKS": True}


def run(target: Any, *args: Any, expect: str, timeout: float = 180) -> Any:
    """Run ``target(*args, out)`` in a fresh process and return its one message."""
    out = SPAWN.Queue()
    process = SPAWN.Process(target=target, args=(*args, out))
    process.start()
    try:
        kind, payload = out.get(timeout=timeout)
        assert kind == expect, payload
        return payload
    finally:
        process.join(timeout=30)
        if process.is_alive():
            process.kill()


@contextlib.contextmanager
def ready_workers(target: Any, arg_tuples: list[tuple[Any, ...]]) -> Iterator[list[Any]]:
    """Start ``target(*args, queue)`` per ``arg_tuples``, wait until each says "ready" and
    yield their queues; join (or kill) them on the way out."""
    queues = [SPAWN.Queue() for _ in arg_tuples]
    pairs = zip(arg_tuples, queues, strict=True)
    workers = [SPAWN.Process(target=target, args=(*args, q)) for args, q in pairs]
    for worker in workers:
        worker.start()
    try:
        for q in queues:
            assert q.get(timeout=120)[0] == "ready"
        yield queues
    finally:
        for worker in workers:
            worker.join(timeout=30)
            if worker.is_alive():
                worker.kill()


def rows(dsn: str, sql: str, *params: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        return list(conn.execute(sql, params).fetchall())


def wait_for(predicate: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def key_rows(dsn: str, pattern: str) -> dict[str, int]:
    found = rows(
        dsn, "SELECT id, count(*) FROM encryption_key WHERE id LIKE %s GROUP BY id", pattern
    )
    return {key_id: int(count) for key_id, count in found}


def readme_block(marker: str) -> str:
    """The python block of the topologies guide (docs/howto/topologies.md) holding ``marker``."""
    guide = Path(__file__).resolve().parents[3] / "docs" / "howto" / "topologies.md"
    text = guide.read_text(encoding="utf-8")
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", text, re.DOTALL) if marker in b]
    return block


def test_readme_router_and_failover_entry_are_the_tested_ones() -> None:
    """The guide's read-replica router and multi-host entry are what the tests below run."""
    namespace: dict[str, Any] = {}
    exec(readme_block("class ReplicaRouter"), namespace)
    readme, tested = namespace["ReplicaRouter"](), pg_worker.ReplicaRouter()
    for method, args in (
        ("db_for_read", (object,)), ("db_for_write", (object,)),
        ("allow_relation", (1, 2)), ("allow_migrate", ("default", "app")),
        ("allow_migrate", ("replica", "app")),
    ):  # fmt: skip
        assert getattr(readme, method)(*args) == getattr(tested, method)(*args), method
    namespace = {"DATABASES": {}}
    exec(readme_block('DATABASES["default"] = {'), namespace)
    entry = namespace["DATABASES"]["default"]
    assert entry["OPTIONS"] == FAILOVER_OPTIONS and entry["HOST"].count(",") == 1
    assert {k: entry[k] for k in FAILOVER_CONN} == FAILOVER_CONN


def test_read_replica_racing_first_writes_read_their_own_writes() -> None:
    with PostgresPair(apply_delay_ms=LAG_MS) as pair:
        databases = {
            "default": pair.django_database("primary"),
            "replica": pair.django_database("standby"),
        }
        run(pg_worker.migrate, databases, expect="migrated")
        tables = "SELECT count(*) FROM pg_tables WHERE tablename = 'encryption_key'"
        wait_for(lambda: rows(pair.dsn("standby"), tables)[0][0] == 1, "the replica's tables")
        go = SPAWN.Event()
        with ready_workers(pg_worker.race, [(databases, TENANTS, go)] * PROCESSES) as queues:
            go.set()
            started = time.monotonic()
            results = [q.get(timeout=120)[1] for q in queues]
            elapsed = time.monotonic() - started
            on_replica = key_rows(pair.dsn("standby"), "_IK_race-%")
        on_primary = key_rows(pair.dsn("primary"), "_IK_race-%")
        system_keys = key_rows(pair.dsn("primary"), "_SK_%")
        errors = [error for result in results for error in result["errors"]]
        written = [row for result in results for row in result["written"]]
        caught_up = lambda: key_rows(pair.dsn("standby"), "_IK_race-%") == on_primary  # noqa: E731
        wait_for(caught_up, "the replica to catch up", timeout=LAG_MS / 1000 * 10 + 30)
        check = run(pg_worker.verify, databases, written, expect="verified")
    print(
        f"\nRead replica (recovery_min_apply_delay={LAG_MS}ms): {PROCESSES} processes raced "
        f"to the first writes of {len(TENANTS)} tenants in {elapsed:.2f}s: {len(errors)} "
        f"failed, {len(written)} values written; intermediate key rows per tenant on the "
        f"primary {sorted(set(on_primary.values()))}, system key rows {sum(system_keys.values())}; "
        f"key rows on the replica when all writers were done: {len(on_replica)} of "
        f"{len(on_primary)}; read back through the router from the replica by a fresh "
        f"process: {check}"
    )
    assert errors == []
    assert len(written) == PROCESSES * len(TENANTS)
    assert on_primary == {f"_IK_{tenant}_svc_prod": 1 for tenant in TENANTS}
    assert list(system_keys.values()) == [1]
    # The lag was real: had the key path read from the replica, the races would have failed.
    assert len(on_replica) < len(on_primary), "the replica did not lag: the test proves nothing"
    assert check == {"checked": len(written), "missing": 0, "unreadable": 0}


def test_standby_promoted_under_load_loses_nothing() -> None:
    with PostgresPair(synchronous=True) as pair:
        failover = {
            **pair.django_database("primary", "standby", **FAILOVER_OPTIONS),
            **FAILOVER_CONN,
        }
        databases = {"default": failover, "replica": failover}
        run(pg_worker.migrate, databases, expect="migrated")
        go, stop = SPAWN.Event(), SPAWN.Event()
        loaders = [(databases, f"p{i}", go, stop) for i in range(LOADERS)]
        with ready_workers(pg_worker.load, loaders) as queues, contextlib.ExitStack() as finish:
            finish.callback(stop.set)  # also when the test fails: the workers end their loop
            go.set()
            time.sleep(BEFORE)
            crashed_at = time.time()
            pair.stop("primary", "immediate")
            time.sleep(DETECT)  # a failover manager noticing the crash
            pair.promote()
            promoted = time.time() - crashed_at
            time.sleep(max(0.0, crashed_at + AFTER - time.time()))
            stop.set()
            results = [q.get(timeout=120)[1] for q in queues]
        written = [row for result in results for row in result["written"]]
        check = run(pg_worker.verify, databases, written, expect="verified")
    ops = sorted(op for result in results for op in result["ops"])
    failures = [(end, kind) for end, _, kind, _ in ops if kind]
    last_failure = failures[-1][0] if failures else crashed_at
    figures = {
        "ops": len(ops),
        "failed": len(failures),
        "failed_cold": sum(1 for _, _, kind, cold in ops if kind and cold),
        "failure_types": sorted({kind for _, kind in failures}),
        "error_window_s": round(failures[-1][0] - failures[0][0], 2) if failures else 0.0,
        "promoted_after_s": round(promoted, 2),
        "all_ok_again_after_s": round(last_failure - crashed_at, 2),
        "ok_after_recovery": sum(1 for end, _, kind, _ in ops if end > last_failure and not kind),
        "slowest_op_s": round(max(seconds for _, seconds, _, _ in ops), 2),
        "values_written": len(written),
        "values_lost": check["missing"] + check["unreadable"],
    }
    print(
        f"\nPostgreSQL promotion under load (synchronous standby, crash of the primary): {figures}"
    )
    assert not any(kind.startswith("UNTYPED") for kind in figures["failure_types"])
    assert all(crashed_at <= end for end, _ in failures), "a failure before the crash"
    assert figures["values_lost"] == 0
    assert figures["ok_after_recovery"] > 0, "writes never succeeded again after the promotion"
    # Errors only during the switch: none once the promoted standby had been up a while.
    assert figures["all_ok_again_after_s"] < promoted + 10
