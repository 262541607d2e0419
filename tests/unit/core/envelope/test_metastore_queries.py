"""The key hierarchy asks the metastore only what it must (counted on a real in-memory store)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from asherah_django.core import CryptoPolicy, InMemoryMetastore, SessionFactory, StaticKMS
from asherah_django.core.records import EnvelopeKeyRecord, KeyMeta, parse_data_row

SERVICE, PRODUCT = "svc", "prod"
SK_ID = f"_SK_{SERVICE}_{PRODUCT}"


class CountingMetastore(InMemoryMetastore):
    """Counts exact loads and batch loads, by key id."""

    def __init__(self) -> None:
        super().__init__()
        self.exact_loads: list[str] = []
        self.batch_loads: list[set[str]] = []

    def load(self, key_id: str, created: int) -> EnvelopeKeyRecord | None:
        self.exact_loads.append(key_id)
        return super().load(key_id, created)

    def load_many(self, metas: Iterable[KeyMeta]) -> Mapping[KeyMeta, EnvelopeKeyRecord]:
        metas = set(metas)
        self.batch_loads.append({meta.key_id for meta in metas})
        return super().load_many(metas)


def factories(store: CountingMetastore, now: list[float]) -> tuple[SessionFactory, SessionFactory]:
    kms = StaticKMS(bytes(range(32)))
    policy = CryptoPolicy(check_interval=60)
    make = lambda: SessionFactory(SERVICE, PRODUCT, kms, store, policy, clock=lambda: now[0])  # noqa: E731
    return make(), make()


def test_a_cached_system_key_is_not_loaded_again_by_preload() -> None:
    store, now = CountingMetastore(), [1_000_000.0]
    writer, reader = factories(store, now)
    records = {p: writer.get_session(p).encrypt_text(p) for p in ("p1", "p2")}
    assert reader.get_session("p1").decrypt_text(records["p1"]) == "p1"  # SK now cached
    store.batch_loads.clear()
    reader.preload([parse_data_row(records["p2"]).parent])
    assert store.batch_loads == [{"_IK_p2_svc_prod"}], "the cached system key was asked for again"


def test_a_system_key_checked_within_the_interval_is_not_reloaded() -> None:
    store, now = CountingMetastore(), [1_000_000.0]
    writer, reader = factories(store, now)
    for partition in ("p1", "p2", "p3"):
        writer.get_session(partition).encrypt_text("x")
    store.exact_loads.clear()
    now[0] += 5  # well within CHECK_INTERVAL (60 s)
    for partition in ("p1", "p2", "p3"):  # each loads its IK's latest row: its parent is valid
        reader.get_session(partition).encrypt_text("y")
    assert store.exact_loads.count(SK_ID) == 1, store.exact_loads
