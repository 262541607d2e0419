"""KEY_INTEGRITY in a mixed fleet with the ``asherah`` wheel (issue #13), live.

The wheel names its columns in every statement (``INSERT INTO encryption_key(id, created,
key_record)``, ``SELECT key_record``), so the ``integrity_tag`` column is invisible to it:
it reads our tagged rows and writes untagged ones, which "sign" accepts, and which
``asherah_sign_keys`` (here: :func:`key_tags.scan`) then signs so that "require" reads
them too.

SQLite and MariaDB use the table our migration made. On PostgreSQL the wheel binds
``key_record`` as JSON and needs a json/jsonb column, which our text column is not; there
the test makes the Rust core's own layout (JSONB) plus ``integrity_tag`` in a schema of
its own and points both sides at it (the wheel through ``search_path``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from django.db import connection

from asherah_django.core import CryptoPolicy, SessionFactory, StaticKMS
from asherah_django.core.errors import KeyIntegrityError
from asherah_django.core.key_ids import KeyIds
from asherah_django.core.kms.static import TEST_MASTER_KEY_HEX
from asherah_django.key_tags import scan
from asherah_django.metastore import DjangoMetastore
from asherah_django.models import EncryptionKey
from tests.integration.interop.test_shared_table import peer_config
from tests.unit.conftest import unique, vendor

asherah = pytest.importorskip("asherah", reason="the asherah wheel is in the test extras")

pytestmark = [pytest.mark.interop, pytest.mark.django_db(transaction=True)]
POSTGRES_TABLE = """CREATE TABLE {s}.encryption_key (
  id TEXT NOT NULL,
  created TIMESTAMP NOT NULL,
  key_record JSONB NOT NULL,
  integrity_tag VARCHAR(64) NULL,
  PRIMARY KEY (id, created)
)"""


@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, dict[str, Any]]]:
    """(our table name, extra wheel config) for this database."""
    if vendor() != "postgresql":
        yield EncryptionKey._meta.db_table, {}
        return
    schema = f"wheel_{uuid.uuid4().hex[:8]}"
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE SCHEMA {schema}")
        cursor.execute(POSTGRES_TABLE.format(s=schema))
    settings = connection.settings_dict
    user = quote(settings["USER"] or "postgres")
    password = f":{quote(settings['PASSWORD'])}" if settings["PASSWORD"] else ""
    host = f"{settings['HOST'] or '127.0.0.1'}:{settings['PORT'] or 5432}"
    dsn = f"postgres://{user}{password}@{host}/{settings['NAME']}?options=-csearch_path%3D{schema}"
    monkeypatch.setattr(EncryptionKey._meta, "db_table", f'"{schema}"."encryption_key"')
    try:
        yield (
            f'"{schema}"."encryption_key"',
            {"Metastore": "rdbms", "SQLMetastoreDBType": "postgres", "ConnectionString": dsn},
        )
    finally:
        monkeypatch.undo()
        with connection.cursor() as cursor:
            cursor.execute(f"DROP SCHEMA {schema} CASCADE")


def _ours(service: str, table: str, mode: str) -> tuple[SessionFactory, DjangoMetastore]:
    store = DjangoMetastore(
        system_key_id=KeyIds(service, "prod").system, table=table, integrity_tags=True
    )
    kms = StaticKMS.from_hex(TEST_MASTER_KEY_HEX)
    return SessionFactory(service, "prod", kms, store, CryptoPolicy(key_integrity=mode)), store


def _tags(table: str, service: str) -> dict[str, str | None]:
    q = connection.ops.quote_name
    name = table if table.startswith('"') else q(table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {q('id')}, integrity_tag FROM {name} WHERE {q('id')} LIKE %s",
            [f"%{service}%"],
        )
        return dict(cursor.fetchall())


def test_mixed_fleet_sign_then_require(service: str, table: tuple[str, dict[str, Any]]) -> None:
    name, extra = table
    config = peer_config(service) if not extra else {**_base(service), **extra}
    peer = asherah.SessionFactory(config)
    ours, store = _ours(service, name, "sign")
    try:
        # Ours first: the system key and "ours"' intermediate key are ours, tagged.
        mine = unique("ours")
        value = ours.get_session(mine).encrypt(b"from django")
        assert peer.get_session(mine).decrypt_bytes(value) == b"from django"
        # The wheel reuses them on the tagged table, and writes a partition of its own.
        again = peer.get_session(mine).encrypt_bytes(b"from the wheel")
        theirs = unique("wheel")
        their_value = peer.get_session(theirs).encrypt_bytes(b"wheel's own key")
        tags = _tags(name, service)
        assert tags[KeyIds(service, "prod").system] is not None
        assert tags[f"_IK_{mine}_{service}_prod"] is not None
        assert tags[f"_IK_{theirs}_{service}_prod"] is None  # the wheel writes no tag
        # "sign" reads both.
        assert ours.get_session(mine).decrypt(again) == b"from the wheel"
        assert ours.get_session(theirs).decrypt(their_value) == b"wheel's own key"
    finally:
        ours.close()
        store.close()
    strict, store = _ours(service, name, "require")
    try:
        with pytest.raises(KeyIntegrityError, match="no integrity tag"):
            strict.get_session(theirs).decrypt(their_value)
        counts = scan(strict, "default", sign=True)
        assert (counts.signed_now, counts.bad) == (1, 0)
    finally:
        strict.close()
        store.close()
    strict, store = _ours(service, name, "require")
    try:
        assert strict.get_session(theirs).decrypt(their_value) == b"wheel's own key"
        # And the wheel still works on the signed table, both ways.
        assert peer.get_session(theirs).decrypt_bytes(their_value) == b"wheel's own key"
        fresh = peer.get_session(theirs).encrypt_bytes(b"after signing")
        assert strict.get_session(theirs).decrypt(fresh) == b"after signing"
    finally:
        strict.close()
        store.close()
        peer.close()


def _base(service: str) -> dict[str, Any]:
    return {
        "ServiceName": service,
        "ProductID": "prod",
        "KMS": "static",
        "StaticMasterKeyHex": TEST_MASTER_KEY_HEX,
        "EnableSessionCaching": False,
    }
