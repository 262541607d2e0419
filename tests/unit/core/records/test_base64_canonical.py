"""Base64 in our records is strict *and canonical* (issue #14 item 7): non-zero padding
bits are refused, by the C and the pure-Python decrypt paths alike, and by the record
parsers; canonical records (what Go, the Rust core and we write) still decrypt."""

from __future__ import annotations

import base64
import json

import pytest

from asherah_django.core import EnvelopeKeyRecord, SessionFactory, parse_data_row
from asherah_django.core import session as session_module
from asherah_django.core.errors import MalformedRecordError
from asherah_django.core.records import padding_bits_zero
from asherah_django.core.session import Session

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def bump(text: str) -> str:
    """The same bytes with a non-zero padding bit (decodes identically in binascii)."""
    pad = len(text) - len(text.rstrip("="))
    assert pad in (1, 2)
    index = len(text) - pad - 1
    return text[:index] + ALPHABET[ALPHABET.index(text[index]) | 1] + text[index + 1 :]


def test_padding_bits() -> None:
    assert padding_bits_zero("QQ==") and not padding_bits_zero("QR==")
    assert padding_bits_zero("QUI=") and not padding_bits_zero("QUJ=")
    assert padding_bits_zero("QUJD")
    assert base64.b64decode("QR==") == base64.b64decode("QQ==")  # why it must be checked


@pytest.mark.parametrize("size", [1, 2, 4, 5, 100])
@pytest.mark.parametrize("path", ["c", "python"])
def test_non_canonical_data_is_refused(factory: SessionFactory, size: int, path: str) -> None:
    session = factory.get_session("p")
    if path == "c" and not session_module.SPEEDUPS:
        pytest.skip("Session uses the pure-Python path here (ASHERAH_DJANGO_PURE_PYTHON)")
    decrypt = Session._decrypt_c if path == "c" else Session._decrypt_py
    record = session.encrypt(bytes(size))  # data blob of size + 28 bytes
    assert decrypt(session, record) == bytes(size)
    data = json.loads(record)["Data"]
    if not data.endswith("="):
        return  # a multiple of 3 bytes: no padding, nothing to bump
    tampered = record.replace(data, bump(data))
    with pytest.raises(MalformedRecordError, match="non-zero padding bits"):
        decrypt(session, tampered)
    with pytest.raises(MalformedRecordError, match="non-zero padding bits"):
        parse_data_row(tampered)


def test_key_records_are_checked_too() -> None:
    record = EnvelopeKeyRecord(1_700_000_000, bytes(61)).to_json()
    key = json.loads(record)["Key"]
    assert key.endswith("=")
    assert EnvelopeKeyRecord.from_json(record).encrypted_key == bytes(61)
    with pytest.raises(MalformedRecordError, match="non-zero padding bits"):
        EnvelopeKeyRecord.from_json(record.replace(key, bump(key)))
