"""``--shard I/N`` and ``--throttle`` of the maintenance commands: disjoint shards cover
every row once; runs over the same rows at once convert each row exactly once, because
every write is a compare-and-swap."""

from __future__ import annotations

import io
import math
import os
import re
import subprocess
import sys

import pytest
from django.core.management import CommandError, call_command
from django.core.management.base import OutputWrapper
from django.db import connection, transaction

from asherah_django import runtime
from asherah_django.core.records import looks_like_data_row, parse_data_row
from asherah_django.maintenance import ProgressReporter, Shard, Throttle
from asherah_django.management.commands.asherah_encrypt import encrypt_column
from tests.bindapp.models import Migrating
from tests.support.common import ROOT
from tests.testapp.models import LegacyNote
from tests.unit.management.commands.conftest import database_url


def plain_rows(count: int) -> dict[int, str]:
    """LegacyNote rows whose body holds plaintext (as before the field was encrypted)."""
    with transaction.atomic():
        notes = LegacyNote.objects.bulk_create(LegacyNote(owner="o") for _ in range(count))
    values = {n.pk: f"plain {n.pk}" for n in notes}
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(
            "UPDATE testapp_legacynote SET body = %s WHERE id = %s",
            [(text, pk) for pk, text in values.items()],
        )
    return values


def stored() -> dict[int, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, body FROM testapp_legacynote")
        return dict(cursor.fetchall())


def assert_encrypted_once(values: dict[int, str], partition: str) -> None:
    """Every value is a record that decrypts to its own plaintext (not to a record)."""
    session = runtime.get_session_factory().get_session(partition)
    rows = stored()
    assert set(rows) == set(values)
    for pk, text in rows.items():
        assert looks_like_data_row(text), pk
        assert session.decrypt_text(text) == values[pk], pk


def test_shard_parse() -> None:
    assert Shard.parse("2/4") == Shard(2, 4)
    assert str(Shard(1, 3)) == "1/3"
    for bad in ("0/2", "3/2", "1", "a/b", "1/0"):
        with pytest.raises(Exception, match="--shard expects I/N"):
            Shard.parse(bad)


def test_throttle_holds_the_rate() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    throttle = Throttle(rate=100.0, clock=lambda: now[0], sleep=sleep)
    throttle.wait(50)  # 50 rows at once: 0.5 s ahead of 100 rows/s
    now[0] += 0.2  # the next window took 0.2 s
    throttle.wait(50)
    assert slept == pytest.approx([0.5, 0.3])


@pytest.mark.database
@pytest.mark.django_db(transaction=True)
def test_two_disjoint_shards_cover_every_row_once() -> None:
    values = plain_rows(41)
    results = [
        encrypt_column(
            "testapp.LegacyNote.body", partition="shards", batch_size=4, shard=Shard(i, 2)
        )
        for i in (1, 2)
    ]
    evens = sum(pk % 2 == 0 for pk in values)
    assert [r.encrypted for r in results] == [evens, len(values) - evens]
    assert [r.total for r in results] == [evens, len(values) - evens]
    assert_encrypted_once(values, "shards")


@pytest.mark.database
@pytest.mark.django_db
def test_integer_and_uuid_shards_are_disjoint_and_cover_every_row() -> None:
    """pk mod N, negative pks included; the N-th of the UUID space for UUID pks."""
    pks = [pk for pk in range(-7, 30) if pk]  # (MariaDB refuses a pk of 0)
    LegacyNote.objects.bulk_create(LegacyNote(id=pk, owner="o") for pk in pks)
    Migrating.objects.bulk_create(Migrating() for _ in range(60))
    for model, count in ((LegacyNote, 3), (Migrating, 4)):
        every = set(model.objects.values_list("pk", flat=True))
        shards = [
            set(Shard(i, count).filter(model.objects.all()).values_list("pk", flat=True))
            for i in range(1, count + 1)
        ]
        assert sum(map(len, shards)) == len(every)  # disjoint...
        assert set().union(*shards) == every  # ...and complete
        assert all(shards)
    second = Shard(2, 3).filter(LegacyNote.objects.all()).values_list("pk", flat=True)
    # SQL's remainder keeps the dividend's sign (as math.fmod): -5 % 3 is -2 there
    assert set(second) == {pk for pk in pks if math.fmod(pk, 3) in (1, -2)}


@pytest.mark.database
@pytest.mark.django_db(transaction=True)
def test_reencrypt_in_three_shards_with_a_throttle() -> None:
    values = plain_rows(9)
    encrypt_column("testapp.LegacyNote.body", partition="rs")
    call("asherah_rotate", "--partition", "rs")
    done = []
    for shard in ("1/3", "2/3", "3/3"):
        out = call("asherah_rotate", "--reencrypt", "testapp.LegacyNote.body",
                   f"--shard={shard}", "--throttle=100000")  # fmt: skip
        done.append(int(re.search(r"(\d+) value\(s\) re-encrypted,", out).group(1)))  # type: ignore[union-attr]
    assert sum(done) == len(values) and all(done)
    runtime.reset_session_factory()
    assert_encrypted_once(values, "rs")


def test_bad_shard_and_throttle_options_are_refused() -> None:
    with pytest.raises(CommandError, match="--shard expects I/N"):
        call("asherah_encrypt", "testapp.LegacyNote.body", "--partition=p", "--shard=3/2")
    with pytest.raises(CommandError, match="--throttle must be a positive"):
        call("asherah_reindex", "bidxapp.Subscriber", "--throttle=0")


def test_progress_says_rows_rate_and_eta() -> None:
    now = [100.0]
    out = io.StringIO()
    reporter = ProgressReporter(OutputWrapper(out), clock=lambda: now[0])
    reporter.start(1000)  # resumed: 1,000 rows done before this run
    now[0] += 2.0
    reporter(1500, 4000)
    now[0] += 2.0
    reporter(2000, 4000)
    assert out.getvalue() == (
        "1500/4000 rows, 250 rows/s, ETA 0:00:10\n2000/4000 rows, 250 rows/s, ETA 0:00:08\n"
    )


def call(*args: str) -> str:
    """``call_command``: its stdout."""
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def _children(*commands: list[str]) -> list[str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url(),
        "PYTHONPATH": str(ROOT),
        "PYTHONWARNINGS": "ignore",
    }
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "django", *command],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for command in commands
    ]
    outs = []
    for child in children:
        out, err = child.communicate(timeout=300)
        assert child.returncode == 0, err
        outs.append(out)
    return outs


@pytest.mark.database
def test_overlapping_runs_convert_every_row_exactly_once(transactional_db: None) -> None:
    """Two asherah_encrypt processes at once over the same rows (the whole table, and
    shard 1/2 of it), then two asherah_rotate --reencrypt: each value is converted by
    exactly one of them (the counts add up), none is lost or encrypted twice."""
    if connection.vendor == "sqlite":
        pytest.skip("needs concurrent writers (PostgreSQL or MariaDB)")
    values = plain_rows(400)
    encrypt = ["asherah_encrypt", "testapp.LegacyNote.body", "--partition=both", "--batch-size=5"]
    outs = _children(encrypt, [*encrypt, "--shard=1/2"])
    done = [int(re.search(r"encrypted (\d+) value", out).group(1)) for out in outs]  # type: ignore[union-attr]
    assert sum(done) == len(values), outs
    assert_encrypted_once(values, "both")
    before = {pk: parse_data_row(text).parent for pk, text in stored().items()}
    call("asherah_rotate", "--partition", "both")
    rotate = ["asherah_rotate", "--reencrypt", "testapp.LegacyNote.body", "--batch-size=5"]
    outs = _children(rotate, [*rotate, "--shard=2/2"])
    done = [int(re.search(r"(\d+) value\(s\) re-encrypted,", out).group(1)) for out in outs]  # type: ignore[union-attr]
    assert sum(done) == len(values), outs
    runtime.reset_session_factory()
    assert_encrypted_once(values, "both")
    after = {pk: parse_data_row(text).parent for pk, text in stored().items()}
    assert all(after[pk] != before[pk] for pk in values)
