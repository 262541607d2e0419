"""Keys shared with the ``asherah`` wheel over AWS KMS (two regions on a local moto
server), through our ``encryption_key`` table: SQLite by default, PostgreSQL and MariaDB
with DATABASE_URL. System keys and values created by either side decrypt on the other.

On PostgreSQL the wheel binds key_record as JSON, so the test turns the column into JSONB
(the Rust core's own layout, which DjangoMetastore reads, see test_adopted_tables) for
its duration.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from django.db import connection

from asherah_django.core import EnvelopeKeyRecord, SessionFactory
from asherah_django.core.key_ids import KeyIds
from asherah_django.core.kms.aws import AwsKMS
from asherah_django.core.kms.aws_envelope import describe
from asherah_django.metastore import DjangoMetastore
from asherah_django.models import EncryptionKey
from asherah_django.testing.moto import MotoServer, aws_test_credentials
from tests.unit.conftest import unique, vendor

asherah = pytest.importorskip("asherah", reason="the asherah wheel is in the test extras")

pytestmark = [pytest.mark.interop, pytest.mark.django_db(transaction=True)]
WEST, EAST = "us-west-2", "us-east-1"
PAYLOADS = [b"", b"mySuperSecretPayload", "héllo ✓".encode(), bytes(range(256))]


@pytest.fixture(scope="module")
def aws() -> Iterator[MotoServer]:
    with aws_test_credentials(), MotoServer() as server:
        yield server


@pytest.fixture
def region_map(aws: MotoServer) -> dict[str, str]:
    return {WEST: aws.create_key(WEST), EAST: aws.create_key(EAST)}


@pytest.fixture
def jsonb_on_postgres() -> Iterator[None]:
    if vendor() != "postgresql":
        yield
        return
    table = EncryptionKey._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"ALTER TABLE {table} ALTER COLUMN key_record TYPE jsonb USING key_record::jsonb"
        )
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            # The wheel's connection pool outlives factory.close(); end its sessions so
            # the test database can be dropped (this database is this run's alone).
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            cursor.execute(f"DELETE FROM {table}")
            cursor.execute(f"ALTER TABLE {table} ALTER COLUMN key_record TYPE text")


def _metastore_config() -> dict[str, Any]:
    settings = connection.settings_dict
    if vendor() == "sqlite":
        return {"Metastore": "sqlite", "ConnectionString": settings["NAME"]}
    user = quote(settings["USER"] or "root")
    password = f":{quote(settings['PASSWORD'])}" if settings["PASSWORD"] else ""
    kind = "mysql" if vendor() == "mysql" else "postgres"
    port = settings["PORT"] or (3306 if kind == "mysql" else 5432)
    host = f"{settings['HOST'] or '127.0.0.1'}:{port}"
    return {
        "Metastore": "rdbms",
        "SQLMetastoreDBType": kind,
        "ConnectionString": f"{kind}://{user}{password}@{host}/{settings['NAME']}",
    }


@pytest.fixture
def peer(
    service: str,
    region_map: dict[str, str],
    aws: MotoServer,
    jsonb_on_postgres: None,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Any]:
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.url)
    with aws_test_credentials():
        factory = asherah.SessionFactory(
            {
                "ServiceName": service,
                "ProductID": "prod",
                "KMS": "aws",
                "RegionMap": region_map,
                "PreferredRegion": WEST,
                "EnableSessionCaching": False,
                **_metastore_config(),
            }
        )
        yield factory
        factory.close()


@pytest.fixture
def ours(service: str, region_map: dict[str, str], aws: MotoServer) -> Iterator[SessionFactory]:
    store = DjangoMetastore(system_key_id=KeyIds(service, "prod").system)
    kms = AwsKMS.from_mapping(
        {"REGION_MAP": region_map, "PREFERRED_REGION": WEST, "AWS_ENDPOINT_URL": aws.url}
    )
    with aws_test_credentials(), SessionFactory(service, "prod", kms, store) as factory:
        yield factory
    store.close()


def _system_key_regions(service: str) -> list[str]:
    text = EncryptionKey.objects.get(id=KeyIds(service, "prod").system).key_record
    record = EnvelopeKeyRecord.from_json(text if isinstance(text, str) else json.dumps(text))
    found = describe(record.encrypted_key)
    assert found is not None
    return [item["region"] for item in found]


def test_the_wheel_creates_the_system_key_and_we_decrypt(
    peer: Any, ours: SessionFactory, service: str
) -> None:
    partitions = [unique("p"), unique("p_with_underscores_")]
    written = {(p, v): peer.get_session(p).encrypt_bytes(v) for p in partitions for v in PAYLOADS}
    assert _system_key_regions(service) == [EAST, WEST]
    for (partition, payload), value in written.items():
        assert ours.get_session(partition).decrypt(value) == payload
    partition = unique("q")
    mine = ours.get_session(partition).encrypt(b"ours, under the wheel's system key")
    assert peer.get_session(partition).decrypt_bytes(mine) == b"ours, under the wheel's system key"


def test_we_create_the_system_key_and_the_wheel_decrypts(
    peer: Any, ours: SessionFactory, service: str
) -> None:
    partition = unique("ours")
    written = {payload: ours.get_session(partition).encrypt(payload) for payload in PAYLOADS}
    assert _system_key_regions(service) == [EAST, WEST]
    session = peer.get_session(partition)
    for payload, value in written.items():
        assert session.decrypt_bytes(value) == payload
    other = unique("theirs")
    again = peer.get_session(other).encrypt_bytes(b"from the wheel, under our system key")
    assert ours.get_session(other).decrypt(again) == b"from the wheel, under our system key"
