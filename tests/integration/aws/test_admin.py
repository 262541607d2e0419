"""The admin's system key page says which KMS and regions wrap a key, never its bytes."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from django.contrib.admin.utils import quote
from django.urls import reverse

from asherah_django.admin.keys import object_id
from asherah_django.core import SessionFactory
from asherah_django.core.key_ids import KeyIds
from asherah_django.core.kms.aws import AwsKMS
from asherah_django.metastore import DjangoMetastore
from asherah_django.models import EncryptionKey
from asherah_django.testing.moto import MotoServer
from tests.integration.aws.conftest import EAST, WEST

pytestmark = pytest.mark.django_db(transaction=True)


def test_system_key_page_names_aws_kms_and_its_regions_without_key_bytes(
    aws: MotoServer, admin_client: Any, settings: Any
) -> None:
    service = "awsadmin"
    settings.ASHERAH = {**settings.ASHERAH, "SERVICE_NAME": service}
    arns = {WEST: aws.create_key(WEST), EAST: aws.create_key(EAST)}
    kms = AwsKMS.from_mapping(
        {"REGION_MAP": arns, "PREFERRED_REGION": WEST, "AWS_ENDPOINT_URL": aws.url}
    )
    store = DjangoMetastore(system_key_id=KeyIds(service, "testprod").system)
    with SessionFactory(service, "testprod", kms, store) as factory:
        factory.get_session("alice").encrypt(b"x")
    store.close()
    row = EncryptionKey.objects.get(id=KeyIds(service, "testprod").system)
    url = reverse(
        "admin:asherah_django_encryptionkey_change", args=[quote(object_id(row.id, row.created))]
    )
    page = admin_client.get(url).content.decode()
    section = page[page.index('id="key-kms"') :][:1500]
    assert "Wrapped by:" in section and "AWS KMS" in section
    for region, arn in arns.items():
        assert region in section and arn in section
    stored = json.loads(row.key_record)["Key"]
    envelope = json.loads(base64.b64decode(stored))
    for secret in (
        stored,
        envelope["encryptedKey"],
        *(k["encryptedKek"] for k in envelope["kmsKeks"]),
    ):
        assert secret not in page
