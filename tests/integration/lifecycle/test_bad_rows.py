"""One bad row never aborts the maintenance commands (issue #14 item 4).

Hypothesis builds, next to good values, hostile key rows and values a database writer could
plant: a malformed intermediate key record, a ParentKeyMeta.Created out of every timestamp
range, a system key the KMS cannot unwrap, a value naming a key that does not exist, a
tampered value, plain garbage. Then ``asherah_rotate --system --all-partitions``,
``--reencrypt``, ``--report`` and ``asherah_reindex`` run: each finishes, counts the
unreadable values, exits with the documented status (3 when some were unreadable, else 0)
and leaves every readable row converted (re-encrypted onto fresh keys, indexed).
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from asherah_django import runtime
from asherah_django.core.records import KeyMeta, parse_data_row
from asherah_django.management.commands.asherah_rotate import EXIT_UNREADABLE
from asherah_django.models import EncryptionKey
from tests.bidxapp.models import TenantContact
from tests.testapp.models import TenantNote
from tests.unit.management.commands.conftest import run_command, unique

GOOD = ("g1", "g2")
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
OUT_OF_RANGE = st.one_of(
    st.integers(min_value=-(2**63), max_value=-30_610_224_001),  # before year 1000
    st.integers(min_value=253_402_300_800, max_value=2**63 - 1),  # after year 9999
)
TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40
)
HOSTILE = st.lists(
    st.one_of(
        st.tuples(st.just("malformed_ik"), TEXT),
        st.tuples(st.just("parent_out_of_range"), OUT_OF_RANGE),
        st.tuples(st.just("sk_kms_fails"), st.binary(min_size=0, max_size=80)),
        st.tuples(st.just("missing_ik"), INT64),
        st.tuples(st.just("tampered"), st.integers(min_value=0, max_value=10_000)),
        st.tuples(st.just("garbage"), TEXT),
    ),
    min_size=1,
    max_size=5,
)
CREATED = 1_700_000_040  # a minute in 2023 for planted intermediate keys


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def aware(epoch: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC)


def drr(ik: KeyMeta) -> str:
    """A well-formed DataRowRecord naming ``ik`` (its bytes decrypt under nothing)."""
    return json.dumps(
        {
            "Key": {
                "Created": CREATED,
                "Key": b64(os.urandom(60)),
                "ParentKeyMeta": {"KeyId": ik.key_id, "Created": ik.created},
            },
            "Data": b64(os.urandom(40)),
        },
        separators=(",", ":"),
    )


def plant(service: str, index: int, kind: str, arg: Any) -> tuple[str, str]:
    """Store the hostile key rows of one item; (partition, value text or None)."""
    partition = f"h{index}"
    ik = KeyMeta(f"_IK_{partition}_{service}_testprod", CREATED)
    sk_id = f"_SK_{service}_testprod"
    if kind == "malformed_ik":
        EncryptionKey.objects.create(id=ik.key_id, created=aware(CREATED), key_record=arg)
        return partition, drr(ik)
    if kind == "parent_out_of_range":
        record = {"Created": CREATED, "Key": b64(os.urandom(60))}
        record["ParentKeyMeta"] = {"KeyId": sk_id, "Created": arg}
        EncryptionKey.objects.create(
            id=ik.key_id, created=aware(CREATED), key_record=json.dumps(record)
        )
        return partition, drr(ik)
    if kind == "sk_kms_fails":
        sk_created = 1_000_000_020 + 60 * index  # older than the real system key
        sk = {"Created": sk_created, "Key": b64(arg)}
        EncryptionKey.objects.create(id=sk_id, created=aware(sk_created), key_record=json.dumps(sk))
        record = {"Created": CREATED, "Key": b64(os.urandom(60))}
        record["ParentKeyMeta"] = {"KeyId": sk_id, "Created": sk_created}
        EncryptionKey.objects.create(
            id=ik.key_id, created=aware(CREATED), key_record=json.dumps(record)
        )
        return partition, drr(ik)
    if kind == "missing_ik":
        return partition, drr(KeyMeta(ik.key_id, arg))
    if kind == "tampered":
        good = runtime.get_session_factory().get_session(GOOD[0]).encrypt_text("tampered")
        data = bytearray(base64.b64decode(json.loads(good)["Data"]))
        data[arg % len(data)] ^= 1
        record = json.loads(good)
        record["Data"] = b64(bytes(data))
        return GOOD[0], json.dumps(record, separators=(",", ":"))
    return partition, arg  # garbage: not a record (not encrypted)


def insert(model: Any, column: str, partition: str, text: str) -> None:
    from django.db import connection

    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    with connection.cursor() as cursor:
        if model is TenantNote:
            cursor.execute(
                f"INSERT INTO {table} (tenant_id, title, body, extra) VALUES (%s, '', %s, NULL)",
                [partition, text],
            )
        else:
            cursor.execute(
                f"INSERT INTO {table} (tenant_id, {quote(column)}) VALUES (%s, %s)",
                [partition, text],
            )


def unreadable_of(out: str) -> int:
    match = re.search(r"(\d+) unreadable", out)
    return int(match.group(1)) if match else 0


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@hsettings(
    max_examples=int(os.environ.get("ASHERAH_FUZZ_EXAMPLES", "12")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(hostile=HOSTILE)
def test_maintenance_commands_survive_hostile_rows(settings: Any, hostile: list[Any]) -> None:
    service = unique("bad")
    settings.ASHERAH = {**settings.ASHERAH, "SERVICE_NAME": service}
    runtime.reset_session_factory()
    TenantNote.objects.all().delete()
    TenantContact.objects.all().delete()
    good_notes = {
        TenantNote.objects.create(tenant_id=p, body=f"{p} body {i}").pk: f"{p} body {i}"
        for p in GOOD
        for i in range(2)
    }
    good_contacts = {
        TenantContact.objects.create(tenant_id=p, email=f"{p}@example.org").pk: p for p in GOOD
    }
    before = {pk: parse_data_row(raw_body(pk)).parent for pk in good_notes}
    bad = 0
    for index, (kind, arg) in enumerate(hostile):
        partition, text = plant(service, index, kind, arg)
        insert(TenantNote, "body", partition, text)
        insert(TenantContact, "email", partition, text)
        bad += kind != "garbage"

    status, out, _ = run_command("asherah_rotate", "--system", "--all-partitions")
    assert status in (0, EXIT_UNREADABLE), out
    malformed = sum(kind == "malformed_ik" for kind, _ in hostile)
    assert (status == EXIT_UNREADABLE) == (malformed > 0), out

    status, out, _ = run_command("asherah_rotate", "--reencrypt", "testapp.TenantNote")
    assert unreadable_of(out) == bad, out
    assert status == (EXIT_UNREADABLE if bad else 0), out
    runtime.reset_session_factory()
    for pk, body in good_notes.items():  # every readable row moved to a fresh, valid key
        assert TenantNote.objects.get(pk=pk).body == body
        meta = parse_data_row(raw_body(pk)).parent
        assert meta != before[pk]
        record = runtime.get_session_factory().metastore.load(meta.key_id, meta.created)
        assert record is not None and not record.revoked

    status, out, _ = run_command("asherah_rotate", "--report", "testapp.TenantNote")
    assert status in (0, EXIT_UNREADABLE) and "Summary" in out, out

    status, out, _ = run_command("asherah_reindex", "bidxapp.TenantContact")
    assert unreadable_of(out) == bad, out
    assert status == (EXIT_UNREADABLE if bad else 0), out
    for pk, partition in good_contacts.items():
        found = TenantContact.objects.filter(tenant_id=partition, email=f"{partition}@example.org")
        assert [c.pk for c in found] == [pk]


def raw_body(pk: Any) -> str:
    from django.db import connection

    table = connection.ops.quote_name(TenantNote._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT body FROM {table} WHERE id = %s", [pk])
        value = cursor.fetchone()[0]
    return value.decode() if isinstance(value, bytes) else value
