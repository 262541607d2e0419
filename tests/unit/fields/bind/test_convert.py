"""``asherah_rotate --bind``: converting a column of unbound records to bound ones.

The column's field has ``bind=Bind(row=("id",), unbound="read")`` (tests.bindapp
Migrating), its stored records were written unbound (as before ``bind=`` was added).
"""

from __future__ import annotations

import re
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from asherah_django import runtime
from asherah_django import session as partition_scope
from asherah_django.core.binding import has_header
from asherah_django.core.errors import BindingMismatchError
from asherah_django.runtime import get_session_factory
from tests.bindapp.models import Migrating, Patient
from tests.support.killed_run import rotate_killed_after_two_windows

from .conftest import stored, write_raw

pytestmark = pytest.mark.django_db(transaction=True)


def unbound_rows(partition: str, n: int) -> dict[Any, bytes]:
    """``n`` rows whose two columns hold unbound records; pk -> body plaintext."""
    session = get_session_factory().get_session(partition)
    expected = {}
    with partition_scope(partition):
        for i in range(n):
            row = Migrating.objects.create()
            body = f"body {i}".encode()
            write_raw(Migrating, row.pk, "body", session.encrypt(body))
            write_raw(Migrating, row.pk, "other", session.encrypt(b"other " + body))
            expected[row.pk] = body
    return expected


def is_bound(pk: Any, field: str, partition: str) -> bool:
    session = get_session_factory().get_session(partition)
    return has_header(session.decrypt(stored(Migrating, pk, field)))


def run(*args: str) -> str:
    out = StringIO()
    call_command("asherah_rotate", *args, stdout=out)
    return out.getvalue()


def test_bind_converts_resumes_and_is_idempotent() -> None:
    expected = unbound_rows("conv", 5)
    first = next(iter(expected))
    dry = run("--bind", "bindapp.Migrating.body", "--dry-run")
    assert "5 row(s) read, 5 value(s) would be bound, 0 already bound." in dry
    assert not is_bound(first, "body", "conv")
    out = run("--bind", "bindapp.Migrating", "--batch-size", "2")
    assert "bindapp.Migrating (body, other): 5 row(s) read, 10 value(s) bound, 0 already" in out
    for pk, body in expected.items():
        assert is_bound(pk, "body", "conv") and is_bound(pk, "other", "conv")
        with partition_scope("conv"):
            row = Migrating.objects.get(pk=pk)
            assert (row.body.encode(), row.other.encode()) == (body, b"other " + body)
    # again: nothing to do; a record moved to another row is reported, left alone
    second = list(expected)[1]
    write_raw(Migrating, second, "body", stored(Migrating, first, "body"))
    out = run("--bind", "bindapp.Migrating.body")
    assert (
        "5 row(s) read, 0 value(s) bound, 4 already bound, 1 bound to another row or "
        "column (left alone, see the log)." in out
    )


def test_bind_refuses_unbound_fields_and_counts_plaintext() -> None:
    with pytest.raises(CommandError, match=r"bindapp\.Patient\.remarks has no bind= option"):
        run("--bind", "bindapp.Patient.remarks")
    with partition_scope("conv"):
        row = Migrating.objects.create(body="bound already")
    write_raw(Migrating, row.pk, "other", "legacy plaintext")
    out = run("--bind", "bindapp.Migrating")
    assert "1 value(s) bound" not in out
    assert "1 row(s) read, 0 value(s) bound, 1 already bound, 1 not encrypted" in out
    assert Patient.objects.count() == 0


@pytest.mark.database
def test_bind_run_killed_midway_then_rerun(settings: Any, tmp_path: Path) -> None:
    """A real asherah_rotate --bind process killed with SIGKILL mid-run, then run again
    from its checkpoint: every value bound once, each decrypting to its own plaintext."""
    settings.ASHERAH = {**settings.ASHERAH, "SERVICE_NAME": "testsvc"}  # the subprocess's
    runtime.reset_session_factory()
    expected = unbound_rows("kill", 12)
    checkpoint = tmp_path / "bind.json"
    args = ["--bind", "bindapp.Migrating", "--batch-size", "2", "--checkpoint", str(checkpoint)]
    seen = rotate_killed_after_two_windows(args)
    done = [pk for pk in expected if is_bound(pk, "body", "kill")]
    assert 0 < len(done) < len(expected), seen
    assert checkpoint.exists()
    out = run(*args)
    assert re.search(r"bindapp\.Migrating \(body, other\): resuming after pk \S+", out), out
    assert not checkpoint.exists()
    for pk, body in expected.items():
        assert is_bound(pk, "body", "kill") and is_bound(pk, "other", "kill")
        with partition_scope("kill"):
            row = Migrating.objects.get(pk=pk)
            assert (row.body.encode(), row.other.encode()) == (body, b"other " + body)
        session = get_session_factory().get_session("kill")
        plain = session.decrypt(stored(Migrating, pk, "body"))
        assert plain.count(b"\xffAB\x01") == 1  # bound once, not twice


def test_asherah_encrypt_binds_plaintext_to_its_row() -> None:
    """Plaintext moved in with asherah_encrypt is bound to its row at once."""
    a = Patient.objects.create(tenant_id="t", diagnosis="x")
    b = Patient.objects.create(tenant_id="t", diagnosis="y")
    write_raw(Patient, a.pk, "diagnosis", "plain a")
    write_raw(Patient, b.pk, "diagnosis", "plain b")
    out = StringIO()
    call_command("asherah_encrypt", "bindapp.Patient.diagnosis", stdout=out, stderr=StringIO())
    assert "encrypted 2 value(s)" in out.getvalue()
    assert Patient.objects.get(pk=a.pk).diagnosis == "plain a"
    assert Patient.objects.get(pk=b.pk).diagnosis == "plain b"
    write_raw(Patient, b.pk, "diagnosis", stored(Patient, a.pk, "diagnosis"))
    with pytest.raises(BindingMismatchError, match="another row"):
        Patient.objects.get(pk=b.pk).diagnosis  # noqa: B018


def test_reencrypt_keeps_the_binding() -> None:
    """--reencrypt re-encrypts the plaintext bytes as they are, header included: values
    stay bound (and readable) on the new key."""
    a = Patient.objects.create(tenant_id="rk", diagnosis="da")
    b = Patient.objects.create(tenant_id="rk", diagnosis="db")
    before = stored(Patient, a.pk, "diagnosis")
    out = run("--partition", "rk", "--reencrypt", "bindapp.Patient.diagnosis")
    assert "2 value(s) re-encrypted" in out, out
    runtime.reset_session_factory()
    assert stored(Patient, a.pk, "diagnosis") != before
    assert Patient.objects.get(pk=a.pk).diagnosis == "da"
    write_raw(Patient, b.pk, "diagnosis", stored(Patient, a.pk, "diagnosis"))
    with pytest.raises(BindingMismatchError, match="another row"):
        Patient.objects.get(pk=b.pk).diagnosis  # noqa: B018
