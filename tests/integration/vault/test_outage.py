"""Vault stopped, hanging or sealed after warm-up, then back: no factory restart needed.

These tests stop and restart their own server (``outage_bao``); its raft storage keeps
the Transit key and the token across restarts, as a real Vault does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from asherah_django.core import InMemoryMetastore, KMSError, SessionFactory
from asherah_django.core.kms.vault import VaultTransitKMS
from asherah_django.core.kms.vault_errors import VaultConnectionError, VaultUnavailableError
from asherah_django.testing.openbao import TRANSIT_POLICY, OpenBaoServer

from .conftest import factory_for

pytestmark = pytest.mark.vault
MakeKMS = Callable[[dict[str, object]], VaultTransitKMS]


@pytest.fixture
def settings(outage_bao: OpenBaoServer) -> Iterator[dict[str, object]]:
    token = outage_bao.create_token([TRANSIT_POLICY], ttl="1h")
    yield outage_bao.settings(VAULT_TOKEN=token, VAULT_TIMEOUT=1, VAULT_CONNECT_TIMEOUT=1)
    outage_bao.resume()
    outage_bao.start()  # whatever the test did, leave it running


def warm(factory: SessionFactory, partitions: list[str]) -> dict[str, str]:
    return {p: factory.get_session(p).encrypt(p.encode()) for p in partitions}


def rows(metastore: InMemoryMetastore) -> list[tuple[str, int]]:
    return sorted((key_id, created) for key_id, created, _ in metastore.items())


def test_vault_stopped_after_warm_up_then_back(
    outage_bao: OpenBaoServer, settings: dict[str, object], make_kms: MakeKMS
) -> None:
    shared, empty = InMemoryMetastore(), InMemoryMetastore()
    with (
        factory_for(make_kms(settings), shared) as warm_factory,
        factory_for(make_kms(settings), shared) as cold_factory,
        factory_for(make_kms(settings), empty) as new_factory,
    ):
        records = warm(warm_factory, ["a", "b", "c"])
        before = rows(shared)

        outage_bao.stop()
        # Partitions whose keys are cached keep working, and so does a new partition
        # (its intermediate key is made under the cached system key).
        for partition, record in records.items():
            session = warm_factory.get_session(partition)
            assert session.decrypt(record) == partition.encode()
            assert session.decrypt(session.encrypt(b"during")) == b"during"
        assert warm_factory.get_session("d").decrypt(warm_factory.get_session("d").encrypt(b"d"))

        # Work that needs Vault fails fast, with a clear error.
        started = time.monotonic()
        with pytest.raises(VaultConnectionError) as raised:
            cold_factory.get_session("a").decrypt(records["a"])
        assert time.monotonic() - started < 1.5
        assert str(raised.value).startswith(
            "Vault Transit decrypt request failed: connection refused "
            f"(VAULT_ADDR={outage_bao.addr}, mount=transit, key=asherah-master) (hint: verify "
            "VAULT_ADDR is correct and Vault is reachable; check firewall rules"
        )
        with pytest.raises(
            VaultConnectionError, match="encrypt request failed: connection refused"
        ):
            new_factory.get_session("x").encrypt(b"x")
        # Nothing half-written: no system key without Vault's ciphertext, no orphan IK.
        assert rows(empty) == []
        new_rows = [key_id for key_id, created in rows(shared) if (key_id, created) not in before]
        assert new_rows == ["_IK_d_service_product"]  # made under the cached system key

        outage_bao.start()
        # The same factories work again, without being rebuilt.
        assert cold_factory.get_session("a").decrypt(records["a"]) == b"a"
        record = new_factory.get_session("x").encrypt(b"x")
        assert new_factory.get_session("x").decrypt(record) == b"x"
        assert [key_id for key_id, _ in rows(empty)] == [
            "_IK_x_service_product",
            "_SK_service_product",
        ]


def test_vault_hanging_times_out_without_retrying_then_recovers(
    outage_bao: OpenBaoServer, settings: dict[str, object], make_kms: MakeKMS
) -> None:
    metastore = InMemoryMetastore()
    with factory_for(make_kms(settings), metastore) as factory:
        warm(factory, ["a"])
    kms = make_kms(settings)
    with factory_for(kms, metastore) as cold:
        outage_bao.pause()  # SIGSTOP: the kernel accepts connections, nobody answers
        started = time.monotonic()
        with pytest.raises(VaultConnectionError) as raised:
            cold.get_session("a").encrypt(b"needs the system key")
        elapsed = time.monotonic() - started
        assert 1.0 <= elapsed < 2.0  # VAULT_TIMEOUT=1, and read timeouts are not retried
        assert "request failed: no answer within VAULT_TIMEOUT=1s" in str(raised.value)
        assert kms.stats.retries == 0
        outage_bao.resume()
        assert cold.get_session("a").decrypt(cold.get_session("a").encrypt(b"ok")) == b"ok"


def test_sealed_vault_is_retried_with_backoff_then_reported(
    outage_bao: OpenBaoServer, settings: dict[str, object], make_kms: MakeKMS
) -> None:
    kms = make_kms(settings)
    blob = kms.encrypt_key(bytes(32))
    outage_bao.api("PUT", "sys/seal")
    with pytest.raises(VaultUnavailableError) as raised:
        kms.decrypt_key(blob)
    assert str(raised.value).startswith("Vault Transit decrypt failed: HTTP 503: Vault is sealed")
    assert isinstance(raised.value, KMSError) and raised.value.status == 503
    assert kms.stats.retries == 2  # VAULT_MAX_RETRIES default
    outage_bao.restart()  # the static seal unseals it on start
    assert kms.decrypt_key(blob) == bytes(32)
