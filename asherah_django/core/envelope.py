"""Loading and creating system and intermediate keys: Asherah's rotation rules.

Write path (canonical Go algorithm): use the latest intermediate key (IK) of the
partition if it is valid and its parent system key (SK) is valid; otherwise create a
new IK under the latest valid SK, creating that SK through the KMS when needed.
"Valid" means neither revoked nor expired. Keys are inserted if absent; a lost insert
race reloads the winner and uses it when it is valid.

Rule for the same-minute collision (revocation followed by a write in the same
minute): a replacement key takes the truncated current time, or one second after the
invalid latest key's ``Created`` when that is not earlier. Lookups are by exact
``(id, created)`` and "latest" orders by ``created``, so every Asherah implementation
reads such keys; and a write never reuses a revoked key nor fails.

Read path: exact ``(id, created)`` lookups only, never "latest"; expiry and revocation
are ignored so old data stays readable. A cached intermediate key is re-checked in the
metastore once its ``checked_at`` is more than ``check_interval`` old (sessions compare one
timestamp per lookup; the query runs at most once per interval per key): a key that is
gone (shredded by another process) is dropped and wiped, so this process stops decrypting
its values; a revocation is noticed. When the metastore cannot be reached the cached key
stays usable (outages must not stop reads) and the re-check is retried after
``RECHECK_RETRY`` seconds.

Key rows are checked when loaded, on every path (issue #13): an IK whose ParentKeyMeta is
not this factory's own ``_SK_{service}_{product}``, or an SK asked under another id, is
refused with :class:`KeyParentMismatchError` (honest Asherah data never has either); with
``policy.key_integrity`` on, rows carry integrity tags (see :mod:`.integrity`).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable

from . import integrity
from .aead import new_key
from .cache import KeyCache
from .errors import (
    DecryptionError,
    KeyCreationError,
    KeyNotFoundError,
    KeyParentMismatchError,
    KMSError,
    MetastoreError,
    UnreadableKeyError,
)
from .forking import after_fork_in_child
from .key_rows import FOREIGN_HINT, KeyRows, new_nonce, zero
from .keys import CryptoKey
from .policy import CryptoPolicy
from .protocols import KeyManagementService, KeyStore
from .records import EnvelopeKeyRecord, KeyMeta

logger = logging.getLogger("asherah_django.core")

_CREATE_ATTEMPTS = 5
_LOCK_STRIPES = 64
#: Seconds before a read-path re-check that failed (metastore unreachable) is tried again.
RECHECK_RETRY = 10.0

#: Why a stored key cannot be used (as opposed to the metastore being unreachable).
_UNUSABLE_KEY = (DecryptionError, KMSError, UnreadableKeyError)


class KeyHierarchy(KeyRows):
    """Owns the key caches of one factory and applies Asherah's key rules."""

    def __init__(
        self,
        system_key_id: str,
        kms: KeyManagementService,
        metastore: KeyStore,
        policy: CryptoPolicy,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.policy = policy
        self.system_key_id = system_key_id
        self.kms = kms
        self.metastore = metastore
        self.clock = clock
        self.listeners = []
        self.system_keys = KeyCache(policy.system_key_cache_size, enabled=policy.cache_system_keys)
        self.intermediate_keys = KeyCache(
            policy.intermediate_key_cache_size, enabled=policy.cache_intermediate_keys
        )
        self._locks = [threading.RLock() for _ in range(_LOCK_STRIPES)]
        _LIVE.add(self)

    def _lock_for(self, key_id: str) -> threading.RLock:
        return self._locks[hash(key_id) % _LOCK_STRIPES]

    # -- the write path -------------------------------------------------------------

    def latest_intermediate_key(self, ik_id: str) -> CryptoKey:
        """A valid IK for writing: cached, else loaded, else newly created."""
        with self._lock_for(ik_id):
            now = self.clock()
            cached = self.intermediate_keys.latest.get(ik_id)
            if cached is not None and not cached.revoked and now <= cached.use_until:
                return cached  # another thread refreshed it while we waited
            record = self._load_latest(ik_id)
            if record is not None:
                self.check_parent(ik_id, record)
            if record is not None and not self._record_invalid(record, now):
                system_key = self._valid_parent_system_key(record, now)
                if system_key is not None:
                    return self._install_intermediate(ik_id, record, system_key, now, cached)
            elif record is not None and cached is not None and cached.created == record.created:
                cached.revoked = record.revoked  # let other holders see the revocation
            return self._create_intermediate_key(ik_id, record, now)

    def latest_system_key(self) -> CryptoKey:
        """A valid SK for wrapping new IKs: cached, else loaded through the KMS, else created."""
        sk_id = self.system_key_id
        now = self.clock()
        cached = self.system_keys.latest.get(sk_id)
        if cached is not None and not cached.revoked and now <= cached.use_until:
            return cached
        with self._lock_for(sk_id):
            now = self.clock()
            cached = self.system_keys.latest.get(sk_id)
            if cached is not None and not cached.revoked and now <= cached.use_until:
                return cached
            record = self._load_latest(sk_id)
            if record is not None and not self._record_invalid(record, now):
                return self._install_system(sk_id, record, now, cached)
            if record is not None and cached is not None and cached.created == record.created:
                cached.revoked = record.revoked
            return self._create_system_key(record, now)

    def _create_intermediate_key(
        self, ik_id: str, latest: EnvelopeKeyRecord | None, now: float
    ) -> CryptoKey:
        for _ in range(_CREATE_ATTEMPTS):
            system_key = self.latest_system_key()
            created = self._new_created(now, latest)
            secret = bytearray(new_key())
            try:
                record = EnvelopeKeyRecord(
                    created, system_key.wrap(secret, new_nonce()), parent=system_key.meta
                )
                self.sign_child(system_key, ik_id, created, record)
                if self._store(ik_id, created, record):
                    key = CryptoKey(
                        KeyMeta(ik_id, created), secret, parent=system_key.meta, checked_at=now
                    )
                    self._notify("created", ik_id, created)
                    return self._remember(self.intermediate_keys, key, system_key, now)
            finally:
                zero(secret)
            # Lost the insert race: use the winner when it is valid, else try again.
            latest = self._load_latest(ik_id)
            if latest is not None:
                self.check_parent(ik_id, latest)
            if latest is not None and not self._record_invalid(latest, now):
                winner_sk = self._valid_parent_system_key(latest, now)
                if winner_sk is not None:
                    return self._install_intermediate(ik_id, latest, winner_sk, now, None)
        raise KeyCreationError(
            f"failed to create or load intermediate key {ik_id!r} after "
            f"{_CREATE_ATTEMPTS} attempts; check the metastore's clock and contents"
        )

    def store_child_key(self, key_id: str, created: int) -> bool:
        """Store under ``(key_id, created)`` a new random key wrapped (and, with
        KEY_INTEGRITY, signed) by the latest system key, as an IK is; False if that row
        exists. Listeners hear "created"."""
        system_key = self.latest_system_key()
        secret = bytearray(new_key())
        try:
            wrapped = system_key.wrap(secret, new_nonce())
        finally:
            zero(secret)
        record = EnvelopeKeyRecord(created, wrapped, parent=system_key.meta)
        self.sign_child(system_key, key_id, created, record)
        if not self._store(key_id, created, record):
            return False
        self._notify("created", key_id, created)
        return True

    def open_child_key(self, key_id: str, created: int, record: EnvelopeKeyRecord) -> bytearray:
        """The secret of a key row wrapped by this factory's system key, after the checks
        every key row gets (parent, integrity tag). The caller zeroes it."""
        if record.parent is None:
            raise DecryptionError(f"{integrity.describe(key_id, created)} has no ParentKeyMeta")
        self.check_parent(key_id, record)
        return self._unwrap_child(self.system_key(record.parent), KeyMeta(key_id, created), record)

    def _create_system_key(self, latest: EnvelopeKeyRecord | None, now: float) -> CryptoKey:
        sk_id = self.system_key_id
        for _ in range(_CREATE_ATTEMPTS):
            created = self._new_created(now, latest)
            secret = bytearray(new_key())
            try:
                encrypted = self.kms.encrypt_key(bytes(secret))
                record = EnvelopeKeyRecord(created, encrypted)
                if self.policy.key_integrity != "off":
                    record.tag = integrity.make_tag(secret, "self", sk_id, created, record)
                if self._store(sk_id, created, record):
                    key = CryptoKey(KeyMeta(sk_id, created), secret, checked_at=now)
                    self._notify("created", sk_id, created)
                    return self._remember(self.system_keys, key, None, now)
            finally:
                zero(secret)
            latest = self._load_latest(sk_id)
            if latest is not None and not self._record_invalid(latest, now):
                return self._install_system(sk_id, latest, now, None)
        raise KeyCreationError(
            f"failed to create or load system key {sk_id!r} after {_CREATE_ATTEMPTS} attempts"
        )

    # -- the read path ----------------------------------------------------------------

    def intermediate_key(self, meta: KeyMeta) -> CryptoKey:
        """The IK named exactly by ``meta`` (for decryption): cached (re-checked once per
        ``check_interval``), else loaded."""
        cached = self.intermediate_keys.get(meta)
        interval = self.policy.check_interval
        if cached is not None and self.clock() - cached.checked_at <= interval:
            return cached
        with self._lock_for(meta.key_id):
            cached = self.intermediate_keys.get(meta)
            if cached is not None:
                now = self.clock()
                if now - cached.checked_at <= interval:
                    return cached  # another thread re-checked it while we waited
                return self._recheck_intermediate(cached, now)
            record = self._call(lambda: self.metastore.load(meta.key_id, meta.created))
            if record is None:
                raise KeyNotFoundError(
                    f"intermediate key {meta.key_id!r} created {meta.created} is not in the "
                    "metastore (it was never stored there, or it was shredded)"
                )
            return self._unwrap_intermediate(meta, record, self.clock())

    def system_key(self, meta: KeyMeta) -> CryptoKey:
        """The SK named exactly by ``meta``: cached, else loaded and unwrapped by the KMS."""
        if meta.key_id != self.system_key_id:
            raise KeyParentMismatchError(
                f"refusing system key {meta.key_id!r}: this service's system key is "
                f"{self.system_key_id!r}",
                hint=FOREIGN_HINT,
            )
        cached = self.system_keys.get(meta)
        if cached is not None:
            return cached
        with self._lock_for(meta.key_id):
            cached = self.system_keys.get(meta)
            if cached is not None:
                return cached
            record = self._call(lambda: self.metastore.load(meta.key_id, meta.created))
            if record is None:
                raise KeyNotFoundError(
                    f"system key {meta.key_id!r} created {meta.created} is not in the metastore"
                )
            return self._unwrap_system(meta, record, self.clock())

    def preload_intermediate_keys(self, metas: Iterable[KeyMeta]) -> None:
        """Load every uncached IK in ``metas`` (and their SKs) with as few queries as possible.

        Keys that cannot be loaded (missing, malformed, not unwrapped by the KMS) are
        skipped here; decrypting their values reports why. Only an unreachable metastore
        raises.
        """
        missing = {meta for meta in metas if self.intermediate_keys.get(meta) is None}
        if not missing:
            return
        metastore = self.metastore
        try:
            records = self._call(lambda: dict(metastore.load_many(missing)))
        except UnreadableKeyError:
            return  # a malformed row in the batch: each value's own load names it
        parents = {r.parent for r in records.values() if r.parent is not None}
        wanted = {
            p for p in parents if p.key_id == self.system_key_id and self.system_keys.get(p) is None
        }
        if wanted:
            try:
                sk_records = self._call(lambda: dict(metastore.load_many(wanted)))
            except UnreadableKeyError:
                sk_records = {}
            now = self.clock()
            for meta, record in sk_records.items():
                try:
                    self._unwrap_system(meta, record, now)
                except _UNUSABLE_KEY:
                    continue
        now = self.clock()
        for meta, record in records.items():
            try:
                self._unwrap_intermediate(meta, record, now)
            except _UNUSABLE_KEY:
                continue

    def _recheck_intermediate(self, cached: CryptoKey, now: float) -> CryptoKey:
        """Ask the metastore whether a cached IK still exists and whether it was revoked."""
        meta = cached.meta
        try:
            record = self._load(meta)
        except MetastoreError as exc:
            logger.warning(
                "asherah: re-checking intermediate key %s created %s failed (%s); "
                "keeping the cached key and retrying in %.0f s",
                meta.key_id,
                meta.created,
                exc.args[0],
                RECHECK_RETRY,
            )
            retry = min(RECHECK_RETRY, float(self.policy.check_interval))
            cached.checked_at = now - self.policy.check_interval + retry
            return cached
        if record is None:
            self.intermediate_keys.drop(meta)
            raise KeyNotFoundError(
                f"intermediate key {meta.key_id!r} created {meta.created} is not in the "
                "metastore any more (it was shredded)"
            )
        if record.revoked and not cached.revoked:
            self.key_revoked(meta)
        cached.revoked = cached.revoked or record.revoked
        cached.checked_at = now
        return cached

    # -- revocation and shredding seen by this process ----------------------------------

    def key_revoked(self, meta: KeyMeta) -> None:
        """Stop writing with a key revoked in the metastore, at once rather than after
        ``check_interval``. For a system key, its intermediate keys' latest pointers are
        dropped too: their next write finds the parent revoked and rotates."""
        if meta.key_id == self.system_key_id:
            self.system_keys.mark_revoked(meta)
            for key in self.intermediate_keys.cached():
                if key.parent == meta:
                    self.intermediate_keys.forget_latest(key.key_id)
        else:
            self.intermediate_keys.mark_revoked(meta)

    def key_shredded(self, key_id: str) -> int:
        """Forget and wipe every cached version of a deleted key id; how many were cached."""
        return self.intermediate_keys.discard(key_id) + self.system_keys.discard(key_id)

    # -- helpers -------------------------------------------------------------------

    def _valid_parent_system_key(self, record: EnvelopeKeyRecord, now: float) -> CryptoKey | None:
        """The record's parent SK if it exists, unwraps and is still valid (canon rule)."""
        if record.parent is None:
            return None
        try:
            system_key = self.system_key(record.parent)
        except (KeyNotFoundError, DecryptionError):
            return None
        if now > system_key.checked_at + self.policy.check_interval:
            fresh = self._load(record.parent)
            if fresh is None:
                return None
            system_key.revoked = fresh.revoked
            system_key.checked_at = now
        if system_key.revoked or self.policy.is_expired(system_key.created, now):
            return None
        return system_key

    def _install_intermediate(
        self,
        ik_id: str,
        record: EnvelopeKeyRecord,
        system_key: CryptoKey,
        now: float,
        cached: CryptoKey | None,
    ) -> CryptoKey:
        meta = KeyMeta(ik_id, record.created)
        if cached is not None and cached.meta == meta and cached.usable:
            cached.revoked = record.revoked
            cached.checked_at = now
            return self._remember(self.intermediate_keys, cached, system_key, now)
        key = self._unwrap_with(system_key, meta, record, now)
        return self._remember(self.intermediate_keys, key, system_key, now)

    def _install_system(
        self, sk_id: str, record: EnvelopeKeyRecord, now: float, cached: CryptoKey | None
    ) -> CryptoKey:
        meta = KeyMeta(sk_id, record.created)
        if cached is not None and cached.meta == meta and cached.usable:
            cached.revoked = record.revoked
            cached.checked_at = now
            return self._remember(self.system_keys, cached, None, now)
        key = self._kms_unwrap(meta, record, now)
        return self._remember(self.system_keys, key, None, now)

    def _unwrap_intermediate(
        self, meta: KeyMeta, record: EnvelopeKeyRecord, now: float
    ) -> CryptoKey:
        if record.parent is None:
            raise DecryptionError(f"intermediate key {meta.key_id!r} has no ParentKeyMeta")
        self.check_parent(meta.key_id, record)
        system_key = self.system_key(record.parent)
        key = self._unwrap_with(system_key, meta, record, now)
        return self.intermediate_keys.put(key)

    def _unwrap_system(self, meta: KeyMeta, record: EnvelopeKeyRecord, now: float) -> CryptoKey:
        return self.system_keys.put(self._kms_unwrap(meta, record, now))

    def _unwrap_with(
        self, system_key: CryptoKey, meta: KeyMeta, record: EnvelopeKeyRecord, now: float
    ) -> CryptoKey:
        secret = self._unwrap_child(system_key, meta, record)
        try:
            return CryptoKey(
                meta, secret, parent=record.parent, revoked=record.revoked, checked_at=now
            )
        except ValueError:
            raise DecryptionError(f"intermediate key {meta.key_id!r} is not 32 bytes") from None
        finally:
            zero(secret)

    def _remember(
        self, cache: KeyCache, key: CryptoKey, system_key: CryptoKey | None, now: float
    ) -> CryptoKey:
        """Cache ``key`` as the latest of its id and compute how long writes may use it."""
        until = min(key.created + self.policy.expire_after, now + self.policy.check_interval)
        if system_key is not None:
            until = min(until, system_key.created + self.policy.expire_after)
        key = cache.put(key, latest=True)
        key.use_until = until if cache.enabled else 0.0
        return key

    def _record_invalid(self, record: EnvelopeKeyRecord, now: float) -> bool:
        return record.revoked or self.policy.is_expired(record.created, now)

    def _new_created(self, now: float, latest: EnvelopeKeyRecord | None) -> int:
        created = self.policy.truncate(now)
        if latest is not None and latest.created >= created:
            created = latest.created + 1
        return created

    def close(self) -> None:
        self.intermediate_keys.clear()
        self.system_keys.clear()


_LIVE: weakref.WeakSet[KeyHierarchy] = weakref.WeakSet()


@after_fork_in_child
def _after_fork_in_child() -> None:
    """A forked child (gunicorn --preload) that goes on using a factory built before the
    fork: the lock stripes may be held by parent threads that do not exist in the child."""
    for hierarchy in list(_LIVE):
        hierarchy._locks = [threading.RLock() for _ in range(_LOCK_STRIPES)]
