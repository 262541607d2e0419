"""Erasure receipts verify with the documented procedures and fail when changed: with the
command (Vault's verify endpoint), with ``vault write <mount>/verify/<key>`` (the raw API),
and offline with the signing key's public half (ed25519, no Vault access needed)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management.base import CommandError

from asherah_django import runtime
from asherah_django.rotation import receipt as receipts
from tests.unit.management.commands.conftest import Vault, run_command

from .erase_support import erase_policy, signing_key

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def signed(settings: Any, vault: Vault, tmp_path: Path) -> tuple[Path, str]:
    signer = signing_key(vault)
    settings.ASHERAH = vault.asherah(vault.token(erase_policy(vault, signer)))
    settings.ASHERAH = {**settings.ASHERAH, "ERASURE_SIGNING_KEY": signer}
    factory = runtime.get_session_factory()
    for partition in ("victim", "keep"):
        factory.get_session(partition).encrypt(b"x")
    path = tmp_path / "receipt.json"
    status, _, err = run_command(
        "asherah_erase", "victim", "--receipt", str(path), "--grace", "0", "--poll", "0.1"
    )
    assert status == 0, err
    return path, signer


def _tampered(path: Path, change: Any) -> Path:
    document = json.loads(path.read_text())
    change(document)
    out = path.with_name("tampered.json")
    out.write_text(json.dumps(document))
    return out


def _vault_and_offline(vault: Vault, signer: str, document: Any) -> tuple[bool, bool]:
    """The runbook's two manual procedures: Vault's verify endpoint, the public key."""
    body = {
        "input": base64.b64encode(receipts.payload(document)).decode(),
        "signature": document["signature"]["value"],
    }
    valid = vault.bao.api("POST", f"transit/verify/{signer}", body)["data"]["valid"]
    keys = vault.bao.api("GET", f"transit/keys/{signer}")["data"]["keys"]
    return valid, receipts.verify_offline(document, keys)


CHANGES = {
    "partition": lambda d: d.update(partition="someone-else"),
    "floor": lambda d: d["master_key"].update(decryption_floor=1),
    "destroyed": lambda d: d["keys_destroyed"].pop(),
    "verification": lambda d: d["verification"].update(result="skipped"),
}


def test_receipt_verifies_with_the_command_vault_and_offline(
    signed: tuple[Path, str], vault: Vault
) -> None:
    path, signer = signed
    status, out, _ = run_command("asherah_erase", "--verify-receipt", str(path))
    assert status == 0 and f"signed by vault-transit:transit/{signer}" in out
    assert _vault_and_offline(vault, signer, json.loads(path.read_text())) == (True, True)


@pytest.mark.parametrize("change", CHANGES)
def test_a_tampered_receipt_fails_every_procedure(
    signed: tuple[Path, str], vault: Vault, change: str
) -> None:
    path, signer = signed
    tampered = _tampered(path, CHANGES[change])
    with pytest.raises(CommandError, match="does NOT verify"):
        run_command("asherah_erase", "--verify-receipt", str(tampered))
    document = json.loads(tampered.read_text())
    assert _vault_and_offline(vault, signer, document) == (False, False)


def test_a_receipt_signed_by_another_key_fails(signed: tuple[Path, str], vault: Vault) -> None:
    path, _ = signed
    other = f"{vault.key}-other"
    vault.bao.api("POST", f"transit/keys/{other}", {"type": "ed25519"})
    document = json.loads(path.read_text())
    value = vault.bao.api(
        "POST", f"transit/sign/{other}",
        {"input": base64.b64encode(receipts.payload(document)).decode()},
    )["data"]["signature"]  # fmt: skip
    document["signature"]["value"] = value  # a valid signature, by the wrong key
    forged = path.with_name("forged.json")
    forged.write_text(json.dumps(document))
    with pytest.raises(CommandError, match="does NOT verify"):
        run_command("asherah_erase", "--verify-receipt", str(forged))
