"""What erasure (``manage.py asherah_erase``) needs from a KMS beyond wrapping keys.

Erasure makes every copy of retired system keys unopenable: the master key is rotated, the
new system key is wrapped under the newest version, and a *decryption floor* is raised
above every version that wrapped a retired key (Vault Transit: ``min_decryption_version``).
The receipt is signed by the KMS so an auditor can verify it later without the database.

Implementations: :class:`~.vault_erase.VaultEraseKMS` (Vault/OpenBao Transit) and
:class:`~.static_erase.StaticEraseKMS` (the documented equivalent for the static test KMS:
a new master key replaces the old one). :func:`erase_kms_for` picks one, or refuses.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from ..errors import KMSError
from ..protocols import KeyManagementService


class EraseRefusedError(KMSError):
    """The KMS cannot take part in an erasure (wrong kind, missing permission, no key)."""


@runtime_checkable
class EraseCapableKMS(KeyManagementService, Protocol):
    """A KMS whose master key versions can be rotated and retired, and that signs."""

    #: Short name in receipts and messages: ``vault-transit``, ``static``.
    kind: str

    def describe(self) -> str:
        """Where the master key lives (server, mount, key name): no secret."""
        ...

    def check_permissions(self, *, trim: bool = False) -> None:
        """Raise :class:`EraseRefusedError` naming every missing permission (with
        ``trim``, also the one :meth:`destroy_below` needs)."""
        ...

    def latest_version(self) -> int:
        """The newest master-key version (new wrappings use it)."""
        ...

    def floor(self) -> int:
        """The lowest master-key version the KMS still opens."""
        ...

    def version_of(self, encrypted_key: bytes) -> int:
        """The master-key version that made this wrapping."""
        ...

    def rotate(self) -> int:
        """Create a new master-key version; returns it."""
        ...

    def raise_floor(self, version: int) -> None:
        """Make every wrapping under a version below ``version`` unopenable. An operator
        with the KMS's configuration rights could lower the floor again: see
        :meth:`destroy_below`."""
        ...

    def destroy_below(self, version: int) -> None:
        """Delete the master-key versions below ``version`` for good (Vault ``trim``):
        no configuration change can open their wrappings again."""
        ...

    def opens(self, encrypted_key: bytes) -> bool:
        """Whether the KMS still unwraps ``encrypted_key`` (the key itself is dropped)."""
        ...

    def signer(self) -> str:
        """Names the signing key in receipts (``vault-transit:<mount>/<key>``)."""
        ...

    def sign(self, payload: bytes) -> str:
        """A signature of ``payload`` that :meth:`verify` (and the auditor) checks."""
        ...

    def verify(self, payload: bytes, signature: str) -> bool:
        """Whether ``signature`` is a valid signature of ``payload``."""
        ...


def erase_kms_for(kms: KeyManagementService, options: Mapping[str, str | None]) -> EraseCapableKMS:
    """The erase-capable view of the configured KMS, or :class:`EraseRefusedError`.

    ``options``: ``signing_key`` (Vault: the Transit key that signs receipts),
    ``new_static_master_key_hex`` (static: the master key that replaces the current one).
    """
    from .static import StaticKMS
    from .vault import VaultTransitKMS

    if isinstance(kms, VaultTransitKMS):
        from .vault_erase import VaultEraseKMS

        return VaultEraseKMS(kms, options.get("signing_key"))
    if isinstance(kms, StaticKMS):
        from .static_erase import StaticEraseKMS

        return StaticEraseKMS.replacing(kms, options.get("new_static_master_key_hex"))
    raise EraseRefusedError(
        f"asherah_erase cannot retire master-key versions of {type(kms).__name__}: it needs "
        "KMS=vault (Vault or OpenBao Transit: rotate, min_decryption_version, sign)",
        hint="AWS KMS keeps every key version it ever had; see docs/howto/erasure.md for the "
        "manual procedure (a new KMS key, rewrap, schedule the old key's deletion)",
    )
