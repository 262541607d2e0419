"""The incident runbook of SECURITY.md, run verbatim (issue #14 item 3).

Values are written under three key generations by factories whose clocks are set in the
past (200, 100, 30 and 5 days ago: the older system and intermediate keys expired, one
intermediate key superseded, none of them revoked). Then the commands of the runbook are
taken from SECURITY.md exactly as written and run; afterwards no value may be under an
intermediate or system key created before the incident.
"""

from __future__ import annotations

import shlex
import time
from typing import Any

import pytest
from django.db import connection

from asherah_django import runtime
from asherah_django.core import SessionFactory, StaticKMS
from asherah_django.core.records import KeyMeta, parse_data_row
from asherah_django.metastore import DjangoMetastore
from tests.support.common import ROOT
from tests.testapp.models import TenantNote
from tests.unit.management.commands.conftest import run_command, unique

DAY = 86400
MARKER = "<!-- incident-runbook:"


def runbook() -> list[list[str]]:
    """The command lines of the fenced block after the marker in SECURITY.md."""
    lines = (ROOT / "SECURITY.md").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(MARKER))
    assert lines[start + 1] == "```sh"
    end = lines.index("```", start + 2)
    commands = [shlex.split(line) for line in lines[start + 2 : end] if line.strip()]
    assert commands and all(c[:2] == ["python", "manage.py"] for c in commands)
    return [c[2:] for c in commands]


def write_generation(settings: Any, service: str, days_ago: int, partitions: list[str]) -> None:
    store = DjangoMetastore(system_key_id=f"_SK_{service}_testprod")
    kms = StaticKMS.from_hex(settings.ASHERAH["STATIC_MASTER_KEY_HEX"])
    then = time.time() - days_ago * DAY
    factory = SessionFactory(service, "testprod", kms, store, clock=lambda: then)
    table = connection.ops.quote_name(TenantNote._meta.db_table)
    try:
        with connection.cursor() as cursor:
            for partition in partitions:
                body = factory.get_session(partition).encrypt_text(f"{partition} {days_ago}d")
                cursor.execute(
                    f"INSERT INTO {table} (tenant_id, title, body, extra) "
                    "VALUES (%s, '', %s, NULL)",
                    [partition, body],
                )
    finally:
        factory.close()
        store.close()


def key_ages() -> list[tuple[KeyMeta, int]]:
    """(intermediate key, system key created) of every stored value."""
    store = runtime.get_session_factory().metastore
    table = connection.ops.quote_name(TenantNote._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT body FROM {table}")
        raws = [row[0] for row in cursor.fetchall()]
    ages = []
    for raw in raws:
        meta = parse_data_row(raw).parent
        record = store.load(meta.key_id, meta.created)
        assert record is not None and record.parent is not None
        ages.append((meta, record.parent.created))
    return ages


@pytest.mark.django_db
def test_incident_runbook_verbatim(settings: Any) -> None:
    service = unique("inc")
    settings.ASHERAH = {**settings.ASHERAH, "SERVICE_NAME": service}
    write_generation(settings, service, 200, ["a", "b"])
    write_generation(settings, service, 100, ["a", "b", "c"])
    write_generation(settings, service, 30, ["d"])
    write_generation(settings, service, 5, ["a", "d"])
    before = key_ages()
    assert len({ik for ik, _ in before}) >= 6 and len({sk for _, sk in before}) == 3
    expected = {note.pk: note.body for note in TenantNote.objects.all()}
    runtime.reset_session_factory()

    incident = int(time.time()) // 60 * 60  # the incident: just now
    outputs = []
    for command in runbook():
        status, out, err = run_command(*command)
        assert status == 0, (command, out, err)
        outputs.append(out)

    ages = key_ages()
    assert len(ages) == len(before) == 8
    old = [(ik, sk) for ik, sk in ages if ik.created < incident or sk < incident]
    assert old == [], f"{len(old)} value(s) still under keys older than the incident"
    assert (
        "testapp.TenantNote (body, extra): 8 row(s) read, 8 value(s) re-encrypted" in (outputs[1])
    )
    runtime.reset_session_factory()
    assert {note.pk: note.body for note in TenantNote.objects.all()} == expected
