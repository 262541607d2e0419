"""A long-running reader for test_shred_reach.py.

``python -m tests.integration.lifecycle.shred_worker SERVICE PARTITION CHECK_INTERVAL`` (the database
from DATABASE_URL) reads one DataRowRecord from stdin, decrypts it (its intermediate key is
now cached), prints ``ready <epoch>`` and keeps decrypting it every 20 ms. When a decrypt
fails it prints ``failed <epoch> <error type>`` and exits; after 60 s it prints ``still``.
"""

from __future__ import annotations

import os
import sys
import time


def main() -> int:
    service, partition, interval = sys.argv[1], sys.argv[2], int(sys.argv[3])
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django
    from django.conf import settings

    settings.ASHERAH = {**settings.ASHERAH, "SERVICE_NAME": service, "CHECK_INTERVAL": interval}
    django.setup()
    from asherah_django.core.errors import AsherahError
    from asherah_django.runtime import get_session_factory, reset_session_factory

    record = sys.stdin.readline().strip()
    session = get_session_factory().get_session(partition)
    session.decrypt(record)
    print(f"ready {time.time():.3f}", flush=True)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            try:
                session.decrypt(record)
            except AsherahError as exc:
                print(f"failed {time.time():.3f} {type(exc).__name__}", flush=True)
                return 0
            time.sleep(0.02)
        print("still", flush=True)
        return 0
    finally:
        reset_session_factory()


if __name__ == "__main__":
    sys.exit(main())
