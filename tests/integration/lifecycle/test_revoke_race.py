"""Revocation is a compare-and-swap (issue #14 item 6): a rewrap that lands between
revoke's read and its write is kept, not written back to the old Vault key version."""

from __future__ import annotations

from typing import Any

import pytest

from asherah_django import rotation, runtime
from asherah_django.core.records import EnvelopeKeyRecord
from asherah_django.models import EncryptionKey
from tests.unit.management.commands.conftest import Vault

pytestmark = pytest.mark.vault


@pytest.mark.django_db(transaction=True)
def test_concurrent_rewrap_survives_revoke(
    vault: Vault, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.ASHERAH = vault.asherah()
    factory = runtime.get_session_factory()
    factory.get_session("p").encrypt(b"v")  # the system key, under Vault key v1
    vault.bao.api("POST", f"transit/keys/{vault.key}/rotate")
    store = rotation.keys.metastore_of(factory)
    sk_id = factory.system_key_id
    (row,) = EncryptionKey.objects.filter(id=sk_id)
    before = EnvelopeKeyRecord.from_json(row.key_record)
    assert factory.kms.key_version(before.encrypted_key) == 1  # type: ignore[attr-defined]

    execute = store._execute
    rewrapped: list[str] = []

    def rewrap_first(sql: str, params: Any) -> int:
        # Another operator's rewrap commits after revoke read the row, before it writes.
        if not rewrapped:
            summary = rotation.Summary(dry_run=False, write=lambda line: None)
            changes = rotation.rewrap_system_keys(factory, summary)
            rewrapped.append(str(changes))
            assert len(changes) == 1
        return execute(sql, params)

    monkeypatch.setattr(store, "_execute", rewrap_first)
    assert store.revoke(sk_id, before.created)
    assert rewrapped
    (row,) = EncryptionKey.objects.filter(id=sk_id)
    after = EnvelopeKeyRecord.from_json(row.key_record)
    assert after.revoked
    assert factory.kms.key_version(after.encrypted_key) == 2  # type: ignore[attr-defined]
    assert after.encrypted_key != before.encrypted_key
    runtime.reset_session_factory()
    # The revoked, rewrapped key still unwraps (in a cold factory):
    fresh = runtime.get_session_factory()
    assert fresh._keys.system_key(rotation.keys.KeyMeta(sk_id, before.created)).usable
