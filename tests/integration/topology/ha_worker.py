"""One application process of the Vault HA test (started with the spawn method).

From ``go`` until ``stop`` (events) it alternates cold Transit calls (wrap + unwrap of a new
key, straight through the KMS) and encrypt/decrypt in a partition whose keys are cached,
records every failure with its time and type, then decrypts everything it wrote.
"""

from __future__ import annotations

import os
import time
from typing import Any

from asherah_django.core import InMemoryMetastore, SessionFactory
from asherah_django.core.errors import AsherahError
from asherah_django.core.kms.vault import VaultTransitKMS


def run(settings: dict[str, object], go: Any, stop: Any, out: Any) -> None:
    kms = VaultTransitKMS.from_mapping(settings)
    factory = SessionFactory("service", "product", kms, InMemoryMetastore())
    hot = factory.get_session("hot")
    written_hot = [(b"warm", hot.encrypt(b"warm"))]
    written_cold: list[tuple[bytes, bytes]] = []
    cold: list[tuple[float, float, str]] = []  # (end time, seconds, "" or the error type)
    cached_errors: list[str] = []
    out.put(("ready", os.getpid()))
    go.wait(120)
    n = 0
    while not stop.is_set():
        n += 1
        key = os.urandom(32)
        began = time.time()
        try:
            blob = kms.encrypt_key(key)
            written_cold.append((key, blob))
            outcome = "" if kms.decrypt_key(blob) == key else "wrong-plaintext"
        except AsherahError as exc:
            outcome = type(exc).__name__
        except Exception as exc:  # an untyped error is a defect: reported, not hidden
            outcome = f"UNTYPED {type(exc).__name__}"
        cold.append((time.time(), time.time() - began, outcome))
        try:
            value = f"value {n}".encode()
            record = hot.encrypt(value)
            written_hot.append((value, record))
            if hot.decrypt(record) != value:
                cached_errors.append("wrong-plaintext")
        except Exception as exc:
            cached_errors.append(type(exc).__name__)
        time.sleep(0.02)
    lost = 0
    for key, blob in written_cold:
        try:
            lost += kms.decrypt_key(blob) != key
        except Exception:
            lost += 1
    for value, record in written_hot:
        try:
            lost += hot.decrypt(record) != value
        except Exception:
            lost += 1
    factory.close()
    out.put((
        "done",
        {"cold": cold, "cached_errors": cached_errors, "lost": lost,
         "written": len(written_cold) + len(written_hot)},
    ))  # fmt: skip
