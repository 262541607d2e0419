"""asherah_rotate --shred-partition (asherah_django.rotation.keys): confirmation, the
key_shredded signal, and values that no process can decrypt afterwards."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import CommandError

from asherah_django import rotation, runtime, signals
from asherah_django.core.errors import KeyNotFoundError
from tests.testapp.models import TenantNote
from tests.unit.management.commands.conftest import Vault, run_command
from tests.unit.management.commands.test_asherah_rotate import (
    assert_readable,
    normalize,
    notes,
)


@pytest.mark.django_db
def test_shred_partition(
    vault: Vault, settings: Any, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    settings.ASHERAH = vault.asherah()
    victim = notes(["victim"])
    assert run_command("asherah_rotate", "--partition", "victim")[0] == 0
    victim.update(notes(["victim"]))  # a second key version
    kept = notes(["keep"])
    ik_id = f"_IK_victim_{vault.service}_prod"

    answers = iter(["keep", "victim"])
    monkeypatch.setattr("builtins.input", lambda prompt: next(answers))
    with pytest.raises(CommandError, match="not confirmed: nothing was shredded"):
        run_command("asherah_rotate", "--shred-partition", "victim")
    assert len(rotation.keys.stored_versions(runtime.get_session_factory(), ik_id)) == 2

    shredded: list[tuple[str, int]] = []
    signals.key_shredded.connect(
        lambda **kw: shredded.append((kw["key_id"], kw["count"])), weak=False, dispatch_uid="t"
    )
    try:
        status, out, _ = run_command("asherah_rotate", "--shred-partition", "victim")
        assert status == 0
    finally:
        signals.key_shredded.disconnect(dispatch_uid="t")
    assert normalize(out, vault) == (
        "This destroys the 2 intermediate key version(s) of partition 'victim' "
        "(_IK_victim_<SVC>_prod). Every value encrypted for it becomes undecryptable, for good; "
        "backups of the encryption_key table still hold the keys.\n"
        "Shredded partition 'victim': 2 intermediate key version(s) of _IK_victim_<SVC>_prod "
        "destroyed; its values can never be decrypted again.\n"
        "Summary: 2 intermediate key version(s) destroyed.\n"
    )
    assert shredded == [(ik_id, 2)]
    assert any(
        "shredded partition 'victim'" in r.getMessage()
        for r in caplog.records
        if r.levelname == "WARNING"
    )
    # This process (its cache held the key) cannot decrypt them any more, nor can a new one.
    for fresh in (False, True):
        if fresh:
            runtime.reset_session_factory()
        for pk in victim:
            with pytest.raises(KeyNotFoundError, match=r"is not in the metastore .*shredded"):
                TenantNote.objects.get(pk=pk).body  # noqa: B018
    assert_readable(kept)
    # Re-encryption cannot move them either: counted, logged, left as they are.
    assert run_command("asherah_rotate", "--reencrypt", "testapp.TenantNote")[1].splitlines() == [
        "testapp.TenantNote (body, extra): 6 row(s) read, 0 value(s) re-encrypted, 3 already on "
        "current keys, 6 unreadable: key missing or record corrupt (see the log).",
        "Summary: 0 value(s) re-encrypted, 6 value(s) unreadable.",
    ]
    assert run_command("asherah_rotate", "--shred-partition", "victim", "--yes")[
        1
    ].splitlines() == [
        "Shredded partition 'victim': 0 intermediate key version(s) of "
        f"_IK_victim_{vault.service}_prod destroyed.",
        "Summary: 0 intermediate key version(s) destroyed.",
    ]
