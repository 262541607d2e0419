"""A real ``bao agent`` for tests: AppRole auto-auth, a token sink file, an API proxy.

    with OpenBaoAgent(tmp_path / "agent", server, role_id, secret_id) as agent:
        agent.sink          # the token file the agent (re)writes: VAULT_TOKEN_FILE
        agent.addr          # its API proxy, adding its token: VAULT_ADDR with
                            # VAULT_AUTH_METHOD=agent

The agent logs in with the role id and secret id files (the secret id file is kept, so a
restarted agent can log in again), writes each new token to ``sink`` and, with
``api_proxy { use_auto_auth_token = true }``, adds its current token to every request
that arrives without one. Django-free.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
import weakref
from pathlib import Path
from typing import IO

from .openbao import OpenBaoError, OpenBaoServer, find_bao, free_port


class OpenBaoAgent:
    """One ``bao agent`` process in front of ``server``. Use as a context manager."""

    def __init__(
        self, workdir: Path, server: OpenBaoServer, role_id: str, secret_id: str, *,
        mount: str = "approle", bao: str | None = None,
    ) -> None:  # fmt: skip
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.bao = bao or find_bao()
        self.server = server
        self.port = free_port()
        self.addr = f"http://127.0.0.1:{self.port}"
        self.sink = self.workdir / "token-sink"
        self.log_path = self.workdir / "agent.log"
        role_file, secret_file = self.workdir / "role-id", self.workdir / "secret-id"
        for path, value in ((role_file, role_id), (secret_file, secret_id)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(value)
        (self.workdir / "agent.hcl").write_text(
            f'vault {{\n  address = "{server.addr}"\n}}\n'
            "auto_auth {\n"
            f'  method "approle" {{\n    mount_path = "auth/{mount}"\n    config = {{\n'
            f'      role_id_file_path = "{role_file}"\n'
            f'      secret_id_file_path = "{secret_file}"\n'
            "      remove_secret_id_file_after_reading = false\n    }\n  }\n"
            f'  sink "file" {{\n    config = {{\n      path = "{self.sink}"\n'
            "      mode = 384\n    }\n  }\n}\n"
            "api_proxy {\n  use_auto_auth_token = true\n}\n"
            f'listener "tcp" {{\n  address = "127.0.0.1:{self.port}"\n  tls_disable = true\n}}\n'
            'log_level = "info"\n'
        )
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._finalizer: weakref.finalize[..., OpenBaoAgent] | None = None

    def start(self, timeout: float = 30.0) -> OpenBaoAgent:
        """Start; return once the sink holds a token and the proxy answers."""
        if self._process is not None:
            return self
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
        self._process = subprocess.Popen(
            [self.bao, "agent", f"-config={self.workdir / 'agent.hcl'}"],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, start_new_session=True,
        )  # fmt: skip
        self._finalizer = weakref.finalize(self, _kill, self._process)
        deadline = time.monotonic() + timeout
        while not (self.sink.exists() and self.sink.read_text().strip() and self._answers()):
            if self._process.poll() is not None or time.monotonic() > deadline:
                tail = self.log_path.read_text(errors="replace").splitlines()[-15:]
                self.stop()
                raise OpenBaoError("bao agent did not start:\n" + "\n".join(tail))
            time.sleep(0.1)
        return self

    def token(self) -> str:
        """The token the agent last wrote to its sink."""
        return self.sink.read_text().strip()

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._finalizer is not None:
            self._finalizer.detach()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> OpenBaoAgent:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.addr}/v1/sys/health", timeout=5):
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
        process.wait()
