"""A local, persistent Vault-compatible server for development: ``python -m
asherah_django.testing.devvault``.

    python -m asherah_django.testing.devvault --dir .openbao --port 8200
    # in another shell:
    source .openbao/env       # VAULT_ADDR, VAULT_TRANSIT_KEY, VAULT_TOKEN
    python manage.py runserver

Unlike ``bao server -dev`` (everything in memory: after a restart the Transit key is gone and
every value encrypted under it is lost for good), the server keeps its data in ``--dir`` and
unseals itself on start (see :class:`~asherah_django.testing.openbao.OpenBaoServer`), so
stopping and starting it again keeps the master key, the token and your data readable.

The application gets a token that holds only the ``asherah-transit`` and ``asherah-rotate``
policies (never the root token), saved in ``--dir`` and reused while it is valid; it is
periodic, so the running application keeps it alive by renewing it. Everything in ``--dir``
(the seal key, the root token) is a local development secret: keep the directory out of
version control, and never use this server for production data.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from .openbao import ROTATE_POLICY, TRANSIT_POLICY, OpenBaoServer

TOKEN_FILE = "app-token"
ENV_FILE = "env"


def app_token(bao: OpenBaoServer) -> str:
    """The saved application token while it is valid, else a new one (then saved)."""
    path = bao.workdir / TOKEN_FILE
    if path.exists():
        token = path.read_text().strip()
        status, _ = bao.request("GET", "auth/token/lookup-self", token=token)
        if status == 200:
            return token
    token = bao.create_token([TRANSIT_POLICY, ROTATE_POLICY], period="768h", renewable=True)
    _write_private(path, token)
    return token


def write_env(bao: OpenBaoServer, token: str) -> Path:
    """``<dir>/env``: the shell exports that point an application at this server."""
    values = {**bao.settings(), "VAULT_TOKEN": token}
    path = bao.workdir / ENV_FILE
    _write_private(path, "".join(f"export {name}={value}\n" for name, value in values.items()))
    return path


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m asherah_django.testing.devvault",
        description="Run a persistent local OpenBao (Vault-compatible) server for development.",
    )
    parser.add_argument("--dir", type=Path, default=Path(".openbao"), help="data (.openbao)")
    parser.add_argument("--port", type=int, default=8200, help="port on 127.0.0.1 (8200)")
    args = parser.parse_args(argv)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with OpenBaoServer(args.dir, port=args.port) as bao:
        env = write_env(bao, app_token(bao))
        print(
            f"OpenBao listens on {bao.addr} (transit key {bao.transit_key!r}, data in "
            f"{args.dir}).\nIn your shell: source {env}\nCtrl-C stops it; data and token stay.",
            flush=True,
        )
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
