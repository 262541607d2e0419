"""KMS=secrets-manager against a local Secrets Manager (moto): the master key is fetched
once, wraps exactly like Asherah's static/Secrets Manager KMS, and bad secrets are typed
errors."""

from __future__ import annotations

import os

import pytest

from asherah_django.core import InMemoryMetastore, SessionFactory, StaticKMS
from asherah_django.core.kms.aws_envelope import AwsKMSError
from asherah_django.core.kms.secrets_manager import SecretsManagerKMS
from asherah_django.testing.moto import MotoServer

REGION = "us-west-2"


def kms_for(aws: MotoServer, secret_id: str) -> SecretsManagerKMS:
    return SecretsManagerKMS.from_mapping(
        {"SECRETS_MANAGER_SECRET_ID": secret_id, "AWS_REGION": REGION, "AWS_ENDPOINT_URL": aws.url}
    )


def test_hex_secret_wraps_like_the_static_kms_with_that_key(aws: MotoServer) -> None:
    master_hex = os.urandom(32).hex()
    aws.create_secret(REGION, "sm-hex", hex_key=master_hex)
    kms, static = kms_for(aws, "sm-hex"), StaticKMS.from_hex(master_hex)
    key = os.urandom(32)
    assert static.decrypt_key(kms.encrypt_key(key)) == key
    assert kms.decrypt_key(static.encrypt_key(key)) == key


def test_binary_secret_and_one_fetch_for_many_keys(aws: MotoServer) -> None:
    aws.create_secret(REGION, "sm-bin", binary=os.urandom(32))
    kms = kms_for(aws, "sm-bin")
    assert kms.stats.other == 0  # building it did no I/O
    with SessionFactory("svc", "sm", kms, InMemoryMetastore()) as factory:
        for i in range(200):
            record = factory.get_session(f"p{i % 20}").encrypt(b"v")
            assert factory.get_session(f"p{i % 20}").decrypt(record) == b"v"
    assert kms.stats.other == 1  # one GetSecretValue


@pytest.mark.parametrize(
    ("secret", "expected"),
    [
        ({"hex_key": "ab" * 16}, "holds 16 bytes; the master key must be 32"),
        ({"hex_key": "zz" * 32}, "SecretString is not hex"),
        ({"binary": b"\x01" * 31}, "holds 31 bytes"),
    ],
)
def test_a_bad_secret_is_a_typed_error(
    aws: MotoServer, secret: dict[str, object], expected: str
) -> None:
    name = f"sm-bad-{abs(hash(expected))}"
    aws.create_secret(REGION, name, **secret)  # type: ignore[arg-type]
    with pytest.raises(AwsKMSError, match=expected):
        kms_for(aws, name).encrypt_key(os.urandom(32))


def test_a_missing_secret_names_it_and_is_not_retried(aws: MotoServer) -> None:
    kms = kms_for(aws, "no-such-secret")
    with pytest.raises(AwsKMSError, match="ResourceNotFoundException") as caught:
        kms.encrypt_key(os.urandom(32))
    assert caught.value.regions == (REGION,)
    assert kms.stats.retries == 0


def test_a_different_master_key_is_a_typed_error(aws: MotoServer) -> None:
    aws.create_secret(REGION, "sm-a", hex_key=os.urandom(32).hex())
    aws.create_secret(REGION, "sm-b", hex_key=os.urandom(32).hex())
    wrapped = kms_for(aws, "sm-a").encrypt_key(os.urandom(32))
    with pytest.raises(AwsKMSError, match="differs from the one that wrapped it"):
        kms_for(aws, "sm-b").decrypt_key(wrapped)
