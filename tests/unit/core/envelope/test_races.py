"""Concurrent creation of the same key, with real threads.

Each factory stands for a separate process (its own caches); they share a metastore.
A barrier inside the metastore makes every writer see "no key yet" before any of them
stores, so the insert race really happens.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from asherah_django.core import (
    EnvelopeKeyRecord,
    InMemoryMetastore,
    SessionFactory,
    StaticKMS,
    parse_data_row,
)

WRITERS = 8


class RacingMetastore(InMemoryMetastore):
    """Holds every writer at its first ``load_latest`` of ``key_id`` until all arrive."""

    def __init__(self, key_id: str, parties: int) -> None:
        super().__init__()
        self.key_id = key_id
        self.barrier = threading.Barrier(parties, timeout=10)
        self.seen: set[int] = set()
        self.lost_races = 0

    def load_latest(self, key_id: str) -> EnvelopeKeyRecord | None:
        record = super().load_latest(key_id)
        me = threading.get_ident()
        if key_id == self.key_id and me not in self.seen:
            self.seen.add(me)
            self.barrier.wait()
        return record

    def store(self, key_id: str, created: int, record: EnvelopeKeyRecord) -> bool:
        stored = super().store(key_id, created, record)
        if not stored and key_id == self.key_id:
            self.lost_races += 1
        return stored


def _race(metastore: InMemoryMetastore, kms: StaticKMS, partition: str) -> list[str]:
    factories = [SessionFactory("service", "product", kms, metastore) for _ in range(WRITERS)]
    try:
        with ThreadPoolExecutor(WRITERS) as pool:
            records = list(pool.map(lambda f: f.get_session(partition).encrypt(b"mine"), factories))
        for factory in factories:  # every writer reads every other writer's value
            session = factory.get_session(partition)
            assert [session.decrypt(r) for r in records] == [b"mine"] * WRITERS
        return records
    finally:
        for factory in factories:
            factory.close()


def test_racing_writers_all_use_the_system_key_that_won(kms: StaticKMS) -> None:
    metastore = RacingMetastore("_SK_service_product", WRITERS)
    _race(metastore, kms, "p")
    assert metastore.lost_races == WRITERS - 1
    assert len([k for k, _, _ in metastore.items() if k == "_SK_service_product"]) == 1
    assert len([k for k, _, _ in metastore.items() if k == "_IK_p_service_product"]) == 1


def test_racing_writers_all_use_the_intermediate_key_that_won(kms: StaticKMS) -> None:
    metastore = RacingMetastore("_IK_p_service_product", WRITERS)
    with SessionFactory("service", "product", kms, metastore) as warm:
        warm.get_session("other").encrypt(b"")  # the SK exists already
    records = _race(metastore, kms, "p")
    assert metastore.lost_races == WRITERS - 1
    ik_rows = [(k, c) for k, c, _ in metastore.items() if k == "_IK_p_service_product"]
    assert len(ik_rows) == 1
    assert {parse_data_row(r).parent for r in records} == {ik_rows[0]}


def test_threads_of_one_factory_create_one_key(kms: StaticKMS) -> None:
    metastore = InMemoryMetastore()
    start = threading.Barrier(WRITERS)
    with SessionFactory("service", "product", kms, metastore) as factory:

        def write(i: int) -> str:
            start.wait()
            return factory.get_session("shared").encrypt(str(i).encode())

        with ThreadPoolExecutor(WRITERS) as pool:
            records = list(pool.map(write, range(WRITERS)))
    assert metastore.stores == 2  # one SK and one IK, no lost races inside a process
    assert len({parse_data_row(r).parent for r in records}) == 1


def test_lost_race_to_a_revoked_winner_creates_a_valid_key(kms: StaticKMS) -> None:
    """The winner of the race is revoked before the loser reloads it: the loser must not
    use it (Go would) nor fail (the Rust core would); it creates the next key."""

    class RevokeWinner(InMemoryMetastore):
        def store(self, key_id: str, created: int, record: EnvelopeKeyRecord) -> bool:
            if key_id.startswith("_IK_") and not self.items_for(key_id):
                super().store(key_id, created, record.revoked_copy())  # a rival won, revoked
                return False
            return super().store(key_id, created, record)

        def items_for(self, key_id: str) -> list[int]:
            return [c for k, c, _ in self.items() if k == key_id]

    metastore = RevokeWinner()
    with SessionFactory("service", "product", kms, metastore) as factory:
        record = factory.get_session("p").encrypt(b"x")
        used = parse_data_row(record).parent
        assert metastore.items_for(used.key_id) == [used.created - 1, used.created]
        stored = metastore.load(used.key_id, used.created)
        assert stored is not None and not stored.revoked
        assert factory.get_session("p").decrypt(record) == b"x"
