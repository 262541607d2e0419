"""An existing Asherah table, made by hand from the reference DDL (not by our migration),
works as our metastore once the EncryptionKey model points at it.

Each table gets its own name; the model's ``db_table`` is pointed at it for the test.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator

import pytest
from django.db import connection

from asherah_django.core import KeyMeta
from asherah_django.core.key_ids import KeyIds
from asherah_django.metastore import DjangoMetastore
from asherah_django.models import EncryptionKey
from tests.unit.conftest import MYSQL_ONLY, POSTGRES_ONLY, make_factory, unique, vendor
from tests.unit.test_metastore import MINUTE, record

pytestmark = pytest.mark.django_db(transaction=True)  # MySQL DDL commits implicitly

# canon docs/Metastore.md and server/samples/metastore.sql (MySQL).
MYSQL_CANONICAL = """CREATE TABLE {t} (
  id VARCHAR(255) NOT NULL,
  created TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
  key_record TEXT NOT NULL,
  PRIMARY KEY (id, created),
  INDEX (created)
)"""
# The Rust core's MySQL integration tests store key_record in a JSON column.
MYSQL_JSON = """CREATE TABLE {t} (
  id VARCHAR(255) NOT NULL,
  created TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
  key_record JSON NOT NULL,
  PRIMARY KEY (id, created),
  INDEX (created)
)"""
# An old-style TIMESTAMP (explicit_defaults_for_timestamp=OFF made this implicitly):
# any UPDATE would move created, unless the UPDATE assigns it to itself.
MYSQL_AUTO_UPDATE = """CREATE TABLE {t} (
  id VARCHAR(255) NOT NULL,
  created TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  key_record TEXT NOT NULL,
  PRIMARY KEY (id, created)
)"""
# The canonical schema on PostgreSQL, with the separate index the Rust server's README asks for.
POSTGRES_CANONICAL = """CREATE TABLE {t} (
  id VARCHAR(255) NOT NULL,
  created TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
  key_record TEXT NOT NULL,
  PRIMARY KEY (id, created)
); CREATE INDEX {t}_created ON {t} (created)"""
# The Rust core's PostgreSQL tests: TEXT id and JSONB records (reordered and re-spaced).
POSTGRES_JSONB = """CREATE TABLE {t} (
  id TEXT NOT NULL,
  created TIMESTAMP NOT NULL,
  key_record JSONB NOT NULL,
  PRIMARY KEY (id, created)
)"""
# What the Rust core creates in SQLite.
SQLITE_RUST = """CREATE TABLE {t} (
  id TEXT NOT NULL,
  created TIMESTAMP NOT NULL,
  key_record TEXT NOT NULL,
  PRIMARY KEY (id, created)
)"""

CASES = [
    pytest.param(("mysql", MYSQL_CANONICAL), id="mysql-canonical"),
    pytest.param(("mysql", MYSQL_JSON), id="mysql-json"),
    pytest.param(("mysql", MYSQL_AUTO_UPDATE), id="mysql-on-update-timestamp"),
    pytest.param(("postgresql", POSTGRES_CANONICAL), id="postgres-canonical"),
    pytest.param(("postgresql", POSTGRES_JSONB), id="postgres-jsonb"),
    pytest.param(("sqlite", SQLITE_RUST), id="sqlite-rust-core"),
]
SKIP_REASONS = {
    "mysql": MYSQL_ONLY,
    "postgresql": POSTGRES_ONLY,
    "sqlite": "SQLite-only; the default run (no DATABASE_URL) covers it",
}


@pytest.fixture
def adopted(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    wanted, ddl = request.param
    if vendor() != wanted:
        pytest.skip(SKIP_REASONS[wanted])
    table = unique("asherah_adopted_")
    with connection.cursor() as cursor:
        for statement in ddl.format(t=table).split(";"):
            cursor.execute(statement)
    monkeypatch.setattr(EncryptionKey._meta, "db_table", table)
    _forget_cached_columns()
    try:
        yield table
    finally:
        monkeypatch.undo()
        _forget_cached_columns()
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE {table}")


@pytest.mark.parametrize("adopted", CASES, indirect=True)
def test_hand_made_reference_table_works_as_the_metastore(adopted: str, service: str) -> None:
    store = DjangoMetastore(system_key_id=KeyIds(service, "prod").system)
    assert store.table == adopted
    try:
        partitions = ["alice", "Alice", "bob_with_underscores", "42"]
        with make_factory(store, service) as writer:
            values = {p: writer.get_session(p).encrypt(p.encode()) for p in partitions}
        with make_factory(store, service) as reader:  # cold caches
            for partition, value in values.items():
                assert reader.get_session(partition).decrypt(value) == partition.encode()

        key_id = unique("_IK_x_")
        assert store.store(key_id, MINUTE, record(MINUTE)) is True
        assert store.store(key_id, MINUTE, record(MINUTE)) is False
        assert store.store(key_id, MINUTE + 60, record(MINUTE + 60)) is True
        assert store.load_latest(key_id) == record(MINUTE + 60)
        assert store.load_many([KeyMeta(key_id, MINUTE)]) == {
            KeyMeta(key_id, MINUTE): record(MINUTE)
        }
        assert store.revoke(key_id, MINUTE) is True
        revoked = store.load(key_id, MINUTE)
        assert revoked is not None and revoked.revoked  # created did not move
        assert store.delete_key_id(key_id) == 2

        rows = list(EncryptionKey.objects.order_by("id"))  # the ORM reads the same table
        kinds = {row.id: row.kind for row in rows}
        assert kinds[KeyIds(service, "prod").system] == "system"
        ids = KeyIds(service, "prod")
        partitions_found = {ids.partition_of(row.id) for row in rows} - {None}
        assert partitions_found == set(partitions)
        for row in rows:
            info = row.info
            assert info is not None and info.created == row.created_epoch
            assert row.created.tzinfo is datetime.UTC
    finally:
        store.close()


def _forget_cached_columns() -> None:
    """Fields cache their column expression with the table name (``Field.cached_col``)."""
    for field in [*EncryptionKey._meta.local_fields, EncryptionKey._meta.pk]:
        field.__dict__.pop("cached_col", None)
