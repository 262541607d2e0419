"""SessionFactory and per-partition Session: the public face of the envelope engine.

    factory = SessionFactory("service", "product", kms, metastore)
    session = factory.get_session("tenant-42")
    record = session.encrypt(b"secret")        # DataRowRecord JSON text
    assert session.decrypt(record) == b"secret"

The encrypt and decrypt paths below are the hot path: with warm caches they do no
I/O, take no lock and allocate little, so they are written out inline. Each exists twice:
the pure-Python reference (``_encrypt_py``/``_decrypt_py``) and, when the optional C
extension ``asherah_django.core._speedups`` is built, a path that does the per-value crypto
and base64 in one C call (``_encrypt_c``/``_decrypt_c``). ``Session.encrypt``/``decrypt``
are the C ones when the extension imports, unless ``ASHERAH_DJANGO_PURE_PYTHON=1`` was set
when this module was imported. Both write the same records and accept and reject the same
records with the same errors (tests/unit/core/test_speedups.py checks them against each other).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import weakref
from binascii import a2b_base64, b2a_base64
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from os import urandom
from typing import cast

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from . import keys as _keys
from .aead import KEY_SIZE, NONCE_SIZE, TAG_SIZE
from .envelope import KeyHierarchy
from .errors import (
    DecryptionError,
    MalformedRecordError,
    PartitionMismatchError,
    PayloadTooLargeError,
    SessionClosedError,
)
from .forking import after_fork_in_child
from .key_ids import KeyIds, check_names
from .key_rows import KeyListener
from .keys import CryptoKey
from .keystore import key_store
from .policy import CryptoPolicy
from .protocols import KeyManagementService, KeyStore, Metastore, close_kms
from .records import EnvelopeKeyRecord, KeyMeta, padding_bits_zero, parse_data_row

#: The largest plaintext every Asherah implementation accepts (the Rust core's limit).
MAX_PLAINTEXT_SIZE = 64 * 1024 * 1024
_MIN_BLOB = TAG_SIZE + NONCE_SIZE
_DRK_END = KEY_SIZE
_NONCE1_END = KEY_SIZE + NONCE_SIZE
_RANDOM_SIZE = KEY_SIZE + 2 * NONCE_SIZE
# Offsets of the canonical DataRowRecord layout (see Session._split_canonical).
_HEAD = '{"Key":{"Created":'
_CREATED_START = len(_HEAD)
_KEY_LABEL = ',"Key":"'
_KEY_START = _CREATED_START + 10 + len(_KEY_LABEL)
_KEY_END = _KEY_START + 80
_TAIL = '}},"Data":"'


def speedups_allowed(environ: Mapping[str, str], gil_enabled: Callable[[], bool] | None) -> bool:
    """Whether to load the C extension: not when ``ASHERAH_DJANGO_PURE_PYTHON`` is set, and
    not on a free-threaded interpreter running with the GIL disabled (``gil_enabled`` is
    ``sys._is_gil_enabled`` where it exists): the extension's shared cipher contexts rely
    on the GIL, so there the pure-Python path is used."""
    if environ.get("ASHERAH_DJANGO_PURE_PYTHON", "").strip().lower() in {"1", "true", "yes"}:
        return False
    return gil_enabled is None or gil_enabled()


#: Whether Session.encrypt/decrypt use the C extension (False: the pure-Python path).
SPEEDUPS = False
if speedups_allowed(os.environ, getattr(sys, "_is_gil_enabled", None)):
    try:
        from ._speedups import AuthenticationError as _AuthenticationError
        from ._speedups import Base64Error as _Base64Error
        from ._speedups import canonical_created as _canonical_created
        from ._speedups import decrypt_record as _decrypt_record
        from ._speedups import encrypt_record as _encrypt_record
        from ._speedups import forget_key as _forget_key
    except ImportError:  # not built (no compiler or OpenSSL headers at install time)
        pass
    else:
        SPEEDUPS = True
        # The extension caches the last intermediate key's AES key schedule; a wiped key
        # must not outlive its CryptoKey there.
        _keys.wipe_hook = _forget_key


class SessionFactory:
    """Builds sessions for one service/product pair and owns their shared key caches.

    Thread-safe; create one per process and share it. ``close()`` wipes cached keys.
    """

    def __init__(
        self,
        service_name: str,
        product_id: str,
        kms: KeyManagementService,
        metastore: Metastore,
        policy: CryptoPolicy | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        check_names(service_name, product_id)
        self.service_name = service_name
        self.product_id = product_id
        #: Builds and parses this service/product's key ids.
        self.ids = KeyIds(service_name, product_id)
        self.policy = policy or CryptoPolicy()
        self.kms = kms
        #: The store as given; :attr:`key_store` is the same seen as a KeyStore.
        self.metastore = metastore
        self.key_store: KeyStore = key_store(metastore)
        #: Wall clock in epoch seconds; tests substitute one to move time forward.
        self.clock = clock
        self._keys = KeyHierarchy(self.ids.system, kms, self.key_store, self.policy, clock=clock)
        self._sessions: OrderedDict[str, tuple[Session, float]] = OrderedDict()
        self._sessions_lock = threading.Lock()
        _LIVE.add(self)
        self._closed = False

    def __repr__(self) -> str:
        return (
            f"<SessionFactory service={self.service_name!r} product={self.product_id!r} "
            f"kms={type(self.kms).__name__} metastore={type(self.metastore).__name__}>"
        )

    @property
    def system_key_id(self) -> str:
        return self._keys.system_key_id

    def intermediate_key_id(self, partition_id: str) -> str:
        return self.ids.intermediate(partition_id)

    def get_session(self, partition_id: str) -> Session:
        """The session for ``partition_id`` (cached; sessions are cheap and stateless)."""
        if self._closed:
            raise SessionClosedError("this SessionFactory is closed")
        policy = self.policy
        if not policy.cache_sessions:
            return Session(self, partition_id)
        now = time.monotonic()
        entry = self._sessions.get(partition_id) if isinstance(partition_id, str) else None
        if entry is not None and now - entry[1] < policy.session_cache_duration:
            return entry[0]
        session = Session(self, partition_id)
        with self._sessions_lock:
            self._sessions[partition_id] = (session, now)
            self._sessions.move_to_end(partition_id)
            while len(self._sessions) > policy.session_cache_size:
                self._sessions.popitem(last=False)
        return session

    def close(self) -> None:
        """Wipe every cached key and refuse further sessions. Idempotent."""
        if self._closed:
            return
        self._closed = True
        with self._sessions_lock:
            self._sessions.clear()
        self._keys.close()
        close_kms(self.kms)

    @property
    def closed(self) -> bool:
        return self._closed

    # -- the front: what the Django layer asks of the key hierarchy -------------------------

    def subscribe(self, listener: KeyListener) -> None:
        """Call ``listener(event, key_id, created)`` for every key this factory creates."""
        self._keys.listeners.append(listener)

    def unsubscribe(self, listener: KeyListener) -> None:
        if listener in self._keys.listeners:
            self._keys.listeners.remove(listener)

    def forget(self, *, system_keys: bool = False) -> None:
        """Drop (and wipe) the cached intermediate keys, and the system keys too when asked:
        the next use reloads them (keys the database lost, e.g. rolled back)."""
        if system_keys:
            self._keys.system_keys.clear()
        self._keys.intermediate_keys.clear()

    def key_revoked(self, meta: KeyMeta) -> None:
        """Stop writing with a key revoked in the metastore, at once (see
        :meth:`KeyHierarchy.key_revoked`)."""
        self._keys.key_revoked(meta)

    def key_shredded(self, key_id: str) -> int:
        """Forget and wipe every cached version of a deleted key id; how many were cached."""
        return self._keys.key_shredded(key_id)

    def preload(self, metas: Iterable[KeyMeta]) -> None:
        """Load the uncached intermediate keys ``metas`` names in as few queries as possible."""
        self._keys.preload_intermediate_keys(metas)

    def latest_intermediate_key(self, partition_id: str) -> KeyMeta:
        """The partition's current write key (created, or replaced when revoked or expired,
        as an encryption would)."""
        if self._closed:
            raise SessionClosedError("this SessionFactory is closed")
        return self._keys.latest_intermediate_key(self.intermediate_key_id(partition_id)).meta

    def use_kms(self, kms: KeyManagementService) -> KeyManagementService:
        """Unwrap and wrap system keys with ``kms`` from now on; returns the one in use
        (the testing plugin counts calls through a wrapper)."""
        previous, self._keys.kms = self._keys.kms, kms
        return previous

    def store_child_key(self, key_id: str, created: int) -> bool:
        """Store a new random key under ``(key_id, created)``, wrapped and signed by the
        system key as an intermediate key is (blind index keys); False if the row exists."""
        return self._keys.store_child_key(key_id, created)

    def load_versions(self, key_id: str) -> dict[KeyMeta, EnvelopeKeyRecord]:
        """Every stored version of ``key_id`` (a blind index key ring)."""
        return self._keys.load_versions(key_id)

    def open_child_key(self, key_id: str, created: int, record: EnvelopeKeyRecord) -> bytearray:
        """The secret of a stored key wrapped by the system key, after the parent and
        integrity checks; the caller zeroes it."""
        return self._keys.open_child_key(key_id, created, record)

    def __enter__(self) -> SessionFactory:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Session:
    """Encrypts and decrypts for one partition. Cheap; safe to share between threads."""

    __slots__ = (
        "_clock",
        "_factory",
        "_ik_cache",
        "_ik_id",
        "_interval",
        "_keys",
        "_latest",
        "_middle",
        "_middle_end",
        "partition_id",
    )

    def __init__(self, factory: SessionFactory, partition_id: str) -> None:
        self.partition_id = factory.ids.check_partition(partition_id)
        self._factory = factory
        self._keys = factory._keys
        self._ik_id = factory.intermediate_key_id(partition_id)
        self._latest = factory._keys.intermediate_keys.latest
        # The cache's dict itself: a hit on the read path is one dict lookup.
        # (KeyMeta is a NamedTuple, so a plain (id, created) tuple finds the same entry.)
        self._ik_cache = cast(
            "dict[tuple[str, int], CryptoKey]", factory._keys.intermediate_keys.entries
        )
        self._clock = factory.clock
        #: A cached key older than this (since its last metastore check) is re-checked.
        self._interval = factory.policy.check_interval
        self._middle = '","ParentKeyMeta":{"KeyId":' + json.dumps(self._ik_id, ensure_ascii=False)
        self._middle += ',"Created":'
        self._middle_end = _KEY_END + len(self._middle)

    def __repr__(self) -> str:
        return f"<Session partition={self.partition_id!r} key_id={self._ik_id!r}>"

    @property
    def intermediate_key_id(self) -> str:
        return self._ik_id

    def _encrypt_py(self, data: bytes) -> str:
        """Encrypt ``data`` with a fresh data row key; return the DataRowRecord JSON."""
        if type(data) is not bytes and not isinstance(data, bytearray | memoryview):
            raise TypeError(f"encrypt() takes bytes, not {type(data).__name__}")
        if len(data) > MAX_PLAINTEXT_SIZE:
            raise PayloadTooLargeError("plaintext is larger than the 64 MiB Asherah accepts")
        now = self._clock()
        key = self._latest.get(self._ik_id)
        if key is None or key.revoked or now > key.use_until:
            key = self._write_key()
        key.referenced = True
        aead = key.aead
        random = urandom(_RANDOM_SIZE)
        data_key = random[:_DRK_END]
        nonce = random[_DRK_END:_NONCE1_END]
        key_nonce = random[_NONCE1_END:]
        try:
            wrapped_key = aead.encrypt(key_nonce, data_key, None) + key_nonce
        except RuntimeError:  # the key was wiped by an eviction just now: take a fresh one
            key = self._write_key()
            wrapped_key = key.aead.encrypt(key_nonce, data_key, None) + key_nonce
        encrypted = AESGCM(data_key).encrypt(nonce, data, None) + nonce
        return (
            f'{{"Key":{{"Created":{int(now)},"Key":"'
            f'{b2a_base64(wrapped_key, newline=False).decode()}","ParentKeyMeta":'
            f'{key.meta_json}}},"Data":"{b2a_base64(encrypted, newline=False).decode()}"}}'
        )

    def _decrypt_py(self, record: str | bytes) -> bytes:
        """Decrypt a DataRowRecord made for this partition (by any Asherah implementation)."""
        # Fast path: the exact compact layout that we, Go and the Rust core write, for this
        # partition, with a 10-digit DRK ``Created`` and a 60-byte wrapped key. Slicing it
        # is several times cheaper than JSON parsing; anything else (other key order,
        # spacing, escapes, or a bad record) takes the tolerant parser, which also gives
        # the precise error.
        middle = self._middle
        end = self._middle_end
        parts = None
        if (
            type(record) is str
            and record[:_CREATED_START] == _HEAD
            and record[_CREATED_START + 10 : _KEY_START] == _KEY_LABEL
            and record[_KEY_END:end] == middle
            and record[end + 10 : end + 21] == _TAIL
            and record[-2:] == '"}'
        ):
            numbers = record[_CREATED_START : _CREATED_START + 10] + record[end : end + 10]
            if numbers.isascii() and numbers.isdigit() and numbers[0] != "0" != numbers[10]:
                try:
                    parts = (
                        (self._ik_id, int(numbers[10:])),
                        a2b_base64(record[_KEY_START:_KEY_END], strict_mode=True),
                        a2b_base64(record[end + 21 : -2], strict_mode=True),
                    )
                except ValueError:
                    parts = None
                # (Padding is rare in the fixed 80-character key; non-zero padding bits go
                # to the tolerant parser, which refuses them.)
                if (
                    parts is not None
                    and (record[-3] == "=" or record[_KEY_END - 1] == "=")
                    and not (
                        padding_bits_zero(record[_KEY_START:_KEY_END])
                        and padding_bits_zero(record[end + 21 : -2])
                    )
                ):
                    parts = None
        if parts is None:
            row = parse_data_row(record)
            if row.parent.key_id != self._ik_id:
                raise PartitionMismatchError(
                    "unable to decrypt record: it was encrypted for another partition"
                )
            if len(row.encrypted_key) < _MIN_BLOB or len(row.data) < _MIN_BLOB:
                raise MalformedRecordError("data row record: encrypted blob is too short")
            parts = row.parent, row.encrypted_key, row.data
        # (The fast path's key blob is exactly 60 bytes; a data blob shorter than a tag
        # fails authentication below.)
        meta, blob, data = parts
        key = self._ik_cache.get(meta)
        if key is None or self._clock() - key.checked_at > self._interval:
            key = self._read_key(KeyMeta(*meta))
        else:
            key.referenced = True
        try:
            try:
                data_key = key.aead.decrypt(blob[-NONCE_SIZE:], blob[:-NONCE_SIZE], None)
            except RuntimeError:  # wiped by an eviction just now: load it again
                key = self._read_key(KeyMeta(*meta))
                data_key = key.aead.decrypt(blob[-NONCE_SIZE:], blob[:-NONCE_SIZE], None)
            if len(data_key) != KEY_SIZE:
                raise DecryptionError("unable to decrypt record: data row key is not 32 bytes")
            return AESGCM(data_key).decrypt(data[-NONCE_SIZE:], data[:-NONCE_SIZE], None)
        except (InvalidTag, ValueError):  # ValueError: a nonce cut short by a truncated blob
            raise DecryptionError(
                "unable to decrypt record: authentication failed (tampered or corrupted record)"
            ) from None

    def _encrypt_c(self, data: bytes) -> str:
        """Encrypt ``data`` with a fresh data row key; return the DataRowRecord JSON."""
        if type(data) is not bytes and not isinstance(data, bytearray | memoryview):
            raise TypeError(f"encrypt() takes bytes, not {type(data).__name__}")
        if len(data) > MAX_PLAINTEXT_SIZE:
            raise PayloadTooLargeError("plaintext is larger than the 64 MiB Asherah accepts")
        now = self._clock()
        key = self._latest.get(self._ik_id)
        if key is None or key.revoked or now > key.use_until:
            key = self._write_key()
        key.referenced = True
        secret = key.secret_bytes
        if secret is None:  # the key was wiped by an eviction just now: take a fresh one
            key = self._write_key()
            secret = key.secret_bytes
            if secret is None:
                raise RuntimeError("this key was wiped (evicted or its factory closed)")
        return _encrypt_record(secret, data, now, key.meta_json)

    def _decrypt_c(self, record: str | bytes) -> bytes:
        """Decrypt a DataRowRecord made for this partition (by any Asherah implementation)."""
        # The canonical layout (the very checks of _decrypt_py's fast path, made in C) with
        # its intermediate key cached and usable goes to C in one call; everything else,
        # and base64 that the C decoder does not take, goes to the reference path, which
        # then decides exactly as it always has.
        if type(record) is str:
            created = _canonical_created(record, self._middle)
            if created >= 0:
                key = self._ik_cache.get((self._ik_id, created))
                secret = None if key is None else key.secret_bytes
                if (
                    key is not None
                    and secret is not None
                    and self._clock() - key.checked_at <= self._interval
                ):
                    key.referenced = True
                    try:
                        return _decrypt_record(secret, record, self._middle_end)
                    except _AuthenticationError as exc:
                        raise DecryptionError(f"unable to decrypt record: {exc}") from None
                    except _Base64Error:
                        pass
        return self._decrypt_py(record)

    if SPEEDUPS:
        encrypt = _encrypt_c
        decrypt = _decrypt_c
    else:
        encrypt = _encrypt_py
        decrypt = _decrypt_py

    def encrypt_text(self, text: str) -> str:
        """UTF-8 encode ``text`` and :meth:`encrypt` it."""
        if not isinstance(text, str):
            raise TypeError(f"encrypt_text() takes str, not {type(text).__name__}")
        return self.encrypt(text.encode("utf-8"))

    def decrypt_text(self, record: str | bytes) -> str:
        """:meth:`decrypt` and UTF-8 decode."""
        plaintext = self.decrypt(record)
        try:
            return plaintext.decode("utf-8")
        except UnicodeDecodeError:
            raise DecryptionError("decrypted value is not UTF-8 text") from None

    def decrypt_many(self, records: Sequence[str | bytes]) -> list[bytes]:
        """Decrypt several records, loading their keys in batches first."""
        self.preload(records)
        return [self.decrypt(record) for record in records]

    def preload(self, records: Iterable[str | bytes]) -> None:
        """Load, in as few metastore round trips as possible, the keys ``records`` need."""
        metas = set()
        for record in records:
            try:
                metas.add(parse_data_row(record).parent)
            except MalformedRecordError:
                continue
        self._keys.preload_intermediate_keys(metas)

    def _read_key(self, meta: KeyMeta) -> CryptoKey:
        if self._factory.closed:
            raise SessionClosedError("this session's SessionFactory is closed")
        return self._keys.intermediate_key(meta)

    def _write_key(self) -> CryptoKey:
        if self._factory.closed:
            raise SessionClosedError("this session's SessionFactory is closed")
        return self._keys.latest_intermediate_key(self._ik_id)

    def close(self) -> None:
        """Sessions hold no resources of their own; kept for API parity with Asherah."""

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# A factory built before os.fork() (gunicorn --preload) must not carry into the child a lock
# that another parent thread held at the moment of the fork.
_LIVE: weakref.WeakSet[SessionFactory] = weakref.WeakSet()


@after_fork_in_child
def _after_fork_in_child() -> None:
    for factory in list(_LIVE):
        factory._sessions_lock = threading.Lock()
