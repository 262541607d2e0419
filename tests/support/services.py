"""Redis and RabbitMQ for the Celery tests: used where they run, started when they do not
(with this machine's documented commands), as scripts/test.sh does for the databases."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

REDIS = ("127.0.0.1", 6379)
RABBITMQ = ("127.0.0.1", 5672)
REDIS_COMMAND = [
    "redis-server",
    "--daemonize", "yes",
    "--bind", "127.0.0.1", "-::1",
    "--port", "6379",
    "--save", "",
    "--appendonly", "no",
    "--dir", "/var/lib/redis",
    "--logfile", "/var/log/redis/ci.log",
]  # fmt: skip
RABBITMQ_COMMAND = ["rabbitmq-server", "-detached"]


def _listening(address: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(address, timeout=1):
            return True
    except OSError:
        return False


def _ensure(name: str, address: tuple[str, int], command: list[str], wait: float) -> None:
    if _listening(address):
        return
    if shutil.which(command[0]) is None:
        raise RuntimeError(f"{name} is not running on {address} and {command[0]} is not installed")
    subprocess.run(command, check=True, timeout=60)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if _listening(address):
            return
        time.sleep(0.5)
    raise RuntimeError(f"{name} did not start listening on {address} within {wait:.0f}s")


def ensure_redis() -> None:
    _ensure("Redis", REDIS, REDIS_COMMAND, 30)


def ensure_rabbitmq() -> None:
    _ensure("RabbitMQ", RABBITMQ, RABBITMQ_COMMAND, 120)
