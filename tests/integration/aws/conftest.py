"""Fixtures for the AWS KMS tests: real local AWS-API servers (moto), no mocks, no Django.

* ``aws``: one server for the whole session, answering for every region;
* ``region_servers``: a fresh server per region for one test, so a region can be killed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from asherah_django.core.kms.aws import AwsKMS
from asherah_django.testing.moto import MotoServer, aws_test_credentials

WEST, EAST = "us-west-2", "us-east-1"


@pytest.fixture(scope="session", autouse=True)
def _credentials() -> Iterator[None]:
    with aws_test_credentials():
        yield


@pytest.fixture(scope="session")
def aws(_credentials: None) -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


@dataclass
class Regions:
    servers: dict[str, MotoServer]
    arns: dict[str, str]

    def settings(self, preferred: str = WEST, **extra: object) -> dict[str, object]:
        return {
            "REGION_MAP": dict(self.arns),
            "PREFERRED_REGION": preferred,
            "AWS_KMS_ENDPOINTS": {r: s.url for r, s in self.servers.items()},
            **extra,
        }

    def kms(self, preferred: str = WEST, **extra: object) -> AwsKMS:
        return AwsKMS.from_mapping(self.settings(preferred, **extra))


@pytest.fixture
def region_servers(_credentials: None) -> Iterator[Regions]:
    servers = {WEST: MotoServer(), EAST: MotoServer()}
    try:
        for server in servers.values():
            server.start()
        arns = {region: server.create_key(region) for region, server in servers.items()}
        yield Regions(servers, arns)
    finally:
        for server in servers.values():
            server.stop()


@pytest.fixture
def two_region_kms(aws: MotoServer) -> Iterator[AwsKMS]:
    arns = {WEST: aws.create_key(WEST), EAST: aws.create_key(EAST)}
    kms = AwsKMS.from_mapping(
        {"REGION_MAP": arns, "PREFERRED_REGION": WEST, "AWS_ENDPOINT_URL": aws.url}
    )
    yield kms
    kms.close()
