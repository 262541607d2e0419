"""benchmarks/table_scale.py at 20,000 rows on PostgreSQL: the maintenance commands leave
every value decryptable under a current key and every row found by its blind index (the
script's --verify). Correctness only: the timings it prints are not asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from tests.support.common import ROOT
from tests.unit.management.commands.conftest import database_url


@pytest.mark.database
@pytest.mark.slow
def test_table_scale_benchmark_at_20000_rows_is_correct(
    transactional_db: None, tmp_path: Path
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the table-scale benchmark runs on PostgreSQL (COPY, VACUUM)")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTHONDEVMODE", None)
    run = subprocess.run(
        [sys.executable, "benchmarks/table_scale.py", "--rows=20000", "--verify",
         f"--json={tmp_path / 'figures.json'}", f"--url={database_url()}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    import psycopg

    base, _, name = database_url().rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}_table_scale"')  # (the script's own)
    assert run.returncode == 0, run.stderr[-3000:]
    figures = {f["name"]: f for f in json.loads((tmp_path / "figures.json").read_text())}
    for step in ("asherah_encrypt", "rotate --reencrypt", "reindex --rotate"):
        assert figures[f"{step}, 20,000 rows"]["ours"] > 0, step
    assert figures["reencrypt, 2 shards vs 1 process"]["ours"] > 0
