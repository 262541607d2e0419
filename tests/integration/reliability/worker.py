"""A worker process of the reliability tests: ``python -m tests.integration.reliability.worker``.

Its job comes in ``$ASHERAH_REL_WORKER`` (JSON): ``db_name`` (the test database),
``asherah`` (the ASHERAH settings), ``mode`` and the mode's parameters. It sets up Django
on the test database (``DATABASE_URL`` names the server), prints ``ready``, waits for a
line on stdin (the barrier), does its job and prints one JSON line with its figures.

Modes:

* ``load``: warm-up over ``partitions`` then ``ops`` mixed operations (``mix.run_mix``),
  in two halves, measuring memory (tracemalloc and RSS) after the warm-up and after each
  half; reports operations, errors, metastore queries and Vault calls.
* ``kill-after-key-store``: inside one transaction, writes rows of ``partition`` (an
  existing key) and then the first row of ``new_partition``; when the new intermediate
  key has been stored (committed on the key connection, or inside the transaction on
  SQLite) it prints ``stored <key id>`` and waits: the test SIGKILLs it there, before
  the transaction commits.
* ``write-loop``: commits rows of ``partitions`` one by one, printing ``wrote <pk>`` after
  each commit, until killed.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
import tracemalloc
from typing import Any


def main() -> int:
    job: dict[str, Any] = json.loads(os.environ["ASHERAH_REL_WORKER"])
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django
    from django.conf import settings

    settings.DATABASES["default"]["NAME"] = job["db_name"]
    settings.ASHERAH = job["asherah"]
    django.setup()
    from asherah_django.runtime import get_session_factory, reset_session_factory

    factory = get_session_factory()
    factory.metastore.load_latest("_SK_connect_before_the_barrier")  # type: ignore[attr-defined]
    print("ready", flush=True)
    sys.stdin.readline()
    try:
        result = MODES[job["mode"]](job)
    finally:
        reset_session_factory()
    print(json.dumps(result), flush=True)
    return 0


def load(job: dict[str, Any]) -> dict[str, Any]:
    from django.db import connections

    from asherah_django.runtime import get_session_factory

    from .mix import MixResult, run_mix, warm_up

    trace = job.get("tracemalloc", True)
    if trace:
        tracemalloc.start()
    factory = get_session_factory()
    partitions, ops, name = job["partitions"], job["ops"], job["name"]
    started = time.monotonic()
    warm_up(partitions)
    memory = [_memory(trace)]
    result = MixResult()
    for half in (0, 1):
        part = run_mix(f"{name}h{half}", ops // 2, partitions, seed=job["seed"] + half)
        result.merge(part)
        memory.append(_memory(trace))
    elapsed = time.monotonic() - started
    stats = factory.kms.stats  # type: ignore[attr-defined]
    figures = {
        **result.as_dict(),
        "seconds": elapsed,
        "metastore_queries": factory.metastore.queries,  # type: ignore[attr-defined]
        "vault": {
            "encrypt": stats.encrypt,
            "decrypt": stats.decrypt,
            "logins": stats.logins,
            "other": stats.other,
            "retries": stats.retries,
        },
        "memory": memory,
        "caches": {
            "intermediate_keys": len(factory._keys.intermediate_keys),
            "system_keys": len(factory._keys.system_keys),
            "sessions": len(factory._sessions),
        },
    }
    connections.close_all()
    return figures


def _memory(trace: bool) -> dict[str, int]:
    gc.collect()
    from .mix import rss_kib

    traced = tracemalloc.get_traced_memory()[0] // 1024 if trace else -1
    return {"traced_kib": traced, "rss_kib": rss_kib()}


def kill_after_key_store(job: dict[str, Any]) -> dict[str, Any]:
    from django.db import transaction

    from asherah_django.runtime import get_session_factory
    from tests.testapp.models import TenantNote

    from .mix import plaintext

    factory = get_session_factory()
    metastore: Any = factory.metastore
    store = metastore.store
    new_ik = factory.intermediate_key_id(job["new_partition"])

    def store_then_wait(key_id: str, created: int, record: Any) -> bool:
        inserted: bool = store(key_id, created, record)
        if key_id == new_ik:
            print(f"stored {key_id}", flush=True)
            time.sleep(60)  # SIGKILLed here, before the transaction commits
        return inserted

    metastore.store = store_then_wait
    with transaction.atomic():
        for index in range(3):
            title = f"uncommitted-{index}"
            TenantNote.objects.create(
                tenant_id=job["partition"], title=title, body=plaintext(job["partition"], title)
            )
        title = "uncommitted-new"
        TenantNote.objects.create(
            tenant_id=job["new_partition"], title=title, body=plaintext(job["new_partition"], title)
        )
    return {"error": "not killed"}


def write_loop(job: dict[str, Any]) -> dict[str, Any]:
    from tests.testapp.models import TenantNote

    from .mix import plaintext

    partitions = job["partitions"]
    index = 0
    while True:
        partition = partitions[index % len(partitions)]
        title = f"loop-{index}"
        note = TenantNote.objects.create(
            tenant_id=partition, title=title, body=plaintext(partition, title)
        )
        print(f"wrote {note.pk}", flush=True)
        index += 1


MODES = {"load": load, "kill-after-key-store": kill_after_key_store, "write-loop": write_loop}

if __name__ == "__main__":
    sys.exit(main())
