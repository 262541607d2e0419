"""``manage.py asherah_check`` with KMS=aws against local KMS servers: the principal, each
region's key, the regions wrapping the system key; --json and exit codes as for Vault."""

from __future__ import annotations

import json
from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command

from asherah_django import health, runtime
from asherah_django.testing.moto import MotoServer
from tests.integration.aws.conftest import EAST, WEST, Regions

pytestmark = pytest.mark.django_db(transaction=True)


def run_command(*args: str) -> tuple[int, str]:
    out = StringIO()
    try:
        call_command("asherah_check", *args, stdout=out, stderr=StringIO())
    except SystemExit as exc:
        return int(exc.code or 0), out.getvalue()
    return 0, out.getvalue()


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    runtime.reset_session_factory()
    yield
    runtime.reset_session_factory()


def asherah(regions: Regions, service: str, **extra: object) -> dict[str, Any]:
    return {"SERVICE_NAME": service, "PRODUCT_ID": "prod", "KMS": "aws",
            **regions.settings(), **extra}  # fmt: skip


def test_healthy_two_region_setup_passes_and_reports_the_principal(
    region_servers: Regions, settings: Any
) -> None:
    settings.DEBUG = False
    settings.ASHERAH = asherah(region_servers, "awscheck1",
                               AWS_ENDPOINT_URL=region_servers.servers[WEST].url)  # fmt: skip
    status, out = run_command("--json", "--write")
    document = json.loads(out)
    assert status == 0, out
    names = [c["name"] for c in document["checks"]]
    assert names == ["settings", "aws.identity", "aws.keys", "kms.round_trip", "metastore",
                     "system_key", "write"]  # fmt: skip
    checks = {c["name"]: c for c in document["checks"]}
    assert checks["aws.identity"]["data"]["arn"].startswith("arn:aws:sts::")
    keys = checks["aws.keys"]["data"]
    assert keys["regions"] == [WEST, EAST]
    assert keys["ok"] == keys["enabled"] == {WEST: True, EAST: True}
    assert keys["arn"] == region_servers.arns
    assert "AWS KMS (regions us-west-2, us-east-1)" in checks["kms.round_trip"]["detail"]
    assert checks["kms.round_trip"]["data"]["kms"] == "aws"
    assert problems_free(document)
    # The write created the system key; the next run names the regions wrapping it.
    status, out = run_command("--json")
    system_key = {c["name"]: c for c in json.loads(out)["checks"]}["system_key"]
    assert system_key["data"]["aws_regions"] == [EAST, WEST]
    assert "wrapped by AWS KMS in us-east-1, us-west-2" in system_key["detail"]
    assert "\\u" not in out and "encryptedKek" not in out  # no key bytes


def problems_free(document: dict[str, Any]) -> bool:
    from tests.unit.management.commands.jsonshape import problems

    return problems(document, health.REPORT_SCHEMA) == []


def test_a_region_down_fails_naming_it_while_the_other_reports(
    region_servers: Regions, settings: Any
) -> None:
    settings.DEBUG = True
    settings.ASHERAH = asherah(region_servers, "awscheck2",
                               AWS_ENDPOINT_URL=region_servers.servers[WEST].url)  # fmt: skip
    region_servers.servers[EAST].stop()
    status, out = run_command()
    assert status == 1
    line = next(ln for ln in out.splitlines() if ln.startswith("aws.keys"))
    assert "FAIL" in line
    assert "us-east-1: AWS KMS DescribeKey in us-east-1 failed: could not connect" in line
    status, out = run_command("--json")
    keys = {c["name"]: c for c in json.loads(out)["checks"]}["aws.keys"]["data"]
    assert status == 1
    assert keys["ok"] == {WEST: True, EAST: False}  # the healthy region still reports


def test_a_disabled_key_fails_with_what_to_do(aws: MotoServer, settings: Any) -> None:
    arn = aws.create_key(WEST)
    aws.disable_key(arn)
    settings.DEBUG = True
    settings.ASHERAH = {"SERVICE_NAME": "awscheck3", "PRODUCT_ID": "prod", "KMS": "aws",
                        "REGION_MAP": {WEST: arn}, "AWS_ENDPOINT_URL": aws.url}  # fmt: skip
    status, out = run_command()
    assert status == 1
    line = next(ln for ln in out.splitlines() if ln.startswith("aws.keys"))
    assert f"us-west-2: key {arn} is not enabled (state Disabled)" in line
    assert "enable the key" in line
