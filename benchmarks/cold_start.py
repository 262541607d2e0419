"""Cold start (issue 21, item 5): the first read after process start of rows of many
partitions, ours against the ``asherah`` wheel (Asherah's Rust core) on the same keys.

    python benchmarks/cold_start.py [--partitions 1000] [--samples 5]
                                    [--backends sqlite,postgres] [--url URL]
                                    [--kms static|vault] [--json PATH] [--check]

A table of ``--partitions`` rows, one per tenant, each with a 64-byte value encrypted under
its row's partition (``EncryptedTextField(partition="tenant")``), is written once; then
every sample starts fresh processes (nothing cached, nothing imported beforehand) that
each time one "first request": from after Django's set-up and the app database
connection, through building the session factory, reading the page of rows and reading
every row's value. Contenders, alternating which goes first:

- ours: ``list(Row.objects.order_by("id")[:N])`` and ``row.body`` of each, as a view
  does; keys come from the ``encryption_key`` table through ``METASTORE: "django"``, the
  keys of a query column's rows preloaded in batches (``DjangoMetastore.BATCH_SIZE``
  intermediate keys per query);
- the wheel: the same rows fetched with a cursor, each value decrypted with
  ``factory.get_session(tenant).decrypt_bytes(value)``, its ``rdbms`` metastore on the same
  key rows: our very table on SQLite; on PostgreSQL a copy of its rows in the Rust core's
  own layout (``key_record JSONB``, schema ``wheel``), because the wheel binds
  ``key_record`` as JSON and our column is text (tests/integration/interop/test_shared_table.py).

Reported per backend: the median wall time of the first read for both and its ratio (and,
printed, the process CPU time of it, all threads, steadier on a busy machine), our
warm read of the same page in the same process (the cost without any key load), the key
queries (statements on ``encryption_key``, counted with an execute wrapper on every
connection Django opens, the metastore's own included) against the wheel's metastore
loads (its metrics hook, in a separate counting run so the hook is not timed), and the
KMS calls (the static KMS's ``decrypt_key`` calls; with ``--kms vault`` the requests to
``transit/decrypt`` in the OpenBao server's audit log). ``--kms vault`` starts a real
OpenBao server (``bao`` from the venv, as the test suite does) and runs ours only: the
wheel has no Vault Transit support. ``--check`` exits 1 when key loads are not batched
(more key queries than ceil(partitions / ``BATCH_SIZE``) + 1 for the system key) or a cold
read costs more than one KMS call.

PostgreSQL: ``--url`` (default ``$DATABASE_URL``, else postgres://postgres@127.0.0.1:5432/
test) names the server; the benchmark drops and creates a database of its own,
``<name>_cold_start``. SQLite: a file in a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.figures import Figure, add_json_argument, emit  # noqa: E402

TABLE = "cold_row"
SERVICE, PRODUCT = "cold", "bench"
#: A benchmark-only master key (the static KMS), the same in every child process.
MASTER_KEY = "6d" * 32
WHEEL_SCHEMA = "wheel"
WHEEL_TABLE = f"""CREATE TABLE {WHEEL_SCHEMA}.encryption_key (
  id TEXT NOT NULL,
  created TIMESTAMP NOT NULL,
  key_record JSONB NOT NULL,
  PRIMARY KEY (id, created)
)"""


# -- in a child process ---------------------------------------------------------------------


def configure(url: str, kms: dict[str, Any]) -> None:
    """Django settings for ``url``'s database and the benchmark's model."""
    import django
    import environ
    from django.apps import AppConfig
    from django.conf import settings

    class ColdConfig(AppConfig):
        name = "cold_start_app"
        label = "cold"
        path = str(Path(__file__).resolve().parent)

    module = type(sys)("cold_start_app")
    module.ColdConfig = ColdConfig  # type: ignore[attr-defined]
    sys.modules["cold_start_app"] = module
    settings.configure(
        DATABASES={"default": environ.Env.db_url_config(url)},
        INSTALLED_APPS=["asherah_django", "cold_start_app.ColdConfig"],
        ASHERAH={"SERVICE_NAME": SERVICE, "PRODUCT_ID": PRODUCT, "METASTORE": "django", **kms},
        SECRET_KEY="benchmark-only-not-secret",
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        LOGGING_CONFIG=None,
    )
    django.setup()
    import logging

    logging.getLogger("asherah_django").setLevel(logging.ERROR)  # the static KMS warning
    from django.db import models

    from asherah_django.fields import EncryptedTextField

    class Row(models.Model):
        tenant = models.CharField(max_length=16)
        body = EncryptedTextField(partition="tenant")

        class Meta:
            app_label = "cold"
            db_table = TABLE

        def __str__(self) -> str:
            return str(self.pk)

    module.Row = Row  # type: ignore[attr-defined]


def model() -> Any:
    return sys.modules["cold_start_app"].Row


def plaintext(i: int) -> str:
    return f"the value of tenant {i:05d} ".ljust(64, "v")


def setup_child(url: str, partitions: int, wheel_dsn: str | None) -> None:
    """Migrate, write one row per partition, and (PostgreSQL) the wheel's JSONB copy."""
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", "asherah_django", verbosity=0)
    row = model()
    with connection.schema_editor() as editor:
        editor.create_model(row)
    row.objects.bulk_create(row(tenant=f"t{i:05d}", body=plaintext(i)) for i in range(partitions))
    if wheel_dsn is not None:
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE SCHEMA {WHEEL_SCHEMA}")
            cursor.execute(WHEEL_TABLE)
            cursor.execute(
                f"INSERT INTO {WHEEL_SCHEMA}.encryption_key (id, created, key_record) "
                "SELECT id, created, key_record::jsonb FROM encryption_key"
            )
    print(json.dumps({"rows": row.objects.count()}))


def count_key_queries() -> list[int]:
    """A counter of statements on the key table, on every connection Django opens from now
    on (the app's and the metastore's own)."""
    from django.db.backends.signals import connection_created

    counter = [0]

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if "encryption_key" in sql:
            counter[0] += 1
        return execute(sql, params, many, context)

    def install(sender: Any, connection: Any, **kwargs: Any) -> None:
        connection.execute_wrappers.append(wrapper)

    connection_created.connect(install, weak=False)
    return counter


def count_kms_calls() -> list[int]:
    """A counter of ``decrypt_key`` calls of the KMS classes a factory may use."""
    from asherah_django.core.kms.static import StaticKMS
    from asherah_django.core.kms.vault import VaultTransitKMS

    counter = [0]
    for cls in (StaticKMS, VaultTransitKMS):
        original = cls.decrypt_key

        def counted(self: Any, encrypted_key: bytes, _original: Any = original) -> bytes:
            counter[0] += 1
            return bytes(_original(self, encrypted_key))

        cls.decrypt_key = counted  # type: ignore[method-assign]
    return counter


def key_query_bound(partitions: int) -> int:
    """The most key queries a batched cold read of ``partitions`` partitions may cost: one
    per ``BATCH_SIZE`` intermediate keys, plus one for the system key (the Django metastore
    usually fetches it with them)."""
    from asherah_django.metastore import BATCH_SIZE

    return -(-partitions // BATCH_SIZE) + 1


def ours_child(url: str, partitions: int) -> None:
    from django.db import connection

    queries, kms_calls = count_key_queries(), count_kms_calls()
    with connection.cursor() as cursor:  # (connect before the clock starts)
        cursor.execute("SELECT 1")
    row = model()
    cpu, start = time.process_time(), time.perf_counter()
    values = [r.body for r in row.objects.order_by("id")[:partitions]]
    cold, cpu = time.perf_counter() - start, time.process_time() - cpu
    cold_queries, cold_kms = queries[0], kms_calls[0]
    assert values == [plaintext(i) for i in range(partitions)], "wrong values"
    start = time.perf_counter()
    again = [r.body for r in row.objects.order_by("id")[:partitions]]
    warm = time.perf_counter() - start
    assert again == values
    result = {
        "ms": cold * 1e3,
        "cpu_ms": cpu * 1e3,
        "warm_ms": warm * 1e3,
        "key_queries": cold_queries,
        "warm_key_queries": queries[0] - cold_queries,
        "kms_calls": cold_kms,
        "bound": key_query_bound(partitions),
        "rows": len(values),
    }
    print(json.dumps(result))


def wheel_child(url: str, partitions: int, config: dict[str, Any]) -> None:
    import asherah
    from django.db import connection

    with connection.cursor() as cursor:  # (connect before the clock starts)
        cursor.execute("SELECT 1")
    cpu, start = time.process_time(), time.perf_counter()
    factory = asherah.SessionFactory(config)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT tenant, body FROM {TABLE} ORDER BY id LIMIT %s", [partitions])
        rows = cursor.fetchall()
    values = [factory.get_session(t).decrypt_bytes(body).decode() for t, body in rows]
    cold, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert values == [plaintext(i) for i in range(partitions)], "wrong values"
    factory.close()
    print(json.dumps({"ms": cold * 1e3, "cpu_ms": cpu * 1e3, "rows": len(values)}))


# -- in this process ---------------------------------------------------------------------------


def run(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, *args], env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"cold_start child {args[:3]} failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def own_postgres(url: str) -> str:
    """``url`` with the benchmark's own database, dropped and created afresh."""
    import psycopg

    base, _, name = url.rpartition("/")
    own = f"{name or 'test'}_cold_start"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{own}"')
        admin.execute(f'CREATE DATABASE "{own}"')
    return f"{base}/{own}"


def wheel_config(backend: str, url: str) -> dict[str, Any]:
    config: dict[str, Any] = {
        "ServiceName": SERVICE,
        "ProductID": PRODUCT,
        "KMS": "static",
        "StaticMasterKeyHex": MASTER_KEY,
    }
    if backend == "sqlite":
        return {**config, "Metastore": "sqlite", "ConnectionString": url.split("///", 1)[1]}
    parts = urlsplit(url)
    user = quote(parts.username or "postgres")
    password = f":{quote(parts.password)}" if parts.password else ""
    host = f"{parts.hostname or '127.0.0.1'}:{parts.port or 5432}"
    dsn = f"postgres://{user}{password}@{host}{parts.path}?options=-csearch_path%3D{WHEEL_SCHEMA}"
    return {
        **config,
        "Metastore": "rdbms",
        "SQLMetastoreDBType": "postgres",
        "ConnectionString": dsn,
    }


def pg_scans(url: str) -> dict[str, int]:
    """Index and sequential scans of each ``encryption_key`` table so far (pg_stat), once
    the children's server processes have ended and flushed their statistics."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(100):
            (others,) = conn.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone() or (0,)
            if not others:
                break
            time.sleep(0.05)
        rows = conn.execute(
            "SELECT schemaname, coalesce(seq_scan, 0) + coalesce(idx_scan, 0) "
            "FROM pg_stat_user_tables WHERE relname = 'encryption_key'"
        ).fetchall()
    return {schema: int(scans) for schema, scans in rows}


def measure(
    backend: str, url: str, kms: dict[str, Any], options: argparse.Namespace, bao: Any
) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTHONDEVMODE", None)
    n = str(options.partitions)
    with_wheel = kms.get("KMS") == "static"
    wheel = json.dumps(wheel_config(backend, url)) if with_wheel else ""
    base = ["--url", url, "--kms-json", json.dumps(kms), "--partitions", n]
    run(["--child", "setup", *base, "--wheel", wheel if backend == "postgres" else ""], env)
    sides = ["ours", "wheel"] if with_wheel else ["ours"]
    results: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
    schema = {"ours": "public", "wheel": WHEEL_SCHEMA}
    for sample in range(options.samples):
        order = sides if sample % 2 == 0 else sides[::-1]
        for side in order:
            before = bao.audit_count(transit_path(kms)) if bao is not None else 0
            scans = pg_scans(url) if backend == "postgres" else {}
            result = run(["--child", side, *base, "--wheel", wheel], env)
            if bao is not None:
                result["transit_decrypts"] = bao.audit_count(transit_path(kms)) - before
            if scans:
                after = pg_scans(url)
                result["pg_scans"] = after[schema[side]] - scans[schema[side]]
            results[side].append(result)
    ours = results["ours"]
    figures: dict[str, Any] = {
        "backend": backend,
        "kms": kms["KMS"],
        "partitions": options.partitions,
        "samples": options.samples,
        "ours_ms": statistics.median(r["ms"] for r in ours),
        "ours_warm_ms": statistics.median(r["warm_ms"] for r in ours),
        "ours_cpu_ms": statistics.median(r["cpu_ms"] for r in ours),
        "ours_key_queries": max(r["key_queries"] for r in ours),
        "ours_warm_key_queries": max(r["warm_key_queries"] for r in ours),
        "ours_kms_calls": max(r["kms_calls"] for r in ours),
        "bound": ours[0]["bound"],
    }
    if bao is not None:
        figures["ours_transit_decrypts"] = max(r["transit_decrypts"] for r in ours)
    if backend == "postgres":
        figures["ours_pg_scans"] = max(r["pg_scans"] for r in ours)
    if with_wheel:
        figures["wheel_ms"] = statistics.median(r["ms"] for r in results["wheel"])
        figures["wheel_cpu_ms"] = statistics.median(r["cpu_ms"] for r in results["wheel"])
        if backend == "postgres":
            figures["wheel_pg_scans"] = max(r["pg_scans"] for r in results["wheel"])
    return figures


def transit_path(kms: dict[str, Any]) -> str:
    return f"{kms.get('VAULT_TRANSIT_MOUNT', 'transit')}/decrypt/{kms['VAULT_TRANSIT_KEY']}"


def to_figures(found: dict[str, Any]) -> list[Figure]:
    name = {"sqlite": "SQLite", "postgres": "PostgreSQL"}[found["backend"]]
    if found["kms"] == "vault":
        name += ", Vault"
    n = found["partitions"]
    figures = []
    if "wheel_ms" in found:
        figures.append(
            Figure(
                f"cold read {n} partitions, {name}",
                found["ours_ms"],
                "asherah wheel",
                found["wheel_ms"],
                "ms",
            )
        )
    if "wheel_pg_scans" in found:
        figures.append(
            Figure(
                f"cold key table scans, {name}",
                found["ours_pg_scans"],
                "asherah wheel",
                found["wheel_pg_scans"],
                "scans",
            )
        )
    figures.append(
        Figure(
            f"cold read / warm read, {name}",
            found["ours_ms"],
            "ours warm",
            found["ours_warm_ms"],
            "ms",
        )
    )
    figures.append(
        Figure(
            f"cold key queries, {name}",
            found["ours_key_queries"],
            "batched bound",
            found["bound"],
            "queries",
            target=1.0,
        )
    )
    kms_calls = found.get("ours_transit_decrypts", found["ours_kms_calls"])
    figures.append(
        Figure(f"KMS calls, cold read, {name}", kms_calls, "one system key", 1, "calls", target=1.0)
    )
    return figures


def report(found: dict[str, Any]) -> None:
    n, backend = found["partitions"], found["backend"]
    print(
        f"{backend}: first read of {n} rows of {n} partitions, median of {found['samples']} "
        "fresh processes"
    )
    wheel = (
        f"; wheel {found['wheel_ms']:.1f} ms ({found['ours_ms'] / found['wheel_ms']:.2f}x)"
        if "wheel_ms" in found
        else ""
    )
    print(f"  ours cold {found['ours_ms']:.1f} ms, warm {found['ours_warm_ms']:.1f} ms{wheel}")
    wheel_cpu = f", wheel {found['wheel_cpu_ms']:.1f} ms" if "wheel_cpu_ms" in found else ""
    print(f"  process CPU time of the cold read: ours {found['ours_cpu_ms']:.1f} ms{wheel_cpu}")
    print(
        f"  key queries: ours cold {found['ours_key_queries']} (bound {found['bound']}), warm "
        f"{found['ours_warm_key_queries']}"
    )
    if "ours_pg_scans" in found:
        wheel_scans = f", wheel {found['wheel_pg_scans']}" if "wheel_pg_scans" in found else ""
        print(
            f"  scans of the key table (pg_stat_user_tables): ours {found['ours_pg_scans']}"
            f"{wheel_scans}"
        )
    transit = (
        f", transit/decrypt requests {found['ours_transit_decrypts']}"
        if "ours_transit_decrypts" in found
        else ""
    )
    print(f"  KMS decrypt_key calls: ours {found['ours_kms_calls']}{transit}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--partitions", type=int, default=1000, help="rows, one per partition")
    parser.add_argument("--samples", type=int, default=5, help="fresh processes per contender")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument(
        "--url", default=os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
    )
    parser.add_argument("--kms", choices=["static", "vault"], default="static")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    add_json_argument(parser)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--kms-json", help=argparse.SUPPRESS)
    parser.add_argument("--wheel", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        configure(options.url, json.loads(options.kms_json))
        if options.child == "setup":
            setup_child(options.url, options.partitions, options.wheel or None)
        elif options.child == "ours":
            ours_child(options.url, options.partitions)
        else:
            wheel_child(options.url, options.partitions, json.loads(options.wheel))
        return 0

    with tempfile.TemporaryDirectory(prefix="cold_start_") as tmp:
        bao = None
        kms: dict[str, Any] = {"KMS": "static", "STATIC_MASTER_KEY_HEX": MASTER_KEY}
        if options.kms == "vault":
            from asherah_django.testing.openbao import OpenBaoServer

            bao = OpenBaoServer(Path(tmp) / "bao").start()
            kms = {"KMS": "vault", **bao.settings(VAULT_TOKEN=bao.root_token)}
        try:
            figures: list[Figure] = []
            for backend in options.backends.split(","):
                if backend == "sqlite":
                    url = f"sqlite:///{tmp}/{backend}-{options.kms}.sqlite3"
                else:
                    url = own_postgres(options.url)
                found = measure(backend, url, kms, options, bao)
                report(found)
                figures += to_figures(found)
        finally:
            if bao is not None:
                bao.close()
    emit(figures, options.json)
    return 1 if options.check and any(f.met is False for f in figures) else 0


if __name__ == "__main__":
    raise SystemExit(main())
