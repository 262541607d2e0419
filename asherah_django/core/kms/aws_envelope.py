"""Asherah's AWS KMS system-key envelope, and the errors of the AWS KMSs (no boto3 here).

A system key is stored as the UTF-8 JSON that Asherah's Go, Java, C# and Rust
implementations write::

    {"encryptedKey": "<b64 AES-256-GCM(system key) under a data key>",
     "kmsKeks": [{"region": "us-east-1", "arn": "arn:aws:kms:...",
                  "encryptedKek": "<b64 KMS ciphertext of the data key>"}, ...]}

The data key comes from ``GenerateDataKey`` (AES_256) in the preferred region and is
encrypted for every other region with that region's key (``Encrypt``). ``encryptedKey``
uses Asherah's AES-GCM layout (``ciphertext || tag || nonce``). Byte strings are standard
base64 with padding (Go's ``[]byte`` JSON); reading also accepts arrays of byte values,
the form older Rust builds wrote.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..errors import KMSError

HINT_ENVELOPE = (
    "the stored system key was not written by an AWS KMS: check KMS matches the "
    "other services sharing this metastore"
)
HINT_CREDENTIALS = (
    "configure AWS credentials (environment variables, shared config/AWS_PROFILE_NAME, "
    "or an instance/IRSA role) with kms:Encrypt, kms:Decrypt and kms:GenerateDataKey"
)


class AwsKMSError(KMSError):
    """AWS KMS refused or failed an operation; ``regions`` lists the regions tried."""

    def __init__(self, message: str, *, hint: str = "", regions: Sequence[str] = ()) -> None:
        super().__init__(message, hint=hint)
        self.regions = tuple(regions)


class AwsKMSUnavailableError(AwsKMSError):
    """No region could be reached (connection refused, timeouts, 5xx) after retrying."""


class AwsEnvelopeError(AwsKMSError):
    """A stored system key is not an Asherah AWS KMS envelope, or names none of our regions."""


@dataclass(frozen=True)
class RegionalKek:
    """The data key encrypted by one region's KMS key."""

    region: str
    arn: str
    encrypted_kek: bytes


@dataclass(frozen=True)
class Envelope:
    """A parsed system-key envelope."""

    encrypted_key: bytes
    keks: tuple[RegionalKek, ...]

    def by_region(self) -> Mapping[str, RegionalKek]:
        """The first kek of each region (Asherah's lookup)."""
        found: dict[str, RegionalKek] = {}
        for kek in self.keks:
            found.setdefault(kek.region, kek)
        return found

    def to_json(self) -> bytes:
        """Compact JSON in Asherah's field order."""
        doc = {
            "encryptedKey": _b64(self.encrypted_key),
            "kmsKeks": [
                {"region": k.region, "arn": k.arn, "encryptedKek": _b64(k.encrypted_kek)}
                for k in self.keks
            ],
        }
        return json.dumps(doc, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_json(cls, blob: bytes) -> Envelope:
        """Parse stored bytes; :class:`AwsEnvelopeError` if they are not an envelope."""
        try:
            doc = json.loads(bytes(blob).decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise AwsEnvelopeError(
                "stored system key is not an AWS KMS envelope (not JSON)", hint=HINT_ENVELOPE
            ) from None
        if not isinstance(doc, dict) or not isinstance(doc.get("kmsKeks"), list):
            raise AwsEnvelopeError(
                "stored system key is not an AWS KMS envelope (no kmsKeks)", hint=HINT_ENVELOPE
            )
        keks = []
        for item in doc["kmsKeks"]:
            if not isinstance(item, dict) or not isinstance(item.get("region"), str):
                raise AwsEnvelopeError("AWS KMS envelope has a kek without a region")
            arn = item.get("arn")
            keks.append(
                RegionalKek(item["region"], arn if isinstance(arn, str) else "",
                            _bytes(item.get("encryptedKek"), "encryptedKek"))
            )  # fmt: skip
        return cls(_bytes(doc.get("encryptedKey"), "encryptedKey"), tuple(keks))


def describe(blob: bytes) -> list[dict[str, str]] | None:
    """Regions and key ARNs wrapping a stored system key (never bytes), or None if the
    bytes are not an AWS envelope (admin pages, asherah_check)."""
    try:
        envelope = Envelope.from_json(blob)
    except AwsEnvelopeError:
        return None
    return [{"region": k.region, "arn": k.arn} for k in envelope.keks]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _bytes(value: object, name: str) -> bytes:
    try:
        if isinstance(value, str):
            return base64.b64decode(value, validate=True)
        if isinstance(value, list) and all(isinstance(b, int) for b in value):
            return bytes(value)
    except (binascii.Error, ValueError):
        pass
    raise AwsEnvelopeError(f"AWS KMS envelope field {name} is not base64", hint=HINT_ENVELOPE)
