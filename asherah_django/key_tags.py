"""Scanning and signing this service's key rows for ``KEY_INTEGRITY`` (issue #13).

:func:`scan` reads every key row of this service (its system key, its intermediate keys,
its blind index keys), checks that each unwraps (a system key through the KMS, the others
under their system key, which must be this service's own) and classifies its integrity
tag. With ``sign=True`` it also stores the tag of each untagged row that unwraps: that is
``manage.py asherah_sign_keys``. ``asherah_check`` and the admin show the counts.

Each tag is written by its own committed ``UPDATE ... WHERE integrity_tag IS NULL``, so a
run can stop anywhere and be repeated: rows signed already are only verified again. A row
with a wrong tag is never overwritten (it is evidence), and a row that does not unwrap, or
names another service's system key, is never signed.

Signing vouches for rows as they are: run it when the table is trusted (for example right
after upgrading). A row substituted before signing would be signed too.
"""

from __future__ import annotations

import calendar
import datetime
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from django.db.models import Q

from .core import integrity
from .core.errors import AsherahError, DecryptionError
from .core.key_ids import KeyKind
from .core.keys import CryptoKey
from .core.records import EnvelopeKeyRecord, KeyMeta
from .metastore import BATCH_SIZE, DjangoMetastore
from .models import EncryptionKey

if TYPE_CHECKING:
    from .core.session import SessionFactory

#: Problem rows named in reports (the counts are always complete).
MAX_NAMED: Final = 20


@dataclass
class TagCounts:
    """What a scan found (and, when signing, did)."""

    rows: int = 0
    signed: int = 0
    untagged: int = 0
    invalid: int = 0
    unreadable: int = 0
    foreign_parent: int = 0
    signed_now: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def bad(self) -> int:
        """Rows that need a human: wrong tag, unreadable, or another service's parent."""
        return self.invalid + self.unreadable + self.foreign_parent

    def note(self, meta: KeyMeta, why: str) -> None:
        if len(self.problems) < MAX_NAMED:
            self.problems.append(f"{integrity.describe(*meta)}: {why}")

    def summary(self, *, dry_run: bool = False) -> str:
        verb = "would be signed" if dry_run else "signed now"
        parts = [f"{self.rows} key row(s)"]
        if self.signed_now:
            parts.append(f"{self.signed_now} {verb}")
        parts.append(f"{self.signed} with a valid tag")
        for count, what in (
            (self.untagged, "untagged"),
            (self.invalid, "with an invalid tag (left alone)"),
            (self.unreadable, "unreadable (left unsigned)"),
            (self.foreign_parent, "naming another system key as parent (left unsigned)"),
        ):
            if count:
                parts.append(f"{count} {what}")
        return ", ".join(parts)


def scan(
    factory: SessionFactory,
    using: str,
    *,
    sign: bool = False,
    dry_run: bool = False,
    progress: Callable[[int], None] | None = None,
) -> TagCounts:
    """Classify (and with ``sign``, sign) every key row of ``factory``'s service."""
    store = DjangoMetastore(using, system_key_id=factory.system_key_id, integrity_tags=True)
    counts = TagCounts()
    system_keys: dict[KeyMeta, CryptoKey | None] = {}
    try:
        for metas in _batches(_key_metas(factory, using)):
            records = store.load_many(metas)
            for meta in metas:
                record = records.get(meta)
                if record is None:
                    continue  # deleted meanwhile
                counts.rows += 1
                tag = _check_row(factory, store, system_keys, meta, record, counts)
                if tag is not None and sign:
                    counts.signed_now += 1
                    counts.untagged -= 1
                    if not dry_run and not store.set_tag(meta.key_id, meta.created, tag):
                        counts.signed_now -= 1  # tagged (or deleted) by someone else meanwhile
            if progress is not None:
                progress(counts.rows)
    finally:
        for key in system_keys.values():
            if key is not None:
                key.wipe()
        store.close()
    return counts


def _check_row(
    factory: SessionFactory,
    store: DjangoMetastore,
    system_keys: dict[KeyMeta, CryptoKey | None],
    meta: KeyMeta,
    record: EnvelopeKeyRecord,
    counts: TagCounts,
) -> str | None:
    """Count the row; the tag to store when it is untagged and unwraps, else None."""
    if meta.key_id == factory.system_key_id:
        key = _system_key(factory, store, system_keys, meta, record)
        purpose: integrity.Purpose = "self"
    else:
        parent = record.parent
        if parent is None or parent.key_id != factory.system_key_id:
            counts.foreign_parent += 1
            counts.note(meta, f"its parent is {parent.key_id if parent else 'missing'}")
            return None
        key = _system_key(factory, store, system_keys, parent, None)
        if key is not None:
            try:
                secret = key.unwrap(record.encrypted_key)
                if len(secret) != 32:
                    raise DecryptionError("not a 32-byte key")
            except DecryptionError:
                key = None
        purpose = "child"
    if key is None:
        counts.unreadable += 1
        counts.note(meta, "does not unwrap")
        return None
    secret_bytes = key.secret_bytes
    assert secret_bytes is not None
    state = integrity.status(secret_bytes, purpose, meta.key_id, meta.created, record)
    if state == "signed":
        counts.signed += 1
        return None
    if state == "invalid":
        counts.invalid += 1
        counts.note(meta, "its integrity tag does not verify")
        return None
    counts.untagged += 1
    return integrity.make_tag(secret_bytes, purpose, meta.key_id, meta.created, record)


def _system_key(
    factory: SessionFactory,
    store: DjangoMetastore,
    system_keys: dict[KeyMeta, CryptoKey | None],
    meta: KeyMeta,
    record: EnvelopeKeyRecord | None,
) -> CryptoKey | None:
    """The unwrapped system key ``meta`` (one KMS call per version per scan), or None."""
    if meta in system_keys:
        return system_keys[meta]
    key = None
    if record is None:
        record = store.load(*meta)
    if record is not None:
        try:
            key = CryptoKey(meta, factory.kms.decrypt_key(record.encrypted_key))
        except (AsherahError, ValueError):
            key = None
    system_keys[meta] = key
    return key


def _key_metas(factory: SessionFactory, using: str) -> Iterator[KeyMeta]:
    """This service's key rows, system keys first, each id's versions oldest first."""
    ik_prefix, suffix = factory.ids.like(KeyKind.INTERMEDIATE)
    index_prefix, _ = factory.ids.like(KeyKind.INDEX)
    rows = (
        EncryptionKey.objects.using(using)
        .filter(
            Q(id=factory.system_key_id)
            | Q(id__startswith=ik_prefix, id__endswith=suffix)
            | Q(id__startswith=index_prefix, id__endswith=suffix)
        )
        .order_by("id", "created")
        .values_list("id", "created")
    )
    system, others = [], []
    for key_id, created in rows.iterator(chunk_size=BATCH_SIZE):
        meta = KeyMeta(key_id, _epoch(created))
        if key_id == factory.system_key_id:
            system.append(meta)
        elif factory.ids.parse(key_id).ours:
            others.append(meta)
    yield from system
    yield from others


def _batches(metas: Iterator[KeyMeta]) -> Iterator[list[KeyMeta]]:
    batch: list[KeyMeta] = []
    for meta in metas:
        batch.append(meta)
        if len(batch) == BATCH_SIZE:
            yield batch
            batch = []
    if batch:
        yield batch


def _epoch(created: object) -> int:
    assert isinstance(created, datetime.datetime)
    return calendar.timegm(created.astimezone(datetime.UTC).timetuple())
