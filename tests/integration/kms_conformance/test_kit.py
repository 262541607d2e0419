"""The KMS conformance kit passes for our static, Vault, AWS and Secrets Manager KMSs and
for a toy user class, and fails for a KMS that breaks a rule."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from asherah_django.core import StaticKMS
from asherah_django.core.kms.aws import AwsKMS
from asherah_django.core.kms.secrets_manager import SecretsManagerKMS
from asherah_django.core.kms.static import TEST_MASTER_KEY_HEX
from asherah_django.core.kms.vault import VaultTransitKMS
from asherah_django.testing.kms_conformance import KMSConformance, check_kms
from asherah_django.testing.moto import MotoServer, aws_test_credentials
from asherah_django.testing.openbao import OpenBaoServer
from tests.integration.kms_conformance.toy import ToyKMS


@pytest.fixture(scope="module")
def aws() -> Iterator[MotoServer]:
    with aws_test_credentials(), MotoServer() as server:
        yield server


def test_static_kms_conforms() -> None:
    check_kms(lambda: StaticKMS.from_hex(TEST_MASTER_KEY_HEX))


def test_vault_kms_conforms(tmp_path: Path) -> None:
    with OpenBaoServer(tmp_path / "bao") as bao:
        settings = bao.settings(VAULT_TOKEN=bao.root_token)
        check_kms(lambda: VaultTransitKMS.from_mapping(settings))


def test_aws_kms_conforms(aws: MotoServer) -> None:
    settings = {
        "REGION_MAP": {"us-west-2": aws.create_key("us-west-2"),
                       "eu-west-1": aws.create_key("eu-west-1")},
        "PREFERRED_REGION": "us-west-2",
        "AWS_ENDPOINT_URL": aws.url,
    }  # fmt: skip
    with aws_test_credentials():
        check_kms(lambda: AwsKMS.from_mapping(settings))


def test_secrets_manager_kms_conforms(aws: MotoServer) -> None:
    aws.create_secret("us-west-2", "conformance-master", hex_key="ab" * 32)
    settings = {"SECRETS_MANAGER_SECRET_ID": "conformance-master", "AWS_REGION": "us-west-2",
                "AWS_ENDPOINT_URL": aws.url}  # fmt: skip
    with aws_test_credentials():
        check_kms(lambda: SecretsManagerKMS.from_mapping(settings))


class TestToyUserKMS(KMSConformance):
    def make_kms(self) -> ToyKMS:
        return ToyKMS()


def test_the_kit_catches_a_kms_that_returns_the_key_unwrapped() -> None:
    class Identity:
        def encrypt_key(self, key: bytes) -> bytes:
            return key

        def decrypt_key(self, encrypted_key: bytes) -> bytes:
            return encrypted_key

    with pytest.raises(AssertionError, match="containing the key"):
        check_kms(Identity)


def test_the_kit_catches_a_kms_raising_the_wrong_error_type() -> None:
    class Sloppy(ToyKMS):
        def decrypt_key(self, encrypted_key: bytes) -> bytes:
            if len(encrypted_key) != 80:
                raise ValueError("bad")
            return super().decrypt_key(encrypted_key)

    with pytest.raises(AssertionError, match="raised ValueError, not KMSError"):
        check_kms(Sloppy)
