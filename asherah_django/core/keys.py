"""Keys held in memory: the unwrapped system and intermediate keys.

A :class:`CryptoKey` keeps its secret in a ``bytearray`` so it can be overwritten when
the key is evicted or its factory closes (best effort: the AES key schedule inside
``cryptography`` and transient ``bytes`` copies cannot be wiped from Python). It
never shows its bytes in ``repr()``.
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .aead import NONCE_SIZE, TAG_SIZE, check_key
from .errors import DecryptionError
from .records import KeyMeta

#: Called with a key's bytes when the key is wiped. session.py sets it to the C extension's
#: ``forget_key`` when it uses that extension, so the key schedule cached there goes too.
wipe_hook: Callable[[bytes], object] | None = None


class CryptoKey:
    """An unwrapped key with the state Asherah tracks for it."""

    __slots__ = (
        "_secret",
        "aead",
        "checked_at",
        "meta",
        "meta_json",
        "parent",
        "referenced",
        "revoked",
        "secret_bytes",
        "use_until",
    )

    def __init__(
        self,
        meta: KeyMeta,
        secret: bytes | bytearray,
        *,
        parent: KeyMeta | None = None,
        revoked: bool = False,
        checked_at: float = 0.0,
    ) -> None:
        check_key(secret)
        self.meta = meta
        self.parent = parent
        self.revoked = revoked
        #: When the metastore last confirmed this key's revoked flag (epoch seconds).
        self.checked_at = checked_at
        #: Until when encrypt may use this key without asking the metastore again.
        self.use_until = 0.0
        #: Set on each cache hit; the cache's CLOCK eviction spares referenced keys once.
        self.referenced = True
        self._secret = bytearray(secret)
        #: The key as immutable bytes for the C fast path while the key is usable; None once
        #: wiped, so a late user fails loudly instead of using zeros. (The same object is
        #: the one ``aead`` holds, so it adds no copy of the key.)
        self.secret_bytes: bytes | None = bytes(self._secret)
        self.aead = AESGCM(self.secret_bytes)
        #: Pre-rendered ``{"KeyId":...,"Created":...}``: the DataRowRecord's ParentKeyMeta.
        self.meta_json = meta.to_json()

    @property
    def created(self) -> int:
        return self.meta.created

    @property
    def key_id(self) -> str:
        return self.meta.key_id

    @property
    def usable(self) -> bool:
        """False once the key was wiped (evicted from its cache or its factory closed)."""
        return self.aead is not _WIPED

    def wrap(self, key: bytes | bytearray, nonce: bytes) -> bytes:
        """Encrypt another key under this key in Asherah's blob layout."""
        return self.aead.encrypt(nonce, bytes(key), None) + nonce

    def unwrap(self, blob: bytes) -> bytes:
        """Decrypt a blob made by :meth:`wrap`; :class:`DecryptionError` if it fails."""
        if len(blob) < TAG_SIZE + NONCE_SIZE:
            raise DecryptionError(f"encrypted key is {len(blob)} bytes, too short")
        try:
            return self.aead.decrypt(blob[-NONCE_SIZE:], blob[:-NONCE_SIZE], None)
        except InvalidTag:
            raise DecryptionError("authentication failed: wrong key or modified record") from None

    def wipe(self) -> None:
        """Overwrite the secret bytes and drop the cipher; the key is unusable afterwards."""
        secret, self.secret_bytes = self.secret_bytes, None
        for index in range(len(self._secret)):
            self._secret[index] = 0
        self.aead = _WIPED
        self.use_until = 0.0
        hook = wipe_hook
        if secret is not None and hook is not None:
            hook(secret)

    def __repr__(self) -> str:
        state = "revoked" if self.revoked else "active"
        return f"<CryptoKey {self.meta.key_id} created={self.meta.created} {state}>"

    def __reduce__(self) -> None:  # type: ignore[override]
        raise TypeError("CryptoKey holds key material and cannot be pickled")


class _WipedAead:
    """Stands in for the cipher of a wiped key so late users fail loudly, not silently."""

    def encrypt(self, nonce: bytes, data: bytes, aad: None) -> bytes:
        raise RuntimeError("this key was wiped (evicted or its factory closed)")

    decrypt = encrypt


_WIPED: AESGCM = _WipedAead()  # type: ignore[assignment]
