"""Differential fuzz targets: the C accelerator against the pure-Python reference.

One input is ``<letter><payload>``: the letter picks a target of :data:`TARGETS` (any other
first byte picks ``TARGETS[byte % len(TARGETS)]``), the payload is the target's input (bytes,
read as text with ``surrogateescape`` so that every byte string is some ``str``, of any of
CPython's three string kinds). A target raises :class:`Mismatch` when the C path and the
reference disagree (accept/reject, the error, or the output); any other exception from
either side also stops the fuzzer, because both must only ever raise their documented errors.

Adding a function of ``asherah_django.core._speedups`` that reads attacker-controlled input:
write a ``def _name(payload: bytes) -> None`` that calls it and its reference and compares,
add a :class:`Target` line to :data:`TARGETS` with a free letter, and add seed files
``<letter>-<what>.txt`` to tests/cproof/corpus/speedups/ (``seeds`` in fuzz_speedups.py
writes the generated ones).

Every session here is the reference vectors' (tests/unit/core/vectors.py: keys written by the
Rust core under the public static test master key), so the seeds are real records that
decrypt, and the fuzzer's edits of them reach every check of both parsers.
"""

from __future__ import annotations

import logging
from binascii import a2b_base64, b2a_base64
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from asherah_django.core import (
    AsherahError,
    EnvelopeKeyRecord,
    InMemoryMetastore,
    Session,
    SessionFactory,
    StaticKMS,
)
from asherah_django.core import session as session_module
from tests.support.canonical import reference_created
from tests.unit.core import vectors as v

if not session_module.SPEEDUPS:
    raise ImportError(
        "asherah_django.core._speedups is not in use here (not built, or "
        "ASHERAH_DJANGO_PURE_PYTHON is set): there is no C path to prove"
    )
from asherah_django.core import _speedups as speedups

#: The record blobs of the vectors' payload record, and the largest size a target makes.
VECTOR_KEY_B64 = v.DRR_PAYLOAD[36:116]
VECTOR_DATA_B64 = v.DRR_PAYLOAD.split('"Data":"')[1][:-2]
MAX_PLAINTEXT = 70_000  # past NOGIL_THRESHOLD (32 KiB): the GIL-released path too


class Mismatch(AssertionError):
    """The C path and the reference disagree on one input."""


def vector_session() -> tuple[Session, bytes]:
    """The vectors' session with its intermediate key loaded, and that key's bytes."""
    metastore = InMemoryMetastore()
    metastore.store(v.SK_ID, v.CREATED, EnvelopeKeyRecord.from_json(v.SK_RECORD))
    metastore.store(v.IK_ID, v.CREATED, EnvelopeKeyRecord.from_json(v.IK_RECORD))
    log = logging.getLogger("asherah_django.core")  # the static KMS's "tests only" warning
    level, log.level = log.level, logging.ERROR
    try:
        kms = StaticKMS.from_hex(v.MASTER_KEY_HEX)
    finally:
        log.setLevel(level)
    factory = SessionFactory(v.SERVICE, v.PRODUCT, kms, metastore)
    session = factory.get_session(v.PARTITION)
    if session.decrypt(v.DRR_PAYLOAD) != v.PAYLOAD:
        raise RuntimeError("the reference vector does not decrypt")
    (key,) = session._ik_cache.values()
    secret = key.secret_bytes
    assert secret is not None
    return session, secret


SESSION, IK = vector_session()
OTHER_IK = bytes(32)
#: The vectors' intermediate key as a record's ParentKeyMeta names it.
SESSION_META = f'{{"KeyId":"{v.IK_ID}","Created":{v.CREATED}}}'


def text_of(payload: bytes) -> str:
    return payload.decode("utf-8", "surrogateescape")


def outcome(
    call: Callable[[], object], errors: type[BaseException] | tuple[type[BaseException], ...]
) -> tuple[object, ...]:
    """("ok", result) or ("error", type, message) for the expected errors; others propagate."""
    try:
        return ("ok", call())
    except errors as exc:
        return ("error", type(exc), str(exc))


def agree(target: str, by_c: object, reference: object) -> None:
    if by_c != reference:
        raise Mismatch(f"{target}: C gave {by_c!r:.300}, the reference {reference!r:.300}")


# -- references ---------------------------------------------------------------------------


def canonical_b64(text: str) -> bytes | None:
    """What the C decoder must accept: strict base64 that re-encodes to the same text."""
    try:
        raw = a2b_base64(text, strict_mode=True)
    except ValueError:  # binascii.Error, and non-ASCII str
        return None
    return raw if b2a_base64(raw, newline=False).decode() == text else None


def reference_decrypt_row(ik: bytes, key_b64: str, data_b64: str) -> tuple[object, ...]:
    """decrypt_row's contract with cryptography's AESGCM: the outcome, errors as in C."""
    wrapped, blob = canonical_b64(key_b64), canonical_b64(data_b64)
    if wrapped is None or blob is None:
        return ("error", speedups.Base64Error, "not canonical standard padded base64")
    failed = ("error", speedups.AuthenticationError,
              "authentication failed (tampered or corrupted record)")  # fmt: skip
    if len(wrapped) < 28:
        return failed
    try:
        data_key = AESGCM(ik).decrypt(wrapped[-12:], wrapped[:-12], None)
    except InvalidTag:
        return failed
    if len(data_key) != 32:
        return ("error", speedups.AuthenticationError, "data row key is not 32 bytes")
    if len(blob) < 28:
        return failed
    try:
        return ("ok", AESGCM(data_key).decrypt(blob[-12:], blob[:-12], None))
    except InvalidTag:
        return failed


# -- targets -------------------------------------------------------------------------------


def _b64decode(payload: bytes) -> None:
    """b64decode on any text: accepts exactly the canonical base64, with binascii's bytes."""
    text = text_of(payload)
    expected = canonical_b64(text)
    got = outcome(lambda: speedups.b64decode(text), speedups.Base64Error)
    agree("b64decode", got[1] if got[0] == "ok" else None, expected)
    if expected is not None:
        agree("b64encode(b64decode)", speedups.b64encode(expected), text)


def _b64encode(payload: bytes) -> None:
    text = speedups.b64encode(payload)
    agree("b64encode", text, b2a_base64(payload, newline=False).decode())
    agree("b64decode(b64encode)", speedups.b64decode(text), payload)


def _canonical_created(payload: bytes) -> None:
    """canonical_created on record text, for the vectors session's layout."""
    record, middle = text_of(payload), SESSION._middle
    agree("canonical_created", speedups.canonical_created(record, middle),
          reference_created(record, middle))  # fmt: skip


def _canonical_created_any_middle(payload: bytes) -> None:
    """canonical_created with an attacker-chosen middle too: ``<middle>\\n<record>``."""
    middle, _, record = text_of(payload).partition("\n")
    agree("canonical_created", speedups.canonical_created(record, middle),
          reference_created(record, middle))  # fmt: skip


def _decrypt(payload: bytes) -> None:
    """Session.decrypt on record text: the C path (canonical_created, decrypt_row, and the
    fallback) against Session._decrypt_py, the reference; the same plaintext or error."""
    record = text_of(payload)
    by_c = outcome(lambda: Session._decrypt_c(SESSION, record), AsherahError)
    agree(
        "Session.decrypt", by_c, outcome(lambda: Session._decrypt_py(SESSION, record), AsherahError)
    )


def _decrypt_row(payload: bytes) -> None:
    """decrypt_row on attacker blobs: ``<flags><key_b64>\\n<data_b64>`` (no newline: the
    vectors' wrapped key and the whole text as the data). flags & 1: forget_key first; & 2:
    another key's call first (the cached key schedule is replaced, then re-keyed)."""
    flags = payload[0] if payload else 0
    text = text_of(payload[1:])
    key_b64, newline, data_b64 = text.partition("\n")
    if not newline:
        key_b64, data_b64 = VECTOR_KEY_B64, text
    if flags & 1:
        speedups.forget_key(IK)
    if flags & 2:
        outcome(lambda: speedups.decrypt_row(OTHER_IK, VECTOR_KEY_B64, VECTOR_DATA_B64),
                ValueError)  # fmt: skip
    errors = (speedups.Base64Error, speedups.AuthenticationError)
    by_c = outcome(lambda: speedups.decrypt_row(IK, key_b64, data_b64), errors)
    agree("decrypt_row", by_c, reference_decrypt_row(IK, key_b64, data_b64))


def _encrypt_row(payload: bytes) -> None:
    """encrypt_row at a fuzzed size: ``<decimal size>:<filler>``; the blobs open with
    cryptography and with decrypt_row, and a record of them with Session._decrypt_py."""
    digits, _, filler = payload.partition(b":")
    size = int(digits[:6]) if digits[:6].isdigit() else len(payload)
    size = min(size, MAX_PLAINTEXT)
    plaintext = (filler or b"\x00") * (size // max(len(filler), 1) + 1)
    plaintext = plaintext[:size]
    key_b64, data_b64 = speedups.encrypt_row(IK, plaintext)
    agree(
        "encrypt_row (cryptography)",
        reference_decrypt_row(IK, key_b64, data_b64),
        ("ok", plaintext),
    )
    agree("encrypt_row (decrypt_row)", speedups.decrypt_row(IK, key_b64, data_b64), plaintext)
    record = (
        f'{{"Key":{{"Created":1795866781,"Key":"{key_b64}","ParentKeyMeta":'
        f'{{"KeyId":"{v.IK_ID}","Created":{v.CREATED}}}}},"Data":"{data_b64}"}}'
    )
    agree("encrypt_row (Session._decrypt_py)", Session._decrypt_py(SESSION, record), plaintext)


def _decrypt_record(payload: bytes) -> None:
    """decrypt_record on attacker text and offset: ``<decimal offset>:<record>``. Inside the
    record it must do exactly what decrypt_row does on the slices it names (text of any
    kind: characters past ASCII are never base64); outside it, Base64Error, never a read."""
    digits, _, rest = payload.partition(b":")
    middle_end = int(digits[:7]) if digits[:7].isdigit() else -len(digits)
    record = text_of(rest)
    errors = (speedups.Base64Error, speedups.AuthenticationError)
    by_c = outcome(lambda: speedups.decrypt_record(IK, record, middle_end), errors)
    if 116 <= middle_end <= len(record) - 23:
        key_b64, data_b64 = record[36:116], record[middle_end + 21 : -2]
        reference = outcome(lambda: speedups.decrypt_row(IK, key_b64, data_b64), errors)
        agree("decrypt_record (decrypt_row)", by_c, reference)
        agree("decrypt_record (cryptography)", by_c, reference_decrypt_row(IK, key_b64, data_b64))
    else:
        agree("decrypt_record (out of the record)", by_c[:2], ("error", speedups.Base64Error))


def _encrypt_record(payload: bytes) -> None:
    """encrypt_record at a fuzzed size with a fuzzed Created and parent KeyMeta text:
    ``<decimal created>:<decimal size>:<meta>`` (created may be negative; no meta: the
    vectors' session's). The record is the compact layout around them, and its blobs open
    (with cryptography, and as a record of the vectors' session when the meta is its)."""
    created_text, _, rest = payload.partition(b":")
    size_text, _, meta_bytes = rest.partition(b":")
    sign, magnitude = (
        (-1, created_text[1:20]) if created_text[:1] == b"-" else (1, created_text[:19])
    )
    created = sign * int(magnitude) if magnitude.isdigit() else len(payload)
    size = min(int(size_text[:6]) if size_text[:6].isdigit() else len(rest), MAX_PLAINTEXT)
    meta = text_of(meta_bytes) or SESSION_META
    plaintext = bytes(size)
    if not -(2**63) <= created < 2**63:  # a Created no record can hold: refused, typed
        got = outcome(lambda: speedups.encrypt_record(IK, plaintext, created, meta), OverflowError)
        agree("encrypt_record (Created outside 64 bits)", got[:2], ("error", OverflowError))
        return
    record = speedups.encrypt_record(IK, plaintext, created, meta)
    head = f'{{"Key":{{"Created":{created},"Key":"'
    middle = f'","ParentKeyMeta":{meta}}},"Data":"'
    agree("encrypt_record (head)", record[: len(head)], head)
    key_b64 = record[len(head) : len(head) + 80]
    agree("encrypt_record (middle)", record[len(head) + 80 : len(head) + 80 + len(middle)], middle)
    data_b64 = record[len(head) + 80 + len(middle) : -2]
    agree("encrypt_record (end)", record[-2:], '"}')
    agree("encrypt_record (cryptography)", reference_decrypt_row(IK, key_b64, data_b64),
          ("ok", plaintext))  # fmt: skip
    if meta == SESSION_META and 10**9 <= created < 10**10:
        agree("encrypt_record (Session._decrypt_py)", Session._decrypt_py(SESSION, record),
              plaintext)  # fmt: skip


@dataclass(frozen=True)
class Target:
    letter: str
    name: str
    run: Callable[[bytes], None]


#: Every fuzz target: one line each (see the module docstring to add one).
TARGETS: tuple[Target, ...] = (
    Target("b", "b64decode", _b64decode),
    Target("e", "b64encode", _b64encode),
    Target("c", "canonical_created", _canonical_created),
    Target("m", "canonical_created, any middle", _canonical_created_any_middle),
    Target("d", "Session.decrypt (C path vs reference)", _decrypt),
    Target("r", "decrypt_row", _decrypt_row),
    Target("w", "encrypt_row", _encrypt_row),
    Target("x", "decrypt_record", _decrypt_record),
    Target("y", "encrypt_record", _encrypt_record),
)
_BY_LETTER = {ord(t.letter): t for t in TARGETS}
assert len(_BY_LETTER) == len(TARGETS), "two targets share a letter"


def target_of(data: bytes) -> Target:
    return _BY_LETTER.get(data[0]) or TARGETS[data[0] % len(TARGETS)]


def one_input(data: bytes) -> None:
    """libFuzzer's entry: run the input's target (an empty input does nothing)."""
    if data:
        target_of(data).run(data[1:])


def module() -> ModuleType:
    """The extension under test (its path tells which build a run uses)."""
    return speedups
