"""Fork safety: a child forked after warm-up (gunicorn --preload) opens its own connection,
keeps the parent's token (no second login), and leaves the parent's connection alone.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import pytest

from asherah_django.core.kms.vault import VaultTransitKMS
from asherah_django.testing.openbao import OpenBaoServer

from .conftest import approle_role

pytestmark = pytest.mark.vault
MakeKMS = Callable[[dict[str, object]], VaultTransitKMS]
DECRYPT = "transit/decrypt/asherah-master"


def run_in_child(work: Callable[[], bool], timeout: float = 20.0) -> int:
    """Fork, run ``work`` in the child, return its exit code (killed after ``timeout``)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            code = 0 if work() else 2
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            return -9
        time.sleep(0.02)


def last_port(bao: OpenBaoServer) -> int:
    port: int = bao.audit_entries(DECRYPT)[-1]["request"]["remote_port"]
    return port


def test_child_uses_its_own_connection_and_the_parents_token(
    bao: OpenBaoServer, make_kms: MakeKMS
) -> None:
    role_id, secret_id = approle_role(bao, secret_id_num_uses=1)
    kms = make_kms(bao.settings(VAULT_AUTH_METHOD="approle", VAULT_APPROLE_ROLE_ID=role_id,
                                VAULT_APPROLE_SECRET_ID=secret_id()))  # fmt: skip
    blob = kms.encrypt_key(os.urandom(32))
    kms.decrypt_key(blob)
    parent_port = last_port(bao)

    def child() -> bool:
        ok = len(kms.decrypt_key(blob)) == 32
        return ok and kms.stats.logins == 0 and kms.stats.decrypt == 1

    assert run_in_child(child) == 0
    child_port = last_port(bao)
    assert child_port != parent_port  # the child opened its own connection
    kms.decrypt_key(blob)
    assert last_port(bao) == parent_port  # the parent's kept-alive connection is intact
    assert kms.stats.logins == 1


def test_child_is_not_stuck_on_locks_held_by_parent_threads(
    bao: OpenBaoServer, make_kms: MakeKMS
) -> None:
    kms = make_kms(bao.settings(VAULT_TOKEN=bao.create_token(["asherah-transit"], ttl="1h")))
    blob = kms.encrypt_key(os.urandom(32))
    held, release = threading.Event(), threading.Event()

    def hold_locks() -> None:  # another thread is mid-login / mid-connect when we fork
        with kms._tokens.lock, kms._http._lock:
            held.set()
            release.wait(10)

    thread = threading.Thread(target=hold_locks)
    thread.start()
    held.wait(5)

    def child() -> bool:
        kms.login()
        return len(kms.decrypt_key(blob)) == 32

    try:
        code = run_in_child(child, timeout=10)
    finally:
        release.set()
        thread.join()
    assert code == 0
