"""Property-based tests: round trips, and tampering or garbage only ever raises our errors."""

from __future__ import annotations

import base64
import contextlib
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from asherah_django.core import (
    AsherahError,
    DecryptionError,
    EnvelopeKeyRecord,
    MalformedRecordError,
    Session,
    SessionFactory,
    StaticKMS,
    parse_data_row,
)
from asherah_django.core.kms.static import TEST_MASTER_KEY_HEX
from asherah_django.core.metastore.memory import InMemoryMetastore

_FACTORY = SessionFactory(
    "service", "product", StaticKMS.from_hex(TEST_MASTER_KEY_HEX), InMemoryMetastore()
)
SESSION: Session = _FACTORY.get_session("fuzz")
REFERENCE = SESSION.encrypt(b"the reference plaintext")
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.binary(max_size=4096))
def test_round_trip_of_arbitrary_bytes(payload: bytes) -> None:
    assert SESSION.decrypt(SESSION.encrypt(payload)) == payload


@FAST
@given(st.text(max_size=500))
def test_round_trip_of_arbitrary_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        assume(False)
    assert SESSION.decrypt_text(SESSION.encrypt_text(text)) == text


def _flip(blob: bytes, bit: int) -> bytes:
    index, offset = divmod(bit % (len(blob) * 8), 8)
    mutated = bytearray(blob)
    mutated[index] ^= 1 << offset
    return bytes(mutated)


@FAST
@given(
    payload=st.binary(max_size=64),
    field=st.sampled_from(["data", "data-nonce", "key", "key-nonce"]),
    bit=st.integers(min_value=0),
)
def test_any_single_bit_change_is_refused(payload: bytes, field: str, bit: int) -> None:
    record = json.loads(SESSION.encrypt(payload))
    if field.startswith("data"):
        blob = base64.b64decode(record["Data"])
        region = blob[-12:] if field.endswith("nonce") else blob[:-12]
    else:
        blob = base64.b64decode(record["Key"]["Key"])
        region = blob[-12:] if field.endswith("nonce") else blob[:-12]
    flipped = _flip(region, bit)
    mutated = flipped + blob[-12:] if not field.endswith("nonce") else blob[:-12] + flipped
    if field.startswith("data"):
        record["Data"] = base64.b64encode(mutated).decode()
    else:
        record["Key"]["Key"] = base64.b64encode(mutated).decode()
    with pytest.raises(AsherahError):
        SESSION.decrypt(json.dumps(record, separators=(",", ":")))


def _json_containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=12), children, max_size=4)
    )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    _json_containers,
    max_leaves=12,
)


def _mutations() -> st.SearchStrategy[Any]:
    base = json.loads(REFERENCE)
    paths = [
        ("Key",),
        ("Data",),
        ("Key", "Key"),
        ("Key", "Created"),
        ("Key", "ParentKeyMeta"),
        ("Key", "ParentKeyMeta", "KeyId"),
        ("Key", "ParentKeyMeta", "Created"),
    ]

    @st.composite
    def mutate(draw: st.DrawFn) -> Any:
        record = json.loads(json.dumps(base))
        path = draw(st.sampled_from(paths))
        target = record
        for part in path[:-1]:
            target = target[part]
        original = target[path[-1]]
        if draw(st.booleans()):
            del target[path[-1]]
            expected: type[AsherahError] = MalformedRecordError
        else:
            value = target[path[-1]] = draw(json_values)
            # A value of another JSON type is a malformed record; one of the right type
            # (another id, number or base64 text) may instead fail to match, to be found
            # or to authenticate: a DecryptionError, never another kind of error.
            same_kind = isinstance(value, str) == isinstance(original, str) and isinstance(
                value, dict
            ) == isinstance(original, dict)
            numeric = isinstance(original, int) and isinstance(value, int | float)
            expected = DecryptionError if same_kind or numeric else MalformedRecordError
        return record, expected

    return mutate()


@FAST
@given(_mutations())
def test_wrong_types_or_missing_fields_raise_typed_errors(
    case: tuple[Any, type[AsherahError]],
) -> None:
    record, expected = case
    text = json.dumps(record)
    result = _outcome(text)
    if isinstance(result, AsherahError):
        assert isinstance(result, expected), (type(result), expected)
        assert str(result)  # says what is wrong
    else:  # only a no-op mutation (an equal value put back) may decrypt, and then correctly
        assert result == b"the reference plaintext"


def _outcome(record: str) -> bytes | AsherahError:
    try:
        return SESSION.decrypt(record)
    except AsherahError as exc:
        return exc


@FAST
@given(st.text(max_size=300) | st.binary(max_size=300))
def test_garbage_raises_typed_errors(garbage: str | bytes) -> None:
    with pytest.raises(MalformedRecordError):
        SESSION.decrypt(garbage)


@FAST
@given(json_values)
def test_arbitrary_json_raises_typed_errors(value: Any) -> None:
    with pytest.raises(AsherahError):
        SESSION.decrypt(json.dumps(value))
    with contextlib.suppress(MalformedRecordError):
        EnvelopeKeyRecord.from_json(json.dumps(value))


@FAST
@given(st.integers(min_value=0, max_value=len(REFERENCE) - 1), st.characters())
def test_character_substitutions_never_give_wrong_plaintext(position: int, char: str) -> None:
    mutated = REFERENCE[:position] + char + REFERENCE[position + 1 :]
    result = _outcome(mutated)
    if isinstance(result, AsherahError):
        # The record is refused as a record (malformed, another partition, an unknown key,
        # failed authentication), never with another kind of error (KMS, metastore...).
        assert isinstance(result, DecryptionError), type(result)
    else:
        assert result == b"the reference plaintext"  # e.g. an equivalent JSON spelling


@FAST
@given(
    st.dictionaries(st.sampled_from(["Created", "Key", "ParentKeyMeta", "Revoked"]), json_values)
)
def test_key_record_parsing_raises_only_typed_errors(obj: dict[str, Any]) -> None:
    try:
        record = EnvelopeKeyRecord.from_json(json.dumps(obj))
    except MalformedRecordError:
        return
    assert EnvelopeKeyRecord.from_json(record.to_json()) == record


def test_parse_rejects_non_text() -> None:
    with pytest.raises(MalformedRecordError):
        parse_data_row(12)  # type: ignore[arg-type]
    with pytest.raises(MalformedRecordError):
        parse_data_row(b"\xff\xfe")
    with pytest.raises(MalformedRecordError, match="cannot be empty"):
        parse_data_row('{"Data":"AAAA"}')
    with pytest.raises(MalformedRecordError, match="parent key cannot be empty"):
        parse_data_row('{"Key":{"Created":1,"Key":"AAAA"},"Data":"AAAA"}')
