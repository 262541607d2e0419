"""The PostgreSQL primary + hot standby pair the replica scenarios of issue #23 build on.

Made from scratch (initdb, pg_basebackup -R): replication streams, an injected apply delay
(``recovery_min_apply_delay``) is visible as lag on the standby, and a promoted standby
accepts writes with every row the primary had committed. The read-replica router and
failover-under-load scenarios on top of it: test_postgres_replica.py.
"""

from __future__ import annotations

import time

import psycopg
import pytest

from asherah_django.testing.postgres_pair import PostgresPair

pytestmark = pytest.mark.topology
DELAY_MS = 1500


def count(conn: psycopg.Connection[tuple[int]]) -> int:
    row = conn.execute("SELECT count(*) FROM t").fetchone()
    assert row is not None
    return int(row[0])


def test_pair_streams_with_injected_lag_and_promotes() -> None:
    with PostgresPair(apply_delay_ms=DELAY_MS) as pair:
        with psycopg.connect(pair.dsn("primary"), autocommit=True) as primary:
            primary.execute("CREATE TABLE t (x int)")
            with psycopg.connect(pair.dsn("standby"), autocommit=True) as standby:
                deadline = time.monotonic() + 60
                while True:  # the CREATE TABLE reaches the standby after the delay
                    try:
                        count(standby)
                        break
                    except psycopg.errors.UndefinedTable:
                        assert time.monotonic() < deadline
                        time.sleep(0.1)
                primary.execute("INSERT INTO t SELECT generate_series(1, 100)")
                written = time.monotonic()
                assert count(standby) == 0, "the standby applied a write before its delay"
                while count(standby) < 100:
                    assert time.monotonic() - written < 60
                    time.sleep(0.05)
                lag = time.monotonic() - written
        pair.stop("primary")
        pair.promote()
        with psycopg.connect(pair.dsn("standby"), autocommit=True) as promoted:
            promoted.execute("INSERT INTO t VALUES (101)")
            assert count(promoted) == 101
    print(f"\nPostgreSQL pair: standby lag {lag:.2f}s with recovery_min_apply_delay={DELAY_MS}ms")
    assert lag >= DELAY_MS / 1000 * 0.9
