"""VaultEraseKMS: erasure on Vault (or OpenBao) Transit, through VaultTransitKMS's client.

* rotate: ``POST <mount>/keys/<key>/rotate``; versions from ``<mount>/keys/<key>``;
* the floor: ``POST <mount>/keys/<key>/config`` with ``min_decryption_version``; Vault then
  refuses to decrypt (and to rewrap) every ciphertext of a lower version, whoever asks and
  whichever copy of the table it comes from; someone with ``config`` rights could lower it
  again, so ``--trim`` also deletes those versions (``<mount>/keys/<key>/trim``);
* receipts: ``<mount>/sign/<signing key>`` and ``<mount>/verify/<signing key>`` with a
  dedicated asymmetric key (``ERASURE_SIGNING_KEY``), so an auditor can verify a
  receipt with Vault, or offline with the key's public half.

:meth:`check_permissions` asks ``sys/capabilities-self`` for every path the erasure uses and
signs a probe, so a missing permission is found before anything changes.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Final

from .erase import EraseRefusedError
from .vault import VaultTransitKMS
from .vault_errors import VaultKMSError, VaultRequestError

#: The signing key's setting (a Django setting or environment variable of this name).
SIGNING_KEY_SETTING: Final = "ERASURE_SIGNING_KEY"
_PROBE: Final = b"asherah_erase permission probe"


class VaultEraseKMS:
    """The erase-capable view of a :class:`VaultTransitKMS` (same token, same server)."""

    kind = "vault-transit"

    def __init__(self, kms: VaultTransitKMS, signing_key: str | None) -> None:
        self.kms = kms
        config = kms.config
        self._mount, self._key = config.transit_mount, config.transit_key
        self._signing_key = (signing_key or "").strip()

    def __repr__(self) -> str:
        return f"<VaultEraseKMS {self.describe()}>"

    def describe(self) -> str:
        return f"{self.kms.config.addr} {self._mount}/keys/{self._key}"

    # -- KeyManagementService -------------------------------------------------------------

    def encrypt_key(self, key: bytes) -> bytes:
        return self.kms.encrypt_key(key)

    def decrypt_key(self, encrypted_key: bytes) -> bytes:
        return self.kms.decrypt_key(encrypted_key)

    # -- versions -------------------------------------------------------------------------

    def latest_version(self) -> int:
        return self.kms.transit_key_info().latest_version

    def floor(self) -> int:
        return max(1, self.kms.transit_key_info().min_decryption_version)

    def version_of(self, encrypted_key: bytes) -> int:
        return self.kms.key_version(encrypted_key)

    def rotate(self) -> int:
        self.kms.request("rotate key", "POST", f"{self._mount}/keys/{self._key}/rotate", {})
        return self.latest_version()

    def raise_floor(self, version: int) -> None:
        self._write(f"{self._mount}/keys/{self._key}/config", {"min_decryption_version": version})
        if self.floor() < version:
            raise EraseRefusedError(
                f"Vault did not raise min_decryption_version of {self._mount}/keys/{self._key} "
                f"to {version} ({self.kms.config.addr})"
            )

    def destroy_below(self, version: int) -> None:
        # Vault trims only below an explicit min_encryption_version (new wrappings use the
        # latest version anyway, which is at least ``version``).
        if self.kms.transit_key_info().min_encryption_version < version:
            self._write(
                f"{self._mount}/keys/{self._key}/config", {"min_encryption_version": version}
            )
        self._write(f"{self._mount}/keys/{self._key}/trim", {"min_available_version": version})

    def _write(self, path: str, body: dict[str, int]) -> None:
        try:
            self.kms.request("configure key", "POST", path, body)
        except VaultRequestError as exc:
            if exc.status != 204:  # Vault answers some writes with no content
                raise

    def opens(self, encrypted_key: bytes) -> bool:
        try:
            secret = bytearray(self.kms.decrypt_key(encrypted_key))
        except VaultRequestError as exc:
            if exc.status == 400:  # "ciphertext version is disallowed by policy (too old)"
                return False
            raise
        secret[:] = bytes(len(secret))
        return True

    # -- receipts -------------------------------------------------------------------------

    def signer(self) -> str:
        return f"vault-transit:{self._mount}/{self._required_signing_key()}"

    def sign(self, payload: bytes) -> str:
        name = self._required_signing_key()
        body = {"input": base64.b64encode(payload).decode("ascii")}
        data = self.kms.request("sign", "POST", f"{self._mount}/sign/{name}", body)
        signature = data.get("signature")
        if not isinstance(signature, str):
            raise EraseRefusedError(f"Vault sign with {self._mount}/keys/{name} gave no signature")
        return signature

    def verify(self, payload: bytes, signature: str) -> bool:
        name = self._required_signing_key()
        body = {"input": base64.b64encode(payload).decode("ascii"), "signature": signature}
        try:
            data = self.kms.request("verify", "POST", f"{self._mount}/verify/{name}", body)
        except VaultRequestError as exc:
            if exc.status == 400:  # a malformed signature
                return False
            raise
        return data.get("valid") is True

    # -- preconditions --------------------------------------------------------------------

    def check_permissions(self, *, trim: bool = False) -> None:
        signing = self._required_signing_key()
        m, k = self._mount, self._key
        wanted = {
            f"{m}/encrypt/{k}": "update",
            f"{m}/decrypt/{k}": "update",
            f"{m}/keys/{k}": "read",
            f"{m}/keys/{k}/rotate": "update",
            f"{m}/keys/{k}/config": "update",
            **({f"{m}/keys/{k}/trim": "update"} if trim else {}),
            f"{m}/sign/{signing}": "update",
            f"{m}/verify/{signing}": "update",
        }
        data = self.kms.request(
            "capabilities-self", "POST", "sys/capabilities-self", {"paths": list(wanted)}
        )
        missing = []
        for path, capability in wanted.items():
            found = data.get(path)
            caps = found if isinstance(found, list) else []
            if capability not in caps and "root" not in caps and "sudo" not in caps:
                missing.append(f"{capability} on {path}")
        if missing:
            raise EraseRefusedError(
                "the Vault token cannot run an erasure: missing "
                + ", ".join(missing)
                + f" ({self.kms.config.addr})",
                hint="grant the asherah-erase policy of docs/howto/erasure.md to the operator's "
                "token (`vault token capabilities <path>` shows what it has)",
            )
        try:
            self.sign(_PROBE)
        except VaultKMSError as exc:
            raise EraseRefusedError(
                f"the receipt signing key {m}/keys/{signing} cannot sign: {exc.args[0]}",
                hint=f"create it: vault write {m}/keys/{signing} type=ed25519",
            ) from None

    def _required_signing_key(self) -> str:
        if not self._signing_key:
            raise EraseRefusedError(
                f"no receipt signing key: set {SIGNING_KEY_SETTING} (in settings.ASHERAH, or "
                f"the environment variable ASHERAH_{SIGNING_KEY_SETTING}) or pass --signing-key: "
                "the Transit key that signs erasure receipts",
                hint=f"create one: vault write {self._mount}/keys/asherah-receipts type=ed25519",
            )
        return self._signing_key


if TYPE_CHECKING:  # mypy checks that the class fits the protocol
    from .erase import EraseCapableKMS

    _fits: EraseCapableKMS = VaultEraseKMS(VaultTransitKMS.__new__(VaultTransitKMS), None)
