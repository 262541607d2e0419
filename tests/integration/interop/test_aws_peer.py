"""Live interop with the ``asherah`` wheel over AWS KMS (a local moto server, two regions).

Both implementations share one SQLite metastore and the same two-region ``REGION_MAP``;
system keys and values created by either side decrypt on the other. The wheel takes one
``AWS_ENDPOINT_URL``; moto serves both regions from it (it goes by the signing region).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from asherah_django.core import SessionFactory, parse_data_row
from asherah_django.core.kms.aws import AwsKMS
from asherah_django.testing.moto import MotoServer, aws_test_credentials
from tests.support.sqlite_metastore import SqliteMetastore

asherah = pytest.importorskip("asherah", reason="the asherah wheel is in the test extras")

pytestmark = pytest.mark.interop
WEST, EAST = "us-west-2", "us-east-1"
PAYLOADS = [b"", b"mySuperSecretPayload", bytes(range(256)), "héllo ✓".encode()]


@pytest.fixture(scope="module")
def aws() -> Iterator[MotoServer]:
    with aws_test_credentials(), MotoServer() as server:
        yield server


@pytest.fixture
def region_map(aws: MotoServer) -> dict[str, str]:
    return {WEST: aws.create_key(WEST), EAST: aws.create_key(EAST)}


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "metastore.sqlite3")


@pytest.fixture
def ours(db_path: str, region_map: dict[str, str], aws: MotoServer) -> Iterator[SessionFactory]:
    metastore = SqliteMetastore(db_path)
    kms = AwsKMS.from_mapping(
        {"REGION_MAP": region_map, "PREFERRED_REGION": WEST, "AWS_ENDPOINT_URL": aws.url}
    )
    with SessionFactory("service", "product", kms, metastore) as factory:
        yield factory
    metastore.close()


@pytest.fixture
def peer(
    db_path: str, region_map: dict[str, str], aws: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.url)
    with aws_test_credentials():
        factory = asherah.SessionFactory(
            {
                "ServiceName": "service",
                "ProductID": "product",
                "Metastore": "sqlite",
                "ConnectionString": db_path,
                "KMS": "aws",
                "RegionMap": region_map,
                "PreferredRegion": WEST,
            }
        )
        yield factory
        factory.close()


def _system_key_regions(db_path: str) -> list[str]:
    rows = [r for r in SqliteMetastore(db_path).rows() if r[0] == "_SK_service_product"]
    assert len(rows) == 1
    envelope = json.loads(base64.b64decode(json.loads(rows[0][2])["Key"]))
    return [k["region"] for k in envelope["kmsKeks"]]


def test_peer_creates_the_system_key_and_values_we_decrypt(
    peer: Any, ours: SessionFactory, db_path: str
) -> None:
    written = {(p, v): peer.get_session(p).encrypt_bytes(v) for p in ("a", "b") for v in PAYLOADS}
    assert _system_key_regions(db_path) == [EAST, WEST]  # the wheel wrapped for both
    for (partition, payload), record in written.items():
        assert ours.get_session(partition).decrypt(record) == payload
    # ...and we keep using the wheel's system key for new partitions.
    ours_new = ours.get_session("c").encrypt(b"ours")
    assert peer.get_session("c").decrypt_bytes(ours_new) == b"ours"
    assert parse_data_row(ours_new).parent is not None


def test_we_create_the_system_key_and_values_the_peer_decrypts(
    peer: Any, ours: SessionFactory, db_path: str
) -> None:
    written = {(p, v): ours.get_session(p).encrypt(v) for p in ("a", "b") for v in PAYLOADS}
    assert _system_key_regions(db_path) == [EAST, WEST]
    for (partition, payload), record in written.items():
        assert peer.get_session(partition).decrypt_bytes(record) == payload
    peer_new = peer.get_session("c").encrypt_bytes(b"peer")
    assert ours.get_session("c").decrypt(peer_new) == b"peer"


def test_a_system_key_we_wrapped_decrypts_in_the_peer_via_either_region(
    ours: SessionFactory,
    region_map: dict[str, str],
    aws: MotoServer,
    db_path: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    record = ours.get_session("x").encrypt(b"either region")
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.url)
    for preferred in (EAST, WEST):
        only = {preferred: region_map[preferred]}
        with aws_test_credentials():
            peer = asherah.SessionFactory(
                {
                    "ServiceName": "service",
                    "ProductID": "product",
                    "Metastore": "sqlite",
                    "ConnectionString": db_path,
                    "KMS": "aws",
                    "RegionMap": only,
                    "PreferredRegion": preferred,
                    "ConfigDriftForceRun": True,
                }
            )
            try:
                assert peer.get_session("x").decrypt_bytes(record) == b"either region"
            finally:
                peer.close()


def test_secrets_manager_keys_are_asherah_static_wrapped_and_the_wheel_reads_them(
    aws: MotoServer, db_path: str
) -> None:
    # The wheel in the test extras is built without its secrets-manager feature, so the
    # peer reads with the static KMS and the same master key: the wrapping is identical.
    import os

    from asherah_django.core.kms.secrets_manager import SecretsManagerKMS

    master_hex = os.urandom(32).hex()
    aws.create_secret(WEST, "interop-master", hex_key=master_hex)
    kms = SecretsManagerKMS.from_mapping(
        {"SECRETS_MANAGER_SECRET_ID": "interop-master", "AWS_REGION": WEST,
         "AWS_ENDPOINT_URL": aws.url}
    )  # fmt: skip
    metastore = SqliteMetastore(db_path)
    with SessionFactory("service", "product", kms, metastore) as ours:
        record = ours.get_session("sm").encrypt(b"from secrets manager")
        peer = asherah.SessionFactory(
            {"ServiceName": "service", "ProductID": "product", "Metastore": "sqlite",
             "ConnectionString": db_path, "KMS": "static", "StaticMasterKeyHex": master_hex}
        )  # fmt: skip
        try:
            assert peer.get_session("sm").decrypt_bytes(record) == b"from secrets manager"
            back = peer.get_session("sm2").encrypt_bytes(b"from the wheel")
            assert ours.get_session("sm2").decrypt(back) == b"from the wheel"
        finally:
            peer.close()
    metastore.close()
