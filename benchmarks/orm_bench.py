"""ORM benchmark: a plain TextField, django-fernet-encrypted-fields' EncryptedTextField and
asherah_django's encrypted fields, side by side in one process, on SQLite (in memory) and
PostgreSQL.

    python benchmarks/orm_bench.py [--database sqlite|postgres|both] [--rows 5000]
        [--rounds 7] [--cpu] [--check] [--json PATH] [--postgres-url URL]
        [--postgres-name bench_orm]

For each model: ``bulk_create`` of N rows, then reading all of them back (iterating the
queryset and reading the field of every instance, so lazy decryption is counted). Also, for
the plain and the asherah model: the rows read without touching the field (decryption is
lazy: a list that does not show the field pays only the conversion), ``values_list(field,
flat=True)`` (decrypted at once, no instance) and ``.iterator()`` (rows arrive in chunks);
and a model of five encrypted fields of different types (text, char, integer, JSON, date)
against the same five plain fields, written and read. Rounds interleave every measurement
(and both databases), so that they share the machine's conditions; each figure is the best
of ``--rounds``, per row. Caches are warm for all (one small warm-up run first):
asherah_django's keys come from the Django metastore table of the first database and the
static KMS; Fernet's key derivation happens once per field.

PostgreSQL: ``--postgres-url`` (default ``$DATABASE_URL`` when it is a PostgreSQL URL, else
postgres://postgres@127.0.0.1:5432/test) names the server; the benchmark creates a database
of its own next to it (``--postgres-name``, default ``bench_orm``) and drops it at the end.
``--database both`` (the default) measures SQLite and PostgreSQL in the same rounds.
``--cpu`` times SQLite with the process's CPU time (steadier on a busy machine);
PostgreSQL is always timed with the wall clock (its server is another process).

Targets (issue 21): on each database, asherah_django at most 1.3x the plain field for
writes and 1.6x for reads (1 text field, 5,000 rows), and the field at least 1.5x faster
than the Fernet field (issue 5); ``--check`` exits 1 when one is missed. Reported without
a target: ``.iterator()`` and ``values_list`` reads, the five-field model, bound fields
(``bind=True`` on the same model shape and ``bind=("key",)`` against an unbound field on a
model with a UUID column; medians of the rounds) and each path against its floor: a plain
TextField storing (reading) the very records ours stores, plus the core alone encrypting
(decrypting) the same values without Django, which is what a field that cost nothing
would reach.

Where the floor is (2-core VM, Python 3.13, Django 6.1, C accelerator; microseconds per
row, SQLite): a plain row reads in about 3.7 and writes in about 6; the same row holding
the DataRowRecord (about 2.5x longer than the text) costs about 0.2-0.4 more; the core
decrypts a value in about 1.7 and encrypts in about 2.5. That alone puts reads at about
1.5x and writes at about 1.5x, before any field code: Django's converter loop (which a
plain TextField does not have), the attribute's ``__set__`` while Django builds the
instance and the SealedValue kept for lazy decryption add about 0.6-0.9 per row, the
descriptor about 0.35 per value read, ``pre_save`` about 0.3 per value written.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import random
import statistics
import string
import sys
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import django  # noqa: E402
from django.apps import AppConfig  # noqa: E402
from django.conf import settings  # noqa: E402

from benchmarks.figures import Figure, add_json_argument, emit  # noqa: E402

DEFAULT_POSTGRES = "postgres://postgres@127.0.0.1:5432/test"
#: Label of each database in the figures -> its Django alias (filled by configure()).
ALIASES: dict[str, str] = {}


class BenchConfig(AppConfig):
    name = "orm_bench_app"
    label = "orm_bench"
    path = str(Path(__file__).resolve().parent)
    default_auto_field = "django.db.models.BigAutoField"


def postgres_settings(url: str, name: str) -> dict[str, Any]:
    """Django settings for database ``name`` on the server of ``url``, created afresh."""
    import environ
    import psycopg

    config: dict[str, Any] = environ.Env.db_url_config(url)
    conninfo = psycopg.conninfo.make_conninfo(
        dbname=config["NAME"] or "postgres",
        user=config.get("USER") or None,
        password=config.get("PASSWORD") or None,
        host=config.get("HOST") or None,
        port=str(config["PORT"]) if config.get("PORT") else None,
    )
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return {**config, "NAME": name, "_ADMIN": conninfo}


def drop_postgres(config: dict[str, Any]) -> None:
    import psycopg
    from django.db import connections

    connections.close_all()
    with psycopg.connect(config["_ADMIN"], autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{config["NAME"]}" WITH (FORCE)')


def configure(databases: list[str], postgres: dict[str, Any] | None) -> None:
    module = type(sys)("orm_bench_app")
    module.BenchConfig = BenchConfig  # type: ignore[attr-defined]
    sys.modules["orm_bench_app"] = module
    configs: dict[str, dict[str, Any]] = {}
    for label in databases:
        alias = "default" if not configs else label.lower()
        if label == "SQLite":
            configs[alias] = {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}
        else:
            assert postgres is not None
            configs[alias] = {k: v for k, v in postgres.items() if not k.startswith("_")}
        ALIASES[label] = alias
    settings.configure(
        DEBUG=False,
        SECRET_KEY="benchmark-only-not-secret",
        SALT_KEY="benchmark-salt",
        USE_TZ=True,
        DATABASES=configs,
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "asherah_django",
            "orm_bench_app.BenchConfig",
        ],
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        ASHERAH={
            "SERVICE_NAME": "bench",
            "PRODUCT_ID": "orm",
            "KMS": "static",
            "STATIC_MASTER_KEY_HEX": os.urandom(32).hex(),
            "METASTORE": "django",
        },
        LOGGING_CONFIG=None,
    )
    django.setup()


def build_models() -> tuple[dict[str, Any], dict[str, Any]]:
    """The one-text-field models by name, and the two five-field models (plain, ours)."""
    from django.db import models
    from encrypted_fields.fields import EncryptedTextField as FernetTextField

    from asherah_django import fields as enc

    class Plain(models.Model):  # noqa: DJ008
        body = models.TextField()

        class Meta:
            app_label = "orm_bench"

    class Fernet(models.Model):  # noqa: DJ008
        body = FernetTextField()

        class Meta:
            app_label = "orm_bench"

    class Asherah(models.Model):  # noqa: DJ008
        body = enc.EncryptedTextField()

        class Meta:
            app_label = "orm_bench"

    class BoundColumn(models.Model):  # noqa: DJ008
        body = enc.EncryptedTextField(bind=True)

        class Meta:
            app_label = "orm_bench"

    class KeyedUnbound(models.Model):  # noqa: DJ008
        key = models.UUIDField(default=uuid.uuid4)
        body = enc.EncryptedTextField()

        class Meta:
            app_label = "orm_bench"

    class BoundRow(models.Model):  # noqa: DJ008
        key = models.UUIDField(default=uuid.uuid4)
        body = enc.EncryptedTextField(bind=("key",))

        class Meta:
            app_label = "orm_bench"

    class PlainCiphertext(models.Model):  # noqa: DJ008
        """A plain TextField given the very records ours stores (the floor's storage)."""

        body = models.TextField()

        class Meta:
            app_label = "orm_bench"

    class PlainFive(models.Model):  # noqa: DJ008
        body = models.TextField()
        name = models.CharField(max_length=100)
        count = models.IntegerField()
        meta = models.JSONField()
        day = models.DateField()

        class Meta:
            app_label = "orm_bench"

    class AsherahFive(models.Model):  # noqa: DJ008
        body = enc.EncryptedTextField()
        name = enc.EncryptedCharField(max_length=100)
        count = enc.EncryptedIntegerField()
        meta = enc.EncryptedJSONField()
        day = enc.EncryptedDateField()

        class Meta:
            app_label = "orm_bench"

    single = {
        "plain TextField": Plain,
        "Fernet (encrypted_fields)": Fernet,
        "asherah_django": Asherah,
        "asherah, bind=True": BoundColumn,
        "asherah + uuid, unbound": KeyedUnbound,
        "asherah + uuid, bind=(key,)": BoundRow,
    }
    return single, {"plain": PlainFive, "asherah": AsherahFive, "ciphertext": PlainCiphertext}


FIVE = ("body", "name", "count", "meta", "day")


def read(model: Any, alias: str) -> list[Any]:
    """Every row, with its field read (so lazy decryption is counted)."""
    return [obj.body for obj in model.objects.using(alias).all()]


def read_unread(model: Any, alias: str) -> list[Any]:
    """Every row as an instance, its field not read."""
    return list(model.objects.using(alias).all())


def read_iterator(model: Any, alias: str) -> list[Any]:
    return [obj.body for obj in model.objects.using(alias).iterator()]


def read_values(model: Any, alias: str) -> list[Any]:
    return list(model.objects.using(alias).values_list("body", flat=True))


def read_five(model: Any, alias: str) -> list[Any]:
    return [(o.body, o.name, o.count, o.meta, o.day) for o in model.objects.using(alias).all()]


def clear(model: Any, alias: str) -> None:
    from django.db import connections

    connection = connections[alias]
    table = connection.ops.quote_name(model._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"TRUNCATE {table}")
        else:
            cursor.execute(f"DELETE FROM {table}")


class Timings:
    """Seconds per (database, measurement), one entry per round."""

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self.seconds: dict[tuple[str, str], list[float]] = {}

    def add(self, db: str, what: str, seconds: float) -> None:
        self.seconds.setdefault((db, what), []).append(seconds)

    def best(self, db: str, what: str) -> float:
        """Microseconds per row, best of the rounds."""
        return min(self.seconds[db, what]) * 1e6 / self.rows

    def median(self, db: str, what: str) -> float:
        return statistics.median(self.seconds[db, what]) * 1e6 / self.rows


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--database", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument(
        "--cpu",
        action="store_true",
        help="time SQLite with the process's CPU time instead of the wall clock (steadier on "
        "a busy machine; SQLite in memory runs in this process)",
    )
    environment = os.environ.get("DATABASE_URL", "")
    parser.add_argument(
        "--postgres-url",
        default=environment if environment.startswith("postgres") else DEFAULT_POSTGRES,
        help="the PostgreSQL server (default: $DATABASE_URL when it names one, else "
        f"{DEFAULT_POSTGRES})",
    )
    parser.add_argument("--postgres-name", default="bench_orm")
    add_json_argument(parser)
    options = parser.parse_args()
    databases = {"sqlite": ["SQLite"], "postgres": ["PostgreSQL"]}.get(
        options.database, ["SQLite", "PostgreSQL"]
    )
    postgres = None
    if "PostgreSQL" in databases:
        if not options.postgres_url.startswith(("postgres://", "postgresql://")):
            parser.error(f"--postgres-url is not a PostgreSQL URL: {options.postgres_url}")
        postgres = postgres_settings(options.postgres_url, options.postgres_name)
    configure(databases, postgres)
    try:
        return run(options, databases)
    finally:
        if postgres is not None:
            drop_postgres(postgres)


def run(options: argparse.Namespace, databases: list[str]) -> int:
    from django.core.management import call_command
    from django.db import connections

    import asherah_django

    call_command("migrate", run_syncdb=True, verbosity=0)  # (the metastore: first database)
    rng = random.Random(5)
    alphabet = string.ascii_letters + string.digits + " "
    rows = options.rows
    texts = [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(40, 200))) for _ in range(rows)
    ]
    five_values = [
        {
            "body": text,
            "name": text[:30],
            "count": rng.randint(-(2**31), 2**31 - 1),
            "meta": {"n": i, "tags": ["a", "bc"], "ok": i % 2 == 0},
            "day": datetime.date(2000, 1, 1) + datetime.timedelta(days=i % 9000),
        }
        for i, text in enumerate(texts)
    ]
    single, five = build_models()
    for alias in ALIASES.values():
        for model in [*single.values(), *five.values()]:
            with connections[alias].schema_editor() as editor:
                editor.create_model(model)
    plain, ours = single["plain TextField"], single["asherah_django"]
    timings = Timings(rows)

    def timed(db: str, what: str, action: Callable[[], object]) -> object:
        clock = time.process_time if options.cpu and db == "SQLite" else time.perf_counter
        gc.collect()
        start = clock()
        result = action()
        timings.add(db, what, clock() - start)
        return result

    with asherah_django.session("benchmark-tenant"):
        for alias in ALIASES.values():  # warm up every cache, and check the round trips
            for model in single.values():
                model.objects.using(alias).bulk_create([model(body=text) for text in texts[:50]])
                assert sorted(read(model, alias)) == sorted(texts[:50])
                assert sorted(read_iterator(model, alias)) == sorted(texts[:50])
                clear(model, alias)
            for model in (five["plain"], five["asherah"]):
                model.objects.using(alias).bulk_create([model(**v) for v in five_values[:50]])
                got = sorted(read_five(model, alias), key=str)
                assert got == sorted((tuple(v[f] for f in FIVE) for v in five_values[:50]), key=str)
                clear(model, alias)
            assert sorted(read_values(ours, alias)) == []
        # For reference: the core alone encrypting and decrypting the values (no Django).
        session = asherah_django.get_session_factory().get_session("benchmark-tenant")
        records = [session.encrypt_text(text) for text in texts]
        datas = [text.encode() for text in texts]
        for _ in range(options.rounds):
            timed("core", "encrypt", lambda: [session.encrypt(data) for data in datas])
            timed("core", "decrypt", lambda: [session.decrypt(record) for record in records])
            for db, alias in ALIASES.items():
                for name, model in single.items():
                    clear(model, alias)
                    objs = [model(body=text) for text in texts]
                    timed(
                        db, f"write {name}", partial(model.objects.using(alias).bulk_create, objs)
                    )
                    bodies = timed(db, f"read {name}", partial(read, model, alias))
                    assert len(bodies) == rows  # type: ignore[arg-type]
                for name, model in (("plain", plain), ("asherah", ours)):
                    timed(db, f"unread {name}", partial(read_unread, model, alias))
                    timed(db, f"iterator {name}", partial(read_iterator, model, alias))
                    timed(db, f"values_list {name}", partial(read_values, model, alias))
                cipher = five["ciphertext"]
                clear(cipher, alias)
                objs = [cipher(body=record) for record in records]
                timed(
                    db, "write ciphertext", partial(cipher.objects.using(alias).bulk_create, objs)
                )
                timed(db, "read ciphertext", partial(read, cipher, alias))
                for name in ("plain", "asherah"):
                    model = five[name]
                    clear(model, alias)
                    objs = [model(**values) for values in five_values]
                    timed(
                        db,
                        f"write five {name}",
                        partial(model.objects.using(alias).bulk_create, objs),
                    )
                    timed(db, f"read five {name}", partial(read_five, model, alias))
    print_table(options, timings, single)
    figures = [figure for db in ALIASES for figure in db_figures(db, timings)]
    print()
    emit(figures, options.json)
    missed = [figure.name for figure in figures if figure.met is False]
    return 1 if missed and options.check else 0


def print_table(options: argparse.Namespace, timings: Timings, single: dict[str, Any]) -> None:
    kind = "SQLite: CPU time" if options.cpu else "wall clock"
    print(f"ORM benchmark, {options.rows} rows, best of {options.rounds} ({kind}), us per row")
    for db in ALIASES:
        print(f"\n{db:32} {'write':>8} {'read':>8}")
        for name in single:
            print(
                f"{name:32} {timings.best(db, f'write {name}'):8.2f} "
                f"{timings.best(db, f'read {name}'):8.2f}"
            )
        for name in ("plain", "asherah"):
            print(
                f"{'five fields, ' + name:32} {timings.best(db, f'write five {name}'):8.2f} "
                f"{timings.best(db, f'read five {name}'):8.2f}"
            )
        print(
            f"{'plain TextField, the records':32} {timings.best(db, 'write ciphertext'):8.2f} "
            f"{timings.best(db, 'read ciphertext'):8.2f}"
        )
        for what in ("unread", "iterator", "values_list"):
            print(
                f"{what + ' (plain, asherah)':32} {timings.best(db, f'{what} plain'):8.2f} "
                f"{timings.best(db, f'{what} asherah'):8.2f}"
            )
    print(
        f"\n{'core alone, no Django':32} {timings.best('core', 'encrypt'):8.2f} "
        f"{timings.best('core', 'decrypt'):8.2f}"
    )


def db_figures(db: str, timings: Timings) -> list[Figure]:
    best = timings.best
    rows = f"{timings.rows:,} rows"
    plain_w, plain_r = best(db, "write plain TextField"), best(db, "read plain TextField")
    ours_w, ours_r = best(db, "write asherah_django"), best(db, "read asherah_django")
    fernet_w = best(db, "write Fernet (encrypted_fields)")
    fernet_r = best(db, "read Fernet (encrypted_fields)")
    core_e, core_d = best("core", "encrypt"), best("core", "decrypt")
    unit = "us/row"
    figures = [
        Figure(f"{db} write {rows}", ours_w, "plain TextField", plain_w, unit, 1.3),
        Figure(f"{db} read {rows}", ours_r, "plain TextField", plain_r, unit, 1.6),
        Figure(
            f"{db} write vs Fernet", ours_w, "Fernet EncryptedTextField", fernet_w, unit, 1 / 1.5
        ),
        Figure(
            f"{db} read vs Fernet", ours_r, "Fernet EncryptedTextField", fernet_r, unit, 1 / 1.5
        ),
        Figure(
            f"{db} read, field not read",
            best(db, "unread asherah"),
            "plain TextField",
            plain_r,
            unit,
        ),
        Figure(
            f"{db} iterator() read",
            best(db, "iterator asherah"),
            "plain, iterator()",
            best(db, "iterator plain"),
            unit,
        ),
        Figure(
            f"{db} values_list read",
            best(db, "values_list asherah"),
            "plain, values_list",
            best(db, "values_list plain"),
            unit,
        ),
        Figure(
            f"{db} write, 5 fields",
            best(db, "write five asherah"),
            "5 plain fields",
            best(db, "write five plain"),
            unit,
        ),
        Figure(
            f"{db} read, 5 fields",
            best(db, "read five asherah"),
            "5 plain fields",
            best(db, "read five plain"),
            unit,
        ),
        Figure(
            f"{db} write vs floor",
            ours_w,
            "plain, ciphertext + core",
            best(db, "write ciphertext") + core_e,
            unit,
        ),
        Figure(
            f"{db} read vs floor",
            ours_r,
            "plain, ciphertext + core",
            best(db, "read ciphertext") + core_d,
            unit,
        ),
    ]
    # Bound against unbound: medians of the rounds (they resist a busy machine better).
    median = timings.median
    for label, bound, unbound in (
        ("bind=True", "asherah, bind=True", "asherah_django"),
        ("bind=(key,)", "asherah + uuid, bind=(key,)", "asherah + uuid, unbound"),
    ):
        for op in ("write", "read"):
            figures.append(
                Figure(
                    f"{db} {op}, {label}",
                    median(db, f"{op} {bound}"),
                    "the same, unbound",
                    median(db, f"{op} {unbound}"),
                    unit,
                )
            )
    return figures


if __name__ == "__main__":
    sys.exit(main())
