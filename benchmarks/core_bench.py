"""Encrypt and decrypt of one value, side by side in one process, at 64 B, 1 KiB and 64 KiB.

Contenders, all with warm caches (in-memory metastores, a static master key):

- asherah_django's Session, with the C accelerator and on the pure-Python reference path;
- the ``asherah`` wheel (Asherah's Rust core through PyO3);
- Fernet used the way django-fernet-encrypted-fields uses it (a PBKDF2-derived key,
  ``encrypt(bytes).decode()`` and ``decrypt(str.encode())``);
- raw AES-256-GCM of the payload under one pre-made key (``cryptography``'s AESGCM, no
  data key, no wrapping, no base64, no JSON): the physical floor of a single seal.

    python benchmarks/core_bench.py [--payloads 64,1024,65536] [--rounds 7] [--scale 1.0]
                                    [--json PATH]

Rounds are interleaved (every contender once per round), so machine noise hits everyone
alike; each figure is the best round. Targets (issue 21) apply to the accelerator, the path
users run: at 64 B at most 1.0x the wheel both ways, and at least 2x faster than Fernet
(ratio <= 0.5) at every size. The pure-Python reference path is reported without targets.
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
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from asherah_django.core import InMemoryMetastore, Session, SessionFactory, StaticKMS
from asherah_django.core import session as session_module
from asherah_django.core.kms.static import TEST_MASTER_KEY_HEX
from benchmarks.figures import Figure, add_json_argument, emit, header

Op = Callable[[], object]
Ops = tuple[Op, Op]


def ours(payload: bytes, *, pure: bool) -> Ops:
    factory = SessionFactory(
        "bench", "bench", StaticKMS.from_hex(TEST_MASTER_KEY_HEX), InMemoryMetastore()
    )
    session = factory.get_session("partition")
    if pure:
        encrypt, decrypt = Session._encrypt_py, Session._decrypt_py
        record = encrypt(session, payload)
        assert decrypt(session, record) == payload
        return (lambda: encrypt(session, payload)), (lambda: decrypt(session, record))
    record = session.encrypt(payload)
    assert session.decrypt(record) == payload
    return (lambda: session.encrypt(payload)), (lambda: session.decrypt(record))


def wheel(payload: bytes) -> Ops:
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


def fernet(payload: bytes) -> Ops:
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


def raw_aes_gcm(payload: bytes) -> Ops:
    cipher, nonce = AESGCM(os.urandom(32)), os.urandom(12)
    sealed = cipher.encrypt(nonce, payload, None)
    return (lambda: cipher.encrypt(nonce, payload, None)), (
        lambda: cipher.decrypt(nonce, sealed, None)
    )


def best_us(op: Op, number: int) -> float:
    return min(timeit.repeat(op, number=number, repeat=1)) / number * 1e6


def measure(size: int, rounds: int, scale: float) -> dict[str, list[float]]:
    payload = os.urandom(size)
    contenders: dict[str, Ops] = {}
    if session_module.SPEEDUPS:
        contenders["asherah_django (C)"] = ours(payload, pure=False)
    contenders["asherah_django (pure Python)"] = ours(payload, pure=True)
    contenders["asherah wheel"] = wheel(payload)
    contenders["Fernet"] = fernet(payload)
    contenders["raw AES-256-GCM"] = raw_aes_gcm(payload)
    number = max(50, int(20000 * scale * min(1.0, 256 / size)))
    results = {name: [float("inf"), float("inf")] for name in contenders}
    for _ in range(rounds):  # interleaved, so machine noise hits everyone alike
        for name, ops in contenders.items():
            for index, op in enumerate(ops):
                results[name][index] = min(results[name][index], best_us(op, number))
    print(f"\npayload {size} bytes; best of {rounds} rounds x {number} ops (us per operation)")
    print(f"{'':30}{'encrypt':>10}{'decrypt':>10}")
    for name, (enc, dec) in results.items():
        print(f"{name:30}{enc:10.2f}{dec:10.2f}")
    return results


def figures(size: int, results: dict[str, list[float]]) -> list[Figure]:
    label = f"{size} B" if size < 1024 else f"{size // 1024} KiB"
    ours_name = "asherah_django (C)" if "asherah_django (C)" in results else None
    out = []
    for index, op in enumerate(("encrypt", "decrypt")):
        for name in filter(None, (ours_name, "asherah_django (pure Python)")):
            mine = results[name][index]
            path = "C" if name == ours_name else "pure"
            # Targets apply to what users run (the accelerator); the pure path is reported.
            wheel_target = 1.0 if size == 64 and name == ours_name else None
            fernet_target = 0.5 if name == ours_name else None
            out += [
                Figure(f"{op} {label} ({path})", mine, "asherah wheel",
                       results["asherah wheel"][index], "us/op", wheel_target),
                Figure(f"{op} {label} ({path})", mine, "Fernet",
                       results["Fernet"][index], "us/op", fernet_target),
            ]  # fmt: skip
        if ours_name:
            out.append(
                Figure(f"{op} {label} (C)", results[ours_name][index], "raw AES-256-GCM",
                       results["raw AES-256-GCM"][index], "us/op")
            )  # fmt: skip
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--payloads", default="64,1024,65536", help="sizes in bytes")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--scale", type=float, default=1.0, help="operations per round, x")
    add_json_argument(parser)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the static KMS warns, rightly; not here
    results = []
    for size in (int(part) for part in args.payloads.split(",")):
        results += figures(size, measure(size, args.rounds, args.scale))
    print()
    print(header())
    emit(results, args.json)
    missed = [figure for figure in results if figure.met is False]
    print("targets met" if not missed else f"targets NOT met: {len(missed)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
