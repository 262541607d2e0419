"""Erasure that reaches backups (issue #15): what ``manage.py asherah_erase`` does.

Deleting partition P's intermediate keys (IKs) is not enough: a backup taken earlier still
holds them, wrapped by system keys (SKs) the KMS still opens. An erasure therefore retires
every SK that ever wrapped them and makes the KMS refuse their wrappings, in every copy:

1. ``plan``: read the table; refuse (before any change) a KMS that cannot retire versions,
   missing permissions, and other services' SKs below the new floor (they would lose data);
2. ``new-sk``: rotate the master key when an old SK uses its newest version, create a new SK
   under the newest version (the latest ``created``, so every writer that looks picks it),
   then mark the old SKs revoked, so writers that re-check (within ``CHECK_INTERVAL``) move
   to it;
3. ``rewrap``: every surviving key wrapped by an old SK (IKs and blind-index keys of other
   partitions) is re-wrapped under the new SK in place: same id, ``Created`` and key bytes,
   new ``Key`` and ``ParentKeyMeta`` (and integrity tag), by compare-and-swap on the text read;
4. ``delete``: P's IKs and blind-index key rows are deleted, its blind indexes cleared;
5. ``drain``: for ``grace`` seconds (default ``CHECK_INTERVAL``: the longest an
   asherah_django writer keeps an SK cached) the sweep of step 3 runs again, so keys
   created meanwhile under an old SK end under the new one (and new rows of P go too). Then
   two sweeps ``poll`` seconds apart: rows under an old SK found by the second one were made
   by a writer that ignores the revocation (another Asherah implementation with a longer
   cache): the run stops (:class:`EraseRefusedError`) before anything is retired;
6. ``retire``: raise the KMS floor to the new SK's version, check that each old wrapping no
   longer opens (the receipt's verification), delete the old SK rows, sweep once more with
   the old SKs still in memory;
7. ``receipt``: :mod:`.receipt` builds, signs and stores it.

The phase reached is recorded (:class:`EraseState`) after each step, so a killed run
continues with ``--resume``. Old SKs are unwrapped through the KMS again on resume (until
the floor is raised). No key byte is ever written to the state, the receipt or a log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..core import integrity
from ..core.aead import Cipher, new_key
from ..core.errors import AsherahError, DecryptionError
from ..core.kms.erase import EraseCapableKMS, EraseRefusedError
from ..core.records import EnvelopeKeyRecord, KeyMeta
from ..maintenance.summary import Summary
from . import erase_rows as rows
from .erase_plan import Plan
from .erase_state import EraseState
from .keys import metastore_of

if TYPE_CHECKING:
    from ..core.session import SessionFactory
    from ..metastore import DjangoMetastore

logger = logging.getLogger("asherah_django.rotation")

Say = Callable[[str], None]


class Erasure:
    """One erasure of one partition; :meth:`run` goes through the phases from the state's."""

    def __init__(
        self,
        factory: SessionFactory,
        kms: EraseCapableKMS,
        state: EraseState,
        *,
        grace: float,
        poll: float = 1.0,
        ignore_services: tuple[str, ...] = (),
        say: Say = print,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.factory = factory
        self.kms = kms
        self.state = state
        self.store: DjangoMetastore = metastore_of(factory)
        self.grace = grace
        self.poll = poll
        self.ignore_services = ignore_services
        self.say = say
        self.progress = progress
        self.sk_id = factory.system_key_id
        self._old: dict[int, Cipher] = {}
        self._old_secrets: dict[int, bytearray] = {}
        self._new: Cipher | None = None
        self._new_secret: bytearray | None = None

    # -- plan -----------------------------------------------------------------------------

    def plan(self) -> Plan:
        """Read the table and the KMS: what would change, and what blocks it."""
        partition = self.state.partition
        doomed = self._doomed_ids()
        destroyed, survivors, old, others = [], [], [], []
        new_created = self.state.new_sk_created
        for row in rows.read_rows(self.store):
            if row.meta.key_id == self.sk_id:
                if row.meta.created != new_created:
                    old.append((row.meta.created, self._version(row)))
                continue
            if row.meta.key_id.startswith("_SK_"):
                others.append(row)
                continue
            parent = _parent(row)
            if row.meta.key_id in doomed:
                destroyed.append(row.meta)
            elif (
                parent is not None and parent.key_id == self.sk_id and parent.created != new_created
            ):
                survivors.append(row.meta)
        latest, floor_before = self.kms.latest_version(), self.kms.floor()
        rotate = self.state.floor == 0 and any(v >= latest for _, v in old)
        floor = self.state.floor or (latest + 1 if rotate else latest)
        plan = Plan(partition, doomed, destroyed, survivors, old, rotate, floor_before, floor)
        plan.blockers = self._other_services(others, floor)
        return plan

    def _other_services(self, others: list[rows.KeyRow], floor: int) -> list[str]:
        blockers = []
        for row in others:
            if any(
                row.meta.key_id == f"_SK_{s}" or row.meta.key_id.startswith(f"_SK_{s}_")
                for s in self.ignore_services
            ):
                continue
            try:
                version = self.kms.version_of(row.record().encrypted_key)
            except AsherahError:
                continue  # not wrapped by this kind of KMS: the floor cannot touch it
            if version < floor:
                blockers.append(
                    f"{row.meta.key_id} created {row.meta.created} is wrapped under master-key "
                    f"version {version}, below the new floor {floor}"
                )
        return blockers

    def refuse_blockers(self, plan: Plan) -> None:
        if plan.blockers:
            raise EraseRefusedError(
                "another service's system key shares this master key and would become "
                "unreadable: " + "; ".join(plan.blockers),
                hint="rotate the master key, rewrap that service's system keys (manage.py "
                "asherah_rotate --rewrap in it, not in this one), then run the erasure again; "
                "if that service uses another Transit key, pass --ignore-service <its id>",
            )

    # -- the phases -----------------------------------------------------------------------

    def run(self) -> None:
        steps = [
            ("new-sk", self._new_system_key),
            ("rewrap", self._rewrap),
            ("delete", self._delete),
            ("drain", self._drain),
            ("retire", self._retire),
        ]
        names = [name for name, _ in steps]
        start = names.index(self.state.phase) if self.state.phase in names else 0
        if self.state.phase == "plan":
            plan = self.plan()
            self.refuse_blockers(plan)
            self.kms.check_permissions(trim=self.state.trim)
            self.state.floor_before = plan.floor_before
            self.state.rotate = plan.rotate
        try:
            for name, step in steps[start:]:
                self.state.phase = name
                self.state.save()
                self.say(f"Phase {name}...")
                step()
            self.state.phase = "receipt"
            self.state.save()
        finally:
            self._wipe()

    def _new_system_key(self) -> None:
        if not self.state.new_sk_created and not self._adopt_pending():
            self._create_system_key()
        created = self.state.new_sk_created
        for row in rows.read_rows(self.store, key_id=self.sk_id):
            if row.meta.created != created and not row.record().revoked:
                self.store.revoke(self.sk_id, row.meta.created)
                self.say(f"  revoked old system key created {row.meta.created}")

    def _adopt_pending(self) -> bool:
        """A run killed between storing its new SK and recording it: use that SK."""
        pending = self.state.pending_sk
        record = self.store.load(self.sk_id, pending) if pending else None
        if record is None:
            return False
        self.state.new_sk_created, self.state.floor = (
            pending,
            self.kms.version_of(record.encrypted_key),
        )
        self.state.published = time.time()
        self.state.save()
        return True

    def _create_system_key(self) -> None:
        if self.state.rotate:
            self.say(f"  master key rotated to version {self.kms.rotate()}")
        secret = bytearray(new_key())
        try:
            encrypted = self.kms.encrypt_key(bytes(secret))
            version = self.kms.version_of(encrypted)
            latest = self.store.load_latest(self.sk_id)
            created = self.factory.policy.truncate(time.time())
            if latest is not None and latest.created >= created:
                created = latest.created + 1
            while True:
                record = EnvelopeKeyRecord(created, encrypted)
                if self.factory.policy.key_integrity != "off":
                    record.tag = integrity.make_tag(secret, "self", self.sk_id, created, record)
                self.state.pending_sk = created
                self.state.save()
                if self.store.store(self.sk_id, created, record):
                    break
                created += 1
            self.state.new_sk_created, self.state.floor = created, version
            self.state.published = time.time()
            self.state.save()
            self._new_secret = secret
            self._new = Cipher(secret)
        except BaseException:
            secret[:] = bytes(len(secret))
            raise
        self.say(f"  new system key {self.sk_id} created {created} (master-key version {version})")
        logger.info("asherah_erase: new system key %s created %s", self.sk_id, created)

    def _rewrap(self) -> None:
        count = self.sweep(destroy=False)
        self.say(f"  {count} surviving key(s) re-wrapped under the new system key")

    def _delete(self) -> None:
        self._delete_doomed()

    def _drain(self) -> None:
        until = self.state.published + self.grace
        while time.time() < until:
            time.sleep(min(self.poll, max(0.0, until - time.time())))
            self._count_meanwhile(self.sweep(quiet=True))
        self._count_meanwhile(self.sweep(quiet=True))
        time.sleep(self.poll)
        late = self._sweep_rows()
        if late:
            names = ", ".join(f"{m.key_id} created {m.created}" for m in late[:5])
            raise EraseRefusedError(
                f"another Asherah writer is active: it created {len(late)} key(s) under a "
                f"retired system key after the {self.grace:g} s grace period ({names})",
                hint="a writer that keeps system keys cached longer than the grace period "
                "(another Asherah implementation, or a larger CHECK_INTERVAL) must be stopped "
                "or restarted first; then run asherah_erase with --resume (the keys it made "
                "were moved to the new system key; nothing was retired)",
            )

    def _count_meanwhile(self, count: int) -> None:
        if count:
            self.state.meanwhile += count
            self.state.save()
            self.say(f"  {count} key(s) created meanwhile moved to the new system key")

    def _retire(self) -> None:
        self._load_old()  # into memory before the floor makes them unopenable
        plan = self.plan()
        self.refuse_blockers(plan)
        wrappings = [
            (row.meta.created, row.record().encrypted_key)
            for row in rows.read_rows(self.store, key_id=self.sk_id)
            if row.meta.created != self.state.new_sk_created
        ]
        self.state.retired += [c for c, _ in wrappings if c not in self.state.retired]
        if self.kms.floor() < self.state.floor:
            self.kms.raise_floor(self.state.floor)
            self.say(f"  master-key decryption floor raised to {self.state.floor}")
        opened = [c for c, blob in wrappings if self.kms.opens(blob)]
        if opened:
            raise EraseRefusedError(
                f"the KMS still opens retired system key(s) created {opened}: nothing deleted"
            )
        self.state.verified = len(self.state.retired)  # deleted ones were checked before
        if self.state.trim and not self.state.trimmed:
            self.kms.destroy_below(self.state.floor)
            self.state.trimmed = True
            self.state.save()
            self.say(f"  master-key versions below {self.state.floor} deleted for good (trim)")
        for created, _ in wrappings:
            rows.delete(self.store, KeyMeta(self.sk_id, created))
        self.factory.key_shredded(self.sk_id)
        self._count_meanwhile(self.sweep(quiet=True))
        self.state.save()
        self.say(f"  {len(wrappings)} old system key(s) retired; their wrappings no longer open")

    # -- sweeps ---------------------------------------------------------------------------

    def sweep(self, *, quiet: bool = False, destroy: bool = True) -> int:
        """Re-wrap every key under an old SK (and, with ``destroy``, delete the partition's
        rows found: those made meanwhile); how many were re-wrapped."""
        return len(self._sweep_rows(quiet=quiet, destroy=destroy))

    def _sweep_rows(self, *, quiet: bool = True, destroy: bool = True) -> list[KeyMeta]:
        self._ensure_new()
        plan_doomed = self._doomed_ids()
        found = [
            row
            for row in rows.read_rows(self.store)
            if _under_old(row, self.sk_id, self.state.new_sk_created)
        ]
        moved: list[KeyMeta] = []
        for done, row in enumerate(found, 1):
            if row.meta.key_id in plan_doomed:
                if destroy:
                    self._destroy(row.meta)
            elif self._rewrap_row(row):
                moved.append(row.meta)
            if self.progress is not None and not quiet:
                self.progress(done, len(found))
        self.state.rewrapped += len(moved)
        return moved

    def _rewrap_row(self, row: rows.KeyRow) -> bool:
        record = row.record()
        assert record.parent is not None
        assert self._new is not None
        assert self._new_secret is not None
        old = self._old_cipher(record.parent.created)
        if old is None:
            self.state.unreadable.append(f"{row.meta.key_id} created {row.meta.created}")
            return False
        mode = self.factory.policy.key_integrity
        secret = bytearray()
        try:
            if mode != "off":
                integrity.check(
                    mode,
                    self._old_secret(record.parent.created),
                    "child",
                    row.meta.key_id,
                    row.meta.created,
                    record,
                )
            secret = bytearray(old.open(record.encrypted_key))
            parent = KeyMeta(self.sk_id, self.state.new_sk_created)
            new = EnvelopeKeyRecord(
                record.created, self._new.seal(bytes(secret)), parent, record.revoked
            )
            if mode != "off":
                new.tag = integrity.make_tag(
                    self._new_secret, "child", row.meta.key_id, row.meta.created, new
                )
        except (AsherahError, DecryptionError) as exc:
            self.state.unreadable.append(
                f"{row.meta.key_id} created {row.meta.created}: {exc.args[0]}"
            )
            return False
        finally:
            secret[:] = bytes(len(secret))
        return rows.swap(self.store, row, new)

    def _delete_doomed(self) -> None:
        for key_id in self._doomed_ids():
            for row in list(rows.read_rows(self.store, key_id=key_id)):
                self._destroy(row.meta)
        self._clear_indexes()
        self.state.save()
        self.say(
            f"  {len(self.state.destroyed)} key(s) of partition '{self.state.partition}' destroyed"
        )

    def _destroy(self, meta: KeyMeta) -> None:
        if rows.delete(self.store, meta):
            self.state.destroyed.append([meta.key_id, meta.created])
            self.factory.key_shredded(meta.key_id)
            logger.warning("asherah_erase: destroyed %s created %s", meta.key_id, meta.created)

    def _clear_indexes(self) -> None:
        from ..blind_index.shred import clear_shredded_indexes

        ik_id = self._doomed_ids()[0]
        metas = [KeyMeta(k, c) for k, c in self.state.destroyed if k == ik_id]
        summary = Summary(dry_run=False, write=self.say)
        self.state.indexes_cleared += clear_shredded_indexes(metas, summary)

    def _doomed_ids(self) -> tuple[str, ...]:
        ids, p = self.factory.ids, self.state.partition
        return (ids.intermediate(p), ids.index(p))

    # -- system keys in memory ------------------------------------------------------------

    def _ensure_new(self) -> None:
        if self._new is not None:
            return
        record = self.store.load(self.sk_id, self.state.new_sk_created)
        if record is None:
            raise EraseRefusedError(
                f"the erasure's new system key {self.sk_id} created {self.state.new_sk_created} "
                "is missing from the table: restore it before resuming"
            )
        self._new_secret = bytearray(self.kms.decrypt_key(record.encrypted_key))
        self._new = Cipher(self._new_secret)

    def _load_old(self) -> None:
        for row in rows.read_rows(self.store, key_id=self.sk_id):
            if row.meta.created != self.state.new_sk_created:
                self._old_cipher(row.meta.created)

    def _old_cipher(self, created: int) -> Cipher | None:
        secret = self._old_secret(created)
        if not secret:
            return None
        cipher = self._old.get(created)
        if cipher is None:
            cipher = self._old[created] = Cipher(secret)
        return cipher

    def _old_secret(self, created: int) -> bytearray:
        held = self._old_secrets.get(created)
        if held is not None:
            return held
        record = self.store.load(self.sk_id, created)
        if record is None:
            return bytearray()
        try:
            secret = bytearray(self.kms.decrypt_key(record.encrypted_key))
        except AsherahError:
            return bytearray()
        self._old_secrets[created] = secret
        return secret

    def _version(self, row: rows.KeyRow) -> int:
        try:
            return self.kms.version_of(row.record().encrypted_key)
        except AsherahError:
            return 0

    def _wipe(self) -> None:
        for secret in [self._new_secret, *self._old_secrets.values()]:
            if secret is not None:
                secret[:] = bytes(len(secret))
        self._old.clear()
        self._old_secrets.clear()
        self._new = None
        self._new_secret = None


def _parent(row: rows.KeyRow) -> KeyMeta | None:
    try:
        return row.record().parent
    except AsherahError:
        return None


def _under_old(row: rows.KeyRow, sk_id: str, new_created: int) -> bool:
    parent = _parent(row)
    return parent is not None and parent.key_id == sk_id and parent.created != new_created
