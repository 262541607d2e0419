"""Row-level partitions: many tenants in one queryset, each value checked against its
row; cross-partition reads refused; key loads batched per query column."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.test.utils import CaptureQueriesContext

import asherah_django
from asherah_django import runtime
from asherah_django.core.errors import (
    InvalidPartitionError,
    NoActiveSessionError,
    PartitionMismatchError,
)
from asherah_django.fields import RowPartitionRequiredError, bulk_update
from asherah_django.metastore import BATCH_SIZE, DjangoMetastore
from asherah_django.signals import decryption_failed
from tests.testapp.models import CallableNote, Secret, Tenant, TenantFKNote, TenantNote
from tests.unit.fields.conftest import factory, raw_column, unique, write_raw

pytestmark = pytest.mark.django_db


def test_rows_of_many_tenants_read_in_one_queryset_without_a_session() -> None:
    for tenant in ("acme", "globex", "initech"):
        for i in range(3):
            TenantNote.objects.create(tenant_id=tenant, title=f"{tenant}{i}", body=f"{tenant} {i}")
    got = {n.title: (n.tenant_id, n.body) for n in TenantNote.objects.all()}
    assert got["globex1"] == ("globex", "globex 1")
    assert all(body.startswith(tenant) for tenant, body in got.values())
    keys = {raw_column(TenantNote, n.pk, "body") for n in TenantNote.objects.all()}
    assert len(keys) == 9
    for note in TenantNote.objects.all():
        record = raw_column(TenantNote, note.pk, "body")
        assert f'"KeyId":"_IK_{note.tenant_id}_testsvc_testprod"' in record


def test_foreign_key_and_callable_partitions() -> None:
    tenant = Tenant.objects.create(name="fk")
    note = TenantFKNote.objects.create(tenant=tenant, body="by fk")
    assert f'"_IK_{tenant.pk}_testsvc_testprod"' in raw_column(TenantFKNote, note.pk, "body")
    assert TenantFKNote.objects.select_related("tenant").get().body == "by fk"
    owned = CallableNote.objects.create(owner_id=7, body="by callable")
    assert '"_IK_owner-7_testsvc_testprod"' in raw_column(CallableNote, owned.pk, "body")
    assert CallableNote.objects.get(pk=owned.pk).body == "by callable"


def test_a_value_moved_to_another_tenants_row_is_refused() -> None:
    seen: list[Any] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        seen.append(kwargs["error"])

    a = TenantNote.objects.create(tenant_id="alice", body="alice's secret")
    b = TenantNote.objects.create(tenant_id="bob", body="bob's note")
    write_raw(TenantNote, b.pk, "body", raw_column(TenantNote, a.pk, "body"))
    decryption_failed.connect(receiver)
    try:
        stolen = TenantNote.objects.get(pk=b.pk)
        with pytest.raises(PartitionMismatchError, match="another partition"):
            stolen.body  # noqa: B018
    finally:
        decryption_failed.disconnect(receiver)
    assert len(seen) == 1 and isinstance(seen[0], PartitionMismatchError)
    assert TenantNote.objects.get(pk=a.pk).body == "alice's secret"


def test_session_partition_reads_refuse_other_partitions() -> None:
    with asherah_django.session("tenant-1"):
        secret = Secret.objects.create(owner="1", body="only for tenant-1")
    with asherah_django.session("tenant-2"):
        with pytest.raises(PartitionMismatchError):
            Secret.objects.get(pk=secret.pk).body  # noqa: B018
        with pytest.raises(PartitionMismatchError):
            list(Secret.objects.values_list("body", flat=True))
    with asherah_django.session("tenant-1"):
        assert Secret.objects.get(pk=secret.pk).body == "only for tenant-1"


def test_values_of_a_row_partitioned_field_use_the_open_session() -> None:
    TenantNote.objects.create(tenant_id="v1", body="one")
    TenantNote.objects.create(tenant_id="v2", body="two")
    with pytest.raises(NoActiveSessionError, match=r"values\(\)"):
        list(TenantNote.objects.values_list("body", flat=True))
    with asherah_django.session("v1"):
        assert list(TenantNote.objects.filter(tenant_id="v1").values_list("body", flat=True)) == [
            "one"
        ]
        with pytest.raises(PartitionMismatchError):
            list(TenantNote.objects.values_list("body", flat=True))


def test_changing_a_rows_partition() -> None:
    note = TenantNote.objects.create(tenant_id="old", body="moving")
    untouched = TenantNote.objects.get(pk=note.pk)
    untouched.tenant_id = "new"
    with pytest.raises(PartitionMismatchError, match="partition"), transaction.atomic():
        untouched.save()  # its body was never read: it would stay under "old"
    moved = TenantNote.objects.get(pk=note.pk)
    assert moved.body == "moving"  # read under "old" ...
    moved.tenant_id = "new"
    moved.save()  # ... and encrypted again under "new"
    assert '"_IK_new_' in raw_column(TenantNote, note.pk, "body")
    assert TenantNote.objects.get(pk=note.pk).body == "moving"


def test_unchanged_values_keep_their_records_and_changed_json_is_saved() -> None:
    note = TenantNote.objects.create(tenant_id="keep", body="same", extra={"n": 1})
    body, extra = (raw_column(TenantNote, note.pk, c) for c in ("body", "extra"))
    loaded = TenantNote.objects.get(pk=note.pk)
    assert loaded.body == "same" and loaded.extra == {"n": 1}
    loaded.extra["n"] = 2  # changed in place: same object
    loaded.save()
    assert raw_column(TenantNote, note.pk, "body") == body  # read, unchanged: kept
    assert raw_column(TenantNote, note.pk, "extra") != extra
    assert TenantNote.objects.get(pk=note.pk).extra == {"n": 2}


def test_row_partitioned_fields_refuse_values_without_their_row() -> None:
    notes = [TenantNote.objects.create(tenant_id=t, body="x") for t in ("r1", "r2")]
    with pytest.raises(RowPartitionRequiredError, match="without its row"), transaction.atomic():
        TenantNote.objects.filter(tenant_id="r1").update(body="y")
    for note in notes:
        note.body = f"new {note.tenant_id}"
    with pytest.raises(RowPartitionRequiredError), transaction.atomic():
        TenantNote.objects.bulk_update(notes, ["body"])
    assert bulk_update(TenantNote.objects.all(), notes, ["body", "title"]) == 2
    assert {n.tenant_id: n.body for n in TenantNote.objects.all()} == {
        "r1": "new r1",
        "r2": "new r2",
    }
    assert notes[0].body == "new r1"  # the instances keep their plaintext
    empty = TenantNote(tenant_id="", body="x")
    with pytest.raises(InvalidPartitionError, match="empty"), transaction.atomic():
        empty.save()


@contextmanager
def key_queries() -> Iterator[list[str]]:
    """The SQL run against the encryption_key table, on whatever connection it uses."""
    found: list[str] = []
    metastore = factory().metastore
    assert isinstance(metastore, DjangoMetastore)
    key_connection = metastore.connection()
    main = connections[DEFAULT_DB_ALIAS]  # the wrapper itself, not django.db.connection
    watched = {id(c): c for c in (main, key_connection)}.values()
    contexts = [CaptureQueriesContext(c) for c in watched]
    for context in contexts:
        context.__enter__()
    try:
        yield found
    finally:
        for context in contexts:
            context.__exit__(None, None, None)
            found += [q["sql"] for q in context.captured_queries if "encryption_key" in q["sql"]]


@pytest.mark.parametrize("rows", [30, 300])
def test_reading_n_rows_over_p_partitions_costs_at_most_p_key_queries(rows: int) -> None:
    tenants = [unique("count") for _ in range(3)]
    TenantNote.objects.bulk_create(
        TenantNote(tenant_id=tenants[i % 3], title=str(i), body=f"n{i}", extra={"i": i})
        for i in range(rows)
    )
    runtime.reset_session_factory()  # cold caches: a fresh factory
    with key_queries() as cold:
        notes = list(TenantNote.objects.all())
        assert [n.body for n in notes] == [f"n{int(n.title)}" for n in notes]
        assert all(n.extra == {"i": int(n.title)} for n in notes)
    assert 1 <= len(cold) <= len(tenants), cold
    with key_queries() as warm:
        assert len([n.body for n in TenantNote.objects.all()]) == rows
        assert len([n.body for n in TenantNote.objects.iterator(chunk_size=7)]) == rows
    assert warm == []


def test_a_cold_read_of_1000_partitions_costs_a_bounded_number_of_key_queries() -> None:
    """A page of rows of 1,000 tenants, one row each, read by a fresh factory: the keys are
    loaded in batches of BATCH_SIZE (plus the system key), not one query per partition."""
    partitions = 1000
    tenants = [unique("cold") for _ in range(partitions)]
    TenantNote.objects.bulk_create(
        TenantNote(tenant_id=tenant, title=str(i), body=f"n{i}") for i, tenant in enumerate(tenants)
    )
    runtime.reset_session_factory()
    with key_queries() as cold:
        notes = list(TenantNote.objects.filter(tenant_id__in=tenants).order_by("id"))
        assert [n.body for n in notes] == [f"n{i}" for i in range(partitions)]
    bound = -(-partitions // BATCH_SIZE) + 1
    assert 1 <= len(cold) <= bound, (len(cold), bound)
    with key_queries() as warm:
        assert len([n.body for n in TenantNote.objects.filter(tenant_id__in=tenants)]) == partitions
    assert warm == []


def test_iterator_reads_are_batched_per_chunk() -> None:
    tenants = [unique("iter") for _ in range(3)]
    TenantNote.objects.bulk_create(
        TenantNote(tenant_id=tenants[i % 3], body=f"n{i}") for i in range(60)
    )
    runtime.reset_session_factory()
    with key_queries() as cold:
        assert len([n.body for n in TenantNote.objects.iterator(chunk_size=20)]) == 60
    assert len(cold) <= len(tenants), cold
