"""From KMS=secrets-manager to KMS=aws with ``asherah_rotate --rewrap --from-kms``: the
system keys move, values written before stay readable, nothing else changes."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command

from asherah_django import runtime
from asherah_django.core.key_ids import KeyIds
from asherah_django.models import EncryptionKey
from asherah_django.testing.moto import MotoServer
from tests.integration.aws.conftest import WEST

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    runtime.reset_session_factory()
    yield
    runtime.reset_session_factory()


def rotate(*args: str) -> str:
    out = StringIO()
    call_command("asherah_rotate", *args, stdout=out)
    return out.getvalue()


def test_secrets_manager_to_aws_kms_keeps_every_value_readable(
    aws: MotoServer, settings: Any
) -> None:
    service = "migrate1"
    aws.create_secret(WEST, "legacy-master", hex_key=os.urandom(32).hex())
    arn = aws.create_key(WEST)
    common = {"SERVICE_NAME": service, "PRODUCT_ID": "prod", "AWS_REGION": WEST,
              "AWS_ENDPOINT_URL": aws.url, "SECRETS_MANAGER_SECRET_ID": "legacy-master"}  # fmt: skip
    settings.ASHERAH = {**common, "KMS": "secrets-manager"}
    before = {p: runtime.get_session_factory().get_session(p).encrypt(p.encode()) for p in "abc"}
    sk_id = KeyIds(service, "prod").system
    old_rows = list(EncryptionKey.objects.filter(id=sk_id).values_list("created", "key_record"))

    # The new KMS is configured; the old one's settings stay for --from-kms.
    settings.ASHERAH = {**common, "KMS": "aws", "REGION_MAP": {WEST: arn}}
    assert "1 system key(s) moved" in rotate(
        "--rewrap", "--from-kms", "secrets-manager", "--dry-run"
    )
    assert (
        list(EncryptionKey.objects.filter(id=sk_id).values_list("created", "key_record"))
        == old_rows
    )
    out = rotate("--rewrap", "--from-kms", "secrets-manager")
    assert "Moved system key" in out
    row = EncryptionKey.objects.get(id=sk_id)
    envelope = json.loads(base64.b64decode(json.loads(row.key_record)["Key"]))
    assert [k["arn"] for k in envelope["kmsKeks"]] == [arn]
    assert row.created == old_rows[0][0]
    runtime.reset_session_factory()
    factory = runtime.get_session_factory()
    for partition, value in before.items():
        assert factory.get_session(partition).decrypt(value) == partition.encode()
    # Run again: nothing left that the source can unwrap.
    again = rotate("--rewrap", "--from-kms", "secrets-manager")
    assert "could not unwrap" in again


def test_from_kms_needs_rewrap_and_a_known_kind(settings: Any) -> None:
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="--from-kms goes with --rewrap"):
        rotate("--system", "--from-kms", "static")
    with pytest.raises(CommandError, match="unknown: expected one of"):
        rotate("--rewrap", "--from-kms", "nope")
