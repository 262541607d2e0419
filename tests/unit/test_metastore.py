"""DjangoMetastore: the Metastore contract, revocation, shredding, errors and query counts."""

from __future__ import annotations

import calendar
import datetime
import json

import pytest
from django.db import connection
from hypothesis import given
from hypothesis import strategies as st

from asherah_django.core import EnvelopeKeyRecord, KeyMeta, MetastoreError
from asherah_django.core.key_ids import KeyIds
from asherah_django.metastore import DjangoMetastore
from asherah_django.metastore_sql import epoch
from asherah_django.models import EncryptionKey
from asherah_django.signals import key_revoked, key_shredded

from .conftest import make_factory, unique

pytestmark = pytest.mark.django_db
MINUTE = 1_800_000_000 - 1_800_000_000 % 60


def record(created: int, parent: KeyMeta | None = None, revoked: bool = False) -> EnvelopeKeyRecord:
    return EnvelopeKeyRecord(created, bytes(range(60)), parent, revoked)


def raw_rows(key_id: str) -> list[tuple[str, str]]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT created, key_record FROM encryption_key WHERE id = %s", [key_id])
        return [(str(created), text) for created, text in cursor.fetchall()]


def test_contract_store_load_latest(metastore: DjangoMetastore) -> None:
    key_id = unique("_IK_p_")
    first, second = record(MINUTE), record(MINUTE + 60, KeyMeta("_SK_x", MINUTE))
    assert metastore.load_latest(key_id) is None
    assert metastore.load(key_id, MINUTE) is None
    assert metastore.store(key_id, MINUTE, first) is True
    assert metastore.store(key_id, MINUTE, second) is False  # never overwrites
    assert metastore.load(key_id, MINUTE) == first
    assert metastore.store(key_id, MINUTE + 60, second) is True
    assert metastore.load(key_id, MINUTE + 60) == second
    assert metastore.load_latest(key_id) == second
    assert metastore.load(key_id, MINUTE + 1) is None


def test_created_column_is_the_utc_wall_clock(metastore: DjangoMetastore) -> None:
    key_id = unique("_SK_")
    metastore.store(key_id, 1795866780, record(1795866780))
    [(created, text)] = raw_rows(key_id)
    assert created.startswith("2026-11-28 11:53:00")
    assert text == record(1795866780).to_json()
    row = EncryptionKey.objects.get(id=key_id)
    assert row.created == datetime.datetime(2026, 11, 28, 11, 53, tzinfo=datetime.UTC)
    assert row.created_epoch == 1795866780


def test_load_many_returns_what_exists(metastore: DjangoMetastore) -> None:
    ids = [unique("_IK_m_") for _ in range(3)]
    for key_id in ids:
        metastore.store(key_id, MINUTE, record(MINUTE))
    wanted = [KeyMeta(key_id, MINUTE) for key_id in ids] + [KeyMeta(ids[0], MINUTE + 60)]
    found = metastore.load_many(wanted)
    assert set(found) == set(wanted[:3])
    assert metastore.load_many([]) == {}


def test_load_many_batches_large_requests(metastore: DjangoMetastore) -> None:
    key_id = unique("_IK_b_")
    for index in range(5):
        metastore.store(key_id, MINUTE + index, record(MINUTE + index))
    metas = [KeyMeta(key_id, MINUTE + index) for index in range(450)]
    before = metastore.queries
    assert len(metastore.load_many(metas)) == 5
    assert metastore.queries - before == 3  # 200 pairs per query


@pytest.mark.django_db(transaction=True)  # rows made by the ORM must be committed
def test_internal_rows_are_never_keys(metastore: DjangoMetastore) -> None:
    internal = "__asherah_internal_config_drift_guard_v1__:" + unique("x")
    with pytest.raises(MetastoreError, match="reserved id"):
        metastore.store(internal, 946684800, record(946684800))
    EncryptionKey.objects.create(
        id=internal,
        created=datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC),
        key_record='{"Created":946684800,"Key":"e30="}',
    )
    assert metastore.load(internal, 946684800) is None
    assert metastore.load_latest(internal) is None
    assert metastore.load_many([KeyMeta(internal, 946684800)]) == {}
    assert metastore.revoke(internal, 946684800) is False
    assert metastore.delete_key_id(internal) == 0
    assert EncryptionKey.objects.filter(id=internal).exists()


def test_revoke_rewrites_the_record_like_asherahs_scripts(metastore: DjangoMetastore) -> None:
    key_id = unique("_IK_r_")
    parent = KeyMeta("_SK_s_p", MINUTE)
    metastore.store(key_id, MINUTE, record(MINUTE, parent))
    seen: list[dict[str, object]] = []

    def receiver(sender: object, **kwargs: object) -> None:
        seen.append(kwargs)

    key_revoked.connect(receiver)
    try:
        assert metastore.revoke(key_id, MINUTE) is True
        assert metastore.revoke(key_id, MINUTE) is True  # idempotent
        assert metastore.revoke(key_id, MINUTE + 60) is False
    finally:
        key_revoked.disconnect(receiver)
    [(created, text)] = raw_rows(key_id)
    assert text.startswith('{"Revoked":true,"Created":')
    assert json.loads(text)["ParentKeyMeta"] == {"KeyId": "_SK_s_p", "Created": MINUTE}
    assert metastore.load(key_id, MINUTE) == record(MINUTE, parent, revoked=True)
    assert created.startswith(str(datetime.datetime.fromtimestamp(MINUTE, datetime.UTC))[:19])
    assert [s["key_id"] for s in seen] == [key_id]  # sent once: the second found it revoked
    assert EncryptionKey.objects.get(id=key_id).revoked


def test_delete_key_id_shreds_every_version(metastore: DjangoMetastore) -> None:
    key_id, other = unique("_IK_d_"), unique("_IK_d_")
    for created in (MINUTE, MINUTE + 60):
        metastore.store(key_id, created, record(created))
    metastore.store(other, MINUTE, record(MINUTE))
    seen: list[object] = []

    def receiver(sender: object, **kwargs: object) -> None:
        seen.append((kwargs["key_id"], kwargs["count"]))

    key_shredded.connect(receiver)
    try:
        assert metastore.delete_key_id(key_id) == 2
        assert metastore.delete_key_id(key_id) == 0
    finally:
        key_shredded.disconnect(receiver)
    assert seen == [(key_id, 2)]
    assert metastore.load_latest(key_id) is None
    assert metastore.load(other, MINUTE) is not None


@pytest.mark.django_db(transaction=True)  # rows made by the ORM must be committed
def test_malformed_record_is_a_metastore_error(metastore: DjangoMetastore) -> None:
    key_id = unique("_IK_bad_")
    EncryptionKey.objects.create(
        id=key_id, created=datetime.datetime(2027, 1, 1, tzinfo=datetime.UTC), key_record="{"
    )
    with pytest.raises(MetastoreError, match="malformed"):
        metastore.load_latest(key_id)


def test_database_errors_become_metastore_errors() -> None:
    store = DjangoMetastore(table="asherah_no_such_table")
    try:
        with pytest.raises(MetastoreError, match=r"asherah_no_such_table|no such table|exist"):
            store.load("_SK_a_b", MINUTE)
        with pytest.raises(MetastoreError) as caught:
            store.store("_SK_a_b", MINUTE, record(MINUTE))
        assert "migrate asherah_django" in caught.value.hint
    finally:
        store.close()


def test_cold_intermediate_and_system_key_load_is_one_query(
    metastore: DjangoMetastore, service: str
) -> None:
    with make_factory(metastore, service) as writer:
        value = writer.get_session("alice").encrypt(b"secret")
    metastore.close()
    with make_factory(metastore, service) as reader:  # cold caches
        before = metastore.queries
        assert reader.get_session("alice").decrypt(value) == b"secret"
        assert metastore.queries - before == 1


def test_n_rows_over_p_partitions_cost_at_most_p_queries_cold(
    metastore: DjangoMetastore, service: str
) -> None:
    partitions = [f"tenant-{index}" for index in range(4)]
    with make_factory(metastore, service) as writer:
        rows = [
            (p, writer.get_session(p).encrypt(f"{p}:{n}".encode()))
            for p in partitions
            for n in range(5)
        ]
    with make_factory(metastore, service) as reader:
        before = metastore.queries
        for partition, value in rows:
            assert reader.get_session(partition).decrypt(value).startswith(partition.encode())
        assert metastore.queries - before <= len(partitions)
    with make_factory(metastore, service) as batch:
        before = metastore.queries
        for partition in partitions:  # one batched load per partition's values
            session = batch.get_session(partition)
            values = [value for p, value in rows if p == partition]
            assert len(session.decrypt_many(values)) == 5
        assert metastore.queries - before <= len(partitions)


def test_cold_first_encrypt_query_count(metastore: DjangoMetastore, service: str) -> None:
    with make_factory(metastore, service) as factory:
        factory.get_session("first").encrypt(b"x")
        # load_latest(IK)+SKs, load_latest(SK), store(SK), store(IK)
        assert metastore.queries == 4
        before = metastore.queries
        factory.get_session("second").encrypt(b"x")  # SK cached: load_latest(IK), store(IK)
        assert metastore.queries - before == 2


def test_prefetch_never_answers_load_latest(metastore: DjangoMetastore, service: str) -> None:
    sk_id = f"_SK_{service}_prod"
    ik_id = KeyIds(service, "prod").intermediate("p")
    metastore.store(sk_id, MINUTE, record(MINUTE))
    metastore.store(ik_id, MINUTE, record(MINUTE, KeyMeta(sk_id, MINUTE)))
    assert metastore.load_latest(ik_id) is not None  # prefetches the SK rows
    other = DjangoMetastore(system_key_id=sk_id)
    try:
        other.store(sk_id, MINUTE + 60, record(MINUTE + 60))  # a race winner elsewhere
    finally:
        other.close()
    latest = metastore.load_latest(sk_id)
    assert latest is not None and latest.created == MINUTE + 60
    before = metastore.queries
    assert metastore.load(sk_id, MINUTE) == record(MINUTE)  # served by the prefetch
    assert metastore.queries == before
    metastore.revoke(sk_id, MINUTE)  # forgets prefetched rows of that id
    loaded = metastore.load(sk_id, MINUTE)
    assert loaded is not None and loaded.revoked


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite shares the caller's database")
def test_key_queries_from_an_event_loop_leave_no_connection_open_on_the_helper(
    metastore: DjangoMetastore,
) -> None:
    """Run from an event loop's thread, key queries go to a helper thread; on SQLite it
    connects to the caller's database and closes that connection after each query (Python
    3.13 warns about a connection left to the garbage collector)."""
    import asyncio

    from django.db import connections

    key_id = KeyIds("svc", "prod").intermediate("loop")
    metastore.store(key_id, 1_700_000_040, record(1_700_000_040))

    async def main() -> EnvelopeKeyRecord | None:
        return metastore.load_latest(key_id)

    assert asyncio.run(main()) is not None
    helper = metastore._helper()  # (the helper thread the query ran on)
    assert helper.submit(lambda: connections[metastore.using].connection is None).result()


@pytest.mark.parametrize("integrity_tags", [False, True], ids=["untagged", "tagged"])
def test_rewrap_swaps_only_the_record_text_that_was_read(
    service: str, integrity_tags: bool
) -> None:
    """asherah_erase's in-place rewrap: a compare-and-swap on the record text, the tag along."""
    store = DjangoMetastore(system_key_id=f"_SK_{service}_prod", integrity_tags=integrity_tags)
    key_id = KeyIds(service, "prod").intermediate("p")
    old = record(MINUTE, KeyMeta(f"_SK_{service}_prod", MINUTE))
    new = EnvelopeKeyRecord(MINUTE, bytes(60), KeyMeta(f"_SK_{service}_prod", MINUTE + 60))
    new.tag = "v1:new-tag"
    try:
        assert store.store(key_id, MINUTE, old)
        assert store.rewrap(key_id, MINUTE + 60, old.to_json(), new) is False  # no such row
        assert store.rewrap(key_id, MINUTE, new.to_json(), new) is False  # not what it holds
        assert store.load(key_id, MINUTE) == old
        assert store.rewrap(key_id, MINUTE, old.to_json(), new) is True
        loaded = store.load(key_id, MINUTE)
        assert loaded is not None and loaded.parent == new.parent
        assert [text for _, text in raw_rows(key_id)] == [new.to_json()]
        quote = connection.ops.quote_name
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT integrity_tag FROM encryption_key WHERE {quote('id')} = %s", [key_id]
            )
            [(tag,)] = cursor.fetchall()
        assert tag == ("v1:new-tag" if integrity_tags else None)
        # A revocation in between wins: the stale swap changes nothing.
        assert store.revoke(key_id, MINUTE)
        assert store.rewrap(key_id, MINUTE, new.to_json(), old) is False
        revoked = store.load(key_id, MINUTE)
        assert revoked is not None and revoked.revoked
    finally:
        store.close()


def test_delete_version_deletes_exactly_that_row(metastore: DjangoMetastore) -> None:
    key_id = unique("_IK_d_")
    metastore.store(key_id, MINUTE, record(MINUTE))
    metastore.store(key_id, MINUTE + 60, record(MINUTE + 60))
    assert metastore.delete_version(key_id, MINUTE + 120) is False
    assert metastore.delete_version(key_id, MINUTE) is True
    assert metastore.load(key_id, MINUTE) is None
    assert metastore.load(key_id, MINUTE + 60) == record(MINUTE + 60)
    assert metastore.delete_version(key_id, MINUTE) is False
    assert metastore.delete_version("__asherah_internal_x", MINUTE) is False


@given(
    st.datetimes(
        min_value=datetime.datetime(1000, 1, 1), max_value=datetime.datetime(9999, 12, 31)
    ),
    st.sampled_from([None, datetime.UTC, datetime.timezone(datetime.timedelta(hours=-7))]),
)
def test_created_columns_read_as_their_wall_clock_epoch_seconds(
    value: datetime.datetime, zone: datetime.tzinfo | None
) -> None:
    """A created column value (naive UTC, or aware as some drivers return it) is its wall
    clock in epoch seconds, microseconds dropped, whatever its type: what timegm gives."""
    expected = calendar.timegm(value.timetuple())
    for column in (value.replace(tzinfo=zone), value.isoformat(sep=" "), value.isoformat()):
        assert epoch(column) == expected
    assert epoch(value.isoformat(sep=" ").encode()) == expected
