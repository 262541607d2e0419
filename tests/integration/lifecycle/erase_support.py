"""Helpers of the erasure tests: a Vault token allowed to erase, a signing key, backups."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from asherah_django.core.records import EnvelopeKeyRecord
from asherah_django.metastore import DjangoMetastore
from asherah_django.rotation import erase_rows
from tests.support.common import ROOT
from tests.support.sqlite_metastore import SCHEMA, to_column
from tests.unit.management.commands.conftest import Vault, database_url


def erase_policy(vault: Vault, signing_key: str, *, sign: bool = True, trim: bool = False) -> str:
    """encrypt, decrypt, read, rotate and config on the test's key; sign/verify with ``signing_key``."""
    m, k = "transit", vault.key
    paths = [f"{m}/encrypt/{k}", f"{m}/decrypt/{k}", f"{m}/keys/{k}/rotate", f"{m}/keys/{k}/config"]
    if sign:
        paths += [f"{m}/sign/{signing_key}", f"{m}/verify/{signing_key}"]
    if trim:
        paths.append(f"{m}/keys/{k}/trim")
    hcl = "".join(f'path "{p}" {{\n  capabilities = ["update"]\n}}\n' for p in paths)
    hcl += f'path "{m}/keys/{k}" {{\n  capabilities = ["read"]\n}}\n'
    return vault.policy(f"erase-{k}-{int(sign)}{int(trim)}", hcl)


def signing_key(vault: Vault) -> str:
    name = f"{vault.key}-receipts"
    vault.bao.api("POST", f"transit/keys/{name}", {"type": "ed25519"})
    return name


def snapshot(store: DjangoMetastore) -> list[tuple[str, int, str]]:
    """A "backup" of the key table: every row as (id, created, key_record)."""
    return [(r.meta.key_id, r.meta.created, r.text) for r in erase_rows.read_rows(store)]


def restore(path: Path, rows: list[tuple[str, int, str]], *, overlay: list[Any] = ()) -> None:
    """A fresh database (SQLite file) holding ``rows``; ``overlay`` rows (the live table)
    replace restored rows of the same (id, created): the runbook's restore procedure."""
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA)
        for key_id, created, text in [*rows, *overlay]:
            EnvelopeKeyRecord.from_json(text)  # only well-formed rows are restored
            db.execute(
                "INSERT OR REPLACE INTO encryption_key (id, created, key_record) VALUES (?, ?, ?)",
                (key_id, to_column(created), text),
            )
    db.close()


def start_worker(module: str, *args: str, **env: str) -> subprocess.Popen[str]:
    """``python -m tests.integration.lifecycle.<module> ARGS`` on the test database, pipes open."""
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": database_url(),
        **env,
    }
    environment.pop("ASHERAH_TEST_DB_NAME", None)
    return subprocess.Popen(
        [sys.executable, "-m", f"tests.integration.lifecycle.{module}", *args],
        cwd=ROOT, env=environment, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
