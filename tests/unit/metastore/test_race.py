"""Eight processes make their first encrypt for one new partition at the same moment.

Each process (``race_worker.py``, a separate interpreter with DJANGO_SETTINGS_MODULE) sets
up Django on the test database, connects, and waits at a barrier; all are released at
once. Afterwards there is exactly one system key row and one intermediate key row, every
value names that key, and every value decrypts in a cold factory; no process saw an error.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from django.db import connection
from django.test import override_settings

from asherah_django.core import parse_data_row
from asherah_django.core.key_ids import KeyIds
from asherah_django.models import EncryptionKey
from asherah_django.runtime import get_session_factory
from tests.support.common import ROOT
from tests.unit.conftest import unique

PROCESSES = 8


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_first_encrypt_race_between_processes() -> None:
    service, partition = unique("race"), "shared-new-tenant"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "tests.unit.metastore.race_worker"]
    args = [str(connection.settings_dict["NAME"]), service, partition]
    racers = [
        subprocess.Popen(
            [*command, *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    results, errors, lost = [], [], []
    try:
        for racer in racers:
            assert racer.stdout is not None
            line = racer.stdout.readline()
            assert line.strip() == "ready", _failure(racer)
        _stay_inside_one_minute()
        for racer in racers:  # the barrier: everyone is blocked reading stdin
            assert racer.stdin is not None
            racer.stdin.write("go\n")
            racer.stdin.flush()
        for racer in racers:
            stdout, stderr = racer.communicate(timeout=60)
            assert racer.returncode == 0, stderr
            result = json.loads(stdout)
            results += result["records"]
            errors += result["errors"]
            lost += result["lost"]
    finally:
        for racer in racers:
            if racer.poll() is None:
                racer.kill()
            racer.communicate()

    assert errors == []
    print(f"inserts that lost a race: {len(lost)}")  # shown with -s; usually several
    assert len(results) == PROCESSES * 3
    ik_id = KeyIds(service, "testprod").intermediate(partition)
    intermediate = list(EncryptionKey.objects.filter(id=ik_id))
    system = list(EncryptionKey.objects.filter(id=KeyIds(service, "testprod").system))
    assert len(intermediate) == 1, intermediate
    assert len(system) == 1, system
    assert intermediate[0].info is not None
    assert intermediate[0].info.parent == (system[0].id, system[0].created_epoch)
    named = {parse_data_row(value).parent for value in results}
    assert named == {(ik_id, intermediate[0].created_epoch)}

    from django.conf import settings

    with override_settings(ASHERAH={**settings.ASHERAH, "SERVICE_NAME": service}):
        session = get_session_factory().get_session(partition)  # a cold factory
        decrypted = [session.decrypt(value).decode() for value in results]
    assert len({text.split(":")[0] for text in decrypted}) == PROCESSES


def _stay_inside_one_minute() -> None:
    """Keys are created on minute boundaries; do not start the race just before one."""
    if time.time() % 60 > 55:
        time.sleep(60.5 - time.time() % 60)


def _failure(racer: subprocess.Popen[str]) -> str:
    racer.kill()
    _, stderr = racer.communicate()
    return f"a racer failed to start:\n{stderr}"
