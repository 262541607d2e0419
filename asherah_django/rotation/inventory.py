"""``asherah_rotate --report``: which keys the stored values use.

Counts values per intermediate key, per system key and per Vault key version (of the
system key that wraps their intermediate key), and lists the stored system keys by Vault
key version, so operators know when an old key can be shredded or an old Vault key
version retired (``min_decryption_version``, after ``--rewrap``). Nothing is decrypted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..core.errors import MalformedRecordError
from ..core.kms.vault_errors import VaultKMSError
from ..core.records import EnvelopeKeyRecord, KeyMeta
from ..maintenance import pk_windows
from ..maintenance.summary import Summary, when
from .keys import stored_versions
from .reencrypt import UNREADABLE, KeyStatus
from .targets import Target, check_pk, parse, partition_of

if TYPE_CHECKING:
    from ..core.session import SessionFactory


@dataclass
class Inventory:
    """Value counts by key; ``records`` holds the key records found (None: missing)."""

    targets: list[str] = field(default_factory=list)
    rows: int = 0
    not_encrypted: int = 0
    foreign: int = 0
    by_intermediate: Counter[KeyMeta] = field(default_factory=Counter)
    records: dict[KeyMeta, EnvelopeKeyRecord | None] = field(default_factory=dict)
    #: Vault key version (or None for another KMS) of every stored system key version.
    stored_system_keys: dict[int, int | None] = field(default_factory=dict)

    def system_key_of(self, meta: KeyMeta) -> KeyMeta | None:
        record = self.records.get(meta)
        return record.parent if record is not None else None

    def by_system(self) -> Counter[KeyMeta | None]:
        counts: Counter[KeyMeta | None] = Counter()
        for meta, n in self.by_intermediate.items():
            counts[self.system_key_of(meta)] += n
        return counts

    def by_vault_version(self) -> Counter[int | None]:
        counts: Counter[int | None] = Counter()
        for meta, n in self.by_system().items():
            version = self.stored_system_keys.get(meta.created) if meta is not None else None
            counts[version] += n
        return counts


def take_inventory(
    factory: SessionFactory,
    targets: Sequence[Target],
    *,
    using: str | None = None,
    batch_size: int = 1000,
) -> Inventory:
    """Read every value of ``targets`` (raw, in pk windows) and count them by key."""
    inventory = Inventory(targets=[target.label for target in targets])
    for target in targets:
        check_pk(target)
        table = target.model._base_manager.db_manager(target.database(using)).all()
        for rows in pk_windows(table, target.columns(), batch_size):
            for row in rows:
                inventory.rows += 1
                for text in row[1:]:
                    record = parse(text)
                    if record is None:
                        inventory.not_encrypted += text is not None and text != ""
                    elif partition_of(factory, record.parent.key_id) is None:
                        inventory.foreign += 1
                    else:
                        inventory.by_intermediate[record.parent] += 1
    status = KeyStatus(factory, None)
    status.load(inventory.by_intermediate)
    inventory.records = dict(status.records)
    kms = factory.kms
    from ..core.kms.vault import VaultTransitKMS

    for created, text in stored_versions(factory, factory.system_key_id):
        version: int | None = None
        if isinstance(kms, VaultTransitKMS):
            try:
                version = kms.key_version(EnvelopeKeyRecord.from_json(text).encrypted_key)
            except (VaultKMSError, MalformedRecordError, ValueError):
                version = None  # a malformed row: listed without a version
        inventory.stored_system_keys[created] = version
    return inventory


def report(inventory: Inventory, summary: Summary) -> None:
    """Say the inventory, one table after the other."""
    values = sum(inventory.by_intermediate.values())
    summary.say(
        f"Inventory of {', '.join(inventory.targets) or 'no encrypted field'}: "
        f"{inventory.rows} row(s), {values} encrypted value(s) of this service"
        + (f", {inventory.not_encrypted} not encrypted" if inventory.not_encrypted else "")
        + (f", {inventory.foreign} of another service" if inventory.foreign else "")
        + "."
    )
    summary.say("Values by intermediate key:" + ("" if inventory.by_intermediate else " none"))
    found = {meta for meta, record in inventory.records.items() if record is not None}
    for meta, n in sorted(inventory.by_intermediate.items()):
        record = inventory.records.get(meta)
        state = "missing" if record is None else "revoked" if record.revoked else "current"
        summary.say(f"  {meta.key_id}  created {when(meta.created)}  {state:<8} {n}")
    unreadable = sum(n for meta, n in inventory.by_intermediate.items() if meta not in found)
    if unreadable:
        summary.say(
            f"{unreadable} value(s) name an intermediate key that is missing or unreadable: "
            "they cannot be decrypted (see the log of --reencrypt for their rows)."
        )
        summary.count(UNREADABLE, unreadable)
    summary.say("Values by system key:" + ("" if inventory.by_intermediate else " none"))
    for system, n in sorted(inventory.by_system().items(), key=lambda item: str(item[0])):
        if system is None:
            summary.say(f"  (intermediate key missing)  {n}")
            continue
        version = inventory.stored_system_keys.get(system.created)
        label = f"Vault v{version}" if version is not None else "-"
        if system.created not in inventory.stored_system_keys:
            label = "missing"
        summary.say(f"  {system.key_id}  created {when(system.created)}  {label}  {n}")
    summary.say("Values by Vault key version:" + ("" if inventory.by_intermediate else " none"))
    for version, n in sorted(inventory.by_vault_version().items(), key=lambda item: item[0] or 0):
        summary.say(f"  {f'v{version}' if version is not None else '(not Vault)'}  {n}")
    versions = Counter(inventory.stored_system_keys.values())
    summary.say(
        "Stored system keys by Vault key version: "
        + (
            ", ".join(
                f"{f'v{v}' if v is not None else '(not Vault)'}: {n}"
                for v, n in sorted(versions.items(), key=lambda item: item[0] or 0)
            )
            or "none"
        )
        + "."
    )
