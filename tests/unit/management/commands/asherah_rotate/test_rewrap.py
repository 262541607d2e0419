"""--rewrap and --report after a Vault key rotation, min_decryption_version, and errors."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import CommandError

from asherah_django import runtime
from asherah_django.core.kms.vault import VaultTransitKMS
from tests.testapp.models import TenantNote
from tests.unit.management.commands.conftest import Vault, run_command
from tests.unit.management.commands.test_asherah_check import normalize as check_normalize
from tests.unit.management.commands.test_asherah_rotate import (
    assert_readable,
    key_of,
    normalize,
    notes,
    record,
)

pytestmark = pytest.mark.vault


@pytest.mark.django_db(transaction=True)  # asherah_check reads committed rows
def test_rewrap_after_vault_rotation_then_retire_the_old_version(
    vault: Vault, settings: Any
) -> None:
    settings.ASHERAH = vault.asherah()
    expected = notes(["p1"])  # 2 rows, 3 values
    sk = record(key_of(TenantNote, next(iter(expected)))).parent
    assert sk is not None
    config = f"transit/keys/{vault.key}/config"
    vault.bao.api("POST", f"transit/keys/{vault.key}/rotate")

    # Raising min_decryption_version now would strand the system key: asherah_check says so.
    vault.bao.api("POST", config, {"min_decryption_version": 2})
    status, out, _ = run_command("asherah_check")
    assert status == 1
    assert check_normalize(out, vault).splitlines()[4] == (
        "vault.key_config  FAIL  min_decryption_version=2 but stored system keys are wrapped "
        "under version v1: they can no longer be decrypted | hint: lower it (`vault write "
        "transit/keys/<KEY>/config min_decryption_version=1`), run `manage.py asherah_rotate "
        "--rewrap`, then raise it again"
    )
    vault.bao.api("POST", config, {"min_decryption_version": 1})

    status, out, _ = run_command("asherah_rotate", "--rewrap", "--dry-run")
    assert out == (
        "Would rewrap 1 of 1 stored system key(s) to Vault key version 2 (now under v1: 1).\n"
        "Summary (dry run, nothing was changed): would have 1 system key(s) rewrapped.\n"
    )
    assert VaultTransitKMS.key_version(record(sk).encrypted_key) == 1
    status, out, _ = run_command("asherah_rotate", "--rewrap", "--report", "testapp.TenantNote")
    assert status == 0
    assert normalize(out, vault) == (
        "Rewrapped system key _SK_<SVC>_prod created <TIME>: Vault key v1 -> v2.\n"
        "Inventory of testapp.TenantNote (body, extra): 2 row(s), 3 encrypted value(s) of this "
        "service.\n"
        "Values by intermediate key:\n"
        "  _IK_p1_<SVC>_prod  created <TIME>  current  3\n"
        "Values by system key:\n"
        "  _SK_<SVC>_prod  created <TIME>  Vault v2  3\n"
        "Values by Vault key version:\n"
        "  v2  3\n"
        "Stored system keys by Vault key version: v2: 1.\n"
        "Summary: 1 system key(s) rewrapped.\n"
    )
    everything = run_command("asherah_rotate", "--report")[1].splitlines()  # every model
    assert everything[0].startswith("Inventory of testapp.AllTypes (text, char, email, ")
    assert everything[0].endswith(": 2 row(s), 3 encrypted value(s) of this service.")
    assert everything[-2:] == [
        "Stored system keys by Vault key version: v2: 1.",
        "Summary: nothing changed.",
    ]
    rewrapped = record(sk)
    assert rewrapped.encrypted_key.startswith(b"vault:v2:")
    assert rewrapped.created == sk.created
    # Version 1 can go now; cold caches prove the rewrapped key unwraps under version 2.
    vault.bao.api("POST", config, {"min_decryption_version": 2})
    assert_readable(expected)
    assert run_command("asherah_check")[0] == 0
    again = run_command("asherah_rotate", "--rewrap")[1]
    assert again == "Summary: 1 system key(s) already on the newest Vault key version.\n"


@pytest.mark.django_db
def test_rewrap_needs_vault(settings: Any) -> None:
    with pytest.raises(CommandError, match=r"--rewrap needs the Vault Transit KMS \(KMS=vault\)"):
        run_command("asherah_rotate", "--rewrap")
    runtime.reset_session_factory()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "nothing to do: give --system, --partition"),
        (("--shred-partition", "x", "--system"), "--shred-partition runs alone"),
        (("--partition", "a", "--all-partitions"), "give --partition or --all-partitions"),
        (("--system", "--older-than", "1d"), "--older-than goes with --reencrypt"),
        (("--reencrypt", "testapp"), "expected app_label.Model or app_label.Model.field"),
        (("--reencrypt", "testapp.Nope"), "App 'testapp' doesn't have a 'Nope' model"),
        (("--reencrypt", "testapp.TenantNote.title"), "is not an encrypted field"),
        (("--reencrypt", "testapp.Tenant"), "has no encrypted field"),
        (("--reencrypt", "testapp.Secret", "--older-than", "soon"), "--older-than expects"),
        (("--partition", ""), "partition id cannot be empty"),
    ],
)
@pytest.mark.django_db
def test_argument_errors(args: tuple[str, ...], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        run_command("asherah_rotate", *args)
