"""No AES-GCM nonce is ever used twice: a repeated nonce under one key reveals the XOR of
two plaintexts and lets an attacker forge tags, and a round trip cannot notice it.

Every blob is ``ciphertext || tag || nonce`` (asherah-protocol.md), so the nonces are read
back from what was written: the data row key's wrap and the data's seal in each record
(on the pure-Python path and on the C accelerator's), the intermediate keys' wraps under
the system key and the system keys' wraps under the static KMS's master key, across many
records and across processes (two children forked from a warm parent, and a second,
independent process). The blind index keys' wraps: tests/unit/blind_index/test_keyring.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Callable

import pytest

from asherah_django.core import InMemoryMetastore, Session, SessionFactory, StaticKMS
from asherah_django.core import session as session_module
from asherah_django.core.aead import NONCE_SIZE, Cipher, new_key
from asherah_django.core.records import parse_data_row
from tests.support import optional
from tests.support.common import ROOT

Encrypt = Callable[[Session, bytes], str]


def encrypt_path(name: str) -> Encrypt:
    if name == "c":
        optional.c_path()  # fails when ASHERAH_DJANGO_REQUIRE_SPEEDUPS=1 and it is missing
        return Session._encrypt_c
    return Session._encrypt_py


def assert_distinct(nonces: list[bytes], what: str) -> None:
    assert all(len(n) == NONCE_SIZE for n in nonces), what
    repeated = [n.hex() for n, seen in Counter(nonces).items() if seen > 1]
    assert not repeated, f"{what}: {len(repeated)} nonce(s) used more than once"


@pytest.mark.parametrize("path", ["py", "c"])
def test_record_nonces_are_distinct_across_many_records(factory: SessionFactory, path: str) -> None:
    encrypt = encrypt_path(path)
    session = factory.get_session("p1")
    rows = [parse_data_row(encrypt(session, b"same plaintext")) for _ in range(500)]
    key_nonces = [row.encrypted_key[-NONCE_SIZE:] for row in rows]
    data_nonces = [row.data[-NONCE_SIZE:] for row in rows]
    assert len({row.parent for row in rows}) == 1  # all wrapped under the one IK
    assert_distinct(key_nonces, "data row key wraps under one intermediate key")
    assert_distinct(data_nonces, "data seals")
    assert_distinct(key_nonces + data_nonces, "nonces of one record's two blobs")
    # The same plaintext never gives the same ciphertext (a fresh data key each time).
    assert len({row.data[:-NONCE_SIZE] for row in rows}) == len(rows)
    assert len({row.encrypted_key[:-NONCE_SIZE] for row in rows}) == len(rows)


@pytest.mark.parametrize("path", ["py", "c"])
def test_the_two_paths_never_share_a_nonce(factory: SessionFactory, path: str) -> None:
    session = factory.get_session("p1")
    mine = [parse_data_row(encrypt_path(path)(session, b"x")) for _ in range(200)]
    other = [parse_data_row(encrypt_path("py" if path == "c" else "c")(session, b"x"))
             for _ in range(200)]  # fmt: skip
    nonces = [r.encrypted_key[-NONCE_SIZE:] for r in mine + other]
    assert_distinct(nonces, "data row key wraps by both paths under one intermediate key")


def test_intermediate_key_wrap_nonces_are_distinct(
    kms: StaticKMS, metastore: InMemoryMetastore
) -> None:
    with SessionFactory("service", "product", kms, metastore) as factory:
        for index in range(200):
            factory.get_session(f"p{index}").encrypt(b"x")
    wraps = [r.encrypted_key for k, _, r in metastore.items() if k.startswith("_IK_")]
    assert len(wraps) == 200
    assert_distinct([w[-NONCE_SIZE:] for w in wraps], "intermediate key wraps under one SK")


def test_system_key_wrap_nonces_are_distinct_under_the_static_master_key(
    kms: StaticKMS, metastore: InMemoryMetastore
) -> None:
    for index in range(100):
        with SessionFactory(f"svc{index}", "product", kms, metastore) as factory:
            factory.get_session("p").encrypt(b"x")
    wraps = [r.encrypted_key for k, _, r in metastore.items() if k.startswith("_SK_")]
    assert len(wraps) == 100
    assert_distinct([w[-NONCE_SIZE:] for w in wraps], "system key wraps under the master key")
    # The primitive itself: a default (random) nonce for every seal.
    cipher = Cipher(new_key())
    assert_distinct([cipher.seal(b"k")[-NONCE_SIZE:] for _ in range(300)], "Cipher.seal")


def test_nonces_are_distinct_across_processes() -> None:
    """Two independent processes, each forking two children once its keys are warm."""
    lines: list[dict[str, list[str]]] = []
    for _ in range(2):
        out = subprocess.run(
            [sys.executable, "-m", "tests.unit.core.aead.nonce_worker", "200"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        lines += [json.loads(line) for line in out.stdout.splitlines()]
    assert len(lines) == 6  # 2 parents and 4 forked children
    for kind, least in (("drk", 200), ("data", 200), ("ik", 50), ("sk", 50)):
        assert all(len(line[kind]) >= least for line in lines), kind
    pool_keys = [key for line in lines for key in line.pop("pool_keys", [])]
    everything = [bytes.fromhex(n) for line in lines for nonces in line.values() for n in nonces]
    assert len(everything) >= 6 * 500
    assert_distinct(everything, "nonces of records and keys made by six processes")
    if session_module.SPEEDUPS:  # the C accelerator's key pool is not shared across a fork
        assert len(pool_keys) == 6 * 200
        repeated = [k for k, seen in Counter(pool_keys).items() if seen > 1]
        assert not repeated, f"{len(repeated)} data row key(s) drawn by two processes"
