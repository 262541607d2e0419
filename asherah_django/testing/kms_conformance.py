"""A conformance kit for KeyManagementService implementations (yours, or ours).

``KMS="dotted.path.ToClass"`` loads your own KMS; run this against it in your suite::

    from asherah_django.testing.kms_conformance import KMSConformance

    class TestMyKMS(KMSConformance):
        def make_kms(self):
            return MyKMS()

or call :func:`check_kms` (it raises ``AssertionError`` naming the broken rule). Rules:

1. ``encrypt_key(key)`` returns ``bytes`` that are not the key and do not contain it;
2. ``decrypt_key`` of that returns the same 32 bytes, for many random keys;
3. wrapping the same key twice gives different bytes (fresh nonces / data keys);
4. a second instance built the same way decrypts what the first wrapped (other processes
   and restarts must read the metastore);
5. tampered, truncated or foreign bytes raise ``KMSError`` (an ``AsherahError``) and never
   another exception; they never return a wrong key (a redundant format such as AWS's
   kek per region may still return the right one);
6. the KMS is usable from several threads at once;
7. ``close()``, if present, can be called twice.

It works with the engine as a whole too: a SessionFactory over the KMS round-trips values.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from ..core.errors import KMSError
from ..core.metastore.memory import InMemoryMetastore
from ..core.protocols import KeyManagementService, close_kms
from ..core.session import SessionFactory

__all__ = ["KMSConformance", "check_kms"]


def check_kms(make_kms: Callable[[], KeyManagementService], *, rounds: int = 8) -> None:
    """Check the rules of the module docs; ``make_kms`` builds a fresh, equivalent KMS."""
    kms = make_kms()
    other = make_kms()
    try:
        _check(kms, other, rounds)
    finally:
        for k in (kms, other):
            close_kms(k)
            close_kms(k)  # rule 7: idempotent


def _check(kms: KeyManagementService, other: KeyManagementService, rounds: int) -> None:
    assert isinstance(kms, KeyManagementService), "encrypt_key/decrypt_key are missing"
    for _ in range(rounds):
        key = os.urandom(32)
        wrapped = kms.encrypt_key(key)
        assert isinstance(wrapped, bytes), f"encrypt_key returned {type(wrapped).__name__}"
        assert key not in wrapped, "encrypt_key returned bytes containing the key"
        assert kms.decrypt_key(wrapped) == key, "decrypt_key(encrypt_key(k)) != k"
        assert other.decrypt_key(wrapped) == key, "a second instance cannot decrypt"
    key = os.urandom(32)
    assert kms.encrypt_key(key) != kms.encrypt_key(key), "wrapping is deterministic"
    wrapped = kms.encrypt_key(key)
    for bad in _corruptions(wrapped):
        try:
            result = kms.decrypt_key(bad)
        except KMSError:
            continue
        except Exception as exc:
            raise AssertionError(
                f"decrypt_key of corrupted bytes raised {type(exc).__name__}, not KMSError"
            ) from exc
        # A redundant format (a kek per region) may still open with an intact part.
        assert result == key, "decrypt_key returned a wrong key for corrupted bytes"
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(3):
                k = os.urandom(32)
                assert kms.decrypt_key(kms.encrypt_key(k)) == k
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, f"concurrent use failed: {errors[0]!r}"
    with SessionFactory("conformance", "kit", kms, InMemoryMetastore()) as factory:
        record = factory.get_session("p").encrypt(b"conformance")
        assert factory.get_session("p").decrypt(record) == b"conformance"


def _corruptions(wrapped: bytes) -> list[bytes]:
    middle = len(wrapped) // 2
    flipped = bytearray(wrapped)
    flipped[middle] ^= 0x01
    last = bytearray(wrapped)
    last[-2] ^= 0x01
    return [bytes(flipped), bytes(last), wrapped[:middle], b"", b"\x00" * 60, b"not a key"]


class KMSConformance:
    """Subclass in a pytest module and implement :meth:`make_kms`."""

    def make_kms(self) -> Any:
        raise NotImplementedError("return a fresh KMS instance")

    def test_kms_conformance(self) -> None:
        check_kms(self.make_kms)
