"""The reference-generated vectors decrypt, and AES-GCM matches NIST in Asherah's layout."""

from __future__ import annotations

import json

import pytest

from asherah_django.core import (
    EnvelopeKeyRecord,
    InMemoryMetastore,
    KeyMeta,
    SessionFactory,
    StaticKMS,
    parse_data_row,
)
from asherah_django.core.aead import Cipher
from tests.unit.core import vectors as v


@pytest.fixture
def reference_metastore() -> InMemoryMetastore:
    metastore = InMemoryMetastore()
    metastore.store(v.SK_ID, v.CREATED, EnvelopeKeyRecord.from_json(v.SK_RECORD))
    metastore.store(v.IK_ID, v.CREATED, EnvelopeKeyRecord.from_json(v.IK_RECORD))
    return metastore


@pytest.mark.parametrize(("record", "plaintext"), [(v.DRR_PAYLOAD, v.PAYLOAD), (v.DRR_EMPTY, b"")])
def test_reference_records_decrypt(
    reference_metastore: InMemoryMetastore, record: str, plaintext: bytes
) -> None:
    kms = StaticKMS.from_hex(v.MASTER_KEY_HEX)
    with SessionFactory(v.SERVICE, v.PRODUCT, kms, reference_metastore) as factory:
        assert factory.get_session(v.PARTITION).decrypt(record) == plaintext


def _reformat(record: str, *, reverse: bool, indent: int | None) -> str:
    def reorder(value: object) -> object:
        if isinstance(value, dict):
            items = [(k, reorder(x)) for k, x in value.items()]
            return dict(reversed(items) if reverse else items)
        return value

    return json.dumps(reorder(json.loads(record)), indent=indent)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("indent", [None, 2])
def test_reference_records_parse_in_any_key_order_and_whitespace(
    reference_metastore: InMemoryMetastore, reverse: bool, indent: int | None
) -> None:
    record = _reformat(v.DRR_PAYLOAD, reverse=reverse, indent=indent)
    sk_text = _reformat(v.SK_RECORD, reverse=reverse, indent=indent)
    ik_text = _reformat(v.IK_RECORD, reverse=reverse, indent=indent)
    metastore = InMemoryMetastore()
    metastore.store(v.SK_ID, v.CREATED, EnvelopeKeyRecord.from_json(sk_text))
    metastore.store(v.IK_ID, v.CREATED, EnvelopeKeyRecord.from_json(ik_text))
    kms = StaticKMS.from_hex(v.MASTER_KEY_HEX)
    with SessionFactory(v.SERVICE, v.PRODUCT, kms, metastore) as factory:
        assert factory.get_session(v.PARTITION).decrypt(record) == v.PAYLOAD


def test_reference_records_reserialise_byte_for_byte() -> None:
    assert EnvelopeKeyRecord.from_json(v.SK_RECORD).to_json() == v.SK_RECORD
    assert EnvelopeKeyRecord.from_json(v.IK_RECORD).to_json() == v.IK_RECORD
    assert parse_data_row(v.DRR_PAYLOAD).to_json() == v.DRR_PAYLOAD
    assert parse_data_row(v.DRR_EMPTY).to_json() == v.DRR_EMPTY


def test_reference_record_fields() -> None:
    row = parse_data_row(v.DRR_PAYLOAD)
    assert row.parent == KeyMeta(v.IK_ID, v.CREATED)
    assert row.key_created == 1795866781
    assert len(row.encrypted_key) == 60
    assert len(row.data) == len(v.PAYLOAD) + 16 + 12
    assert len(parse_data_row(v.DRR_EMPTY).data) == 28
    ik = EnvelopeKeyRecord.from_json(v.IK_RECORD)
    assert ik.parent == KeyMeta(v.SK_ID, v.CREATED)
    assert ik.revoked is False


# NIST SP 800-38D test vector (gcmEncryptExtIV256, Count 0): empty plaintext and AAD.
NIST_KEY = bytes.fromhex("b52c505a37d78eda5dd34f20c22540ea1b58963cf8e5bf8ffa85f9f2492505b4")
NIST_NONCE = bytes.fromhex("516c33929df5a3284ff463d7")
NIST_TAG = bytes.fromhex("bdc1ac884d332457a1d2664f168c76f0")


def test_aes_gcm_known_answer_in_asherah_layout() -> None:
    blob = Cipher(NIST_KEY).seal(b"", NIST_NONCE)
    assert blob == NIST_TAG + NIST_NONCE  # ciphertext (empty) || tag || nonce
    assert Cipher(NIST_KEY).open(blob) == b""
