"""A 3-node OpenBao HA cluster (integrated raft storage) on loopback ports, for tests.

    with OpenBaoCluster(tmp_path / "ha") as cluster:      # 3 nodes, initialised, provisioned
        leader = cluster.leader()                          # index of the active node
        cluster.kill(leader)                               # SIGKILL
        cluster.wait_for_leader(exclude=leader)
        cluster.start(leader)                              # rejoins as a standby

Every node has its own work directory, the same static-key seal (so every node unseals
itself on every start, offline) and ``retry_join`` blocks naming the others, so the
followers join the first node's raft cluster by themselves. The first node is initialised
(``sys/init``) and provisioned as :class:`~.openbao.OpenBaoServer` does: the Transit key and
the ``asherah-transit`` / ``asherah-rotate`` policies, set once for the whole cluster.
Django-free.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
import weakref
from pathlib import Path
from typing import IO, Any

from .openbao import (
    DEFAULT_TRANSIT_KEY,
    ROTATE_POLICY,
    TRANSIT_POLICY,
    OpenBaoError,
    find_bao,
    free_port,
    rotate_policy,
    transit_policy,
)


class OpenBaoCluster:
    """``size`` OpenBao nodes sharing one raft cluster; see the module docs."""

    def __init__(
        self, workdir: Path, *, size: int = 3, transit_key: str = DEFAULT_TRANSIT_KEY,
        transit_mount: str = "transit", bao: str | None = None,
    ) -> None:  # fmt: skip
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.bao = bao or find_bao()
        self.transit_key = transit_key
        self.transit_mount = transit_mount
        ports: set[int] = set()
        while len(ports) < 2 * size:
            ports.add(free_port())
        chosen = sorted(ports)
        self.ports = chosen[:size]
        self.cluster_ports = chosen[size:]
        self.addrs = [f"http://127.0.0.1:{port}" for port in self.ports]
        self.root_token = ""
        self._processes: list[subprocess.Popen[bytes] | None] = [None] * size
        self._logs: list[IO[bytes] | None] = [None] * size
        self._finalizer = weakref.finalize(self, _kill_all, self._processes)
        seal_key = self.workdir / "unseal.key"
        fd = os.open(seal_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(os.urandom(32))
        for index in range(size):
            self._write_config(index, seal_key)

    # -- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> OpenBaoCluster:
        try:
            self.start(0)
            self._wait(0, lambda s: s is not None, time.monotonic() + 60)
            answer = self.api(
                0, "POST", "sys/init", {"recovery_shares": 1, "recovery_threshold": 1}, token=""
            )
            self.root_token = answer["root_token"]
            self._wait(0, lambda s: s == 200, time.monotonic() + 60)
            for index in range(1, len(self.addrs)):
                self.start(index)
            self.wait_for_voters(len(self.addrs), timeout=90)
            self._provision()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        for index in range(len(self.addrs)):
            self.stop(index)
        self._finalizer.detach()

    def start(self, index: int) -> None:
        """Start node ``index`` (again); it unseals itself and (re)joins the cluster."""
        if self._processes[index] is not None:
            return
        node = self.workdir / f"node{index}"
        log = open(node / "server.log", "ab")  # noqa: SIM115 - closed in stop()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
        self._logs[index] = log
        self._processes[index] = subprocess.Popen(
            [self.bao, "server", f"-config={node / 'config.hcl'}"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, start_new_session=True,
        )  # fmt: skip

    def kill(self, index: int) -> None:
        """SIGKILL node ``index``: no step-down, no goodbye to the other nodes."""
        process, self._processes[index] = self._processes[index], None
        if process is not None:
            process.kill()
            process.wait()
        self._close_log(index)

    def stop(self, index: int) -> None:
        process, self._processes[index] = self._processes[index], None
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._close_log(index)

    def running(self, index: int) -> bool:
        return self._processes[index] is not None

    # -- state ----------------------------------------------------------------------------

    def health(self, index: int) -> int | None:
        """``sys/health`` status: 200 active, 429 standby, 503 sealed; ``None``: no answer."""
        try:
            status, _ = self.request(index, "GET", "sys/health", token="")
        except OSError:
            return None
        return status

    def leader(self) -> int | None:
        """The index of the active node, or ``None`` while there is none."""
        for index in range(len(self.addrs)):
            if self.running(index) and self.health(index) == 200:
                return index
        return None

    def wait_for_leader(self, *, exclude: int | None = None, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = self.leader()
            if leader is not None and leader != exclude:
                return leader
            time.sleep(0.1)
        raise OpenBaoError(f"no active node within {timeout:g}s; see {self.workdir}/node*/")

    def wait_for_voters(self, count: int, timeout: float = 60) -> None:
        """Until the raft configuration lists ``count`` voters and every node is unsealed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = self.leader()
            if leader is not None:
                status, answer = self.request(
                    leader, "GET", "sys/storage/raft/configuration", token=self.root_token
                )
                servers = (answer.get("data") or {}).get("config", {}).get("servers", [])
                voters = [s for s in servers if s.get("voter")]
                healthy = all(self.health(i) in (200, 429) for i in range(len(self.addrs)))
                if status == 200 and len(voters) >= count and healthy:
                    return
            time.sleep(0.2)
        raise OpenBaoError(f"the cluster did not reach {count} voters; see {self.workdir}/node*/")

    # -- admin API ------------------------------------------------------------------------

    def api(
        self, index: int, method: str, path: str, body: dict[str, Any] | None = None, *,
        token: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        status, answer = self.request(
            index, method, path, body, token=self.root_token if token is None else token
        )
        if not 200 <= status < 300:
            raise OpenBaoError(f"{method} {path}: HTTP {status}: {answer.get('errors')}")
        return answer

    def request(
        self, index: int, method: str, path: str, body: dict[str, Any] | None = None, *,
        token: str | None = None,
    ) -> tuple[int, dict[str, Any]]:  # fmt: skip
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.addrs[index]}/v1/{path}", data=data, method=method)
        if token:
            request.add_header("X-Vault-Token", token)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            with error:
                status, raw = error.code, error.read()
        try:
            answer = json.loads(raw) if raw else {}
        except ValueError:
            answer = {"errors": [raw[:200].decode(errors="replace")]}
        return status, answer if isinstance(answer, dict) else {}

    def create_token(self, policies: list[str], **options: Any) -> str:
        leader = self.wait_for_leader()
        answer = self.api(leader, "POST", "auth/token/create", {"policies": policies, **options})
        token: str = answer["auth"]["client_token"]
        return token

    def settings(self, index: int, **overrides: object) -> dict[str, object]:
        return {
            "VAULT_ADDR": self.addrs[index],
            "VAULT_TRANSIT_KEY": self.transit_key,
            "VAULT_TRANSIT_MOUNT": self.transit_mount,
            **overrides,
        }

    # -- internals ------------------------------------------------------------------------

    def _provision(self) -> None:
        leader, mount, key = self.wait_for_leader(), self.transit_mount, self.transit_key
        self.api(leader, "POST", f"sys/mounts/{mount}", {"type": "transit"})
        self.api(leader, "POST", f"{mount}/keys/{key}", {"type": "aes256-gcm96"})
        for name, hcl in (
            (TRANSIT_POLICY, transit_policy(mount, key)),
            (ROTATE_POLICY, rotate_policy(mount, key)),
        ):
            self.api(leader, "PUT", f"sys/policies/acl/{name}", {"policy": hcl})

    def _wait(self, index: int, ready: Any, deadline: float) -> None:
        while time.monotonic() < deadline:
            process = self._processes[index]
            if process is None or process.poll() is not None:
                raise OpenBaoError(f"node {index} exited; see {self.workdir}/node{index}/")
            if ready(self.health(index)):
                return
            time.sleep(0.1)
        raise OpenBaoError(f"node {index} not ready; see {self.workdir}/node{index}/")

    def _close_log(self, index: int) -> None:
        log, self._logs[index] = self._logs[index], None
        if log is not None:
            log.close()

    def _write_config(self, index: int, seal_key: Path) -> None:
        node = self.workdir / f"node{index}"
        (node / "data").mkdir(parents=True, exist_ok=True)
        joins = "".join(
            f'  retry_join {{\n    leader_api_addr = "{addr}"\n  }}\n'
            for other, addr in enumerate(self.addrs)
            if other != index
        )
        port, cluster_port = self.ports[index], self.cluster_ports[index]
        (node / "config.hcl").write_text(
            f'storage "raft" {{\n  path = "{node / "data"}"\n  node_id = "node{index}"\n'
            f"  performance_multiplier = 1\n{joins}}}\n"
            f'listener "tcp" {{\n  address = "127.0.0.1:{port}"\n'
            f'  cluster_address = "127.0.0.1:{cluster_port}"\n  tls_disable = true\n}}\n'
            f'seal "static" {{\n  current_key_id = "test"\n  current_key = "file://{seal_key}"\n}}\n'
            f'api_addr = "http://127.0.0.1:{port}"\n'
            f'cluster_addr = "https://127.0.0.1:{cluster_port}"\n'
            'log_level = "warn"\n'
        )


def _kill_all(processes: list[subprocess.Popen[bytes] | None]) -> None:
    for process in processes:
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
