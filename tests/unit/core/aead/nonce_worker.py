"""Run as ``python -m tests.unit.core.aead.nonce_worker COUNT``: print the AES-GCM nonces one process
(and two children forked from it after its keys are warm, as gunicorn --preload does)
puts into new records and keys. One JSON line per process: {kind: [hex nonce, ...]}.

Used by tests/unit/core/aead/test_nonces.py; it imports no Django and no test framework.
"""

from __future__ import annotations

import json
import os
import sys

from asherah_django.core import InMemoryMetastore, Session, SessionFactory, StaticKMS
from asherah_django.core import session as session_module
from asherah_django.core.kms.static import TEST_MASTER_KEY_HEX
from asherah_django.core.records import parse_data_row

NONCE = 12


def nonces(factory: SessionFactory, metastore: InMemoryMetastore, count: int, tag: str) -> dict:
    session = factory.get_session("warm")
    paths = [Session._encrypt_py]
    if session_module.SPEEDUPS:
        paths.append(Session._encrypt_c)
    out: dict[str, list[str]] = {"drk": [], "data": [], "ik": [], "sk": []}
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
