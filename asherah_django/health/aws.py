"""Live checks of AWS KMS (``KMS=aws``): who we are, and each region's key.

``aws.identity``  STS GetCallerIdentity: the credentials resolve, and to which principal
``aws.keys``      per region of REGION_MAP: DescribeKey (exists, enabled, a symmetric
                  ENCRYPT_DECRYPT key, multi-region or not) and an Encrypt + Decrypt of 32
                  random bytes with that region's key; a failure names the region

Each region is asked on its own, so one region down is a FAIL naming it while the others
still report. Nothing secret is reported: ARNs, key states and account ids only.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ..core.kms.aws import AwsKMS
from ..core.kms.aws_envelope import AwsKMSError, describe
from .context import Context, Outcome, combine, fail, ok, warn

if TYPE_CHECKING:
    from ..core.records import EnvelopeKeyRecord

_KEY_HINT = "check the key ARN in REGION_MAP, and enable the key (aws kms enable-key)"


def aws_kms(ctx: Context) -> AwsKMS | None:
    """The factory's KMS when it is the AWS KMS."""
    kms = ctx.factory.kms if ctx.factory is not None else None
    return kms if isinstance(kms, AwsKMS) else None


def _kms(ctx: Context) -> AwsKMS:
    kms = aws_kms(ctx)
    assert kms is not None
    return kms


def identity(ctx: Context) -> Outcome:
    """The AWS principal the credential chain resolves to (STS GetCallerIdentity)."""
    kms = _kms(ctx)
    region = kms.config.preferred_region
    sts = kms.client("sts", region)
    reply: dict[str, Any] = kms.call("AWS STS GetCallerIdentity", region, sts.get_caller_identity)
    arn, account = str(reply.get("Arn", "")), str(reply.get("Account", ""))
    return ok(f"AWS credentials resolve to {arn} (account {account})", arn=arn, account=account)


def keys(ctx: Context) -> Outcome:
    """Each region's key exists, is enabled and can encrypt and decrypt."""
    kms = _kms(ctx)
    findings: list[Outcome] = []
    regions: dict[str, dict[str, object]] = {}
    for region in kms.regions:
        arn = kms.config.region_map[region]
        try:
            regions[region] = facts = _describe(kms, region, arn)
        except AwsKMSError as exc:
            regions[region] = {"arn": arn, "ok": False}
            findings.append(fail(f"{region}: {exc.args[0]}", exc.hint or _KEY_HINT))
            continue
        problem = _problem(facts)
        if problem:
            facts["ok"] = False
            findings.append(fail(f"{region}: key {arn} {problem}", _KEY_HINT))
            continue
        try:
            _probe(kms, region, arn)
        except AwsKMSError as exc:
            facts["ok"] = False
            findings.append(fail(f"{region}: {exc.args[0]}", exc.hint or _KEY_HINT))
            continue
        facts["ok"] = True
    detail = (
        f"{len(regions)} region(s) ({', '.join(kms.regions)}; preferred "
        f"{kms.config.preferred_region}): each key exists, is enabled, and encrypted and "
        "decrypted 32 random bytes"
    )
    # The report's data is flat (REPORT_SCHEMA): one mapping of region -> value per fact.
    data: dict[str, object] = {"regions": list(kms.regions)}
    for fact in ("arn", "ok", "enabled", "state", "multi_region"):
        data[fact] = {region: facts.get(fact) for region, facts in regions.items()}
    return combine(findings, detail, data)


def _describe(kms: AwsKMS, region: str, arn: str) -> dict[str, object]:
    client = kms.client("kms", region)
    reply = kms.call("AWS KMS DescribeKey", region, lambda: client.describe_key(KeyId=arn))
    meta = reply.get("KeyMetadata") or {}
    return {
        "arn": arn,
        "key_arn": meta.get("Arn"),
        "enabled": bool(meta.get("Enabled")),
        "state": meta.get("KeyState"),
        "usage": meta.get("KeyUsage"),
        "spec": meta.get("KeySpec") or meta.get("CustomerMasterKeySpec"),
        "multi_region": bool(meta.get("MultiRegion")),
    }


def _problem(facts: dict[str, object]) -> str:
    if not facts["enabled"] or facts["state"] not in (None, "Enabled"):
        return f"is not enabled (state {facts['state']})"
    if facts["usage"] not in (None, "ENCRYPT_DECRYPT"):
        return f"is not an encryption key (usage {facts['usage']})"
    if facts["spec"] not in (None, "SYMMETRIC_DEFAULT"):
        return f"is not a symmetric key (spec {facts['spec']})"
    return ""


def _probe(kms: AwsKMS, region: str, arn: str) -> None:
    client = kms.client("kms", region)
    sample = os.urandom(32)
    blob = kms.call("AWS KMS Encrypt", region, lambda: client.encrypt(KeyId=arn, Plaintext=sample))[
        "CiphertextBlob"
    ]
    back = kms.call(
        "AWS KMS Decrypt", region, lambda: client.decrypt(KeyId=arn, CiphertextBlob=blob)
    )["Plaintext"]
    if back != sample:
        raise AwsKMSError(f"AWS KMS in {region} decrypted 32 random bytes to something else")


def system_key_findings(
    ctx: Context, record: EnvelopeKeyRecord
) -> tuple[str, dict[str, Any], list[Outcome]]:
    """For the system_key check: the regions wrapping the key, and configured regions the
    key is not wrapped for (those regions cannot fail over for it)."""
    kms = aws_kms(ctx)
    wrapped = describe(record.encrypted_key)
    if kms is None or wrapped is None:
        return "", {}, []
    regions = [item["region"] for item in wrapped]
    missing = [r for r in kms.regions if r not in regions]
    findings = []
    if missing:
        findings.append(
            warn(
                f"the system key is not wrapped for {', '.join(missing)} (in REGION_MAP): "
                "those regions cannot decrypt it",
                "revoke the system key (manage.py asherah_rotate --system) so that the next "
                "write creates one wrapped for every region",
            )
        )
    return f", wrapped by AWS KMS in {', '.join(regions)}", {"aws_regions": regions}, findings
