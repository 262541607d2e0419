"""One racer for test_race.py: ``python -m tests.unit.metastore.race_worker DB_NAME SERVICE PARTITION``.

It sets up Django on the test database, opens its key connection, prints ``ready`` and
waits for a line on stdin (the barrier); then it makes its first encrypts for PARTITION
and prints ``{"records": [...], "errors": [...], "lost": [key ids]}`` as one JSON line
(``lost``: inserts that found the key already there, i.e. races this process lost).
"""

from __future__ import annotations

import json
import os
import sys
import traceback


def main() -> int:
    db_name, service, partition = sys.argv[1:4]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django
    from django.conf import settings

    settings.DATABASES["default"]["NAME"] = db_name
    settings.ASHERAH = {**settings.ASHERAH, "SERVICE_NAME": service}
    django.setup()
    from asherah_django.core import EnvelopeKeyRecord
    from asherah_django.runtime import get_session_factory, reset_session_factory

    factory = get_session_factory()
    metastore = factory.metastore
    metastore.load_latest("_SK_warm_up")  # connect before the barrier
    store, lost = metastore.store, []

    def counting_store(key_id: str, created: int, record: EnvelopeKeyRecord) -> bool:
        inserted = store(key_id, created, record)
        if not inserted:
            lost.append(key_id)
        return inserted

    metastore.store = counting_store  # type: ignore[method-assign]
    print("ready", flush=True)
    sys.stdin.readline()
    result: dict[str, list[str]] = {"records": [], "errors": [], "lost": lost}
    try:
        session = factory.get_session(partition)
        for index in range(3):
            result["records"].append(session.encrypt(f"{os.getpid()}:{index}".encode()))
    except Exception:
        result["errors"].append(traceback.format_exc())
    finally:
        reset_session_factory()
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
