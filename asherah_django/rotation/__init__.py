"""Key rotation beyond Asherah's automatic expiry: what ``manage.py asherah_rotate`` does.

- :func:`revoke_system_key`, :func:`revoke_partitions` (with :func:`all_partitions`):
  mark the current key revoked, in Asherah's record format, so the next write creates a
  new one; this process stops using it at once (:func:`forget_revoked`);
- :func:`rewrap_system_keys`: move stored system keys to Vault's newest key version;
- :func:`reencrypt`: re-encrypt values whose keys are revoked or older than a cutoff,
  in primary-key windows with compare-and-swap updates, resumable (:class:`Checkpoint`);
- :func:`take_inventory` and :func:`report`: which keys the stored values use;
- :func:`shred_partition`: delete a partition's intermediate keys (crypto-shredding).

Every step says what it did through a :class:`Summary`, whose ``text()`` ends a run.
"""

from __future__ import annotations

from ..maintenance.summary import Summary, when
from .inventory import Inventory, report, take_inventory
from .keys import (
    KeyChange,
    RotationError,
    all_partitions,
    forget_revoked,
    revoke_partitions,
    revoke_system_key,
    rewrap_system_keys,
    shred_partition,
)
from .reencrypt import UNREADABLE, Checkpoint, KeyStatus, ReencryptStats, reencrypt
from .targets import Target, every_target, resolve_targets

__all__ = [
    "UNREADABLE",
    "Checkpoint",
    "Inventory",
    "KeyChange",
    "KeyStatus",
    "ReencryptStats",
    "RotationError",
    "Summary",
    "Target",
    "all_partitions",
    "every_target",
    "forget_revoked",
    "reencrypt",
    "report",
    "resolve_targets",
    "revoke_partitions",
    "revoke_system_key",
    "rewrap_system_keys",
    "shred_partition",
    "take_inventory",
    "when",
]
