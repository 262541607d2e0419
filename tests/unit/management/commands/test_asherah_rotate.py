"""asherah_rotate against a real OpenBao server and the test database.

Keys are checked in the metastore itself (records, Revoked flags, Vault versions), values
in the raw columns and through the fields; outputs are compared exactly (normalized).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.db import connection
from django.db.models.signals import post_save, pre_save

from asherah_django import runtime, signals
from asherah_django.core.records import EnvelopeKeyRecord, KeyMeta, parse_data_row
from asherah_django.metastore import DjangoMetastore
from tests.testapp.models import Secret, TenantNote
from tests.unit.management.commands.conftest import Vault, run_command

pytestmark = pytest.mark.vault


def normalize(text: str, vault: Vault) -> str:
    text = text.replace(vault.service, "<SVC>")
    return re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ", "<TIME>", text)


def raw(model: Any, pk: Any, column: str) -> str | None:
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {quote(column)} FROM {quote(model._meta.db_table)} WHERE id = %s", [pk]
        )
        value = cursor.fetchone()[0]
    return value.decode() if isinstance(value, bytes) else value


def key_of(model: Any, pk: Any, column: str = "body") -> KeyMeta:
    """The intermediate key a stored value names."""
    text = raw(model, pk, column)
    assert text is not None
    return parse_data_row(text).parent


def record(meta: KeyMeta) -> EnvelopeKeyRecord:
    found = runtime.get_session_factory().metastore.load(meta.key_id, meta.created)
    assert found is not None
    return found


def stored_text(meta: KeyMeta) -> str:
    from asherah_django.models import EncryptionKey

    row = EncryptionKey.objects.get(id=meta.key_id, created=_aware(meta.created))
    return row.key_record


def _aware(epoch: int) -> Any:
    import datetime

    return datetime.datetime.fromtimestamp(epoch, datetime.UTC)


def notes(partitions: list[str], per: int = 2) -> dict[int, tuple[str, Any]]:
    """TenantNote rows: pk -> (body, extra)."""
    made = {}
    for partition in partitions:
        for index in range(per):
            extra = {"n": index} if index % 2 == 0 else None
            note = TenantNote.objects.create(
                tenant_id=partition, body=f"{partition}-{index}", extra=extra
            )
            made[note.pk] = (note.body, extra)
    return made


def assert_readable(expected: dict[int, tuple[str, Any]]) -> None:
    """Every value decrypts to what was stored (so nothing was encrypted twice)."""
    runtime.reset_session_factory()  # cold caches: keys come from the metastore and Vault
    for pk, (body, extra) in expected.items():
        note = TenantNote.objects.get(pk=pk)
        assert (note.body, note.extra) == (body, extra)


def assert_no_revoked_keys(pks: list[int], model: Any = TenantNote) -> None:
    for pk in pks:
        for column in ("body", "extra") if model is TenantNote else ("body",):
            text = raw(model, pk, column)
            if text is None:
                continue
            ik = record(parse_data_row(text).parent)
            assert not ik.revoked
            assert ik.parent is not None
            assert not record(ik.parent).revoked


@pytest.mark.django_db
def test_system_and_all_partitions_revoke_in_asherah_format(vault: Vault, settings: Any) -> None:
    settings.ASHERAH = vault.asherah()
    before = notes(["t1", "t2"])
    old_iks = {key_of(TenantNote, pk) for pk in before}
    (old_sk,) = {record(meta).parent for meta in old_iks}
    assert old_sk is not None

    status, out, err = run_command("asherah_rotate", "--system", "--all-partitions", "--dry-run")
    assert (status, err) == (0, "")
    assert normalize(out, vault) == (
        "Would revoke system key: _SK_<SVC>_prod created <TIME>.\n"
        "Would revoke intermediate key of partition 't1': _IK_t1_<SVC>_prod created <TIME>.\n"
        "Would revoke intermediate key of partition 't2': _IK_t2_<SVC>_prod created <TIME>.\n"
        "Summary (dry run, nothing was changed): would have 1 system key(s) revoked, "
        "2 intermediate key(s) revoked.\n"
    )
    assert not record(old_sk).revoked

    revoked: list[str] = []
    signals.key_revoked.connect(
        lambda **kw: revoked.append(kw["key_id"]), weak=False, dispatch_uid="t"
    )
    try:
        status, out, _ = run_command("asherah_rotate", "--system", "--all-partitions")
    finally:
        signals.key_revoked.disconnect(dispatch_uid="t")
    assert normalize(out, vault) == (
        "Revoked system key: _SK_<SVC>_prod created <TIME>.\n"
        "Revoked intermediate key of partition 't1': _IK_t1_<SVC>_prod created <TIME>.\n"
        "Revoked intermediate key of partition 't2': _IK_t2_<SVC>_prod created <TIME>.\n"
        "Summary: 1 system key(s) revoked, 2 intermediate key(s) revoked.\n"
    )
    assert sorted(revoked) == sorted([old_sk.key_id, *(m.key_id for m in old_iks)])
    # Asherah's record format: "Revoked":true first, the rest unchanged (Go's field order).
    for meta in [old_sk, *old_iks]:
        text = stored_text(meta)
        assert text.startswith('{"Revoked":true,"Created":')
        assert EnvelopeKeyRecord.from_json(text).revoked

    # This very process (its caches were warm) writes with new keys at once.
    after = notes(["t1", "t2"])
    new_iks = {key_of(TenantNote, pk) for pk in after}
    assert new_iks.isdisjoint(old_iks)
    assert len(new_iks) == 2
    for meta in new_iks:
        assert not record(meta).revoked
        assert record(meta).parent not in (None, old_sk)
    assert_readable({**before, **after})


@pytest.mark.django_db
def test_reencrypt_leaves_no_value_on_a_revoked_key(vault: Vault, settings: Any) -> None:
    settings.ASHERAH = vault.asherah()
    expected = notes(["a", "b"], per=3)
    import asherah_django

    with asherah_django.session("s"):
        secrets = [Secret.objects.create(owner="o", body=f"secret {i}").pk for i in range(2)]
    saves: list[object] = []
    for signal in (pre_save, post_save):
        signal.connect(lambda **kw: saves.append(kw), weak=False, dispatch_uid="rotate-test")
    try:
        status, out, _ = run_command(
            "asherah_rotate", "--system", "--all-partitions",
            "--reencrypt", "testapp.TenantNote", "testapp.Secret.body", "--batch-size", "2",
        )  # fmt: skip
    finally:
        for signal in (pre_save, post_save):
            signal.disconnect(dispatch_uid="rotate-test")
    assert status == 0
    assert normalize(out, vault).splitlines()[-3:] == [
        "testapp.TenantNote (body, extra): 6 row(s) read, 10 value(s) re-encrypted, 0 already "
        "on current keys.",
        "testapp.Secret (body): 2 row(s) read, 2 value(s) re-encrypted, 0 already on current keys.",
        "Summary: 1 system key(s) revoked, 3 intermediate key(s) revoked, 12 value(s) "
        "re-encrypted.",
    ]
    assert saves == []  # no save(): no signals
    assert_no_revoked_keys(list(expected))
    assert_no_revoked_keys(secrets, Secret)
    assert_readable(expected)
    with asherah_django.session("s"):
        assert [Secret.objects.get(pk=pk).body for pk in secrets] == ["secret 0", "secret 1"]
    # Nothing is stale any more: a second run changes nothing.
    status, out, _ = run_command("asherah_rotate", "--reencrypt", "testapp.TenantNote")
    assert out.splitlines() == [
        "testapp.TenantNote (body, extra): 6 row(s) read, 0 value(s) re-encrypted, 10 already "
        "on current keys.",
        "Summary: 0 value(s) re-encrypted.",
    ]


@pytest.mark.django_db
def test_reencrypt_older_than(settings: Any) -> None:
    """--older-than: values under an intermediate key made before the cutoff. While the
    partition's current key is that old too, they are left alone and the operator is told
    to rotate; with --all-partitions they move to a fresh key."""
    import time

    from asherah_django.core import SessionFactory, StaticKMS
    from tests.unit.management.commands.conftest import unique

    service = unique("old")
    settings.ASHERAH = {**settings.ASHERAH, "SERVICE_NAME": service}
    store = DjangoMetastore(system_key_id=f"_SK_{service}_testprod")
    old = SessionFactory(
        service, "testprod", StaticKMS.from_hex(settings.ASHERAH["STATIC_MASTER_KEY_HEX"]),
        store, clock=lambda: time.time() - 3 * 86400,
    )  # fmt: skip
    try:
        table = connection.ops.quote_name(TenantNote._meta.db_table)
        with connection.cursor() as cursor:
            for partition in (f"p{service}", f"q{service}"):
                body = old.get_session(partition).encrypt_text(f"{partition[0]} body")
                cursor.execute(
                    f"INSERT INTO {table} (tenant_id, title, body, extra) VALUES (%s, '', %s, NULL)",
                    [partition, body],
                )
    finally:
        old.close()
        store.close()
    args = ["--reencrypt", "testapp.TenantNote", "--older-than", "1d"]
    assert run_command("asherah_rotate", *args, "--dry-run")[1].splitlines()[0] == (
        "testapp.TenantNote (body, extra): 2 row(s) read, 2 value(s) would be re-encrypted, "
        "0 already on current keys."
    )
    assert run_command("asherah_rotate", *args)[1].splitlines()[0] == (
        "testapp.TenantNote (body, extra): 2 row(s) read, 0 value(s) re-encrypted, 0 already "
        "on current keys, 2 left alone: their partition's current key is older than "
        "--older-than too (revoke it first: --partition or --all-partitions)."
    )
    out = run_command("asherah_rotate", "--all-partitions", *args)[1].splitlines()
    assert out[-2:] == [
        "testapp.TenantNote (body, extra): 2 row(s) read, 2 value(s) re-encrypted, 0 already "
        "on current keys.",
        "Summary: 2 intermediate key(s) revoked, 2 value(s) re-encrypted.",
    ]
    runtime.reset_session_factory()
    assert sorted(n.body for n in TenantNote.objects.all()) == ["p body", "q body"]
    cutoff = time.time() - 86400
    assert all(key_of(TenantNote, n.pk).created > cutoff for n in TenantNote.objects.all())
