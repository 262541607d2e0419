"""A PostgreSQL primary and streaming hot standby made from scratch, for tests.

    with PostgresPair(apply_delay_ms=1500) as pair:      # initdb, start, pg_basebackup -R
        pair.dsn("primary"), pair.dsn("standby")         # libpq connection strings
        pair.promote()                                   # the standby becomes writable

The machine's own server allows no replication connections, so both servers are created
with ``initdb`` in a fresh temporary directory (owned by the ``postgres`` user, whom the
commands run as when this process is root), on free loopback ports, with
``wal_level=replica`` and ``fsync=off`` (throw-away data). The standby is a
``pg_basebackup -R`` copy; ``apply_delay_ms`` sets its ``recovery_min_apply_delay`` so
that replication lag can be injected. ``synchronous=True`` makes the primary wait for the
standby to flush each commit (``synchronous_standby_names = '*'``), so a promoted standby
holds every transaction the primary acknowledged, even after the primary crashed.
Django-free.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from .openbao import free_port


class PostgresPairError(RuntimeError):
    """A command of the pair's setup failed."""


class PostgresPair:
    """Primary + hot standby; see the module docs. Use as a context manager."""

    def __init__(
        self, *, apply_delay_ms: int = 0, synchronous: bool = False, user: str = "postgres"
    ) -> None:
        self.apply_delay_ms = apply_delay_ms
        self.synchronous = synchronous
        self.user = user
        self.root = Path(tempfile.mkdtemp(prefix="asherah-pgpair-"))
        self.ports = {"primary": free_port(), "standby": free_port()}
        while self.ports["standby"] == self.ports["primary"]:
            self.ports["standby"] = free_port()
        self._as_user = os.geteuid() == 0
        if self._as_user:
            entry = pwd.getpwnam(user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self._running: set[str] = set()

    def dsn(self, node: str, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.ports[node]} user={self.user} dbname={dbname}"

    def django_database(self, *nodes: str, **options: object) -> dict[str, object]:
        """A ``DATABASES`` entry for ``nodes``; several make a libpq multi-host entry
        (``HOST="127.0.0.1,127.0.0.1"``, ``PORT="p1,p2"``), tried in order."""
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "postgres",
            "USER": self.user,
            "HOST": ",".join("127.0.0.1" for _ in nodes),
            "PORT": ",".join(str(self.ports[node]) for node in nodes),
            "OPTIONS": dict(options),
        }

    def __enter__(self) -> PostgresPair:
        try:
            self._run("initdb", "-D", self._dir("primary"), "-A", "trust", "-U", self.user,
                      "--no-sync", "-E", "UTF8")  # fmt: skip
            self._configure("primary")
            self._start("primary")
            self._run("pg_basebackup", "-h", "127.0.0.1", "-p", str(self.ports["primary"]),
                      "-U", self.user, "-D", self._dir("standby"), "-R", "-X", "stream",
                      "--no-sync")  # fmt: skip
            self._configure("standby")
            self._start("standby")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def promote(self) -> None:
        """``pg_ctl promote`` the standby and wait until it accepts writes."""
        self._run("pg_ctl", "-D", self._dir("standby"), "promote", "-w", "-t", "60")

    def stop(self, node: str, mode: str = "fast") -> None:
        if node in self._running:
            self._running.discard(node)
            self._run("pg_ctl", "-D", self._dir(node), "stop", "-m", mode, "-w", "-t", "60")

    def close(self) -> None:
        for node in ("standby", "primary"):
            with contextlib.suppress(PostgresPairError):
                self.stop(node, "immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    # -- internals ------------------------------------------------------------------------

    def _dir(self, node: str) -> str:
        return str(self.root / node)

    def _configure(self, node: str) -> None:
        lines = [
            f"port = {self.ports[node]}",
            "listen_addresses = '127.0.0.1'",
            f"unix_socket_directories = '{self.root}'",
            "wal_level = replica",
            "max_wal_senders = 5",
            "hot_standby = on",
            "fsync = off",
            "synchronous_commit = on" if self.synchronous else "synchronous_commit = off",
            "full_page_writes = off",
            "shared_buffers = 16MB",
            "max_connections = 40",
        ]
        if node == "primary" and self.synchronous:
            lines.append("synchronous_standby_names = '*'")
        if node == "standby":  # its copy of the primary's file must not make it wait once promoted
            lines.append("synchronous_standby_names = ''")
        if node == "standby" and self.apply_delay_ms:
            lines.append(f"recovery_min_apply_delay = '{self.apply_delay_ms}ms'")
        conf = Path(self._dir(node)) / "postgresql.conf"
        self._append(conf, "\n# asherah_django PostgresPair\n" + "\n".join(lines) + "\n")
        hba = Path(self._dir(node)) / "pg_hba.conf"
        self._append(hba, f"host replication {self.user} 127.0.0.1/32 trust\n")

    def _append(self, path: Path, text: str) -> None:
        with open(path, "a", encoding="utf-8") as out:
            out.write(text)

    def _start(self, node: str) -> None:
        log = str(self.root / f"{node}.log")
        self._run("pg_ctl", "-D", self._dir(node), "-l", log, "start", "-w", "-t", "60")
        self._running.add(node)

    def _run(self, *command: str) -> None:
        program = shutil.which(command[0]) or command[0]
        argv = [program, *command[1:]]
        if self._as_user:
            argv = ["runuser", "-u", self.user, "--", *argv]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        result = subprocess.run(
            argv, capture_output=True, text=True, env=env, cwd=self.root, timeout=120,
            check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise PostgresPairError(
                f"{' '.join(command[:2])} failed ({result.returncode}): "
                f"{(result.stderr or result.stdout)[-2000:]}"
            )
