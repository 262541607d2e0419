"""Table-scale benchmark of the maintenance commands on PostgreSQL (issue 21, items 3-4).

    python benchmarks/table_scale.py [--rows 1000000] [--batch-size 1000] [--url URL]
                                     [--verify] [--json PATH] [--check]

Builds ``--rows`` rows (100 row partitions) in a database of its own (``<name>_table_scale``
on the server of ``--url``, default ``$DATABASE_URL`` or the local PostgreSQL; dropped
and created again) and runs, each in a process of its own, against a baseline that does
the same batched rewrite of the same column without crypto (same windows, batch size and
compare-and-swap ``executemany``, writing values of the same size):

- ``asherah_encrypt``: a plaintext column to records;
- ``asherah_rotate --reencrypt``: after revoking the intermediate keys of all 100 partitions;
- ``asherah_reindex --rotate``: a new blind index key version, every index recomputed;
- the same re-encryption in two shard processes at once (``--shard 1/2`` and ``2/2``).

Reported per step: throughput (rows/s) and its ratio to the baseline (target >= 50%), the
peak RSS growth of the process (target < 50 MB), and the latency of a simple query
(``SELECT ... WHERE id = %s``) run every 20 ms by this process meanwhile. ``--verify``
checks the outcome (every value decrypts to its plaintext under a current key, every row
is found by its blind index) and exits 1 if not;
tests/integration/maintenance/test_table_scale.py runs it at 20,000 rows (correctness only,
never timing). ``--json PATH`` writes the figures (benchmarks/figures.py) for ``make bench``,
which runs it at 20,000 rows (``make bench-scale`` runs the full 1,000,000); ``--check``
exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.figures import Figure, add_json_argument, emit  # noqa: E402

TENANTS = 100
TABLE = "scale_row"
#: A benchmark-only master key (the static KMS), the same in every child process.
MASTER_KEY = "5c" * 32


def configure(url: str) -> None:
    """Django settings for ``url``'s database and the benchmark's model."""
    import django
    import environ
    from django.apps import AppConfig
    from django.conf import settings

    class ScaleConfig(AppConfig):
        name = "table_scale_app"
        label = "scale"
        path = str(Path(__file__).resolve().parent)

    module = type(sys)("table_scale_app")
    module.ScaleConfig = ScaleConfig  # type: ignore[attr-defined]
    sys.modules["table_scale_app"] = module
    asherah = {
        "SERVICE_NAME": "scale",
        "PRODUCT_ID": "bench",
        "KMS": "static",
        "STATIC_MASTER_KEY_HEX": MASTER_KEY,
        "METASTORE": "django",
    }
    database = environ.Env.db_url_config(url)
    settings.configure(
        DATABASES={"default": database},
        INSTALLED_APPS=["asherah_django", "table_scale_app.ScaleConfig"],
        ASHERAH=asherah,
        SECRET_KEY="benchmark-only-not-secret",
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        LOGGING_CONFIG=None,
    )
    django.setup()
    from django.db import models

    from asherah_django.fields import EncryptedEmailField, EncryptedTextField

    class Row(models.Model):
        tenant = models.CharField(max_length=8)
        body = EncryptedTextField(partition="tenant", legacy="read", null=True)
        email = EncryptedEmailField(partition="tenant", legacy="read", blind_index=True, null=True)
        shadow = models.TextField(null=True)  # noqa: DJ001 - the baselines' column

        class Meta:
            app_label = "scale"
            db_table = TABLE

        def __str__(self) -> str:
            return str(self.pk)

    module.Row = Row  # type: ignore[attr-defined]


def model() -> Any:
    return sys.modules["table_scale_app"].Row  # type: ignore[attr-defined]


def rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


# -- in a child process: one step, timed --------------------------------------------------


def child(url: str, step: str, args: list[str]) -> None:
    """Run ``step`` (a command, or a baseline) and print its figures as JSON."""
    configure(url)
    from django.core.management import call_command
    from django.db import connection

    from asherah_django import runtime

    runtime.get_session_factory()
    with connection.cursor() as cursor:  # (connect before the clock starts)
        cursor.execute("SELECT 1")
    start_rss = rss_kib("VmRSS")
    start = time.perf_counter()
    if step == "baseline":
        rows = baseline(*args)
    else:
        out = open(os.devnull, "w")  # noqa: SIM115 - closed with the process
        call_command(step, *args, stdout=out, stderr=out)
        rows = -1
    elapsed = time.perf_counter() - start
    growth = (rss_kib("VmHWM") - start_rss) / 1024
    print(json.dumps({"seconds": elapsed, "rss_growth_mb": growth, "rows": rows}))


def baseline(column: str, condition: str, size: str, length: str) -> int:
    """The same batched compare-and-swap rewrite of ``shadow`` without crypto, and without
    the ORM: windows in pk order, one psycopg ``executemany`` of ``UPDATE ... WHERE id = %s
    AND shadow = %s`` (``AND <column> = %s`` with ``both``) per window, each window one
    transaction; each new value ``length`` characters long."""
    from django.db import connection, transaction

    width, limit, last, done = int(length), int(size), 0, 0
    both = condition == "both"
    read = f"SELECT id, shadow{f', {column}' if both else ''} FROM {TABLE} WHERE id > %s "
    write = f"UPDATE {TABLE} SET shadow = %s WHERE id = %s AND shadow = %s"
    write += f" AND {column} = %s" if both else ""
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(read + "ORDER BY id LIMIT %s", [last, limit])
            window = cursor.fetchall()
            if not window:
                break
            params = []
            for row in window:
                old = row[1] or ""
                new = (old[:-1] + ("y" if old[-1:] == "x" else "x")).ljust(width, ".")
                params.append((new, row[0], row[1], *row[2:]))
            cursor.executemany(write, params)
        last = window[-1][0]
        done += len(window)
    connection.close()
    return done


# -- in this process: build, run, measure -------------------------------------------------


def build(rows: int) -> None:
    """The table with ``rows`` plaintext rows, loaded with COPY."""
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", "asherah_django", verbosity=0)
    with connection.schema_editor() as editor:
        editor.create_model(model())
    copy_in = f"COPY {TABLE} (tenant, body, email) FROM STDIN"
    with connection.cursor() as cursor, cursor.cursor.copy(copy_in) as copy:
        for i in range(rows):
            copy.write_row(
                (f"t{i % TENANTS}", f"a value of row {i:09d}, ".ljust(64, "v"), f"u{i}@x.org")
            )
    vacuum()


def vacuum() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM (ANALYZE) {TABLE}")


def shadow(column: str) -> None:
    """``shadow`` := ``column``, so the baseline rewrites values of the same size."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {TABLE} SET shadow = {column}")
    vacuum()


def run_children(url: str, *steps: tuple[str, list[str]]) -> tuple[float, list[dict[str, Any]]]:
    """Run ``steps`` at once, each in a process, while timing a simple query; returns the
    wall time and each child's figures (with the query latencies in the first)."""
    from django.db import connection

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTHONDEVMODE", None)
    latencies: list[float] = []
    stop = threading.Event()
    top = model()._base_manager.count()

    def probe() -> None:
        from django.db import connections

        with connections["default"].cursor() as cursor:
            while not stop.is_set():
                start = time.perf_counter()
                cursor.execute(f"SELECT body FROM {TABLE} WHERE id = %s", [random.randint(1, top)])
                cursor.fetchall()
                latencies.append(time.perf_counter() - start)
                time.sleep(0.02)
        connections["default"].close()

    connection.close()
    thread = threading.Thread(target=probe)
    thread.start()
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--child", step, "--url", url, "--", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for step, args in steps
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate()
        if proc.returncode != 0:
            stop.set()
            raise SystemExit(f"a step failed:\n{err[-3000:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    wall = time.perf_counter() - start
    stop.set()
    thread.join()
    latencies.sort()
    results[0]["query_ms"] = {
        "p50": 1000 * statistics.median(latencies) if latencies else 0.0,
        "p99": 1000 * latencies[int(len(latencies) * 0.99)] if latencies else 0.0,
        "max": 1000 * latencies[-1] if latencies else 0.0,
    }
    return wall, results


def record_length(column: str) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT max(length({column})) FROM {TABLE}")
        return int(cursor.fetchone()[0])


def verify(rows: int) -> None:
    """Every value decrypts to its plaintext under an intermediate key neither revoked nor
    missing; a sample of the rows is found through the blind index."""
    from asherah_django import rotation, runtime

    runtime.reset_session_factory()
    factory = runtime.get_session_factory()
    row = model()
    target = rotation.Target(row, (row._meta.get_field("body"),))
    inventory = rotation.take_inventory(factory, [target])
    assert sum(inventory.by_intermediate.values()) == rows, inventory.rows
    for meta in inventory.by_intermediate:
        record = inventory.records.get(meta)
        assert record is not None, meta
        assert not record.revoked, meta
    seen = 0
    for item in row.objects.only("pk", "tenant", "body").iterator(chunk_size=2000):
        assert item.body == f"a value of row {item.pk - 1:09d}, ".ljust(64, "v"), item.pk
        seen += 1
    assert seen == rows, (seen, rows)
    for i in random.sample(range(rows), min(rows, 200)):
        found = row.objects.filter(tenant=f"t{i % TENANTS}", email=f"u{i}@x.org")
        assert [r.pk for r in found] == [i + 1], i


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument(
        "--url", default=os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
    )
    parser.add_argument("--verify", action="store_true", help="check the outcome; exit 1 if wrong")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    add_json_argument(parser)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        child(options.url, options.child, options.rest)
        return 0
    url = own_database(options.url)
    configure(url)
    rows, size = options.rows, str(options.batch_size)
    build(rows)
    figures: dict[str, Any] = {"rows": rows, "batch_size": options.batch_size}
    batch = ["--batch-size", size]

    shadow("body")  # encrypt: plaintext -> records of about this length
    length = str(len(sample_record()))
    real = ("asherah_encrypt", ["scale.Row.body", *batch])
    figures["encrypt"] = step(url, ("baseline", ["body", "one", size, length]), real)
    call_out("asherah_encrypt", "scale.Row.email", *batch)  # (setup: indexes next)
    call_out("asherah_reindex", *batch)
    partitions = [f"t{i}" for i in range(TENANTS)]
    call_out("asherah_rotate", "--partition", *partitions)
    shadow("body")
    length = str(record_length("body"))
    real = ("asherah_rotate", ["--reencrypt", "scale.Row.body", *batch])
    figures["reencrypt"] = step(url, ("baseline", ["body", "one", size, length]), real)
    if options.verify:
        verify(rows)
    call_out("asherah_rotate", "--partition", *partitions)
    vacuum()
    _, shards = run_children(
        url,
        ("asherah_rotate", ["--reencrypt", "scale.Row.body", *batch, "--shard", "1/2"]),
        ("asherah_rotate", ["--reencrypt", "scale.Row.body", *batch, "--shard", "2/2"]),
    )
    wall = max(r["seconds"] for r in shards)  # (both started together; start-up excluded)
    figures["reencrypt_2_shards"] = {"seconds": wall, "rows_per_s": rows / wall}
    figures["shard_scaling"] = figures["reencrypt"]["seconds"] / wall
    if options.verify:
        verify(rows)
    shadow("email_bidx")
    length = str(record_length("email_bidx"))
    real = ("asherah_reindex", ["--rotate", "--activate-in", "0", *batch])
    figures["reindex"] = step(url, ("baseline", ["email", "both", size, length]), real)
    if options.verify:
        verify(rows)
    report(figures)
    found = to_figures(figures)
    emit(found, options.json)
    return 1 if options.check and any(f.met is False for f in found) else 0


#: Throughput of a command as a share of its baseline's, at least (issue 21).
THROUGHPUT_TARGET = 0.5
#: Peak resident memory growth of a command's process, at most (MB).
RSS_LIMIT_MB = 50.0


def to_figures(figures: dict[str, Any]) -> list[Figure]:
    """The measurements as figures for ``make bench``'s table."""
    rows = f"{figures['rows']:,} rows"
    found = []
    for name, command in (
        ("encrypt", "asherah_encrypt"),
        ("reencrypt", "rotate --reencrypt"),
        ("reindex", "reindex --rotate"),
    ):
        f = figures[name]
        found += [
            Figure(f"{command}, {rows}", f["rows_per_s"], "same rewrite, no crypto",
                   f["baseline_rows_per_s"], "rows/s", target=THROUGHPUT_TARGET,
                   higher_is_better=True),
            Figure(f"{command}, RSS growth", f["rss_growth_mb"], f"{RSS_LIMIT_MB:g} MB limit",
                   RSS_LIMIT_MB, "MB", target=1.0),
            Figure(f"{command}, query p99", f["query_ms"]["p99"],
                   "same, during baseline", f["baseline_query_ms"]["p99"], "ms"),
        ]  # fmt: skip
    two = figures["reencrypt_2_shards"]
    found.append(
        Figure("reencrypt, 2 shards vs 1 process", two["rows_per_s"], "one process",
               figures["reencrypt"]["rows_per_s"], "rows/s", higher_is_better=True)
    )  # fmt: skip
    return found


def sample_record() -> str:
    from asherah_django import runtime

    return runtime.get_session_factory().get_session("t0").encrypt(b"x" * 64)


def call_out(*args: str) -> None:
    from django.core.management import call_command

    with open(os.devnull, "w") as out:
        call_command(*args, stdout=out, stderr=out)


def step(url: str, base: tuple[str, list[str]], real: tuple[str, list[str]]) -> dict[str, Any]:
    """The baseline, then the command (the shadow column reset between), each timed."""
    rows = model()._base_manager.count()
    _, (b,) = run_children(url, base)
    vacuum()
    _, (r,) = run_children(url, real)
    vacuum()
    return {
        "seconds": r["seconds"],
        "rows_per_s": rows / r["seconds"],
        "baseline_rows_per_s": rows / b["seconds"],
        "ratio": b["seconds"] / r["seconds"],
        "rss_growth_mb": r["rss_growth_mb"],
        "baseline_rss_growth_mb": b["rss_growth_mb"],
        "query_ms": r["query_ms"],
        "baseline_query_ms": b["query_ms"],
    }


def own_database(url: str) -> str:
    """``url`` with the benchmark's own database, dropped and created afresh."""
    import psycopg

    base, _, name = url.rpartition("/")
    own = f"{name or 'test'}_table_scale"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{own}"')
        admin.execute(f'CREATE DATABASE "{own}"')
    return f"{base}/{own}"


def report(figures: dict[str, Any]) -> None:
    print(
        f"table scale: {figures['rows']:,} rows, batch size {figures['batch_size']}, "
        f"{TENANTS} row partitions, PostgreSQL"
    )
    print(
        f"{'step':<22}{'rows/s':>10}{'baseline':>10}{'ratio':>7}{'RSS +MB':>9}"
        f"{'query p50/p99/max ms':>24}"
    )
    for name in ("encrypt", "reencrypt", "reindex"):
        f = figures[name]
        q = f["query_ms"]
        print(
            f"{name:<22}{f['rows_per_s']:>10,.0f}{f['baseline_rows_per_s']:>10,.0f}"
            f"{f['ratio']:>6.0%} {f['rss_growth_mb']:>8.1f}"
            f"{q['p50']:>10.1f}/{q['p99']:.1f}/{q['max']:.1f}"
        )
    two = figures["reencrypt_2_shards"]
    print(
        f"{'reencrypt, 2 shards':<22}{two['rows_per_s']:>10,.0f}"
        f"   scaling 1 -> 2 processes: {figures['shard_scaling']:.2f}x"
    )


if __name__ == "__main__":
    raise SystemExit(main())
