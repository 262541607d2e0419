"""Encrypt and decrypt of one 64-byte value, side by side in one process.

Compares asherah_django's Session with the ``asherah`` wheel (Asherah's Rust core
through PyO3) and with Fernet used the way django-fernet-encrypted-fields uses it
(a PBKDF2-derived key, ``encrypt(bytes).decode()`` and ``decrypt(str.encode())``).
All three run with warm caches: in-memory metastores and a static master key for
the two Asherah implementations.

    python benchmarks/core_bench.py [--payload 64] [--rounds 7] [--number 20000]

Targets (issue 2): ours within 3x of the wheel, and at least 2x faster than Fernet,
on both encrypt and decrypt. Prints microseconds per operation (best round) and ratios.
"""

from __future__ import annotations

import argparse
import base64
import logging
import os
import sys
import timeit
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from asherah_django.core import InMemoryMetastore, SessionFactory, StaticKMS
from asherah_django.core.kms.static import TEST_MASTER_KEY_HEX

Op = Callable[[], object]


def ours(payload: bytes) -> tuple[Op, Op]:
    factory = SessionFactory(
        "bench", "bench", StaticKMS.from_hex(TEST_MASTER_KEY_HEX), InMemoryMetastore()
    )
    session = factory.get_session("partition")
    record = session.encrypt(payload)
    assert session.decrypt(record) == payload
    return (lambda: session.encrypt(payload)), (lambda: session.decrypt(record))


def wheel(payload: bytes) -> tuple[Op, Op]:
    import asherah

    factory = asherah.SessionFactory(
        {
            "ServiceName": "bench",
            "ProductID": "bench",
            "Metastore": "memory",
            "KMS": "static",
            "StaticMasterKeyHex": TEST_MASTER_KEY_HEX,
        }
    )
    session = factory.get_session("partition")
    record = session.encrypt_bytes(payload)
    assert session.decrypt_bytes(record) == payload
    return (lambda: session.encrypt_bytes(payload)), (lambda: session.decrypt_bytes(record))


def fernet(payload: bytes) -> tuple[Op, Op]:
    kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=b"salt", iterations=100_000)
    f = Fernet(base64.urlsafe_b64encode(kdf.derive(b"django-secret-key")))
    text = payload.decode("latin-1")
    token = f.encrypt(payload).decode()
    assert f.decrypt(token.encode()) == payload

    def encrypt() -> str:
        return f.encrypt(bytes(text, "latin-1")).decode("utf-8")

    def decrypt() -> str:
        return f.decrypt(bytes(token, "utf-8")).decode("latin-1")

    return encrypt, decrypt


def best_us(op: Op, number: int) -> float:
    return min(timeit.repeat(op, number=number, repeat=1)) / number * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--payload", type=int, default=64, help="payload size in bytes")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--number", type=int, default=20000, help="operations per round")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the static KMS warns, rightly; not here
    payload = os.urandom(args.payload)
    contenders = {"asherah_django": ours(payload), "asherah wheel": wheel(payload)}
    contenders["Fernet"] = fernet(payload)
    results = {name: [float("inf"), float("inf")] for name in contenders}
    for _ in range(args.rounds):  # interleaved, so machine noise hits everyone alike
        for name, ops in contenders.items():
            for index, op in enumerate(ops):
                results[name][index] = min(results[name][index], best_us(op, args.number))

    print(f"payload {args.payload} bytes; best of {args.rounds} rounds x {args.number} ops")
    print(f"{'':16}{'encrypt us/op':>15}{'decrypt us/op':>15}")
    for name, (enc, dec) in results.items():
        print(f"{name:16}{enc:15.2f}{dec:15.2f}")
    ours_enc, ours_dec = results["asherah_django"]
    ok = True
    for other, limit, text in (("asherah wheel", 3.0, "<= 3.0x the wheel"),):
        enc_ratio = ours_enc / results[other][0]
        dec_ratio = ours_dec / results[other][1]
        ok &= enc_ratio <= limit and dec_ratio <= limit
        print(f"ours / wheel:   encrypt {enc_ratio:.2f}x, decrypt {dec_ratio:.2f}x (target {text})")
    enc_speedup = results["Fernet"][0] / ours_enc
    dec_speedup = results["Fernet"][1] / ours_dec
    ok &= enc_speedup >= 2.0 and dec_speedup >= 2.0
    print(
        f"Fernet / ours:  encrypt {enc_speedup:.2f}x, decrypt {dec_speedup:.2f}x "
        "(target >= 2.0x faster)"
    )
    print("targets met" if ok else "targets NOT met")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
