"""Vault HA: a 3-node OpenBao raft cluster; the leader is SIGKILLed under load, twice.

Three application processes make cold Transit calls and calls in a partition whose keys
are cached; the leader is killed; figures printed: failed cold operations and their
window, time until all succeed again (without restarting anything on the application
side), errors in the cached partition (must be 0), values lost (must be 0). Three rounds,
the old leader restarted (it rejoins as a standby) before each next one:

1. ``VAULT_ADDR`` is a standby's address (OpenBao standbys forward to the active node);
2. ``VAULT_ADDR`` lists the three nodes, the leader first, and ``VAULT_MAX_RETRIES=0`` so
   that the raw failure window shows: the client moves to the next node by itself;
3. ``VAULT_ADDR`` is the leader's own address (no load balancer, no list); the killed node
   is started again after 3 s: cold operations fail with typed errors until it is back,
   and succeed again without restarting the application.
"""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path
from typing import Any

import pytest

from asherah_django.testing.openbao import TRANSIT_POLICY
from asherah_django.testing.openbao_cluster import OpenBaoCluster
from tests.hygiene import register_secret

from . import ha_worker

pytestmark = [pytest.mark.vault, pytest.mark.topology]
PROCESSES = 3
BEFORE, AFTER = 1.5, 8.0  # seconds of load before the kill and after it
RESTART_AFTER = 3.0


def one_round(cluster: OpenBaoCluster, token: str, retries: int, via: str) -> dict[str, Any]:
    """Kill the leader under load; ``via``: the app's VAULT_ADDR is a ``standby``'s, the
    ``list`` of all nodes (the leader first), or the ``leader``'s own, and then the node is
    started again ``RESTART_AFTER`` seconds after the kill."""
    victim = cluster.wait_for_leader()
    others = [addr for index, addr in enumerate(cluster.addrs) if index != victim]
    addr = {"standby": others[0], "list": ",".join([cluster.addrs[victim], *others])}.get(
        via, cluster.addrs[victim]
    )
    settings = cluster.settings(
        victim, VAULT_ADDR=addr, VAULT_TOKEN=token, VAULT_MAX_RETRIES=retries
    )
    ctx = multiprocessing.get_context("spawn")
    out, go, stop = ctx.Queue(), ctx.Event(), ctx.Event()
    workers = [
        ctx.Process(target=ha_worker.run, args=(settings, go, stop, out)) for _ in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    for _ in workers:
        assert out.get(timeout=90)[0] == "ready"
    go.set()
    time.sleep(BEFORE)
    killed_at = time.time()
    cluster.kill(victim)
    new_leader = cluster.wait_for_leader(exclude=victim)
    elected = time.time() - killed_at
    if via == "leader":
        time.sleep(max(0.0, killed_at + RESTART_AFTER - time.time()))
        cluster.start(victim)
    time.sleep(max(0.0, killed_at + AFTER - time.time()))
    stop.set()
    results = [out.get(timeout=120)[1] for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    cold = sorted(entry for result in results for entry in result["cold"])
    failures = [(t, kind) for t, _, kind in cold if kind]
    last_failure = failures[-1][0] if failures else killed_at
    return {
        "VAULT_MAX_RETRIES": retries, "killed": victim, "via": via, "new_leader": new_leader,
        "election_s": round(elected, 2), "cold_ops": len(cold), "cold_failed": len(failures),
        "failure_types": sorted({kind for _, kind in failures}),
        "error_window_s": round(failures[-1][0] - failures[0][0], 2) if failures else 0.0,
        "all_ok_again_after_s": round(last_failure - killed_at, 2),
        "slowest_cold_op_s": round(max(seconds for _, seconds, _ in cold), 2),
        "ok_after_recovery": sum(1 for t, _, kind in cold if t > last_failure and not kind),
        "cached_errors": sum(len(r["cached_errors"]) for r in results),
        "values_lost": sum(r["lost"] for r in results),
        "values_written": sum(r["written"] for r in results),
    }  # fmt: skip


def test_leader_sigkill_under_load(tmp_path: Path) -> None:
    with OpenBaoCluster(tmp_path / "ha") as cluster:
        token = cluster.create_token([TRANSIT_POLICY], ttl="1h")
        register_secret(token, "token")
        register_secret(cluster.root_token, "token")
        rounds = []
        for number, retries, via in ((1, 2, "standby"), (2, 0, "list"), (3, 2, "leader")):
            figures = one_round(cluster, token, retries, via)
            rounds.append(figures)
            print(f"\nVault HA round {number}: {figures}")
            if number < 3:  # the old leader rejoins as a standby before the next round
                cluster.start(figures["killed"])
                cluster.wait_for_voters(3, timeout=90)
        for figures in rounds:
            assert not any(kind.startswith("UNTYPED") for kind in figures["failure_types"])
            assert "wrong-plaintext" not in figures["failure_types"]
            assert figures["cached_errors"] == 0
            assert figures["values_lost"] == 0
            assert figures["ok_after_recovery"] > 0, "cold operations never succeeded again"
        assert rounds[2]["cold_failed"] > 0, "round 3's address was down: failures expected"
