"""Run as ``python -m tests.unit.core.aead.nonce_worker COUNT``: print the AES-GCM nonces one process
(and two children forked from it after its keys are warm, as gunicorn --preload does)
puts into new records and keys. One JSON line per process: {kind: [hex nonce, ...]}, and,
with the C accelerator, "pool_keys": a SHA-256 fingerprint of each data row key its
encrypt_row drew (the accelerator draws keys and nonces from pools that a forked child
must not share with its parent; the parent fills them before forking).

Used by tests/unit/core/aead/test_nonces.py; it imports no Django and no test framework.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from asherah_django.core import InMemoryMetastore, Session, SessionFactory, StaticKMS
from asherah_django.core import session as session_module
from asherah_django.core.kms.static import TEST_MASTER_KEY_HEX
from asherah_django.core.records import parse_data_row

NONCE = 12
POOL_IK = bytes(range(32))  # a fixed intermediate key, to open the wrapped data row keys


def pool_key_fingerprints(count: int) -> list[str]:
    from asherah_django.core._speedups import b64decode, encrypt_row

    fingerprints = []
    for _ in range(count):
        wrapped = b64decode(encrypt_row(POOL_IK, b"x")[0])
        data_row_key = AESGCM(POOL_IK).decrypt(wrapped[-NONCE:], wrapped[:-NONCE], None)
        fingerprints.append(hashlib.sha256(data_row_key).hexdigest()[:32])
    return fingerprints


def nonces(factory: SessionFactory, metastore: InMemoryMetastore, count: int, tag: str) -> dict:
    session = factory.get_session("warm")
    paths = [Session._encrypt_py]
    if session_module.SPEEDUPS:
        paths.append(Session._encrypt_c)
    out: dict[str, list[str]] = {"drk": [], "data": [], "ik": [], "sk": []}
    if session_module.SPEEDUPS:  # first: what a child draws first is what it could share
        out["pool_keys"] = pool_key_fingerprints(count)
    for index in range(count):
        row = parse_data_row(paths[index % len(paths)](session, b"same plaintext"))
        out["drk"].append(row.encrypted_key[-NONCE:].hex())
        out["data"].append(row.data[-NONCE:].hex())
    for index in range(count // 4):  # new intermediate keys, and system keys (static KMS)
        factory.get_session(f"{tag}-p{index}").encrypt(b"x")
        with SessionFactory(f"{tag}svc{index}", "product", factory.kms, metastore) as other:
            other.get_session("p").encrypt(b"x")
    for key_id, _created, record in metastore.items():
        if tag not in key_id:  # made before the fork: the same key in every process
            continue
        kind = "ik" if key_id.startswith("_IK_") else "sk"
        out[kind].append(record.encrypted_key[-NONCE:].hex())
    return out


def main() -> None:
    count = int(sys.argv[1])
    metastore = InMemoryMetastore()
    factory = SessionFactory(
        "service", "product", StaticKMS.from_hex(TEST_MASTER_KEY_HEX), metastore
    )
    factory.get_session("warm").encrypt(b"warm the caches before forking")
    if session_module.SPEEDUPS:
        pool_key_fingerprints(1)  # the random pools now hold bytes a child must not reuse
    children = []
    for child in range(2):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: its own records, and keys added to its copy of the store
            os.close(read)
            with os.fdopen(write, "w") as pipe:
                pipe.write(json.dumps(nonces(factory, metastore, count, f"c{child}")))
            os._exit(0)
        os.close(write)
        children.append((pid, read))
    lines = [json.dumps(nonces(factory, metastore, count, "parent"))]
    for pid, read in children:
        with os.fdopen(read) as pipe:
            lines.append(pipe.read())
        _, status = os.waitpid(pid, 0)
        if status != 0:
            raise SystemExit(f"child {pid} failed with status {status}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
