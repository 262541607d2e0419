"""InMemoryMetastore's in-place rewrap and single-version delete (the rest: every core test)."""

from __future__ import annotations

from asherah_django.core import EnvelopeKeyRecord, InMemoryMetastore, KeyMeta

SK = KeyMeta("_SK_svc_prod", 1_700_000_000)


def test_rewrap_swaps_only_the_record_text_that_was_read() -> None:
    store = InMemoryMetastore()
    old = EnvelopeKeyRecord(1_700_000_000, bytes(60), SK)
    new = EnvelopeKeyRecord(1_700_000_000, bytes(range(60)), KeyMeta(SK.key_id, SK.created + 60))
    assert store.rewrap("_IK_p_svc_prod", 1_700_000_000, old.to_json(), new) is False  # absent
    store.store("_IK_p_svc_prod", 1_700_000_000, old)
    assert store.rewrap("_IK_p_svc_prod", 1_700_000_000, new.to_json(), new) is False
    assert store.load("_IK_p_svc_prod", 1_700_000_000) == old
    assert store.rewrap("_IK_p_svc_prod", 1_700_000_000, old.to_json(), new) is True
    assert store.load("_IK_p_svc_prod", 1_700_000_000) == new
    assert store.revoke("_IK_p_svc_prod", 1_700_000_000)
    assert store.rewrap("_IK_p_svc_prod", 1_700_000_000, new.to_json(), old) is False


def test_delete_version_deletes_exactly_that_version() -> None:
    store = InMemoryMetastore()
    for created in (1_700_000_000, 1_700_000_060):
        store.store("_IK_p_svc_prod", created, EnvelopeKeyRecord(created, bytes(60), SK))
    assert store.delete_version("_IK_p_svc_prod", 1_700_000_120) is False
    assert store.delete_version("_IK_p_svc_prod", 1_700_000_000) is True
    assert store.load("_IK_p_svc_prod", 1_700_000_000) is None
    assert store.load_latest("_IK_p_svc_prod") is not None
    assert store.delete_version("_IK_p_svc_prod", 1_700_000_060) is True
    assert store.load_latest("_IK_p_svc_prod") is None
