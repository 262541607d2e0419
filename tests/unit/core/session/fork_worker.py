"""Run as ``python -m tests.unit.core.session.fork_worker``: fork while another thread holds every lock of
a warm SessionFactory (key-cache locks, lock stripes, the session-cache lock), then use the
factory in the child: a new partition (new key: stripes, caches, sessions) and old records.
Prints "ok" when the child finished within its deadline; a child that inherited a held
lock hangs and is reported. Django-free; used by tests/unit/core/session/test_fork.py.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

from asherah_django.core import InMemoryMetastore, SessionFactory, StaticKMS
from asherah_django.core.kms.static import TEST_MASTER_KEY_HEX

DEADLINE = 10


def main() -> None:
    factory = SessionFactory(
        "service", "product", StaticKMS.from_hex(TEST_MASTER_KEY_HEX), InMemoryMetastore()
    )
    records = {p: factory.get_session(p).encrypt(p.encode()) for p in ("a", "b")}
    keys = factory._keys
    locks = [*keys._locks, keys.intermediate_keys._lock, keys.system_keys._lock,
             factory._sessions_lock]  # fmt: skip
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        for lock in locks:
            lock.acquire()
        held.set()
        release.wait()
        for lock in locks:
            lock.release()

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    pid = os.fork()
    if pid == 0:
        signal.alarm(DEADLINE)  # a deadlocked child dies of SIGALRM
        for index in range(3):
            session = factory.get_session(f"new-{index}")
            assert session.decrypt(session.encrypt(b"child")) == b"child"
        factory._keys.intermediate_keys.clear()  # reloads, under the caches' locks
        assert all(factory.get_session(p).decrypt(r) == p.encode() for p, r in records.items())
        os._exit(0)
    release.set()
    holder.join()
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        sys.exit(
            f"the forked child hung on a lock held at fork time (signal {os.WTERMSIG(status)})"
        )
    if os.WEXITSTATUS(status) != 0:
        sys.exit(f"the forked child failed with status {os.WEXITSTATUS(status)}")
    print("ok")


if __name__ == "__main__":
    main()
