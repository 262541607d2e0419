"""EncryptionKey: the canonical table, created as naive UTC, read-only helpers."""

from __future__ import annotations

import datetime
import zoneinfo

import pytest
from django.db import connection
from django.test import override_settings

from asherah_django.core import KeyMeta
from asherah_django.core.key_ids import KeyIds, KeyKind, ParsedKeyId
from asherah_django.models import EncryptionKey, KeyRecordInfo, UTCDateTimeField, to_naive_utc

from .conftest import unique, vendor

UTC = datetime.UTC
WHEN = datetime.datetime(2026, 11, 28, 11, 53, tzinfo=UTC)  # epoch 1795866780
SK = '{"Created":1795866780,"Key":"E/Lqmm47p2/Ev8L0wp2Op5wFCI0dQH3LToA90LiJXSGJx4knXTArMWqCs3VeizD1AMoxhjITbqjqcXE6"}'
IK = (
    '{"Created":1795866780,"Key":"fXBtxPI6dXUb1XE1ZQHUE4bC/AsxzEQOtt2cmcBm+RosANGqyNcjxDLTUw84M/'
    'MkObMTGZ4Cg8S4YXPC","ParentKeyMeta":{"KeyId":"_SK_service_product","Created":1795866780}}'
)


def raw_created(key_id: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT created FROM encryption_key WHERE id = %s", [key_id])
        (value,) = cursor.fetchone()
    return str(value)


def test_schema_is_the_canonical_table() -> None:
    meta = EncryptionKey._meta
    assert meta.db_table == "encryption_key"
    assert [f.column for f in meta.local_fields if f.column] == ["id", "created", "key_record"]
    assert meta.pk.name == "pk" and meta.pk.field_names == ("id", "created")  # type: ignore[attr-defined]
    id_field = meta.get_field("id")
    assert id_field.max_length == 255
    created_type = meta.get_field("created").db_type(connection)
    expected = {"postgresql": "timestamp", "sqlite": "timestamp", "mysql": "datetime"}
    assert created_type == expected[vendor()]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("use_tz", "time_zone"),
    [(True, "UTC"), (True, "Asia/Kolkata"), (False, "America/New_York"), (False, "UTC")],
)
def test_created_is_stored_as_naive_utc_whatever_the_settings(use_tz: bool, time_zone: str) -> None:
    key_id = unique("_SK_tz_")
    local = WHEN.astimezone(zoneinfo.ZoneInfo("Asia/Tokyo"))  # the same instant elsewhere
    with override_settings(USE_TZ=use_tz, TIME_ZONE=time_zone):
        EncryptionKey.objects.create(id=key_id, created=local, key_record=SK)
        assert raw_created(key_id).startswith("2026-11-28 11:53:00")
        row = EncryptionKey.objects.get(id=key_id, created=WHEN)
        assert row.created == WHEN and row.created.tzinfo is UTC
        naive = EncryptionKey.objects.filter(created=WHEN.replace(tzinfo=None))  # taken as UTC
        assert naive.filter(id=key_id).exists()
        assert EncryptionKey.objects.filter(pk=(key_id, WHEN)).exists()


def test_to_naive_utc() -> None:
    assert to_naive_utc(WHEN) == datetime.datetime(2026, 11, 28, 11, 53)
    tokyo = WHEN.astimezone(zoneinfo.ZoneInfo("Asia/Tokyo"))
    assert to_naive_utc(tokyo) == datetime.datetime(2026, 11, 28, 11, 53)
    assert to_naive_utc(datetime.datetime(2026, 1, 1)) == datetime.datetime(2026, 1, 1)


def test_from_db_value_keeps_the_wall_clock() -> None:
    field = UTCDateTimeField()
    shifted = datetime.datetime(2026, 11, 28, 11, 53, tzinfo=zoneinfo.ZoneInfo("Europe/Paris"))
    assert field.from_db_value(shifted, None, connection) == WHEN  # never shifted
    assert field.from_db_value("2026-11-28 11:53:00", None, connection) == WHEN
    assert field.from_db_value(None, None, connection) is None


def test_read_only_helpers() -> None:
    system = EncryptionKey(id="_SK_service_product", created=WHEN, key_record=SK)
    intermediate = EncryptionKey(id="_IK_a_b_service_product", created=WHEN, key_record=IK)
    internal = EncryptionKey(
        id="__asherah_internal_config_drift_guard_v1__:O-mWdsyUj1N1pac51xnTwqLSiZxEi6N8QYefpolyGl0",
        created=datetime.datetime(2000, 1, 1, tzinfo=UTC),
        key_record='{"Created":946684800,"Key":"e30="}',
    )
    broken = EncryptionKey(id="_IK_x_service_product", created=WHEN, key_record="{")
    assert [k.kind for k in (system, intermediate, internal)] == [
        "system",
        "intermediate",
        "internal",
    ]
    assert EncryptionKey(id="other", created=WHEN, key_record="").kind == "unknown"
    assert internal.is_internal and internal.info is None and not internal.revoked
    assert system.info == KeyRecordInfo(1795866780, False, None, 60)
    assert intermediate.info == KeyRecordInfo(
        1795866780, False, KeyMeta("_SK_service_product", 1795866780), 60
    )
    ids = KeyIds("service", "product")
    assert ids.partition_of(intermediate.id) == "a_b"  # underscores kept
    assert KeyIds("other", "product").partition_of(intermediate.id) is None
    assert ids.partition_of(system.id) is None
    assert ids.parse(system.id) == ParsedKeyId(KeyKind.SYSTEM, ours=True)
    assert broken.info is None and not broken.revoked
    assert system.created_epoch == 1795866780
    assert str(system) == "_SK_service_product @ 2026-11-28 11:53:00Z"
    revoked = EncryptionKey(id="_SK_s_p", created=WHEN, key_record='{"Revoked":true,' + SK[1:])
    assert revoked.revoked
    assert "fXBtxPI6" not in repr(intermediate.info)  # no key bytes, wrapped or not
