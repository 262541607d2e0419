"""Raising ``min_decryption_version`` can be undone by whoever may configure the Transit key;
``--trim`` deletes the retired versions so that nothing can (issue #15, real OpenBao)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.core.management.base import CommandError

from asherah_django import runtime
from asherah_django.core.kms.vault import VaultTransitKMS
from asherah_django.core.records import EnvelopeKeyRecord
from asherah_django.rotation.keys import metastore_of
from asherah_django.testing.openbao import OpenBaoError
from tests.unit.management.commands.conftest import Vault, run_command

from .erase_support import erase_policy, signing_key, snapshot

pytestmark = pytest.mark.django_db(transaction=True)


def _erase(settings: Any, vault: Vault, tmp_path: Path, *, trim: bool) -> bytes:
    """Erase 'victim'; the retired system key's wrapping, as a backup holds it."""
    signer = signing_key(vault)
    settings.ASHERAH = vault.asherah(vault.token(erase_policy(vault, signer, trim=trim)))
    settings.ASHERAH = {**settings.ASHERAH, "ERASURE_SIGNING_KEY": signer}
    factory = runtime.get_session_factory()
    factory.get_session("victim").encrypt(b"x")
    (old,) = [t for i, _, t in snapshot(metastore_of(factory)) if i == factory.system_key_id]
    args = ["--grace", "0", "--poll", "0.1", "--receipt", str(tmp_path / "r.json")]
    status, _, err = run_command("asherah_erase", "victim", *args, *(["--trim"] if trim else []))
    assert status == 0, err
    return EnvelopeKeyRecord.from_json(old).encrypted_key


def _opens(vault: Vault, blob: bytes) -> bool:
    kms = VaultTransitKMS.from_mapping(vault.asherah(vault.bao.root_token))
    try:
        kms.decrypt_key(blob)
    except Exception:
        return False
    finally:
        kms.close()
    return True


def test_without_trim_a_vault_admin_can_lower_the_floor_again(
    settings: Any, vault: Vault, tmp_path: Path
) -> None:
    retired = _erase(settings, vault, tmp_path, trim=False)
    assert not _opens(vault, retired)
    vault.bao.api("POST", f"transit/keys/{vault.key}/config", {"min_decryption_version": 1})
    assert _opens(vault, retired)  # the backup's system key opens again


def test_with_trim_the_retired_versions_are_gone(
    settings: Any, vault: Vault, tmp_path: Path
) -> None:
    retired = _erase(settings, vault, tmp_path, trim=True)
    with pytest.raises(OpenBaoError):
        vault.bao.api("POST", f"transit/keys/{vault.key}/config", {"min_decryption_version": 1})
    assert not _opens(vault, retired)
    info = vault.bao.api("GET", f"transit/keys/{vault.key}")["data"]
    assert info["min_available_version"] == 2
    assert '"versions_below_floor_deleted": true' in (tmp_path / "r.json").read_text()


def test_trim_without_the_permission_is_refused(
    settings: Any, vault: Vault, tmp_path: Path
) -> None:
    signer = signing_key(vault)
    settings.ASHERAH = vault.asherah(vault.token(erase_policy(vault, signer)))
    settings.ASHERAH = {**settings.ASHERAH, "ERASURE_SIGNING_KEY": signer}
    runtime.get_session_factory().get_session("victim").encrypt(b"x")
    with pytest.raises(CommandError, match=f"missing update on transit/keys/{vault.key}/trim"):
        run_command("asherah_erase", "victim", "--trim", "--receipt", str(tmp_path / "r.json"))
