"""KMS=aws / secrets-manager / dotted-path settings: offline validation, system checks and
the process-wide factory built from them (no network in the checks)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings

from asherah_django import checks, runtime
from asherah_django.conf import DEFAULTS, asherah_settings
from asherah_django.core.errors import ConfigurationError
from asherah_django.core.kms.aws import AwsKMS
from asherah_django.core.kms.aws_config import AwsKMSConfig
from asherah_django.testing.moto import MotoServer

WEST_ARN = "arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
EAST_ARN = "arn:aws:kms:us-east-1:111122223333:key/0987dcba-09fe-87dc-65ba-ab0987654321"
BASE = {"SERVICE_NAME": "svc", "PRODUCT_ID": "prod"}
AWS = {**BASE, "KMS": "aws", "REGION_MAP": {"us-west-2": WEST_ARN, "us-east-1": EAST_ARN},
       "PREFERRED_REGION": "us-west-2"}  # fmt: skip


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in DEFAULTS:
        monkeypatch.delenv(name, raising=False)
    asherah_settings.reload()
    yield
    monkeypatch.undo()
    asherah_settings.reload()


def messages(**asherah: Any) -> list[Any]:
    with override_settings(ASHERAH=asherah):
        return checks.check_settings()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"REGION_MAP": None}, "REGION_MAP (or KMS_KEY_ID with AWS_REGION) is required"),
        ({"REGION_MAP": {"us-west-2": "not-an-arn"}}, "is not a KMS key ARN"),
        ({"REGION_MAP": {"us-west-2": EAST_ARN}}, "names a key in region 'us-east-1'"),
        ({"REGION_MAP": {"west": WEST_ARN}}, "not an AWS region name"),
        ({"REGION_MAP": "{not json"}, "REGION_MAP is not valid JSON"),
        ({"PREFERRED_REGION": None}, "PREFERRED_REGION must be set when REGION_MAP has several"),
        ({"PREFERRED_REGION": "eu-west-1"}, "PREFERRED_REGION 'eu-west-1' is not in REGION_MAP"),
        ({"AWS_KMS_ENDPOINTS": {"eu-west-1": "http://x"}}, "not in REGION_MAP"),
        ({"AWS_ENDPOINT_URL": "localhost:4566"}, "must be an http(s) URL"),
        ({"AWS_TIMEOUT": "soon"}, "AWS_TIMEOUT must be a number"),
        ({"AWS_MAX_RETRIES": "-1"}, "AWS_MAX_RETRIES must be a whole number"),
    ],
)
def test_misconfiguration_is_reported_offline_with_what_to_fix(
    change: dict[str, object], expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("a system check tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    found = messages(**{k: v for k, v in {**AWS, **change}.items() if v is not None})
    assert [m.id for m in found] == ["asherah.E021"], [str(m) for m in found]
    assert expected in found[0].msg
    assert found[0].hint


def test_environment_names_asherah_users_know(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KMS", "aws")
    monkeypatch.setenv("REGION_MAP", json.dumps({"us-west-2": WEST_ARN, "us-east-1": EAST_ARN}))
    monkeypatch.setenv("PREFERRED_REGION", "us-east-1")
    with override_settings(ASHERAH=BASE):
        assert checks.check_settings() == []
        config = asherah_settings.aws_config()
    assert config.regions == ("us-east-1", "us-west-2")


def test_kms_key_id_with_aws_region_is_the_one_region_shorthand() -> None:
    config = AwsKMSConfig.from_mapping({"KMS_KEY_ID": WEST_ARN, "AWS_REGION": "us-west-2"})
    assert config.region_map == {"us-west-2": WEST_ARN}
    assert config.preferred_region == "us-west-2"


def test_valid_aws_and_secrets_manager_settings_pass() -> None:
    assert messages(**AWS) == []
    assert messages(**BASE, KMS="secrets-manager", SECRETS_MANAGER_SECRET_ID="asherah/master") == []
    found = messages(**BASE, KMS="secrets-manager")
    assert [m.id for m in found] == ["asherah.E021"]
    assert "SECRETS_MANAGER_SECRET_ID is required" in found[0].msg


def test_deploy_check_warns_secrets_manager_is_for_migration_only() -> None:
    with override_settings(ASHERAH={**BASE, "KMS": "secrets-manager",
                                    "SECRETS_MANAGER_SECRET_ID": "m"}, DEBUG=False):  # fmt: skip
        found = checks.check_deployment()
    assert [m.id for m in found] == ["asherah.W121"]
    assert "for migrating to AWS KMS or Vault only" in found[0].msg
    assert "--rewrap" in found[0].hint
    with override_settings(ASHERAH={**AWS, "AWS_ENDPOINT_URL": "http://kms.internal"}, DEBUG=False):
        assert [m.id for m in checks.check_deployment()] == ["asherah.W122"]
    with override_settings(ASHERAH=AWS, DEBUG=False):
        assert checks.check_deployment() == []
    endpoints = json.dumps({"us-east-1": "http://kms.internal:4566"})
    with override_settings(ASHERAH={**AWS, "AWS_KMS_ENDPOINTS": endpoints}, DEBUG=False):
        assert [m.id for m in checks.check_deployment()] == ["asherah.W122"]


def test_dotted_path_kms_is_checked_and_loaded() -> None:
    found = messages(**BASE, KMS="tests.integration.kms_conformance.toy.Missing")
    assert [m.id for m in found] == ["asherah.E023"]
    assert "cannot be imported" in found[0].msg
    found = messages(**BASE, KMS="tests.integration.kms_conformance.toy.NotAKMS")
    assert "missing decrypt_key" in found[0].msg
    with override_settings(ASHERAH={**BASE, "KMS": "tests.integration.kms_conformance.toy.ToyKMS",
                                    "METASTORE": "memory"}):  # fmt: skip
        factory = runtime.get_session_factory()
        assert type(factory.kms).__name__ == "ToyKMS"
        record = factory.get_session("p").encrypt(b"toy")
        assert factory.get_session("p").decrypt(record) == b"toy"
        runtime.reset_session_factory()


def test_kms_aws_builds_the_factory_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from asherah_django.testing.moto import aws_test_credentials

    with aws_test_credentials(), MotoServer() as aws:
        arn = aws.create_key("us-west-2")
        asherah = {**BASE, "KMS": "aws", "REGION_MAP": {"us-west-2": arn},
                   "AWS_ENDPOINT_URL": aws.url, "METASTORE": "memory"}  # fmt: skip
        with override_settings(ASHERAH=asherah):
            factory = runtime.get_session_factory()
            assert isinstance(factory.kms, AwsKMS)
            record = factory.get_session("p").encrypt(b"aws")
            assert factory.get_session("p").decrypt(record) == b"aws"
            runtime.reset_session_factory()


def test_unknown_kms_message_lists_the_new_choices() -> None:
    with override_settings(ASHERAH={**BASE, "KMS": "nope"}), pytest.raises(ConfigurationError) as e:
        asherah_settings.validate()
    assert "aws, secrets-manager" in str(e.value)


def test_an_invalid_aws_value_says_where_it_came_from(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASHERAH_AWS_TIMEOUT", "soon")
    found = messages(**AWS)
    assert [m.id for m in found] == ["asherah.E021"]
    assert "AWS_TIMEOUT must be a number" in found[0].msg
    assert "the ASHERAH_AWS_TIMEOUT environment variable" in found[0].msg


def test_plain_http_endpoint_is_warned_even_when_the_endpoint_map_is_not_json() -> None:
    asherah = {**AWS, "AWS_ENDPOINT_URL": "http://kms.internal", "AWS_KMS_ENDPOINTS": "{bad"}
    with override_settings(ASHERAH=asherah, DEBUG=False):
        assert [m.id for m in checks.check_deployment()] == ["asherah.W122"]
        assert [m.id for m in checks.check_settings()] == ["asherah.E021"]
