"""Blind index keys: HMAC keys generated once, wrapped by the system key, kept in the metastore.

Key ids
-------
``_BIDX__{service}_{product}`` for the global scope (the partition part is empty, which no
Asherah partition can be) and ``_BIDX_{partition}_{service}_{product}`` for the partition
scope, the same shape as ``_SK_{service}_{product}`` and ``_IK_{partition}_{service}_{product}``.
Other Asherah implementations sharing the ``encryption_key`` table ignore these rows safely:

* Go, Java, C# and the Rust core look keys up by exact id only, and only ever build
  ``_SK_...`` and ``_IK_...`` ids (the Rust core's cross-region recovery, too, derives ids
  from the ``_IK_`` prefix); no ``_BIDX_`` id can equal one.
* Asherah's revoke script selects ``id LIKE '_SK_%'`` / ``'_IK_%'``, where ``_`` is a
  one-character wildcard: a match needs ``S`` or ``I`` as the second character, and
  ``_BIDX_`` has ``B`` there, so bulk revocation never touches these rows.
* The Rust core's own bookkeeping uses ``__asherah_internal_``; ours never starts so.

Records
-------
An ordinary Asherah EnvelopeKeyRecord, exactly like an intermediate key's:
``{"Created":..,"Key":base64(AES-256-GCM(system key, 32 random bytes)),"ParentKeyMeta":
{"KeyId":"_SK_{service}_{product}","Created":..}}``. The key is therefore protected by the
system key and, through it, by the KMS (Vault Transit). ``"Revoked":true`` marks a
*retired* version: no index value uses it any more. Blind index keys never expire (an
expiry would force a re-index); they change only by rotation.

Versions, and rotation without downtime
---------------------------------------
An id has one or more versions (rows with different ``created``):

* the *write version* is the newest version not retired whose ``created`` is not in the
  future; every new index value uses it;
* lookups compare against every version not retired (a value stored under an older one is
  found while re-indexing moves it);
* rotation stores a version whose ``created`` lies in the future (by default
  ``CHECK_INTERVAL`` + 60 seconds ahead). Every process reloads its key ring at least once
  per ``CHECK_INTERVAL``, so all of them know the new version before it becomes the write
  version, and switch to it at the same moment by their own clocks: no process can write
  a value that another cannot find. ``asherah_reindex`` then moves stored values to it and
  retires the old version once no value uses it.

Each index value starts with its version's tag (``created`` in base 36), so re-indexing
knows which rows are done without decrypting them and can stop and resume at any point.

Field keys
----------
The stored key is never used directly: each field derives its own key,
``HMAC-SHA256(key, "asherah_django blind index v1\\0" + context)`` with the context
``app_label.model.field`` by default, so equal values in two fields give unrelated
index values. Derived keys are cached with the version.

Caching
-------
Key rings are cached per SessionFactory (so a settings change, which replaces the
factory, drops them) and reloaded from the metastore after ``CHECK_INTERVAL`` seconds, as
Asherah re-checks its cached keys. A ring is never cached while it is empty (another
process may create the first key at any moment), nor, on SQLite, while it holds a version
created inside a transaction that has not committed yet (it may still roll back).
Key bytes never appear in ``repr()``, logs or exceptions, and cannot be pickled.
"""

from __future__ import annotations

import hmac
import logging
import string
import threading
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from ..core.aead import KEY_SIZE
from ..core.errors import (
    DecryptionError,
    KeyCreationError,
    MetastoreError,
)
from ..core.forking import after_fork_in_child
from ..core.key_ids import INDEX_PREFIX, KeyIds, KeyKind
from ..core.records import EnvelopeKeyRecord

if TYPE_CHECKING:
    from ..core.session import SessionFactory

logger = logging.getLogger("asherah_django.blind_index")

#: Every blind index key id starts with this.
BIDX_PREFIX: Final = INDEX_PREFIX
#: Domain separation of the per-field key derivation.
DERIVATION_LABEL: Final = b"asherah_django blind index v1\x00"
_DIGITS: Final = string.digits + string.ascii_lowercase
_CREATE_ATTEMPTS: Final = 3
_MIN_RINGS: Final = 16


def index_key_id(partition: str | None, service_name: str, product_id: str) -> str:
    """``_BIDX__{service}_{product}`` (``partition=None``: global) or
    ``_BIDX_{partition}_{service}_{product}``."""
    return KeyIds(service_name, product_id).index(partition)


def parse_index_key_id(key_id: str, service_name: str, product_id: str) -> tuple[bool, str | None]:
    """``(True, None)`` for this service's global key id, ``(True, partition)`` for a
    partition's, ``(False, None)`` for any other id."""
    parsed = KeyIds(service_name, product_id).parse(key_id)
    if parsed.kind is not KeyKind.INDEX or not parsed.ours:
        return False, None
    return True, parsed.partition


def version_tag(created: int) -> str:
    """``created`` in base 36: the prefix that names a version in index values."""
    if created < 0:
        raise ValueError("a key's created time cannot be negative")
    digits = []
    while True:
        created, digit = divmod(created, 36)
        digits.append(_DIGITS[digit])
        if not created:
            return "".join(reversed(digits))


class KeyVersion:
    """One version of a blind index key, unwrapped. Never shows or pickles its bytes."""

    __slots__ = ("_derived", "_secret", "created", "retired", "tag")

    def __init__(self, created: int, secret: bytes | bytearray, *, retired: bool = False) -> None:
        if len(secret) != KEY_SIZE:
            raise ValueError(f"blind index keys are {KEY_SIZE} bytes, got {len(secret)}")
        self.created = created
        self.retired = retired
        self.tag = version_tag(created)
        self._secret: bytearray | None = bytearray(secret)
        self._derived: dict[str, bytes] = {}

    def field_key(self, context: str) -> bytes:
        """The key of one field: ``HMAC-SHA256(key, label + context)`` (cached)."""
        derived = self._derived.get(context)
        if derived is None:
            secret = self._secret
            if secret is None:
                raise RuntimeError("this blind index key was wiped (its factory closed)")
            derived = hmac.digest(secret, DERIVATION_LABEL + context.encode("utf-8"), "sha256")
            self._derived[context] = derived
        return derived

    def index_value(self, context: str, profile: str, data: bytes, size: int) -> str:
        """``{tag}.{profile}:{hex of the first size bytes of HMAC-SHA256(field key, data)}``."""
        digest = hmac.digest(self.field_key(context), data, "sha256")
        return f"{self.tag}.{profile}:{digest[:size].hex()}"

    def prefix(self, profile: str) -> str:
        """What every index value of this version and profile starts with."""
        return f"{self.tag}.{profile}:"

    def wipe(self) -> None:
        secret = self._secret
        if secret is not None:
            for index in range(len(secret)):
                secret[index] = 0
        self._secret = None
        self._derived.clear()

    def __repr__(self) -> str:
        state = "retired" if self.retired else "active"
        return f"<KeyVersion created={self.created} tag={self.tag} {state}>"

    def __reduce__(self) -> None:  # type: ignore[override]
        raise TypeError("KeyVersion holds key material and cannot be pickled")


class KeyRing:
    """The versions of one blind index key id, oldest first, as loaded at ``loaded_at``."""

    __slots__ = ("key_id", "loaded_at", "provisional", "versions")

    def __init__(
        self, key_id: str, versions: Sequence[KeyVersion], loaded_at: float, provisional: bool
    ) -> None:
        self.key_id = key_id
        self.versions = tuple(sorted(versions, key=lambda v: v.created))
        self.loaded_at = loaded_at
        self.provisional = provisional

    def write_version(self, now: float) -> KeyVersion | None:
        """The newest version neither retired nor in the future."""
        for version in reversed(self.versions):
            if not version.retired and version.created <= now:
                return version
        return None

    def lookup_versions(self) -> tuple[KeyVersion, ...]:
        """Every version not retired (index values may be under any of them)."""
        return tuple(v for v in self.versions if not v.retired)

    def pending(self, now: float) -> tuple[KeyVersion, ...]:
        """Versions not active yet (a rotation waiting for every process to know them)."""
        return tuple(v for v in self.versions if not v.retired and v.created > now)

    def __repr__(self) -> str:
        return f"<KeyRing {self.key_id} {list(self.versions)!r}>"


class IndexKeys:
    """The blind index keys of one SessionFactory: loading, creation, rotation, caching."""

    def __init__(self, factory: SessionFactory) -> None:
        self._factory = weakref.ref(factory)
        self._rings: OrderedDict[str, KeyRing] = OrderedDict()
        self._lock = threading.RLock()
        self._max_rings = max(factory.policy.intermediate_key_cache_size, _MIN_RINGS)

    @property
    def factory(self) -> SessionFactory:
        factory = self._factory()
        if factory is None:
            raise RuntimeError("the SessionFactory of these blind index keys is gone")
        return factory

    def key_id(self, partition: str | None) -> str:
        return self.factory.ids.index(partition)

    # -- what the fields use ---------------------------------------------------------------

    def write_version(self, key_id: str) -> KeyVersion:
        """The version new index values use (the first one is created on first use)."""
        factory = self.factory
        now = factory.clock()
        ring = self.ring(key_id)
        version = ring.write_version(now) if ring is not None else None
        if version is not None:
            return version
        with self._lock:
            ring = self._reload(key_id)
            version = ring.write_version(now) if ring is not None else None
            if version is not None:
                return version
            for _ in range(_CREATE_ATTEMPTS):
                self._create(key_id, self._new_created(ring, now))
                ring = self._reload(key_id)
                version = ring.write_version(now) if ring is not None else None
                if version is not None:
                    return version
        raise KeyCreationError(f"failed to create or load blind index key {key_id!r}")

    def lookup_versions(self, key_id: str) -> tuple[KeyVersion, ...]:
        """The versions a lookup compares against; empty when the key does not exist yet
        (then no stored value can match). Never creates a key."""
        ring = self.ring(key_id)
        return ring.lookup_versions() if ring is not None else ()

    def ring(self, key_id: str) -> KeyRing | None:
        """The cached ring of ``key_id``, reloaded when older than ``CHECK_INTERVAL``."""
        ring = self._rings.get(key_id)
        if ring is not None and not ring.provisional:
            factory = self.factory
            if factory.clock() - ring.loaded_at <= factory.policy.check_interval:
                return ring
        with self._lock:
            return self._reload(key_id)

    # -- administration -------------------------------------------------------------------

    def rotate(self, key_id: str, activate_at: int) -> tuple[int, bool] | None:
        """Store a new version of ``key_id`` that becomes the write version at
        ``activate_at`` (epoch seconds). Returns ``(created, new)``: ``new`` is False when
        a version was already pending (it is kept). None when the key does not exist
        (nothing uses it: its first version will be created on first use)."""
        with self._lock:
            ring = self._reload(key_id)
            if ring is None:
                return None
            now = self.factory.clock()
            pending = ring.pending(now)
            if pending:
                return pending[-1].created, False
            created = max(int(activate_at), ring.versions[-1].created + 1)
            self._create(key_id, created)
            self._reload(key_id)
            return created, True

    def retire(self, key_id: str, created: int) -> bool:
        """Mark a version retired (``"Revoked":true``); False if it is not stored."""
        done = self.factory.key_store.revoke(key_id, created)
        self.forget(key_id)
        if done:
            logger.info("asherah_django: retired blind index key %s created %s", key_id, created)
        return done

    def forget(self, key_id: str | None = None) -> None:
        """Drop cached rings (one id, or all) so that the next use reloads them."""
        with self._lock:
            if key_id is None:
                self._rings.clear()
            else:
                self._rings.pop(key_id, None)

    def after_fork_in_child(self) -> None:
        """A lock a parent thread held at the fork would never be released in the child."""
        self._lock = threading.RLock()

    def close(self) -> None:
        """Wipe every cached key version."""
        with self._lock:
            rings, self._rings = list(self._rings.values()), OrderedDict()
        for ring in rings:
            for version in ring.versions:
                version.wipe()

    # -- loading and creating ----------------------------------------------------------------

    def _reload(self, key_id: str) -> KeyRing | None:
        factory = self.factory
        now = factory.clock()
        try:
            stored = factory.load_versions(key_id)
        except MetastoreError as exc:
            raise MetastoreError(
                f"loading blind index key {key_id!r} failed: {exc}", hint=exc.hint
            ) from exc
        versions = [self._unwrap(meta.key_id, meta.created, r) for meta, r in stored.items()]
        if not versions:
            self._rings.pop(key_id, None)
            return None
        # A version stored inside a caller's SQLite transaction may still roll back: until
        # it commits, the ring is reloaded on every use.
        provisional = any(factory.key_store.is_uncommitted(*meta) for meta in stored)
        ring = KeyRing(key_id, versions, now, provisional)
        self._rings[key_id] = ring
        self._rings.move_to_end(key_id)
        while len(self._rings) > self._max_rings:  # (no wipe: a caller may still use it)
            self._rings.popitem(last=False)
        return ring

    def _unwrap(self, key_id: str, created: int, record: EnvelopeKeyRecord) -> KeyVersion:
        """Unwrap one version after the checks every key row gets (issue #13): the parent
        must be this service's system key (KeyParentMismatchError) and, with
        KEY_INTEGRITY, the row's tag must verify (KeyIntegrityError)."""
        secret = self.factory.open_child_key(key_id, created, record)
        try:
            return KeyVersion(record.created, secret, retired=record.revoked)
        except ValueError:
            raise DecryptionError(f"blind index key {key_id!r} is not 32 bytes") from None
        finally:
            for index in range(len(secret)):
                secret[index] = 0

    def _new_created(self, ring: KeyRing | None, now: float) -> int:
        created = self.factory.policy.truncate(now)
        taken = {v.created for v in ring.versions} if ring is not None else set()
        for candidate in (created, int(now)):
            if candidate not in taken:
                return candidate
        raise KeyCreationError("a blind index key version was created this very second")

    def _create(self, key_id: str, created: int) -> bool:
        """Store a new version under ``(key_id, created)``; False if that row exists."""
        if not self.factory.store_child_key(key_id, created):
            return False
        logger.info("asherah_django: created blind index key %s created %s", key_id, created)
        return True


_registry: weakref.WeakKeyDictionary[SessionFactory, IndexKeys] = weakref.WeakKeyDictionary()
_registry_lock = threading.Lock()


def index_keys(factory: SessionFactory) -> IndexKeys:
    """The blind index keys of ``factory`` (one registry per factory)."""
    keys = _registry.get(factory)
    if keys is not None:
        return keys
    with _registry_lock:
        keys = _registry.get(factory)
        if keys is None:
            for other, old in list(_registry.items()):
                if other.closed:  # its factory was closed: wipe its keys now
                    old.close()
                    del _registry[other]
            keys = _registry[factory] = IndexKeys(factory)
        return keys


@after_fork_in_child
def _after_fork_in_child() -> None:
    global _registry_lock
    _registry_lock = threading.Lock()
    for keys in list(_registry.values()):
        keys.after_fork_in_child()
