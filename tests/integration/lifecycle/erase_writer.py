"""A concurrent writer for test_erase_backup.py, in a process of its own.

``python -m tests.integration.lifecycle.erase_writer NAME SECONDS`` with the ASHERAH settings as JSON in
``ERASE_TEST_ASHERAH`` (the database from DATABASE_URL): for SECONDS it encrypts values,
half into a partition that already exists and half into new partitions (so new
intermediate keys are created during the erasure), and prints ``partition<TAB>record``
for each, then ``done``.
"""

from __future__ import annotations

import json
import os
import sys
import time


def main() -> int:
    name, seconds = sys.argv[1], float(sys.argv[2])
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django
    from django.conf import settings

    settings.ASHERAH = json.loads(os.environ["ERASE_TEST_ASHERAH"])
    django.setup()
    from asherah_django.runtime import get_session_factory, reset_session_factory

    factory = get_session_factory()
    deadline = time.monotonic() + seconds
    count = 0
    try:
        while time.monotonic() < deadline:
            partition = "keep-a" if count % 2 else f"{name}-new-{count}"
            record = factory.get_session(partition).encrypt(f"{name} {count}".encode())
            print(f"{partition}\t{record}", flush=True)
            count += 1
            time.sleep(0.05)
        print("done", flush=True)
        return 0
    finally:
        reset_session_factory()


if __name__ == "__main__":
    sys.exit(main())
