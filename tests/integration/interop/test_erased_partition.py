"""After an erasure, the ``asherah`` wheel (Asherah's Rust core) still reads and writes the
surviving partitions through their re-wrapped intermediate keys, and not the erased one.

The wheel has no Vault Transit support (not built with its ``vault`` feature), so this runs
the static KMS's documented equivalent of retiring master-key versions: a new master key
(``--new-static-master-key-hex``) that the wheel is then configured with, as every process
must be after such an erasure.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest

from asherah_django import runtime
from tests.integration.interop.test_shared_table import peer_config
from tests.support import optional
from tests.unit.conftest import unique
from tests.unit.management.commands.conftest import run_command

asherah = optional.asherah_peer()

pytestmark = [pytest.mark.interop, pytest.mark.django_db(transaction=True)]


def test_wheel_reads_surviving_partitions_after_an_erasure(settings: Any, tmp_path: Path) -> None:
    service = unique("ers")
    settings.ASHERAH = {**settings.ASHERAH, "SERVICE_NAME": service, "PRODUCT_ID": "prod"}
    before = asherah.SessionFactory(peer_config(service))
    by_wheel = {
        p: before.get_session(p).encrypt_bytes(f"wheel {p}".encode()) for p in ("keep", "victim")
    }
    before.close()
    by_us = runtime.get_session_factory().get_session("ours").encrypt(b"ours")

    new_hex = secrets.token_hex(32)
    status, _, err = run_command(
        "asherah_erase", "victim", "--receipt", str(tmp_path / "r.json"),
        "--new-static-master-key-hex", new_hex, "--grace", "0", "--poll", "0.1",
    )  # fmt: skip
    assert status == 0, err

    after = asherah.SessionFactory({**peer_config(service), "StaticMasterKeyHex": new_hex})
    assert after.get_session("keep").decrypt_bytes(by_wheel["keep"]) == b"wheel keep"
    assert after.get_session("ours").decrypt_bytes(by_us) == b"ours"
    with pytest.raises(Exception):  # noqa: B017 - the wheel's error type is RuntimeError
        after.get_session("victim").decrypt_bytes(by_wheel["victim"])
    again = after.get_session("keep").encrypt_bytes(b"after the erasure")
    after.close()
    assert '"KeyId":"_IK_keep_' in again
    settings.ASHERAH = {**settings.ASHERAH, "STATIC_MASTER_KEY_HEX": new_hex}
    runtime.reset_session_factory()
    ours = runtime.get_session_factory()
    assert ours.get_session("keep").decrypt(again) == b"after the erasure"
    assert ours.get_session("keep").decrypt(by_wheel["keep"]) == b"wheel keep"
