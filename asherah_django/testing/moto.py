"""A local AWS-API server (moto) for tests and the demo: KMS, Secrets Manager and STS.

``moto[server]`` (in the ``test`` extra) serves the AWS APIs on a loopback port. One server
answers for every region (it goes by the request's signing region), so the ``asherah``
wheel, which takes a single ``AWS_ENDPOINT_URL``, can share it; start one server per region
instead when a test must take one region down (:meth:`MotoServer.stop`, :meth:`pause`).
State is in memory: a stopped server forgets its keys. Django-free:

    from asherah_django.testing.moto import MotoServer, aws_test_credentials

    with aws_test_credentials(), MotoServer() as aws:
        arn = aws.create_key("us-west-2")
        settings = {"KMS": "aws", "REGION_MAP": {"us-west-2": arn},
                    "AWS_ENDPOINT_URL": aws.url}
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

#: Fake credentials moto accepts; never real ones.
TEST_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


class MotoError(RuntimeError):
    """The server could not be started."""


@contextlib.contextmanager
def aws_test_credentials() -> Iterator[None]:
    """Set moto's fake credentials (and no profile) in ``os.environ`` for the block."""
    names = (*TEST_CREDENTIALS, "AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(TEST_CREDENTIALS)
    os.environ.pop("AWS_PROFILE", None)
    os.environ["AWS_CONFIG_FILE"] = os.devnull
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class MotoServer:
    """``python -m moto.server`` on a free loopback port; ``url`` is its endpoint."""

    def __init__(self, port: int | None = None, log: Path | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log_path = log
        self._log: IO[bytes] | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> MotoServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 30.0) -> None:
        if self.running:
            return
        out: Any = subprocess.DEVNULL
        if self._log_path is not None:
            self._log = out = open(self._log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **TEST_CREDENTIALS},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise MotoError(f"moto server exited with {self._proc.returncode} on {self.url}")
            try:
                with urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1):
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        self.stop()
        raise MotoError(f"moto server did not start on {self.url} within {timeout:g}s")

    def stop(self) -> None:
        """Kill the server (its keys are lost): the region's endpoint refuses connections."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def pause(self) -> None:
        """SIGSTOP: connections are accepted but never answered (a hung region)."""
        if self._proc is not None:
            os.kill(self._proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self._proc is not None:
            os.kill(self._proc.pid, signal.SIGCONT)

    # -- provisioning (boto3 against this server) -----------------------------------------

    def client(self, service: str, region: str) -> Any:
        import boto3

        from ..core.kms.aws import redact_botocore_debug_logs

        redact_botocore_debug_logs()  # CreateSecret's parameters hold the master key
        return boto3.client(
            service,
            region_name=region,
            endpoint_url=self.url,
            aws_access_key_id=TEST_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=TEST_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    def create_key(self, region: str, description: str = "asherah master key") -> str:
        """A new symmetric KMS key in ``region``; returns its ARN."""
        meta = self.client("kms", region).create_key(Description=description)["KeyMetadata"]
        arn: str = meta["Arn"]
        return arn

    def disable_key(self, arn: str) -> None:
        region = arn.split(":")[3]
        self.client("kms", region).disable_key(KeyId=arn.rsplit("/", 1)[-1])

    def create_secret(self, region: str, name: str, *, hex_key: str | None = None,
                      binary: bytes | None = None) -> str:  # fmt: skip
        """A Secrets Manager secret holding a master key; returns its ARN."""
        args: dict[str, Any] = {"Name": name}
        if hex_key is not None:
            args["SecretString"] = hex_key
        if binary is not None:
            args["SecretBinary"] = binary
        arn: str = self.client("secretsmanager", region).create_secret(**args)["ARN"]
        return arn
