"""One application node of the many-nodes test (started with the spawn method).

Its own SessionFactory (own caches) over a SQLite metastore file shared by every node and
the same master key. First it races the other nodes to the first write of ``race`` (at
``go``), then until ``stop`` encrypts in ``watched`` every 20 ms, reporting each time the
intermediate key its records are written under changes.
"""

from __future__ import annotations

import json
import time
from typing import Any

from asherah_django.core import CryptoPolicy, SessionFactory, StaticKMS
from tests.support.sqlite_metastore import SqliteMetastore


def parent_created(record: str) -> int:
    created: int = json.loads(record)["Key"]["ParentKeyMeta"]["Created"]
    return created


def run(db: str, master_hex: str, check_interval: int, go: Any, stop: Any, out: Any) -> None:
    policy = CryptoPolicy(check_interval=check_interval)
    metastore = SqliteMetastore(db)
    factory = SessionFactory(
        "service", "product", StaticKMS.from_hex(master_hex), metastore, policy
    )
    watched = factory.get_session("watched")
    current = parent_created(watched.encrypt(b"warm"))
    out.put(("ready", current))
    go.wait(120)
    race = factory.get_session("race")
    race_record = race.encrypt(b"first")
    out.put(("race", parent_created(race_record)))
    while not stop.is_set():
        record = watched.encrypt(b"value")
        created = parent_created(record)
        if created != current:
            current = created
            out.put(("switched", (time.time(), created)))
        if watched.decrypt(record) != b"value":
            out.put(("error", "wrong plaintext"))
        time.sleep(0.02)
    out.put(("done", None))
    factory.close()
    metastore.close()
