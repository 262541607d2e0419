"""Read-only views of Vault state for diagnostics (``asherah_check``), and the blob format.

The stored system key of the Vault Transit KMS is the UTF-8 of Vault's ciphertext string,
``vault:v<version>:<base64>``, exactly as Asherah's Rust core (asherah-ffi) stores it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from .vault_errors import HINT_BLOB, VaultBlobError

CIPHERTEXT_PREFIX: Final = "vault:v"
_VERSIONED = re.compile(r"vault:v([1-9][0-9]{0,9}):")


def parse_version(ciphertext: str) -> int | None:
    """The key version of a ``vault:vN:...`` string, or ``None`` when it has no valid prefix."""
    match = _VERSIONED.match(ciphertext)
    return int(match.group(1)) if match else None


def check_ciphertext(encrypted_key: bytes, op: str, ctx: str) -> str:
    """The ``vault:vN:...`` string of a stored system key, or :class:`VaultBlobError`."""
    try:
        text = bytes(encrypted_key).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise VaultBlobError(
            f"Vault Transit {op}: blob is not valid UTF-8 (invalid byte at offset {exc.start}) "
            f"{ctx}",
            hint=HINT_BLOB,
        ) from None
    if parse_version(text) is None:
        raise VaultBlobError(
            f"Vault Transit {op}: ciphertext does not start with the expected "
            f"`{CIPHERTEXT_PREFIX}<n>:` version prefix (got {len(text)} bytes) {ctx}",
            hint=HINT_BLOB,
        )
    return text


@dataclass(frozen=True)
class VaultHealth:
    """``sys/health``: whether Vault can serve requests at all (no token needed)."""

    initialized: bool
    sealed: bool
    standby: bool
    version: str
    cluster_name: str

    @property
    def ready(self) -> bool:
        return self.initialized and not self.sealed


@dataclass(frozen=True)
class VaultTokenInfo:
    """``auth/token/lookup-self`` without the token or its accessor."""

    ttl: int
    renewable: bool
    policies: tuple[str, ...]
    display_name: str
    expire_time: str | None
    explicit_max_ttl: int
    path: str


@dataclass(frozen=True)
class TransitKeyInfo:
    """``<mount>/keys/<key>``: the Transit key's versions and rules (no key material)."""

    name: str
    type: str
    latest_version: int
    min_decryption_version: int
    min_encryption_version: int
    deletion_allowed: bool
    exportable: bool
    auto_rotate_period: int
    versions: tuple[int, ...]


def _int(value: object) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return 0


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def health_from(body: Mapping[str, object]) -> VaultHealth:
    return VaultHealth(
        initialized=body.get("initialized") is True,
        sealed=body.get("sealed") is not False,
        standby=body.get("standby") is True,
        version=_str(body.get("version")),
        cluster_name=_str(body.get("cluster_name")),
    )


def token_info_from(data: Mapping[str, object]) -> VaultTokenInfo:
    policies = data.get("policies")
    expire_time = data.get("expire_time")
    return VaultTokenInfo(
        ttl=_int(data.get("ttl")),
        renewable=data.get("renewable") is True,
        policies=tuple(str(p) for p in policies) if isinstance(policies, list) else (),
        display_name=_str(data.get("display_name")),
        expire_time=expire_time if isinstance(expire_time, str) else None,
        explicit_max_ttl=_int(data.get("explicit_max_ttl")),
        path=_str(data.get("path")),
    )


def transit_key_from(data: Mapping[str, object]) -> TransitKeyInfo:
    keys = data.get("keys")
    versions = tuple(sorted(_int(v) for v in keys)) if isinstance(keys, dict) else ()
    return TransitKeyInfo(
        name=_str(data.get("name")),
        type=_str(data.get("type")),
        latest_version=_int(data.get("latest_version")),
        min_decryption_version=_int(data.get("min_decryption_version")),
        min_encryption_version=_int(data.get("min_encryption_version")),
        deletion_allowed=data.get("deletion_allowed") is True,
        exportable=data.get("exportable") is True,
        auto_rotate_period=_int(data.get("auto_rotate_period")),
        versions=versions,
    )
