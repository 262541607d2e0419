"""Erasure receipts: a signed JSON document an auditor can verify later.

The signed payload is the receipt without its ``signature`` member, serialised as
``json.dumps(receipt, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` in UTF-8.
With Vault Transit the signature is ``<mount>/sign/<key>``'s ``vault:vN:...``; verify it
with ``vault write <mount>/verify/<key> input=<base64 of the payload> signature=<value>``
or ``manage.py asherah_erase --verify-receipt PATH``. Any change to any member (a key id,
a count, the floor) makes the verification fail. Receipts hold ids, times, counts and
versions: never key bytes.
"""

from __future__ import annotations

import base64
import datetime
import json
from pathlib import Path
from typing import Any, Final

from ..core.errors import AsherahError
from ..core.kms.erase import EraseCapableKMS
from .erase_state import EraseState

FORMAT: Final = "asherah_django erasure receipt v1"


class ReceiptError(AsherahError):
    """A receipt cannot be read, or does not verify."""


def _utc(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).isoformat(timespec="seconds")


def build(state: EraseState, kms: EraseCapableKMS, sk_id: str, operator: str) -> dict[str, Any]:
    """The unsigned receipt of a finished erasure."""
    return {
        "format": FORMAT,
        "partition": state.partition,
        "service": state.service,
        "product": state.product,
        "operator": operator,
        "started": _utc(state.started),
        "finished": _utc(datetime.datetime.now(datetime.UTC).timestamp()),
        "keys_destroyed": [
            {"id": key_id, "created": created, "created_utc": _utc(created)}
            for key_id, created in state.destroyed
        ],
        "system_keys_retired": [
            {"id": sk_id, "created": created, "created_utc": _utc(created)}
            for created in sorted(state.retired)
        ],
        "new_system_key": {"id": sk_id, "created": state.new_sk_created},
        "master_key": {
            "kms": kms.kind,
            "where": kms.describe(),
            "rotated": state.rotate,
            "decryption_floor_before": state.floor_before,
            "decryption_floor": state.floor,
            "versions_below_floor_deleted": state.trimmed,
        },
        "surviving_keys_rewrapped": state.rewrapped,
        "of_which_created_during_erasure": state.meanwhile,
        "blind_index_values_cleared": state.indexes_cleared,
        "keys_left_unreadable": list(state.unreadable),
        "verification": {
            "retired_wrappings_checked": state.verified,
            "retired_wrappings_opened": 0,
            "result": "passed" if state.verified == len(state.retired) else "incomplete",
        },
    }


def payload(receipt: dict[str, Any]) -> bytes:
    """The signed bytes: the receipt without ``signature``, canonical JSON, UTF-8."""
    body = {k: v for k, v in receipt.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign(receipt: dict[str, Any], kms: EraseCapableKMS) -> dict[str, Any]:
    signed = dict(receipt)
    signed["signature"] = {"signer": kms.signer(), "value": kms.sign(payload(receipt))}
    return signed


def write(receipt: dict[str, Any], path: str) -> None:
    Path(path).write_text(json.dumps(receipt, indent=2, ensure_ascii=False) + "\n", "utf-8")


def read(path: str) -> dict[str, Any]:
    try:
        receipt = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ReceiptError(f"cannot read the receipt {path}: {exc}") from None
    if not isinstance(receipt, dict) or receipt.get("format") != FORMAT:
        raise ReceiptError(f"{path} is not an asherah_django erasure receipt")
    return receipt


def signer_key(receipt: dict[str, Any]) -> str:
    """The Transit key named by the receipt's signer (``vault-transit:<mount>/<key>``)."""
    signer = str((receipt.get("signature") or {}).get("signer", ""))
    return signer.rsplit("/", 1)[-1] if signer.startswith("vault-transit:") else ""


def verify(receipt: dict[str, Any], kms: EraseCapableKMS) -> bool:
    """Whether the receipt's signature is valid for its content, made by ``kms``'s signer."""
    signature = receipt.get("signature")
    if not isinstance(signature, dict) or not isinstance(signature.get("value"), str):
        return False
    if signature.get("signer") != kms.signer():
        return False
    return kms.verify(payload(receipt), signature["value"])


def verify_offline(receipt: dict[str, Any], public_keys: dict[str, str]) -> bool:
    """Verify a Vault Transit ed25519 signature without Vault: ``public_keys`` is the
    ``keys`` member of ``vault read <mount>/keys/<signing key>`` (version -> base64 key,
    or -> ``{"public_key": ...}``). For auditors who have no Vault access."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    signature = receipt.get("signature")
    value = signature.get("value") if isinstance(signature, dict) else None
    parts = value.split(":", 2) if isinstance(value, str) else []
    if len(parts) != 3 or parts[0] != "vault" or not parts[1].startswith("v"):
        return False
    entry: Any = public_keys.get(parts[1][1:])
    if isinstance(entry, dict):
        entry = entry.get("public_key")
    if not isinstance(entry, str):
        return False
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(entry, validate=True))
        key.verify(base64.b64decode(parts[2], validate=True), payload(receipt))
    except (InvalidSignature, ValueError):
        return False
    return True
