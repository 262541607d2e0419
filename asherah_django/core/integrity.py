"""Integrity tags on key rows (``KEY_INTEGRITY``): a database writer cannot forge them.

Asherah binds nothing in a key row to the row's id: an intermediate key (IK) record copied
from ``_IK_A_...`` to ``_IK_B_...`` unwraps just as well there, and a system key (SK) record
copied from ``_SK_other_...`` to ``_SK_svc_...`` too when both share the master key. A tag
closes that:

* ``tag = "v1:" + base64(HMAC-SHA256(k, message))``, stored beside the row (the nullable
  ``integrity_tag`` column, which other Asherah implementations never name, so never see);
* ``message`` is a length-prefixed encoding of the row's id, its ``created`` column, and
  every field of its record except ``Revoked`` (the JSON ``Created``, the wrapped key, the
  parent id and created); for a system key row, not its wrapped bytes either: the MAC key
  comes from what they unwrap to, so other bytes fail anyway, and ``asherah_rotate
  --rewrap`` (new bytes from Vault, the same key) keeps the tag valid. ``Revoked`` is left
  out on purpose: Asherah's revoke scripts, other implementations and
  :meth:`DjangoMetastore.revoke` flip it with plain SQL and cannot re-sign; a writer can
  therefore (un)revoke a key, which decides which key *new* values use, never which key
  decrypts a value. Fields are compared parsed, not as text, so a JSONB column that
  re-spaces or reorders the record does not break its tag;
* ``k = HKDF-SHA256(parent secret, info=label + purpose)``: for IK and blind index rows
  the secret of their SK (``purpose="child"``); for SK rows the SK's own secret, known only
  after the KMS unwrapped it (``purpose="self"``). Forging any tag thus needs the master key.

Tags are checked when a key is loaded from the metastore, never per value: a cached key
was checked once. Modes: ``off`` (no tags written or read), ``sign`` (tags written; an
untagged row is accepted, a row with a wrong tag refused), ``require`` (every key row
needs a valid tag).
"""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Final, Literal

from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import KeyIntegrityError
from .key_ids import KeyKind, kind_of
from .records import EnvelopeKeyRecord

Purpose = Literal["child", "self"]
_DESCRIBED: Final = {
    KeyKind.SYSTEM: "system key",
    KeyKind.INTERMEDIATE: "intermediate key",
    KeyKind.INDEX: "blind index key",
}
TAG_PREFIX: Final = "v1:"
#: Where tags live: a nullable column of ``encryption_key`` that no other Asherah
#: implementation names (they list their columns in every INSERT and SELECT).
TAG_COLUMN: Final = "integrity_tag"
#: The ``integrity_tag`` column is ``varchar(TAG_MAX_LENGTH)``.
TAG_MAX_LENGTH: Final = 64
#: For tables not created by our migration (adopted Asherah tables); the same on
#: PostgreSQL, MySQL/MariaDB and SQLite.
ADD_TAG_COLUMN_SQL: Final = (
    f"ALTER TABLE encryption_key ADD COLUMN {TAG_COLUMN} VARCHAR({TAG_MAX_LENGTH}) NULL"
)
_LABEL: Final = b"asherah_django key integrity v1\x00"
_HINT_UNTAGGED: Final = (
    "if another Asherah implementation wrote this row, verify and sign it with "
    "manage.py asherah_sign_keys; otherwise someone with write access to the database "
    "inserted it"
)
_HINT_INVALID: Final = (
    "the row was copied, moved or edited in the database by someone without the key that "
    "signs it; restore it from a trusted backup"
)


def describe(key_id: str, created: int) -> str:
    """``intermediate key '_IK_...' created N`` for messages (ids only, no key bytes)."""
    kind = _DESCRIBED.get(kind_of(key_id), "key")
    return f"{kind} {key_id!r} created {created}"


def make_tag(
    secret: bytes | bytearray,
    purpose: Purpose,
    key_id: str,
    created: int,
    record: EnvelopeKeyRecord,
) -> str:
    """The tag of the row ``(key_id, created, record)`` under ``secret``."""
    message = _message(key_id, created, record, purpose)
    mac = hmac.digest(_mac_key(secret, purpose), message, "sha256")
    return TAG_PREFIX + base64.b64encode(mac).decode("ascii")


def status(
    secret: bytes | bytearray,
    purpose: Purpose,
    key_id: str,
    created: int,
    record: EnvelopeKeyRecord,
) -> Literal["signed", "untagged", "invalid"]:
    """Whether the row carries a valid tag, none, or a wrong one."""
    if record.tag is None:
        return "untagged"
    expected = make_tag(secret, purpose, key_id, created, record)
    return "signed" if _equal(record.tag, expected) else "invalid"


def check_present(mode: str, key_id: str, created: int, record: EnvelopeKeyRecord) -> None:
    """With ``require``, refuse an untagged row before anything (the KMS) is asked."""
    if mode == "require" and record.tag is None:
        raise KeyIntegrityError(
            f"{describe(key_id, created)} has no integrity tag and KEY_INTEGRITY is 'require'",
            hint=_HINT_UNTAGGED,
        )


def check(
    mode: str,
    secret: bytes | bytearray,
    purpose: Purpose,
    key_id: str,
    created: int,
    record: EnvelopeKeyRecord,
) -> None:
    """Refuse the row if its tag is wrong (``sign``, ``require``) or absent (``require``)."""
    if mode == "off":
        return
    check_present(mode, key_id, created, record)
    if status(secret, purpose, key_id, created, record) == "invalid":
        raise KeyIntegrityError(
            f"the integrity tag of {describe(key_id, created)} does not verify",
            hint=_HINT_INVALID,
        )


def _mac_key(secret: bytes | bytearray, purpose: Purpose) -> bytes:
    hkdf = HKDF(algorithm=SHA256(), length=32, salt=None, info=_LABEL + purpose.encode())
    return hkdf.derive(bytes(secret))


def _message(key_id: str, created: int, record: EnvelopeKeyRecord, purpose: Purpose) -> bytes:
    parent = record.parent
    # A system key's own wrapped bytes are left out: the MAC key is derived from what they
    # unwrap to, so other bytes fail anyway, and a Vault rewrap (new bytes, same key) keeps
    # the tag valid.
    fields = (
        key_id.encode("utf-8"),
        str(created).encode("ascii"),
        str(record.created).encode("ascii"),
        b"" if purpose == "self" else record.encrypted_key,
        b"" if parent is None else parent.key_id.encode("utf-8"),
        b"" if parent is None else str(parent.created).encode("ascii"),
    )
    return _LABEL + b"".join(len(field).to_bytes(8, "big") + field for field in fields)


def _equal(found: str, expected: str) -> bool:
    try:
        return hmac.compare_digest(found.strip().encode("ascii"), expected.encode("ascii"))
    except (UnicodeEncodeError, binascii.Error):
        return False
