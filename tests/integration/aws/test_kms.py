"""KMS=aws against real local AWS KMS servers (moto): format, round trips, failover,
outages, 4xx handling and KMS call counts."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import uuid

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from asherah_django.core import InMemoryMetastore, SessionFactory
from asherah_django.core.kms.aws import AwsKMS
from asherah_django.core.kms.aws_envelope import (
    AwsEnvelopeError,
    AwsKMSError,
    AwsKMSUnavailableError,
    describe,
)
from asherah_django.testing.moto import MotoServer
from tests.integration.aws.conftest import EAST, WEST, Regions


def _open(blob: bytes, key: bytes) -> bytes:
    """Asherah's AES-GCM layout, ciphertext || tag || nonce, opened independently."""
    return AESGCM(key).decrypt(blob[-12:], blob[:-12], None)


def test_round_trip_and_envelope_layout_match_asherah(
    two_region_kms: AwsKMS, aws: MotoServer
) -> None:
    system_key = os.urandom(32)
    stored = two_region_kms.encrypt_key(system_key)
    assert two_region_kms.decrypt_key(stored) == system_key
    doc = json.loads(stored)
    # Field names, order and compact JSON as the Go and Rust implementations write them.
    assert list(doc) == ["encryptedKey", "kmsKeks"]
    assert stored == json.dumps(doc, separators=(",", ":")).encode()
    assert [list(k) for k in doc["kmsKeks"]] == [["region", "arn", "encryptedKek"]] * 2
    assert [k["region"] for k in doc["kmsKeks"]] == [EAST, WEST]
    assert {k["region"]: k["arn"] for k in doc["kmsKeks"]} == dict(two_region_kms.config.region_map)
    # Each region's kek, decrypted by KMS directly, is the data key that opens encryptedKey.
    for kek in doc["kmsKeks"]:
        client = aws.client("kms", kek["region"])
        data_key = client.decrypt(CiphertextBlob=base64.b64decode(kek["encryptedKek"]))["Plaintext"]
        assert _open(base64.b64decode(doc["encryptedKey"]), data_key) == system_key
    assert describe(stored) == [{"region": k["region"], "arn": k["arn"]} for k in doc["kmsKeks"]]


def test_reads_the_byte_array_form_older_rust_builds_wrote(two_region_kms: AwsKMS) -> None:
    system_key = os.urandom(32)
    doc = json.loads(two_region_kms.encrypt_key(system_key))
    doc["encryptedKey"] = list(base64.b64decode(doc["encryptedKey"]))
    for kek in doc["kmsKeks"]:
        kek["encryptedKek"] = list(base64.b64decode(kek["encryptedKek"]))
    assert two_region_kms.decrypt_key(json.dumps(doc).encode()) == system_key


def test_a_vault_or_static_blob_is_a_typed_envelope_error(two_region_kms: AwsKMS) -> None:
    for blob in (b"vault:v1:abc", b"\x00" * 60, b'{"kmsKeks": "x"}'):
        with pytest.raises(AwsEnvelopeError, match="not an AWS KMS envelope"):
            two_region_kms.decrypt_key(blob)


def test_a_key_wrapped_only_for_other_regions_names_them(aws: MotoServer) -> None:
    arn = aws.create_key("eu-west-1")
    other = AwsKMS.from_mapping({"REGION_MAP": {"eu-west-1": arn}, "AWS_ENDPOINT_URL": aws.url})
    stored = other.encrypt_key(os.urandom(32))
    ours = AwsKMS.from_mapping(
        {"REGION_MAP": {WEST: aws.create_key(WEST)}, "AWS_ENDPOINT_URL": aws.url}
    )
    with pytest.raises(AwsEnvelopeError, match=r"wrapped for regions eu-west-1.*\(us-west-2\)"):
        ours.decrypt_key(stored)


def test_failover_preferred_region_down_decrypts_via_another_within_two_seconds(
    region_servers: Regions,
) -> None:
    system_key = os.urandom(32)
    stored = region_servers.kms().encrypt_key(system_key)
    region_servers.servers[WEST].stop()  # the preferred region's KMS is gone
    kms = region_servers.kms()
    started = time.monotonic()
    assert kms.decrypt_key(stored) == system_key
    elapsed = time.monotonic() - started
    assert elapsed < 2.0, elapsed
    assert kms.stats.by_region == {EAST: 1}
    assert kms.stats.decrypt == 1


def test_failover_hung_preferred_region_is_not_retried_after_read_timeout(
    region_servers: Regions,
) -> None:
    system_key = os.urandom(32)
    stored = region_servers.kms().encrypt_key(system_key)
    region_servers.servers[WEST].pause()
    kms = region_servers.kms(AWS_TIMEOUT="0.5")
    started = time.monotonic()
    assert kms.decrypt_key(stored) == system_key
    assert time.monotonic() - started < 2.0
    assert kms.stats.retries == 0


def test_every_region_down_cached_partitions_work_and_cold_work_fails_fast(
    region_servers: Regions,
) -> None:
    metastore = InMemoryMetastore()
    warm = SessionFactory("svc", "prod", region_servers.kms(), metastore)
    warm_record = warm.get_session("warm").encrypt(b"before the outage")
    for server in region_servers.servers.values():
        server.stop()
    # The cached system and intermediate keys need no KMS.
    assert warm.get_session("warm").decrypt(warm_record) == b"before the outage"
    assert warm.get_session("warm").decrypt(warm.get_session("warm").encrypt(b"x")) == b"x"
    # A process with cold caches cannot unwrap the system key: a typed error, fast.
    cold = SessionFactory("svc", "prod", region_servers.kms(), metastore)
    started = time.monotonic()
    with pytest.raises(AwsKMSUnavailableError) as caught:
        cold.get_session("warm").decrypt(warm_record)
    assert time.monotonic() - started < 2.0
    assert caught.value.regions == (WEST, EAST)
    assert "tried us-west-2, us-east-1" in str(caught.value)
    # Creating a first system key fails the same way.
    fresh = SessionFactory("svc", "other", region_servers.kms(), InMemoryMetastore())
    with pytest.raises(AwsKMSUnavailableError, match="us-west-2"):
        fresh.get_session("p").encrypt(b"y")
    warm.close()


def test_a_region_down_at_creation_refuses_the_key_naming_the_region(
    region_servers: Regions,
) -> None:
    region_servers.servers[EAST].stop()
    with pytest.raises(AwsKMSUnavailableError, match="Encrypt in us-east-1") as caught:
        region_servers.kms().encrypt_key(os.urandom(32))
    assert caught.value.regions == (EAST,)


def test_4xx_unknown_key_is_not_retried_and_says_what_to_check(aws: MotoServer) -> None:
    arn = aws.create_key(WEST).rsplit("/", 1)[0] + f"/{uuid.uuid4()}"  # no such key
    kms = AwsKMS.from_mapping({"REGION_MAP": {WEST: arn}, "AWS_ENDPOINT_URL": aws.url})
    with pytest.raises(
        AwsKMSError, match=r"GenerateDataKey in us-west-2 failed: NotFoundException"
    ) as caught:
        kms.encrypt_key(os.urandom(32))
    assert not isinstance(caught.value, AwsKMSUnavailableError)
    assert "exists and is enabled" in caught.value.hint
    assert kms.stats.retries == 0
    assert kms.stats.generate == 1


def test_kms_calls_counted_one_generate_for_ten_thousand_encrypts_over_100_partitions(
    aws: MotoServer,
) -> None:
    arn = aws.create_key(WEST)
    kms = AwsKMS.from_mapping({"REGION_MAP": {WEST: arn}, "AWS_ENDPOINT_URL": aws.url})
    with SessionFactory("svc", "count", kms, InMemoryMetastore()) as factory:
        for i in range(10_000):
            factory.get_session(f"p{i % 100}").encrypt(b"value")
    assert (kms.stats.generate, kms.stats.encrypt, kms.stats.decrypt) == (1, 0, 0)
    assert kms.stats.kms_calls == 1


def test_two_regions_cost_one_call_per_region_per_system_key(two_region_kms: AwsKMS) -> None:
    with SessionFactory("svc", "count2", two_region_kms, InMemoryMetastore()) as factory:
        for i in range(1_000):
            factory.get_session(f"p{i % 100}").encrypt(b"value")
    stats = two_region_kms.stats
    assert (stats.generate, stats.encrypt, stats.decrypt) == (1, 1, 0)
    assert stats.by_region == {WEST: 1, EAST: 1}


def test_package_imports_and_configures_without_boto3() -> None:
    code = (
        "import sys; sys.modules['boto3'] = None\n"
        "import asherah_django.core.kms.aws as aws\n"
        "kms = aws.AwsKMS.from_mapping({'REGION_MAP': "
        "{'us-west-2': 'arn:aws:kms:us-west-2:111122223333:key/abc'}})\n"
        "try:\n    kms.encrypt_key(bytes(32))\n"
        "except Exception as e:\n    print(type(e).__name__, e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("ConfigurationError")
    assert "pip install 'asherah-django[aws]'" in out.stdout


def test_botocore_debug_logs_never_carry_the_data_key(
    two_region_kms: AwsKMS, aws: MotoServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    system_key = os.urandom(32)
    stored = two_region_kms.encrypt_key(system_key)
    assert two_region_kms.decrypt_key(stored) == system_key
    kek = json.loads(stored)["kmsKeks"][0]
    data_key = aws.client("kms", kek["region"]).decrypt(
        CiphertextBlob=base64.b64decode(kek["encryptedKek"])
    )["Plaintext"]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert any(r.name.startswith("botocore") for r in caplog.records)  # DEBUG was on
    for secret in (data_key, system_key):
        assert base64.b64encode(secret).decode() not in logged
        assert repr(secret)[2:-1] not in logged


def test_a_forked_child_builds_its_own_clients_and_counts_from_zero(two_region_kms: AwsKMS) -> None:
    from tests.integration.vault.test_fork import run_in_child

    system_key = os.urandom(32)
    stored = two_region_kms.encrypt_key(system_key)
    parent_client = two_region_kms.client("kms", WEST)

    def child() -> bool:
        fresh = two_region_kms.client("kms", WEST) is not parent_client
        zero = two_region_kms.stats.kms_calls == 0
        unwrapped = two_region_kms.decrypt_key(stored) == system_key
        return fresh and zero and unwrapped and two_region_kms.stats.decrypt == 1

    assert run_in_child(child) == 0
    assert two_region_kms.client("kms", WEST) is parent_client
    assert two_region_kms.decrypt_key(stored) == system_key
