"""manage.py asherah_reindex: fills missing and stale indexes in batches, rotates the index
keys without breaking lookups (pending versions, both versions compared meanwhile),
retires old versions once unused, reports unique conflicts, resumes from a checkpoint,
and, killed with SIGKILL midway, finishes on the next run with every row findable."""

from __future__ import annotations

import io
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext

import asherah_django
from asherah_django import runtime
from asherah_django.blind_index.reindex import indexed_fields, reindex, rotate_keys
from asherah_django.core.records import EnvelopeKeyRecord
from asherah_django.models import EncryptionKey
from asherah_django.rotation import Checkpoint, Summary
from tests.bidxapp.models import (
    Customer,
    LegacyContact,
    SessionContact,
    Subscriber,
    TenantContact,
)
from tests.support.common import RATE, ROOT

from .conftest import factory, keys, raw_row, write_raw

#: The rate and ETA that end each progress line.
P = "bidx-reindex"


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("asherah_reindex", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def tags(model: Any, column: str = "email_bidx") -> list[str | None]:
    values = model.objects.order_by("pk").values_list(column, flat=True)
    return [v.split(".")[0] if v else None for v in values]


@pytest.fixture
def clock() -> Iterator[list[float]]:
    """Moves this process's clock (the factory's) forward: ``clock[0]`` seconds ahead."""
    ahead = [0.0]
    f = factory()
    real = f.clock
    f.clock = lambda: real() + ahead[0]  # type: ignore[method-assign]
    yield ahead
    f.clock = real  # type: ignore[method-assign]


@pytest.mark.django_db
def test_missing_stale_and_orphan_indexes_are_redone_in_batches(own_service: str) -> None:
    with asherah_django.session(P):
        rows = [Subscriber.objects.create(email=f"r{i}@example.org") for i in range(5)]
    good = raw_row(Subscriber, rows[1].pk, "email_bidx")[0]
    write_raw(Subscriber, rows[0].pk, email_bidx=None)  # as asherah_encrypt leaves it
    tag, rest = good.split(".", 1)
    write_raw(Subscriber, rows[1].pk, email_bidx=f"{tag}.0000{rest[4:]}")  # options changed
    write_raw(Subscriber, rows[2].pk, email=None)  # the value went, its index stayed
    write_raw(Subscriber, rows[3].pk, email="plain@example.org", email_bidx=None)  # legacy
    out, err = run("bidxapp.Subscriber.email", "--batch-size=2")
    assert out == (
        "bidxapp.Subscriber.email: 5 row(s) read, 2 indexed, 1 already current, 1 index(es) "
        "of NULL values cleared, 1 plaintext not indexed (see asherah_encrypt).\n"
        "Summary: 2 index value(s) written.\n"
    )
    assert re.sub(RATE, "", err, flags=re.M) == "2/5 rows\n4/5 rows\n5/5 rows\n"
    assert raw_row(Subscriber, rows[1].pk, "email_bidx")[0] == good
    assert raw_row(Subscriber, rows[2].pk, "email_bidx")[0] is None
    assert Subscriber.objects.get(email="r0@example.org").pk == rows[0].pk
    out, _ = run("bidxapp.Subscriber")
    assert out.startswith("bidxapp.Subscriber.email: 5 row(s) read, 0 indexed, 4 already current")


@pytest.mark.django_db
def test_a_rotation_keeps_every_row_findable_and_retires_the_old_version(
    own_service: str, clock: list[float]
) -> None:
    key_id = f"_BIDX__{own_service}_testprod"
    with asherah_django.session(P):
        subs = [Subscriber.objects.create(email=f"s{i}@example.org") for i in range(6)]
        first = Customer.objects.create(name="first", email="dup@example.org")
    old = tags(Subscriber)[0]
    out, _ = run("--rotate", "--activate-in=600")
    new = keys().ring(key_id).versions[-1].tag  # type: ignore[union-attr]
    assert out.splitlines()[0] == f"Rotated {key_id}: new version {new}."
    assert "become active at" in out
    # pending: writes stay on the old version, lookups already compare both
    with asherah_django.session(P):
        subs.append(Subscriber.objects.create(email="s6@example.org"))
    assert tags(Subscriber) == [old] * 7
    with CaptureQueriesContext(connection) as queries:
        assert Subscriber.objects.get(email="s6@example.org") == subs[-1]
    assert " IN (" in queries[-1]["sql"]
    out, _ = run("bidxapp.Subscriber")
    assert "7 row(s) read, 0 indexed, 7 already current" in out
    clock[0] = 601  # the new version is active: new writes use it
    with asherah_django.session(P):
        subs.append(Subscriber.objects.create(email="s7@example.org"))
        second = Customer.objects.create(name="second", email="DUP@example.org")  # the window
    assert tags(Subscriber) == [old] * 7 + [new]
    emails = [f"s{i}@example.org" for i in range(8)]
    assert Subscriber.objects.filter(email__in=emails).count() == 8
    out, _ = run()
    assert "bidxapp.Subscriber.email: 8 row(s) read, 7 indexed, 1 already current." in out
    assert (
        "bidxapp.Customer.email: 2 row(s) read, 0 indexed, 1 already current, 1 would "
        "duplicate another row's unique value (left alone)." in out
    )
    assert f"{key_id} version {old} is still used by bidxapp.Customer.email: kept" in out
    assert tags(Customer) == [old, new]
    second.delete()
    out, _ = run()
    assert "bidxapp.Customer.email: 1 row(s) read, 1 indexed, 0 already current." in out
    assert f"Retired {key_id} version {old}: no stored index uses it any more." in out
    assert out.endswith("1 old blind index key version(s) retired.\n")
    assert tags(Subscriber) == [new] * 8
    assert Customer.objects.get(email="dup@example.org") == first
    records = {
        r.created: EnvelopeKeyRecord.from_json(r.key_record)
        for r in EncryptionKey.objects.filter(id=key_id)
    }
    assert [records[c].revoked for c in sorted(records)] == [True, False]
    with CaptureQueriesContext(connection) as queries:
        assert Subscriber.objects.filter(email__in=emails).count() == 8
    assert queries[-1]["sql"].count("%s") == 0  # (params are bound separately)
    assert len(queries[-1]["sql"].split(" IN (")[1].split(")")[0].split(",")) == 8  # one each


@pytest.mark.django_db
def test_per_partition_keys_rotate_each_and_dry_runs_change_nothing(
    own_service: str, clock: list[float]
) -> None:
    for tenant in ("t1", "t2"):
        TenantContact.objects.create(tenant_id=tenant, email="c@example.org")
    with asherah_django.session("s1"):
        SessionContact.objects.create(email="c@example.org")
    before = EncryptionKey.objects.count()
    out, _ = run("--rotate", "--activate-in=0", "--dry-run")
    assert out.startswith("Would rotate 3 blind index key(s)")
    assert out.endswith(
        "Summary (dry run, nothing was changed): would have 3 blind index key(s) rotated.\n"
    )
    assert EncryptionKey.objects.count() == before
    out, _ = run("--rotate", "--activate-in=60")
    assert out.count("Rotated _BIDX_") == 3
    clock[0] = 61
    out, _ = run("bidxapp.TenantContact", "bidxapp.SessionContact", "--dry-run")
    assert "bidxapp.TenantContact.email: 2 row(s) read, 2 would be indexed" in out
    assert out.count("is still used by") == 3  # (nothing moved: nothing to retire yet)
    out, _ = run("bidxapp.TenantContact", "bidxapp.SessionContact")
    assert out.count("Retired _BIDX_") == 3
    for tenant in ("t1", "t2"):
        ring = keys().ring(f"_BIDX_{tenant}_{own_service}_testprod")
        assert ring is not None
        assert [v.retired for v in ring.versions] == [True, False]
        assert (
            TenantContact.objects.get(tenant_id=tenant, email="C@example.org").tenant_id == tenant
        )
    with asherah_django.session("s1"):
        assert SessionContact.objects.filter(email="c@example.org").exists()


@pytest.mark.django_db
def test_a_checkpoint_resumes_where_an_interrupted_run_stopped(
    own_service: str, tmp_path: Path
) -> None:
    with asherah_django.session(P):
        rows = [Subscriber.objects.create(email=f"c{i}@example.org") for i in range(6)]
    Subscriber.objects.update(email_bidx=None)
    target = next(t for t in indexed_fields(["bidxapp.Subscriber"]))
    checkpoint = Checkpoint(tmp_path / "bidx.json")

    def stop_after_two_windows(done: int, total: int) -> None:
        if done >= 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        reindex(
            factory(), target, Summary(), batch_size=2, checkpoint=checkpoint,
            progress=stop_after_two_windows,
        )  # fmt: skip
    assert checkpoint.path.exists()
    out, _ = run("bidxapp.Subscriber", "--batch-size=2", f"--checkpoint={checkpoint.path}")
    assert out == (
        f"bidxapp.Subscriber.email: resuming after pk {rows[3].pk} (checkpoint "
        f"{checkpoint.path}).\n"
        "bidxapp.Subscriber.email: 2 row(s) read, 2 indexed, 0 already current.\n"
        "Summary: 2 index value(s) written.\n"
    )
    assert not checkpoint.path.exists()
    assert Subscriber.objects.filter(email__in=[f"c{i}@example.org" for i in range(6)]).count() == 6


@pytest.mark.django_db
def test_rotation_and_reindexing_log_no_key(
    own_service: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with asherah_django.session(P):
        Subscriber.objects.create(email="log@example.org")
    run("--rotate", "--activate-in=0")
    run()
    ring = keys().ring(f"_BIDX__{own_service}_testprod")
    assert ring is not None and len(ring.versions) == 2
    text = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert f"created blind index key _BIDX__{own_service}_testprod" in text
    assert f"retired blind index key _BIDX__{own_service}_testprod" in text
    for version in ring.versions:
        for secret in (
            bytes(version._secret or b""),
            version.field_key("bidxapp.subscriber.email"),
        ):
            assert secret.hex() not in text
            assert secret.hex()[:32] not in text


def test_bad_arguments_are_refused() -> None:
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="has no blind index"):
        run("bidxapp.Customer.notes")
    with pytest.raises(CommandError, match="no field with a blind index"):
        run("bidxapp.Order")
    with pytest.raises(CommandError, match="go with --rotate"):
        run("--wait")
    with pytest.raises(CommandError, match="give no LABEL"):
        run("--rotate", "bidxapp.Customer")


# -- a real run, killed -------------------------------------------------------------------------


def _database_url() -> str:
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    scheme = {"postgresql": "postgres", "mysql": "mysql"}[connection.vendor]
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    port = f":{s['PORT']}" if s.get("PORT") else ""
    return f"{scheme}://{s.get('USER') or ''}{password}@{s.get('HOST') or '127.0.0.1'}{port}/{s['NAME']}"


@pytest.mark.slow
def test_a_rotation_killed_midway_and_run_again_leaves_every_row_findable(
    transactional_db: None,
) -> None:
    count = 600
    emails = [f"kill{i}@example.org" for i in range(count)]
    with asherah_django.session(P):
        Subscriber.objects.bulk_create(Subscriber(email=e) for e in emails)
    old = set(tags(Subscriber))
    assert len(old) == 1
    rotate_keys(factory(), Summary(), activate_in=0)  # (the command would re-index at once)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": settings.SETTINGS_MODULE,
        "DATABASE_URL": _database_url(),
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("PYTHONDEVMODE", None)  # a child killed by SIGKILL has nothing to report
    command = [
        sys.executable, "-m", "django", "asherah_reindex", "bidxapp.Subscriber",
        "--batch-size=10", "--pause=0.01",
    ]  # fmt: skip
    connections.close_all()  # (SQLite: let the child write)
    child = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert child.stderr is not None
        deadline = time.monotonic() + 120
        for line in child.stderr:
            if " rows, " in line and int(line.split("/")[0]) >= 100:
                break
            assert time.monotonic() < deadline, "no progress from the child"
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=30)
        for stream in (child.stdout, child.stderr):
            if stream:
                stream.close()
    assert child.returncode == -signal.SIGKILL
    now = tags(Subscriber)
    moved = sum(t not in old for t in now)
    assert 100 <= moved < count, moved  # killed in the middle
    runtime.reset_session_factory()  # (a fresh process would load the new version)
    assert Subscriber.objects.filter(email__in=emails).count() == count  # all findable
    for email in emails[::97]:
        assert Subscriber.objects.get(email=email.upper()).email_bidx
    second = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=True
    )
    assert (
        f"bidxapp.Subscriber.email: {count} row(s) read, {count - moved} indexed, "
        f"{moved} already current." in second.stdout
    )
    assert "1 old blind index key version(s) retired" in second.stdout
    runtime.reset_session_factory()
    assert not set(tags(Subscriber)) & old
    assert Subscriber.objects.filter(email__in=emails).count() == count
    for email in emails[::61]:
        assert Subscriber.objects.filter(email=email).count() == 1


@pytest.mark.django_db
def test_legacy_plaintext_is_indexed_and_stays_indexed_through_asherah_encrypt(
    own_service: str,
) -> None:
    rows = [LegacyContact.objects.create(owner=str(i)) for i in range(3)]
    for i, row in enumerate(rows):  # plaintext stored before the field was encrypted
        write_raw(LegacyContact, row.pk, email=f"Legacy{i}@example.org")
    assert not LegacyContact.objects.filter(email="legacy1@example.org").exists()
    out, _ = run("bidxapp.LegacyContact")
    assert "3 row(s) read, 3 indexed" in out
    assert LegacyContact.objects.get(email="legacy1@example.org") == rows[1]
    before = [raw_row(LegacyContact, r.pk, "email_bidx")[0] for r in rows]
    call_command("asherah_encrypt", "bidxapp.LegacyContact.email", "--partition=legacy",
                 stdout=io.StringIO(), stderr=io.StringIO())  # fmt: skip
    assert [raw_row(LegacyContact, r.pk, "email_bidx")[0] for r in rows] == before
    assert raw_row(LegacyContact, rows[1].pk, "email")[0].startswith('{"Key"')
    out, _ = run("bidxapp.LegacyContact")
    assert "3 row(s) read, 0 indexed, 3 already current" in out
    with asherah_django.session("legacy"):
        assert LegacyContact.objects.get(email="LEGACY2@example.org").email == "Legacy2@example.org"
