"""The optional C extension (asherah_django.core._speedups) against the pure-Python reference.

Session.encrypt/decrypt are the C path when the extension is built, and the pure-Python
path (``Session._encrypt_py``/``_decrypt_py``) stays the reference: records made by either
decrypt with the other, and every tampered, truncated or garbage record gets the same
outcome (same plaintext, or the same error type and message) from both.
"""

from __future__ import annotations

import base64
import json
import os
import random
import subprocess
import sys
import threading
from binascii import a2b_base64, b2a_base64
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from asherah_django.core import (
    AsherahError,
    CryptoPolicy,
    DecryptionError,
    EnvelopeKeyRecord,
    InMemoryMetastore,
    KeyNotFoundError,
    MalformedRecordError,
    PartitionMismatchError,
    Session,
    SessionFactory,
    StaticKMS,
    parse_data_row,
)
from asherah_django.core import keys as keys_module
from asherah_django.core import session as session_module
from asherah_django.core.kms.static import TEST_MASTER_KEY_HEX
from tests.support import optional
from tests.support.canonical import reference_created
from tests.support.common import ROOT

from . import vectors as v

# Skipped when the extension is not built, unless ASHERAH_DJANGO_REQUIRE_SPEEDUPS=1 (set by
# scripts/test.sh): then a missing or unimportable extension fails the run right here.
speedups = optional.speedups()
requires_c_path = pytest.mark.skipif(
    not session_module.SPEEDUPS, reason="Session uses the pure-Python path here"
)

MiB = 1024 * 1024
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SIZES = sorted(
    {0, 1, 2, 3, 31, 32, 33, 64, 2048 - 28, 2048 - 27, 4096}
    | {speedups.NOGIL_THRESHOLD - 1, speedups.NOGIL_THRESHOLD, MiB}
)

encrypt_c, decrypt_c = Session._encrypt_c, Session._decrypt_c
encrypt_py, decrypt_py = Session._encrypt_py, Session._decrypt_py
Decrypt = Callable[[Session, str | bytes], bytes]

PARTITIONS = ["fuzz", "pärtition", "分区", "key🔑", 'quote"d', "x" * 200]
_NOW = 1_800_000_000.0
_FACTORY = SessionFactory(
    "service", "product", StaticKMS.from_hex(TEST_MASTER_KEY_HEX), InMemoryMetastore()
)
SESSION = _FACTORY.get_session("fuzz")
# Same ids and Created (a fixed clock) but other keys: "the wrong key", not another partition.
_TWIN_A = SessionFactory(
    "s", "p", StaticKMS.from_hex(TEST_MASTER_KEY_HEX), InMemoryMetastore(), clock=lambda: _NOW
)
_TWIN_B = SessionFactory(
    "s", "p", StaticKMS.from_hex(TEST_MASTER_KEY_HEX), InMemoryMetastore(), clock=lambda: _NOW
)


def outcome(decrypt: Decrypt, session: Session, record: str | bytes) -> tuple[object, ...]:
    """("ok", plaintext) or ("error", type, message); anything but our errors propagates."""
    try:
        return ("ok", decrypt(session, record))
    except AsherahError as exc:
        return ("error", type(exc), str(exc))


def assert_same_outcome(record: str | bytes, session: Session = SESSION) -> tuple[object, ...]:
    by_c = outcome(decrypt_c, session, record)
    assert by_c == outcome(decrypt_py, session, record)
    return by_c


def split(record: str) -> tuple[dict[str, Any], bytes, bytes]:
    obj = json.loads(record)
    return obj, base64.b64decode(obj["Key"]["Key"]), base64.b64decode(obj["Data"])


def rebuild(obj: dict[str, Any], key: bytes, data: bytes) -> str:
    """The compact layout again, with other blobs (so the fast path still takes it)."""
    created, parent = obj["Key"]["Created"], obj["Key"]["ParentKeyMeta"]
    return (
        f'{{"Key":{{"Created":{created},"Key":"{base64.b64encode(key).decode()}",'
        f'"ParentKeyMeta":{{"KeyId":"{parent["KeyId"]}","Created":{parent["Created"]}}}}},'
        f'"Data":"{base64.b64encode(data).decode()}"}}'
    )


# -- which implementation runs -------------------------------------------------------


@requires_c_path
def test_session_uses_the_extension_and_scrubs_wiped_keys_there() -> None:
    assert Session.encrypt is encrypt_c and Session.decrypt is decrypt_c
    assert keys_module.wipe_hook is speedups.forget_key
    assert speedups.OPENSSL_VERSION.startswith("OpenSSL")


def test_environment_variable_selects_the_pure_python_path() -> None:
    code = (
        "from asherah_django.core import session as s, Session, keys;"
        "print(s.SPEEDUPS, Session.encrypt.__name__, Session.decrypt.__name__, keys.wipe_hook)"
    )
    env = {**os.environ, "ASHERAH_DJANGO_PURE_PYTHON": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", "_encrypt_py", "_decrypt_py", "None"]


def test_extension_is_built_and_used_when_required() -> None:
    """scripts/test.sh sets ASHERAH_DJANGO_REQUIRE_SPEEDUPS=1 so that a silent fallback to
    the pure-Python path fails the run (module import above fails if it is not built)."""
    if not optional.required("ASHERAH_DJANGO_REQUIRE_SPEEDUPS", default=False):
        pytest.skip("ASHERAH_DJANGO_REQUIRE_SPEEDUPS is not set: the C path is optional here")
    assert session_module.SPEEDUPS
    assert Session.encrypt is encrypt_c and Session.decrypt is decrypt_c


def run_pytest(env_overrides: dict[str, str], *arguments: str) -> None:
    """Run pytest on ``arguments`` in a fresh interpreter with these variables; it must pass."""
    env = {**os.environ, **env_overrides}
    env.pop("COVERAGE_PROCESS_START", None)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *arguments],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert " passed" in result.stdout


@pytest.mark.slow
def test_core_suite_passes_on_the_pure_python_path() -> None:
    run_pytest(
        {"ASHERAH_DJANGO_PURE_PYTHON": "1"},
        "tests/unit/core",
        "--ignore=tests/unit/core/test_speedups.py",
        "--no-cov",
    )


@requires_c_path
def test_openssl_3_is_called_through_its_provider_directly() -> None:
    """The fast route is really taken on OpenSSL 3 (it passed the known-answer test)."""
    if not speedups.OPENSSL_VERSION.startswith("OpenSSL 3"):
        pytest.skip(f"{speedups.OPENSSL_VERSION}: EVP only, by design")
    assert speedups.PROVIDER_DIRECT == 1


@pytest.mark.slow
@requires_c_path
def test_speedups_suite_passes_through_evp_too() -> None:
    """The EVP route (OpenSSL 1.1.1, or the provider's functions not found) stays proven."""
    env = {**os.environ, "ASHERAH_DJANGO_SPEEDUPS_EVP": "1"}
    env.pop("COVERAGE_PROCESS_START", None)
    code = "from asherah_django.core import _speedups as s; print(s.PROVIDER_DIRECT)"
    check = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert check.stdout.split() == ["0"], check.stderr
    run_pytest(
        {"ASHERAH_DJANGO_SPEEDUPS_EVP": "1"},
        "tests/unit/core/test_speedups.py",
        "-k",
        "not through_evp and not provider_directly",
    )


# -- known answers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "decrypt", [pytest.param(decrypt_c, marks=requires_c_path), decrypt_py], ids=["c", "python"]
)
@pytest.mark.parametrize(("record", "plaintext"), [(v.DRR_PAYLOAD, v.PAYLOAD), (v.DRR_EMPTY, b"")])
def test_reference_vectors_decrypt_on_both_paths(
    decrypt: Decrypt, record: str, plaintext: bytes
) -> None:
    metastore = InMemoryMetastore()
    metastore.store(v.SK_ID, v.CREATED, EnvelopeKeyRecord.from_json(v.SK_RECORD))
    metastore.store(v.IK_ID, v.CREATED, EnvelopeKeyRecord.from_json(v.IK_RECORD))
    kms = StaticKMS.from_hex(v.MASTER_KEY_HEX)
    with SessionFactory(v.SERVICE, v.PRODUCT, kms, metastore) as factory:
        session = factory.get_session(v.PARTITION)
        assert decrypt(session, record) == plaintext  # first: the key is loaded
        assert decrypt(session, record) == plaintext  # then: cached, the C call itself


@requires_c_path
def test_canonical_records_take_the_c_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """No silent fallback: a canonical record with its key cached never reaches Python crypto."""
    records = [encrypt_c(SESSION, b"c"), encrypt_py(SESSION, b"py"), v.DRR_EMPTY]

    def refuse(self: Session, record: str | bytes) -> bytes:
        raise AssertionError("the pure-Python path was used")

    monkeypatch.setattr(Session, "_decrypt_py", refuse)
    assert decrypt_c(SESSION, records[0]) == b"c"
    assert decrypt_c(SESSION, records[1]) == b"py"
    with pytest.raises(AssertionError, match="pure-Python path"):
        decrypt_c(SESSION, records[2])  # other partition: the reference path decides


@requires_c_path
@pytest.mark.parametrize("size", SIZES)
def test_records_cross_decrypt_between_paths(size: int) -> None:
    payload = os.urandom(size)
    by_c, by_py = encrypt_c(SESSION, payload), encrypt_py(SESSION, payload)
    for record in (by_c, by_py):
        assert decrypt_c(SESSION, record) == payload
        assert decrypt_py(SESSION, record) == payload
    # Same shape: Go's compact layout, 60-byte wrapped keys, only the random blobs differ.
    row_c, row_py = parse_data_row(by_c), parse_data_row(by_py)
    assert row_c.parent == row_py.parent
    assert len(row_c.encrypted_key) == len(row_py.encrypted_key) == 60
    assert len(row_c.data) == len(row_py.data) == size + 28
    assert abs(row_c.key_created - row_py.key_created) <= 1
    for record in (by_c, by_py):
        assert record == rebuild(*split(record))


@pytest.mark.parametrize("size", SIZES)
def test_encrypt_row_is_asherahs_layout(size: int) -> None:
    ik, payload = os.urandom(32), os.urandom(size)
    wrapped_b64, data_b64 = speedups.encrypt_row(ik, payload)
    assert isinstance(wrapped_b64, str) and isinstance(data_b64, str)
    assert wrapped_b64 == b2a_base64(a2b_base64(wrapped_b64), newline=False).decode()
    wrapped, blob = a2b_base64(wrapped_b64, strict_mode=True), a2b_base64(data_b64)
    assert len(wrapped) == 60 and len(blob) == size + 28
    data_key = AESGCM(ik).decrypt(wrapped[-12:], wrapped[:-12], None)
    assert len(data_key) == 32
    assert AESGCM(data_key).decrypt(blob[-12:], blob[:-12], None) == payload
    assert speedups.decrypt_row(ik, wrapped_b64, data_b64) == payload
    # Fresh key and nonces every time.
    again = speedups.encrypt_row(ik, payload)
    assert again[0] != wrapped_b64 and again[1] != data_b64


_META = '{"KeyId":"_IK_p_s_p","Created":1800000000}'


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("meta", [_META, '{"KeyId":"_IK_分区_s_p","Created":1800000000}'])
def test_encrypt_record_is_the_compact_data_row_record(size: int, meta: str) -> None:
    ik, payload = os.urandom(32), os.urandom(size)
    record = speedups.encrypt_record(ik, payload, 1_800_000_123.9, meta)
    head = '{"Key":{"Created":1800000123,"Key":"'
    assert record.startswith(head)
    wrapped_b64 = record[len(head) : len(head) + 80]
    assert record[len(head) + 80 :].startswith(f'","ParentKeyMeta":{meta}}},"Data":"')
    data_b64 = record[len(head) + 80 + len(f'","ParentKeyMeta":{meta}}},"Data":"') : -2]
    assert record.endswith('"}') and json.loads(record)["Data"] == data_b64
    wrapped, blob = a2b_base64(wrapped_b64, strict_mode=True), a2b_base64(data_b64)
    data_key = AESGCM(ik).decrypt(wrapped[-12:], wrapped[:-12], None)
    assert AESGCM(data_key).decrypt(blob[-12:], blob[:-12], None) == payload
    assert speedups.decrypt_row(ik, wrapped_b64, data_b64) == payload


@requires_c_path
@pytest.mark.parametrize("partition", PARTITIONS)
def test_both_paths_write_the_same_layout(partition: str) -> None:
    """Everything but the random blobs is the same text on both paths, any partition id."""
    session = _FACTORY.get_session(partition)
    by_c, by_py = encrypt_c(session, b"value"), encrypt_py(session, b"value")
    for record in (by_c, by_py):
        assert record == rebuild_any(*split(record))
    blank = {"Key": "", "Data": ""}
    shape_c, shape_py = json.loads(by_c), json.loads(by_py)
    for shape in (shape_c, shape_py):
        shape["Key"].update(Key=blank["Key"], Created=0)
        shape["Data"] = blank["Data"]
    assert shape_c == shape_py


def rebuild_any(obj: dict[str, Any], key: bytes, data: bytes) -> str:
    """rebuild() for any partition id: the KeyMeta as json.dumps writes it (ensure_ascii off)."""
    created, parent = obj["Key"]["Created"], obj["Key"]["ParentKeyMeta"]
    meta = json.dumps(parent, ensure_ascii=False, separators=(",", ":"))
    return (
        f'{{"Key":{{"Created":{created},"Key":"{base64.b64encode(key).decode()}",'
        f'"ParentKeyMeta":{meta}}},"Data":"{base64.b64encode(data).decode()}"}}'
    )


def test_encrypt_record_argument_checks() -> None:
    ik = os.urandom(32)
    assert speedups.encrypt_record(ik, b"x", 7, _META).startswith('{"Key":{"Created":7,')
    assert speedups.encrypt_record(ik, b"x", -1.5, _META).startswith('{"Key":{"Created":-1,')
    for created in (0, -(2**63), 2**63 - 1, 10**9, 10**10 - 1):
        record = speedups.encrypt_record(ik, b"x", created, _META)
        assert json.loads(record)["Key"]["Created"] == created
    for created in (float("nan"), float("inf"), -float("inf"), 1e300):
        with pytest.raises(ValueError, match="created must be a finite number"):
            speedups.encrypt_record(ik, b"x", created, _META)
    with pytest.raises(TypeError, match="created must be int or float, not str"):
        speedups.encrypt_record(ik, b"x", "1", _META)
    with pytest.raises(OverflowError):
        speedups.encrypt_record(ik, b"x", 2**64, _META)
    with pytest.raises(TypeError, match="parent_meta_json must be str, not bytes"):
        speedups.encrypt_record(ik, b"x", 1, _META.encode())
    with pytest.raises(TypeError, match="ik_key must be bytes"):
        speedups.encrypt_record(None, b"x", 1, _META)
    with pytest.raises(TypeError):
        speedups.encrypt_record(ik, "text", 1, _META)
    with pytest.raises(TypeError, match="takes 4 arguments"):
        speedups.encrypt_record(ik, b"x", 1)


@pytest.mark.parametrize("partition", PARTITIONS)
def test_decrypt_record_reads_the_canonical_offsets(partition: str) -> None:
    session = _FACTORY.get_session(partition)
    record = encrypt_py(session, b"value")
    key = session._keys.intermediate_keys.latest[session.intermediate_key_id]
    secret = key.secret_bytes
    assert secret is not None
    assert speedups.decrypt_record(secret, record, session._middle_end) == b"value"
    # Offsets outside the record, or that cut the blobs wrong, are never read past: the
    # caller's reference path then decides.
    for middle_end in (-1, 0, 115, len(record) - 22, len(record), 2**40):
        with pytest.raises(speedups.Base64Error):
            speedups.decrypt_record(secret, record, middle_end)
    with pytest.raises((speedups.Base64Error, speedups.AuthenticationError)):
        speedups.decrypt_record(secret, record, session._middle_end + 1)
    with pytest.raises(TypeError, match="record must be str, not bytes"):
        speedups.decrypt_record(secret, record.encode(), session._middle_end)
    with pytest.raises(TypeError, match="takes 3 arguments"):
        speedups.decrypt_record(secret, record)


def test_decrypt_row_opens_blobs_made_by_cryptography() -> None:
    ik, data_key = os.urandom(32), os.urandom(32)
    wrapped = AESGCM(ik).encrypt(b"k" * 12, data_key, None) + b"k" * 12
    blob = AESGCM(data_key).encrypt(b"d" * 12, b"payload", None) + b"d" * 12
    assert speedups.decrypt_row(ik, *map(speedups.b64encode, (wrapped, blob))) == b"payload"


def test_encrypt_row_takes_any_contiguous_buffer() -> None:
    ik = os.urandom(32)
    for data in (b"abc", bytearray(b"abc"), memoryview(b"xabcx")[1:4]):
        assert speedups.decrypt_row(ik, *speedups.encrypt_row(ik, data)) == b"abc"


def test_argument_checks() -> None:
    ik = os.urandom(32)
    wrapped, data = speedups.encrypt_row(ik, b"x")
    with pytest.raises(TypeError, match="ik_key must be bytes, not NoneType"):
        speedups.encrypt_row(None, b"x")
    with pytest.raises(TypeError, match="ik_key must be bytes, not bytearray"):
        speedups.decrypt_row(bytearray(ik), wrapped, data)
    with pytest.raises(ValueError, match="32 bytes"):
        speedups.encrypt_row(ik[:16], b"x")
    with pytest.raises(TypeError):
        speedups.encrypt_row(ik, "text")
    with pytest.raises(TypeError, match="data_b64 must be str"):
        speedups.decrypt_row(ik, wrapped, data.encode())
    with pytest.raises(TypeError, match="takes 2 arguments"):
        speedups.encrypt_row(ik)
    with pytest.raises(TypeError, match="takes 3 arguments"):
        speedups.decrypt_row(ik, wrapped)
    with pytest.raises(speedups.Base64Error):
        speedups.decrypt_row(ik, wrapped, "é" * 4)


def test_failures_raise_typed_errors_without_key_bytes() -> None:
    ik = os.urandom(32)
    wrapped, data = speedups.encrypt_row(ik, b"secret")
    other = os.urandom(32)
    assert issubclass(speedups.AuthenticationError, ValueError)
    assert issubclass(speedups.Base64Error, ValueError)
    cases = [
        (other, wrapped, data, "authentication failed"),
        (ik, wrapped, data[:-8] + "AAAAAAAA", "authentication failed"),
        (ik, wrapped, "", "authentication failed"),
        (ik, wrapped, "AAAA", "authentication failed"),
        (ik, wrapped[:4], data, "authentication failed"),
    ]
    for key, wrapped_b64, data_b64, message in cases:
        with pytest.raises(speedups.AuthenticationError, match=message) as caught:
            speedups.decrypt_row(key, wrapped_b64, data_b64)
        text = str(caught.value) + repr(caught.value)
        for secret in (key.hex(), speedups.b64encode(key), repr(key)[2:-1]):
            assert secret not in text
    # A wrapped key that authenticates but is not 32 bytes.
    nonce = os.urandom(12)
    short = speedups.b64encode(AESGCM(ik).encrypt(nonce, os.urandom(16), None) + nonce)
    with pytest.raises(speedups.AuthenticationError, match="data row key is not 32 bytes"):
        speedups.decrypt_row(ik, short, data)


def test_wiped_keys_fail_loudly_never_with_zeros() -> None:
    with SessionFactory(
        "service", "product", StaticKMS.from_hex(TEST_MASTER_KEY_HEX), InMemoryMetastore()
    ) as factory:
        factory.get_session("wipe").encrypt(b"x")
        key = factory._keys.intermediate_keys.latest["_IK_wipe_service_product"]
        secret = key.secret_bytes
        assert secret is not None and len(secret) == 32
        key.wipe()
        assert key.secret_bytes is None and not any(key._secret) and not key.usable
        with pytest.raises(TypeError, match="not NoneType"):
            speedups.encrypt_row(key.secret_bytes, b"x")
        with pytest.raises(RuntimeError, match="wiped"):
            key.wrap(b"k" * 32, b"n" * 12)


@pytest.mark.parametrize("path", ["c", "python"])
def test_a_key_wiped_under_a_session_is_replaced(path: str) -> None:
    """Another thread evicts (and wipes) the key a session has just looked up."""
    if path == "c" and not session_module.SPEEDUPS:
        pytest.skip("Session uses the pure-Python path here")
    encrypt, decrypt = (encrypt_c, decrypt_c) if path == "c" else (encrypt_py, decrypt_py)
    with SessionFactory(
        "service", "product", StaticKMS.from_hex(TEST_MASTER_KEY_HEX), InMemoryMetastore()
    ) as factory:
        session = factory.get_session("wipe")
        record = session.encrypt(b"before")
        cache = factory._keys.intermediate_keys
        key = cache.latest[session.intermediate_key_id]
        cache.entries.pop(key.meta)  # what an eviction does: out of the cache, then wiped
        cache.latest.pop(key.key_id)
        key.wipe()
        key.use_until = float("inf")  # as if wiped just after the session checked it
        session._latest = {key.key_id: key}  # the stale references the racing thread holds
        session._ik_cache = {key.meta: key}
        assert decrypt(session, record) == b"before"
        assert decrypt(session, encrypt(session, b"after")) == b"after"
        assert cache.latest[session.intermediate_key_id] is not key


def test_forget_key_rekeys_the_cached_schedule() -> None:
    first, second = os.urandom(32), os.urandom(32)
    record = speedups.encrypt_row(first, b"one")
    speedups.forget_key(second)  # not the cached key: nothing happens
    assert speedups.decrypt_row(first, *record) == b"one"
    speedups.forget_key(first)  # scrubbed: the next call sets the key again
    assert speedups.decrypt_row(first, *record) == b"one"
    with pytest.raises(speedups.AuthenticationError):
        speedups.decrypt_row(second, *record)
    assert speedups.decrypt_row(first, *record) == b"one"
    with pytest.raises(ValueError, match="32 bytes"):
        speedups.forget_key(b"short")


@requires_c_path
def test_evicted_keys_are_reloaded_on_the_c_path(
    kms: StaticKMS, metastore: InMemoryMetastore
) -> None:
    policy = CryptoPolicy(intermediate_key_cache_size=1)
    with SessionFactory("service", "product", kms, metastore, policy) as factory:
        records = {}
        for round_ in range(3):
            for partition in ("a", "b", "c"):  # each new key evicts (and wipes) the last
                session = factory.get_session(partition)
                records[partition, round_] = session.encrypt(f"{partition}{round_}".encode())
        for (partition, round_), record in records.items():
            session = factory.get_session(partition)
            assert session.decrypt(record) == f"{partition}{round_}".encode()


# -- base64 ------------------------------------------------------------------------------


@FAST
@given(st.binary(max_size=300))
def test_b64encode_matches_binascii(data: bytes) -> None:
    text = speedups.b64encode(data)
    assert text == b2a_base64(data, newline=False).decode()
    assert speedups.b64decode(text) == data


_B64_CHARS = st.sampled_from("AQgw/+=9Zaz\n é\x00-_")


@FAST
@given(st.text(_B64_CHARS, max_size=16) | st.text(max_size=8))
@example("QQ==")
@example("QR==")  # non-zero trailing bits: Python accepts, the C decoder defers to Python
@example("QUJD=")  # a stray "=" after a full quad: Python 3.11 accepts it
@example("QQ=")
@example("=")
def test_b64decode_accepts_a_subset_of_strict_binascii(text: str) -> None:
    try:
        expected: bytes | None = a2b_base64(text, strict_mode=True)
    except ValueError:
        expected = None
    try:
        decoded: bytes | None = speedups.b64decode(text)
    except speedups.Base64Error:
        decoded = None
    if decoded is not None:
        assert decoded == expected
    canonical = expected is not None and b2a_base64(expected, newline=False).decode() == text
    assert (decoded is not None) == canonical


# -- the canonical-layout check ----------------------------------------------------------


_EDIT_CHARS = st.sampled_from('0159A"}{:,/\\=é分🔑 \x00') | st.characters()


@FAST
@given(st.sampled_from(PARTITIONS), st.binary(max_size=40), st.data())
def test_canonical_created_matches_the_python_checks(
    partition: str, payload: bytes, data: st.DataObject
) -> None:
    session = _FACTORY.get_session(partition)
    record = encrypt_py(session, payload)
    middle = session._middle
    created = parse_data_row(record).parent.created
    assert speedups.canonical_created(record, middle) == reference_created(record, middle)
    assert speedups.canonical_created(record, middle) == created
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        index = data.draw(st.integers(min_value=0, max_value=len(record)))
        char = data.draw(_EDIT_CHARS)
        edit = data.draw(st.sampled_from(["insert", "replace", "delete", "truncate"]))
        if edit == "insert":
            record = record[:index] + char + record[index:]
        elif edit == "replace":
            record = record[:index] + char + record[index + 1 :]
        elif edit == "delete":
            record = record[:index] + record[index + 1 :]
        else:
            record = record[:index]
    other = data.draw(st.sampled_from([middle, _FACTORY.get_session("fuzz")._middle]))
    assert speedups.canonical_created(record, other) == reference_created(record, other)


@FAST
@given(st.text(max_size=300), st.sampled_from(PARTITIONS))
def test_canonical_created_on_arbitrary_text(text: str, partition: str) -> None:
    middle = _FACTORY.get_session(partition)._middle
    assert speedups.canonical_created(text, middle) == reference_created(text, middle) == -1


@requires_c_path
@pytest.mark.parametrize("partition", PARTITIONS)
def test_non_ascii_partitions_take_the_c_path(
    partition: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = _FACTORY.get_session(partition)
    records = [encrypt_c(session, b"value"), encrypt_py(session, b"value")]

    def refuse(self: Session, record: str | bytes) -> bytes:
        raise AssertionError("the pure-Python path was used")

    monkeypatch.setattr(Session, "_decrypt_py", refuse)
    for record in records:
        assert decrypt_c(session, record) == b"value"


# -- differential: both paths agree on every record ------------------------------------


@requires_c_path
@FAST
@given(st.binary(max_size=4096), st.booleans())
@example(b"", True)
@example(b"", False)
@example(b"\x00" * MiB, True)
def test_round_trips_agree(payload: bytes, made_by_c: bool) -> None:
    record = (encrypt_c if made_by_c else encrypt_py)(SESSION, payload)
    assert assert_same_outcome(record) == ("ok", payload)


@requires_c_path
@FAST
@given(
    st.binary(max_size=200),
    st.booleans(),
    st.sampled_from(["key", "data"]),
    st.integers(min_value=0),
    st.integers(min_value=0, max_value=7),
)
def test_bit_flips_agree(payload: bytes, in_c: bool, blob: str, index: int, bit: int) -> None:
    obj, key, data = split((encrypt_c if in_c else encrypt_py)(SESSION, payload))
    target = bytearray(key if blob == "key" else data)
    target[index % len(target)] ^= 1 << bit
    if blob == "key":
        record = rebuild(obj, bytes(target), data)
    else:
        record = rebuild(obj, key, bytes(target))
    result = assert_same_outcome(record)
    assert result[:2] == ("error", DecryptionError)


@requires_c_path
@FAST
@given(st.binary(max_size=100), st.data())
def test_truncations_insertions_and_replacements_agree(payload: bytes, data: st.DataObject) -> None:
    record = encrypt_c(SESSION, payload)
    index = data.draw(st.integers(min_value=0, max_value=len(record)))
    edit = data.draw(st.sampled_from(["truncate", "insert", "replace", "delete"]))
    char = data.draw(st.sampled_from('A/+=0"\\ é\x00}9') | st.characters())
    if edit == "truncate":
        record = record[:index]
    elif edit == "insert":
        record = record[:index] + char + record[index:]
    elif edit == "replace":
        record = record[:index] + char + record[index + 1 :]
    else:
        record = record[:index] + record[index + 1 :]
    assert_same_outcome(record)


@requires_c_path
@FAST
@given(
    st.binary(max_size=100),
    st.sampled_from(["key", "data"]),
    st.text(st.sampled_from("ABCxyz019+/=\\é \n"), max_size=120) | st.text(max_size=40),
)
def test_garbage_base64_agrees(payload: bytes, field: str, garbage: str) -> None:
    obj = json.loads(encrypt_c(SESSION, payload))
    if field == "key":
        obj["Key"]["Key"] = garbage
    else:
        obj["Data"] = garbage
    assert_same_outcome(json.dumps(obj, separators=(",", ":"), ensure_ascii=False))


@requires_c_path
@pytest.mark.parametrize("size", [0, 1, 3, 64])
def test_non_canonical_trailing_bits_are_decided_by_the_python_path(size: int) -> None:
    payload = os.urandom(size)
    record = encrypt_c(SESSION, payload)
    obj = json.loads(record)
    data = obj["Data"]
    stripped = data.rstrip("=")
    assert stripped != data  # size + 28 is not a multiple of 3
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet[alphabet.index(stripped[-1]) | 1]  # a non-zero unused low bit
    obj["Data"] = stripped[:-1] + last + data[len(stripped) :]
    tweaked = record.replace(data, obj["Data"])
    with pytest.raises(speedups.Base64Error):
        speedups.b64decode(obj["Data"])
    # binascii ignores those bits; the record parsers refuse them (issue #14), on both paths
    result = assert_same_outcome(tweaked)
    assert result[0] == "error" and "non-zero padding bits" in str(result), result


@requires_c_path
def test_json_escapes_and_other_layouts_agree() -> None:
    payload = bytes(range(256)) * 3
    record = encrypt_c(SESSION, payload)
    assert "/" in record
    variants = [
        record.replace("/", "\\/"),
        json.dumps(json.loads(record), indent=2),
        json.dumps(dict(reversed(json.loads(record).items()))),
        record.encode(),
        record.replace('"Created":', '"Created": '),
    ]
    for variant in variants:
        assert assert_same_outcome(variant) == ("ok", payload)


@requires_c_path
def test_other_partition_unknown_key_and_wrong_key_agree() -> None:
    record = encrypt_c(SESSION, b"x")
    other = _FACTORY.get_session("other")
    assert assert_same_outcome(record, other)[1] is PartitionMismatchError
    unknown = record.replace(f'"Created":{parse_data_row(record).parent.created}', '"Created":1')
    assert assert_same_outcome(unknown)[1] is KeyNotFoundError
    # Same key id and Created, other key bytes: authentication fails on both paths.
    twin_a, twin_b = _TWIN_A.get_session("t"), _TWIN_B.get_session("t")
    twin_b.encrypt(b"B's own key is now cached, so the C path is the one tried")
    for encrypt in (encrypt_c, encrypt_py):
        made = encrypt(twin_a, b"for a only")
        assert assert_same_outcome(made, twin_b) == (
            "error",
            DecryptionError,
            "unable to decrypt record: authentication failed (tampered or corrupted record)",
        )
    with pytest.raises(MalformedRecordError):
        decrypt_c(SESSION, "not json")


@requires_c_path
@pytest.mark.parametrize("size", [0, 64, speedups.NOGIL_THRESHOLD, MiB])
def test_tampered_large_and_small_values_agree(size: int) -> None:
    obj, key, data = split(encrypt_c(SESSION, os.urandom(size)))
    for cut in (1, 12, 16, 28, 29):
        if cut <= len(data):
            assert assert_same_outcome(rebuild(obj, key, data[:-cut]))[0] == "error"
    flipped = bytearray(data)
    flipped[len(flipped) // 2] ^= 0x80
    assert assert_same_outcome(rebuild(obj, key, bytes(flipped)))[0] == "error"


# -- threads ---------------------------------------------------------------------------


@requires_c_path
def test_threads_hammering_one_session(factory: SessionFactory) -> None:
    session = factory.get_session("threads")
    sizes = [0, 1, 64, 3000, speedups.NOGIL_THRESHOLD - 1, speedups.NOGIL_THRESHOLD, 100_000]
    start = threading.Barrier(8, timeout=30)

    def work(seed: int) -> int:
        rnd = random.Random(seed)
        start.wait()
        done = 0
        for i in range(150):
            payload = rnd.randbytes(rnd.choice(sizes))
            record = session.encrypt(payload)
            assert session.decrypt(record) == payload
            if i % 5 == 0:
                assert decrypt_py(session, encrypt_py(session, payload)) == payload
                assert decrypt_py(session, record) == payload
            if i % 7 == 0:
                obj, key, data = split(record)
                with pytest.raises(DecryptionError):
                    session.decrypt(rebuild(obj, key, data[:-1] + bytes([data[-1] ^ 1])))
            done += 1
        return done

    with ThreadPoolExecutor(8) as pool:
        assert sum(pool.map(work, range(8))) == 8 * 150


def test_threads_on_the_module_functions_with_several_keys() -> None:
    keys = [os.urandom(32) for _ in range(3)]
    start = threading.Barrier(6, timeout=30)

    def work(seed: int) -> None:
        rnd = random.Random(seed)
        start.wait()
        for _ in range(300):
            ik = rnd.choice(keys)
            payload = rnd.randbytes(rnd.choice([0, 50, speedups.NOGIL_THRESHOLD + 5]))
            row = speedups.encrypt_row(ik, payload)
            assert speedups.decrypt_row(ik, *row) == payload
            wrong = keys[(keys.index(ik) + 1) % 3]
            with pytest.raises(speedups.AuthenticationError):
                speedups.decrypt_row(wrong, *row)
            if rnd.random() < 0.05:
                speedups.forget_key(ik)

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(work, range(6)))


# -- the proof's harness (scripts/c_proof.sh runs it under sanitizers, valgrind, atheris) --


@requires_c_path
def test_fuzz_seed_corpus_agrees_on_every_target() -> None:
    """The seeds the fuzzer starts from, through the differential targets of tests/cproof."""
    from tests.cproof import fuzz_speedups, speedups_targets

    files = fuzz_speedups.inputs([str(fuzz_speedups.CORPUS)])
    seeded = set()
    for path in files:
        data = path.read_bytes()
        speedups_targets.one_input(data)
        seeded.add(speedups_targets.target_of(data).letter)
    assert seeded == {target.letter for target in speedups_targets.TARGETS}


def test_memcheck_driver_covers_every_function_and_passes() -> None:
    """valgrind's driver: cases for every public function of the extension, all as expected."""
    from tests.cproof import speedups_driver as driver

    table = driver.cases(speedups)
    assert driver.run(speedups, table, []) == []
    wrapped = a2b_base64(driver.SHORT_DRK)  # the constant is what it says it is
    assert len(AESGCM(driver.KEY).decrypt(wrapped[-12:], wrapped[:-12], None)) == 16
