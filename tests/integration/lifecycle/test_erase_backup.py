"""Erasure reaches backups (issue #15 acceptance), with a real OpenBao and database.

A "backup" (the key table and the data, copied) is taken before erasing partition P; two
writers in other processes keep encrypting during the erasure. Afterwards P does not
decrypt from the live database, nor from the backup restored into a fresh database (alone,
or with the live key rows laid over it as the runbook says) with the live KMS; every other
partition decrypts from the live database and from the restored backup; every value the
writers made decrypts; the receipt verifies and a tampered one does not.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from asherah_django import runtime
from asherah_django.core import SessionFactory
from asherah_django.core.errors import AsherahError
from asherah_django.core.kms.vault import VaultTransitKMS
from asherah_django.rotation.keys import metastore_of
from tests.support.sqlite_metastore import SqliteMetastore
from tests.unit.management.commands.conftest import Vault, run_command

from .erase_support import erase_policy, restore, signing_key, snapshot, start_worker

CHECK_INTERVAL = 2
WRITE_SECONDS = 8


def _writers(asherah: dict[str, Any], names: list[str]) -> list[subprocess.Popen[str]]:
    settings = {"ERASE_TEST_ASHERAH": json.dumps(asherah)}
    return [start_worker("erase_writer", name, str(WRITE_SECONDS), **settings) for name in names]


def _decrypts(factory: SessionFactory, partition: str, record: str) -> bool:
    try:
        factory.get_session(partition).decrypt(record)
    except AsherahError:
        return False
    return True


@pytest.mark.django_db(transaction=True)
def test_erase_reaches_backups_and_loses_no_concurrent_write(
    settings: Any, vault: Vault, tmp_path: Path
) -> None:
    signer = signing_key(vault)
    token = vault.token(erase_policy(vault, signer))
    asherah = vault.asherah(token, CHECK_INTERVAL=CHECK_INTERVAL)
    settings.ASHERAH = asherah
    settings.ASHERAH = {**settings.ASHERAH, "ERASURE_SIGNING_KEY": signer}
    factory = runtime.get_session_factory()
    values = {
        p: factory.get_session(p).encrypt(f"value of {p}".encode())
        for p in ("victim", "keep-a", "keep-b")
    }
    backup_keys = snapshot(metastore_of(factory))
    backup_data = dict(values)  # the data table, copied at the same point in time

    writers = _writers(asherah, ["w1", "w2"])
    first: list[str] = []
    for writer in writers:  # each has written: it holds the old system key in its cache
        assert writer.stdout is not None
        first.append(writer.stdout.readline().rstrip("\n"))
    receipt = tmp_path / "receipt.json"
    status, out, err = run_command(
        "asherah_erase", "victim", "--receipt", str(receipt), "--grace", str(CHECK_INTERVAL + 1),
        "--poll", "0.5",
    )  # fmt: skip
    written: list[tuple[str, str]] = []
    for writer, line in zip(writers, first, strict=True):
        stdout, stderr = writer.communicate(timeout=60)
        lines = [line, *stdout.splitlines()]
        assert lines and lines[-1] == "done", stderr
        written += [tuple(line.split("\t", 1)) for line in lines[:-1]]  # type: ignore[misc]
    assert status == 0, err
    print(out)
    assert len(written) > 40

    runtime.reset_session_factory()
    live = runtime.get_session_factory()
    assert not _decrypts(live, "victim", values["victim"])
    for partition in ("keep-a", "keep-b"):
        assert (
            live.get_session(partition).decrypt(values[partition])
            == f"value of {partition}".encode()
        )
    lost = [(p, r) for p, r in written if not _decrypts(live, p, r)]
    assert lost == [], f"{len(lost)} of {len(written)} concurrent writes lost"

    kms = VaultTransitKMS.from_mapping(asherah)
    live_rows = snapshot(metastore_of(live))
    for overlay in ([], live_rows):  # the backup alone; with the live rows laid over it
        path = tmp_path / f"restored-{len(overlay)}.sqlite3"
        restore(path, backup_keys, overlay=overlay)
        store = SqliteMetastore(str(path))
        restored = SessionFactory(asherah["SERVICE_NAME"], "prod", kms, store)
        assert not _decrypts(restored, "victim", backup_data["victim"])
        for partition in ("keep-a", "keep-b"):
            # Alone, the backup's keys are all under the retired system key: the runbook's
            # restore lays the live key rows over it, and then every survivor decrypts.
            assert _decrypts(restored, partition, backup_data[partition]) == bool(overlay)
        store.close()

    status, out, _ = run_command("asherah_erase", "--verify-receipt", str(receipt))
    assert status == 0 and "Receipt verified" in out
    document = json.loads(receipt.read_text())
    assert {k["id"] for k in document["keys_destroyed"]} == {live.intermediate_key_id("victim")}
    assert document["verification"]["result"] == "passed"
    assert document["of_which_created_during_erasure"] > 0
    document["keys_destroyed"] = []
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(document))
    with pytest.raises(Exception, match="does NOT verify"):
        run_command("asherah_erase", "--verify-receipt", str(tampered))
    kms.close()
