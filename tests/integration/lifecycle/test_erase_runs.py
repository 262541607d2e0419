"""asherah_erase runs: a dry run lists exactly what changes and changes nothing; a run
killed mid-way continues with --resume; integrity tags stay valid (KEY_INTEGRITY=require);
the receipt is stored for the admin, whose pages are read-only and show no key bytes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from asherah_django import runtime
from asherah_django.core.errors import AsherahError
from asherah_django.core.kms.erase import erase_kms_for
from asherah_django.core.records import EnvelopeKeyRecord
from asherah_django.erasure_receipts import ErasureReceipt
from asherah_django.rotation.erase import Erasure
from asherah_django.rotation.erase_state import EraseState
from asherah_django.rotation.keys import metastore_of
from tests.unit.management.commands.conftest import Vault, run_command

from .erase_support import erase_policy, signing_key, snapshot

pytestmark = pytest.mark.django_db(transaction=True)
PARTITIONS = ("victim", "keep-a", "keep-b")


def _setup(settings: Any, vault: Vault, **overrides: Any) -> dict[str, str]:
    signer = signing_key(vault)
    settings.ASHERAH = vault.asherah(vault.token(erase_policy(vault, signer)), **overrides)
    settings.ASHERAH = {**settings.ASHERAH, "ERASURE_SIGNING_KEY": signer}
    factory = runtime.get_session_factory()
    return {p: factory.get_session(p).encrypt(p.encode()) for p in PARTITIONS}


def test_dry_run_lists_exactly_what_changes_and_changes_nothing(
    settings: Any, vault: Vault, tmp_path: Path
) -> None:
    _setup(settings, vault)
    factory = runtime.get_session_factory()
    before = snapshot(metastore_of(factory))
    status, out, _ = run_command("asherah_erase", "victim", "--dry-run")
    assert status == 0
    (sk_created,) = [c for i, c, _ in before if i == factory.system_key_id]
    assert out.splitlines() == [
        "Erasure of partition 'victim':",
        "  a new system key is created after rotating the master key to version 2",
        f"  re-wrap {factory.intermediate_key_id('keep-a')} created {_created(before, 'keep-a')} "
        "under the new system key",
        f"  re-wrap {factory.intermediate_key_id('keep-b')} created {_created(before, 'keep-b')} "
        "under the new system key",
        f"  destroy {factory.intermediate_key_id('victim')} created {_created(before, 'victim')}",
        f"  retire system key created {sk_created} (master-key version 1)",
        "  raise the master-key decryption floor from 1 to 2",
        "Dry run: nothing was changed.",
    ]
    assert snapshot(metastore_of(factory)) == before
    info = vault.bao.api("GET", f"transit/keys/{vault.key}")["data"]
    assert (info["latest_version"], info["min_decryption_version"]) == (1, 1)
    assert not Path("asherah-erasure-victim.json.state").exists()


def _created(rows: list[tuple[str, int, str]], partition: str) -> int:
    return next(c for i, c, _ in rows if i.startswith(f"_IK_{partition}_"))


def test_killed_run_continues_with_resume_and_tags_stay_valid(
    settings: Any, vault: Vault, tmp_path: Path
) -> None:
    values = _setup(settings, vault, KEY_INTEGRITY="require")
    factory = runtime.get_session_factory()
    receipt = tmp_path / "r.json"
    state = EraseState.start(str(receipt) + ".state", "victim", vault.service, "prod")
    kms = erase_kms_for(factory.kms, {"signing_key": settings.ASHERAH["ERASURE_SIGNING_KEY"]})

    def killed_at_delete(line: str) -> None:
        if line == "Phase delete...":
            raise KeyboardInterrupt  # as if the operator's terminal went away here

    with pytest.raises(KeyboardInterrupt):
        Erasure(factory, kms, state, grace=0, poll=0.1, say=killed_at_delete).run()
    saved = json.loads(Path(state.path).read_text())
    assert saved["phase"] == "delete" and saved["rewrapped"] == 2
    assert saved["destroyed"] == []  # the partition's key is still there
    status, out, err = run_command(
        "asherah_erase", "victim", "--receipt", str(receipt), "--resume", "--grace", "0",
        "--poll", "0.1",
    )  # fmt: skip
    assert status == 0, err
    assert "Phase new-sk" not in out and "Phase delete..." in out
    runtime.reset_session_factory()
    live = runtime.get_session_factory()  # KEY_INTEGRITY=require: every tag is checked
    for partition in ("keep-a", "keep-b"):
        assert live.get_session(partition).decrypt(values[partition]) == partition.encode()
    with pytest.raises(AsherahError):
        live.get_session("victim").decrypt(values["victim"])
    document = json.loads(receipt.read_text())
    assert document["surviving_keys_rewrapped"] == 2
    assert document["master_key"]["decryption_floor"] == 2


def test_receipt_is_stored_and_shown_read_only_without_key_bytes(
    settings: Any, vault: Vault, tmp_path: Path, admin_client: Client
) -> None:
    _setup(settings, vault)
    factory = runtime.get_session_factory()
    wrapped = [EnvelopeKeyRecord.from_json(t) for _, _, t in snapshot(metastore_of(factory))]
    receipt = tmp_path / "r.json"
    status, _, err = run_command(
        "asherah_erase", "victim", "--receipt", str(receipt), "--grace", "0", "--poll", "0.1"
    )
    assert status == 0, err
    wrapped += [EnvelopeKeyRecord.from_json(t) for _, _, t in snapshot(metastore_of(factory))]
    (stored,) = ErasureReceipt.objects.filter(service=vault.service)
    assert stored.receipt == json.loads(receipt.read_text())
    assert (stored.keys_destroyed, stored.keys_rewrapped, stored.decryption_floor) == (1, 2, 2)
    listing = admin_client.get(reverse("admin:asherah_django_erasurereceipt_changelist"))
    assert listing.status_code == 200 and b"victim" in listing.content
    detail = admin_client.get(
        reverse("admin:asherah_django_erasurereceipt_change", args=[stored.pk])
    )
    assert detail.status_code == 200 and b"decryption_floor" in detail.content
    assert b'name="partition"' not in detail.content  # no form field: read-only
    add = admin_client.get(reverse("admin:asherah_django_erasurereceipt_add"))
    assert add.status_code == 403
    text = receipt.read_text() + detail.content.decode()
    import base64

    for record in wrapped:
        assert base64.b64encode(record.encrypted_key).decode() not in text


class _KilledAfterStoringTheSystemKey(EraseState):
    """The state file is not written once the new system key is stored: a kill right there."""

    def save(self) -> None:
        if self.new_sk_created:
            raise KeyboardInterrupt
        super().save()


def test_run_killed_after_storing_its_system_key_adopts_it_on_resume(
    settings: Any, vault: Vault, tmp_path: Path
) -> None:
    values = _setup(settings, vault)
    factory = runtime.get_session_factory()
    receipt = tmp_path / "r.json"
    state = _KilledAfterStoringTheSystemKey.start(
        str(receipt) + ".state", "victim", vault.service, "prod"
    )
    kms = erase_kms_for(factory.kms, {"signing_key": settings.ASHERAH["ERASURE_SIGNING_KEY"]})
    with pytest.raises(KeyboardInterrupt):
        Erasure(factory, kms, state, grace=0, poll=0.1, say=lambda _: None).run()
    store = metastore_of(factory)
    assert len([r for r in snapshot(store) if r[0] == factory.system_key_id]) == 2
    status, _, err = run_command(
        "asherah_erase", "victim", "--receipt", str(receipt), "--resume", "--grace", "0",
        "--poll", "0.1",
    )  # fmt: skip
    assert status == 0, err
    (sk,) = [r for r in snapshot(store) if r[0] == factory.system_key_id]
    assert sk[1] == json.loads(receipt.read_text())["new_system_key"]["created"]
    runtime.reset_session_factory()
    live = runtime.get_session_factory()
    assert live.get_session("keep-a").decrypt(values["keep-a"]) == b"keep-a"
