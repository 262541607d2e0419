"""Asherah's JSON records: KeyMeta, EnvelopeKeyRecord (metastore) and DataRowRecord (data).

Output is compact JSON in Go's field order with exact PascalCase names, integer epoch
seconds and standard padded base64, byte-for-byte what Go and the Rust core write.
Input is parsed tolerantly (any key order or whitespace, ``Revoked`` optional) but
strictly typed: anything else raises :class:`MalformedRecordError`.
"""

from __future__ import annotations

import binascii
import json
import re
from typing import Any, NamedTuple

from .errors import MalformedRecordError

#: Upper bounds borrowed from the Rust core (``limits.rs``): they stop hostile input early.
MAX_ENVELOPE_CHARS = 65 * 1024 * 1024 * 4 // 3 + 1024
MAX_ENCRYPTED_KEY_BYTES = 16 * 1024
MAX_KEY_ID_CHARS = 4 * 1024
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class KeyMeta(NamedTuple):
    """Identifies a stored key: its id and its creation time in epoch seconds."""

    key_id: str
    created: int

    def to_json(self) -> str:
        return f'{{"KeyId":{_json_str(self.key_id)},"Created":{self.created}}}'


class EnvelopeKeyRecord:
    """A key as the metastore holds it: the encrypted key bytes plus metadata."""

    __slots__ = ("created", "encrypted_key", "parent", "revoked", "tag")

    def __init__(
        self,
        created: int,
        encrypted_key: bytes,
        parent: KeyMeta | None = None,
        revoked: bool = False,
        tag: str | None = None,
    ) -> None:
        self.created = created
        self.encrypted_key = encrypted_key
        self.parent = parent
        self.revoked = revoked
        #: The row's integrity tag (``integrity_tag`` column; not part of the JSON), or None.
        self.tag = tag

    def __repr__(self) -> str:
        # Encrypted key bytes are never shown, not even wrapped.
        return (
            f"EnvelopeKeyRecord(created={self.created}, parent={self.parent!r}, "
            f"revoked={self.revoked}, encrypted_key=<{len(self.encrypted_key)} bytes>)"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EnvelopeKeyRecord):
            return NotImplemented
        return (
            self.created == other.created
            and self.encrypted_key == other.encrypted_key
            and self.parent == other.parent
            and self.revoked == other.revoked
        )

    __hash__ = None  # type: ignore[assignment]

    def revoked_copy(self) -> EnvelopeKeyRecord:
        """The same record marked ``"Revoked":true``."""
        return EnvelopeKeyRecord(self.created, self.encrypted_key, self.parent, True, self.tag)

    def to_json(self) -> str:
        """Compact JSON in Go's order: ``Revoked`` (only when true), ``Created``, ``Key``,
        ``ParentKeyMeta`` (only when set)."""
        parts = ['{"Revoked":true,' if self.revoked else "{"]
        parts.append(f'"Created":{self.created},"Key":"{b64encode(self.encrypted_key)}"')
        if self.parent is not None:
            parts.append(f',"ParentKeyMeta":{self.parent.to_json()}')
        parts.append("}")
        return "".join(parts)

    @classmethod
    def from_json(cls, text: str | bytes) -> EnvelopeKeyRecord:
        """Parse a metastore ``key_record``; :class:`MalformedRecordError` if it is not one."""
        return cls.from_dict(_load_object(text, "key record"), "key record")

    @classmethod
    def from_dict(cls, obj: dict[str, Any], what: str) -> EnvelopeKeyRecord:
        created = _int_field(obj, "Created", what)
        key = _b64_field(obj, "Key", what)
        if len(key) > MAX_ENCRYPTED_KEY_BYTES:
            raise MalformedRecordError(f"{what}: encrypted key is larger than 16 KiB")
        parent = None
        raw_parent = obj.get("ParentKeyMeta")
        if raw_parent is not None:
            parent = _key_meta(raw_parent, f"{what} ParentKeyMeta")
        revoked = obj.get("Revoked", False)
        if revoked is None:
            revoked = False
        if not isinstance(revoked, bool):
            raise MalformedRecordError(f"{what}: Revoked must be true or false")
        return cls(created, key, parent, revoked)


class DataRowRecord(NamedTuple):
    """What an encrypted column holds: the wrapped data row key and the encrypted data."""

    key_created: int
    encrypted_key: bytes
    parent: KeyMeta
    data: bytes

    def __repr__(self) -> str:
        return (
            f"DataRowRecord(key_created={self.key_created}, parent={self.parent!r}, "
            f"encrypted_key=<{len(self.encrypted_key)} bytes>, data=<{len(self.data)} bytes>)"
        )

    def to_json(self) -> str:
        return format_data_row(
            self.key_created, b64encode(self.encrypted_key), self.parent.to_json(), self.data
        )


def format_data_row(key_created: int, encrypted_key_b64: str, parent_json: str, data: bytes) -> str:
    """The DataRowRecord JSON, assembled directly (this is on the encrypt hot path)."""
    return (
        f'{{"Key":{{"Created":{key_created},"Key":"{encrypted_key_b64}",'
        f'"ParentKeyMeta":{parent_json}}},"Data":"{b64encode(data)}"}}'
    )


# The exact compact form that Go, the Rust core and we emit. When a record matches it,
# a regular expression is several times cheaper than json.loads; anything else (other
# key order, whitespace, escapes) takes the tolerant path below.
_CANONICAL_DRR = re.compile(
    r'\{"Key":\{"Created":(0|-?[1-9][0-9]{0,18}),"Key":"([A-Za-z0-9+/=]*)",'
    r'"ParentKeyMeta":\{"KeyId":"([^"\\\x00-\x1f]*)","Created":(0|-?[1-9][0-9]{0,18})\}\},'
    r'"Data":"([A-Za-z0-9+/=]*)"\}'
)


def parse_data_row(text: str | bytes) -> DataRowRecord:
    """Parse a DataRowRecord; :class:`MalformedRecordError` if it is not one."""
    if isinstance(text, bytes | bytearray | memoryview):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedRecordError("data row record is not valid UTF-8") from None
    elif not isinstance(text, str):
        raise MalformedRecordError(
            f"data row record must be str or bytes, not {type(text).__name__}"
        )
    if len(text) > MAX_ENVELOPE_CHARS:
        raise MalformedRecordError("data row record is larger than the 65 MiB envelope limit")
    match = _CANONICAL_DRR.fullmatch(text)
    if match is not None:
        key_created, key, key_id, parent_created, data = match.groups()
        return DataRowRecord(
            _int64(int(key_created), "data row record Key.Created"),
            _b64decode(key, "data row record Key.Key"),
            KeyMeta(_key_id(key_id, "data row record"), _int64(int(parent_created), "Created")),
            _b64decode(data, "data row record Data"),
        )
    obj = _load_object(text, "data row record")
    raw_key = obj.get("Key")
    if raw_key is None:
        raise MalformedRecordError("data row record: datarow key record cannot be empty")
    if not isinstance(raw_key, dict):
        raise MalformedRecordError("data row record: Key must be an object")
    if raw_key.get("ParentKeyMeta") is None:
        raise MalformedRecordError("data row record: parent key cannot be empty")
    key_record = EnvelopeKeyRecord.from_dict(raw_key, "data row record Key")
    assert key_record.parent is not None
    return DataRowRecord(
        key_record.created,
        key_record.encrypted_key,
        key_record.parent,
        _b64_field(obj, "Data", "data row record"),
    )


def looks_like_data_row(text: str) -> bool:
    """A cheap structural test (no decryption) used to tell DataRowRecords from legacy plaintext."""
    try:
        parse_data_row(text)
    except MalformedRecordError:
        return False
    return True


def b64encode(data: bytes) -> str:
    """Standard, padded base64 (RFC 4648 section 4) as every Asherah implementation writes."""
    return binascii.b2a_base64(data, newline=False).decode("ascii")


_B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def padding_bits_zero(value: str) -> bool:
    """Whether the bits that padded base64 leaves unused in its last character are zero
    (RFC 4648 section 3.5: canonical). ``binascii``'s strict mode does not check them; Go,
    the Rust core and we only ever write zeros there, so anything else is refused."""
    if value[-2:] == "==":
        return _B64_ALPHABET.find(value[-3:-2]) & 0x0F == 0
    if value[-1:] == "=":
        return _B64_ALPHABET.find(value[-2:-1]) & 0x03 == 0
    return True


def _b64decode(value: str, what: str) -> bytes:
    try:
        decoded = binascii.a2b_base64(value, strict_mode=True)
    except (binascii.Error, ValueError):
        raise MalformedRecordError(f"{what} is not standard padded base64") from None
    if not padding_bits_zero(value):
        raise MalformedRecordError(f"{what} is not canonical base64 (non-zero padding bits)")
    return decoded


def _json_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _load_object(text: str | bytes, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(text)
    except (ValueError, TypeError, RecursionError):
        raise MalformedRecordError(f"{what} is not valid JSON") from None
    if not isinstance(obj, dict):
        raise MalformedRecordError(f"{what} must be a JSON object")
    return obj


def _int64(value: int, what: str) -> int:
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise MalformedRecordError(f"{what} is outside the 64-bit range")
    return value


def _int_field(obj: dict[str, Any], name: str, what: str) -> int:
    value = obj.get(name)
    if type(value) is not int:  # bool is an int subclass; Asherah never writes one here
        raise MalformedRecordError(f"{what}: {name} must be an integer (epoch seconds)")
    return _int64(value, f"{what}: {name}")


def _b64_field(obj: dict[str, Any], name: str, what: str) -> bytes:
    value = obj.get(name)
    if not isinstance(value, str):
        raise MalformedRecordError(f"{what}: {name} must be a base64 string")
    return _b64decode(value, f"{what}: {name}")


def _key_id(value: str, what: str) -> str:
    if not value:
        raise MalformedRecordError(f"{what}: KeyId cannot be empty")
    if len(value) > MAX_KEY_ID_CHARS:
        raise MalformedRecordError(f"{what}: KeyId is longer than 4 KiB")
    return value


def _key_meta(obj: object, what: str) -> KeyMeta:
    if not isinstance(obj, dict):
        raise MalformedRecordError(f"{what} must be an object")
    key_id = obj.get("KeyId")
    if not isinstance(key_id, str):
        raise MalformedRecordError(f"{what}: KeyId must be a string")
    return KeyMeta(_key_id(key_id, what), _int_field(obj, "Created", what))
