"""The detail page of a blind-index key says what it is (issue 20): its parent is the system
key, but it is not an intermediate key and has no partition data under it."""

from __future__ import annotations

from typing import Any

from asherah_django.models import EncryptionKey

from .conftest import SERVICE, Keyring, ik_record
from .test_pages import login


def test_blind_index_key_page_does_not_call_it_an_intermediate_key(
    keyring: Keyring, viewer: Any
) -> None:
    sk = keyring.rows["sk"]
    key_id = f"_BIDX__{SERVICE}_testprod"
    EncryptionKey.objects.create(id=key_id, created=sk[1], key_record=ik_record(sk[1], sk))
    keyring.rows["bidx"] = (key_id, sk[1])
    text = login(viewer).get(keyring.detail_path("bidx")).content.decode()
    parent = text[text.index('id="key-parent"') :]
    assert sk[0] in parent
    assert "This blind-index key is encrypted with this system key" in parent
    assert "intermediate key" not in parent.split("</fieldset>", 1)[0]
    alice = login(viewer).get(keyring.detail_path("alice")).content.decode()
    assert "This intermediate key is encrypted with this system key" in alice
