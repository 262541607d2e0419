"""The mixed workload of the load tests, shared by the thread, process and fault tests.

``run_mix(worker, ops, partitions, seed)`` does ``ops`` operations chosen at random:

* ORM writes: ``TenantNote.objects.create`` (the field takes each row's ``tenant_id`` as its
  partition) and ``Secret.objects.create`` inside ``asherah_django.session(partition)``;
* ORM reads of rows this worker wrote (one by primary key, or a tenant's latest rows);
* core sessions: ``factory.get_session(p).encrypt`` and ``.decrypt`` of records made earlier;
* now and then a record of one partition presented to another partition's session, which
  must refuse it with ``PartitionMismatchError``.

Every plaintext is ``MARKER + partition + "|" + label`` and the label is stored in a plain
column, so a value decrypted under the wrong partition (or a wrong value) is detected,
during the run and by :func:`full_scan` afterwards. What the worker remembers for reads is
a bounded ring, so its memory is flat once warm.
"""

from __future__ import annotations

import random
import traceback
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from asherah_django import session as partition_scope
from asherah_django.core import PartitionMismatchError
from asherah_django.runtime import get_session_factory
from tests.hygiene import MARKER
from tests.testapp.models import Secret, TenantNote

RING = 256


def plaintext(partition: str, label: str) -> str:
    return f"{MARKER}{partition}|{label}"


def partitions_for(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-t{index}" for index in range(count)]


@dataclass
class MixResult:
    ops: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    first_errors: list[str] = field(default_factory=list)
    wrong_partition: int = 0
    wrong_value: int = 0

    def merge(self, other: MixResult | dict[str, Any]) -> None:
        data = other if isinstance(other, dict) else other.as_dict()
        self.ops.update(data["ops"])
        self.errors.update(data["errors"])
        self.first_errors += data["first_errors"][: max(0, 5 - len(self.first_errors))]
        self.wrong_partition += data["wrong_partition"]
        self.wrong_value += data["wrong_value"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "ops": dict(self.ops),
            "errors": dict(self.errors),
            "first_errors": self.first_errors,
            "wrong_partition": self.wrong_partition,
            "wrong_value": self.wrong_value,
        }

    @property
    def total(self) -> int:
        return sum(self.ops.values())


def rss_kib() -> int:
    """This process's resident set size (KiB)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0  # pragma: no cover - Linux only


def warm_up(partitions: list[str]) -> None:
    """One encrypt per partition: creates (or loads) every intermediate key."""
    factory = get_session_factory()
    for partition in partitions:
        factory.get_session(partition).encrypt(b"warm-up")


def run_mix(worker: str, ops: int, partitions: list[str], seed: int) -> MixResult:
    """``ops`` mixed operations; see the module docstring. Never raises."""
    rng = random.Random(seed)
    result = MixResult()
    notes: deque[tuple[int, str, str]] = deque(maxlen=RING)
    secrets: deque[tuple[int, str, str]] = deque(maxlen=RING)
    records: deque[tuple[str, str, str]] = deque(maxlen=RING)
    factory = get_session_factory()
    for index in range(ops):
        partition = rng.choice(partitions)
        label = f"{worker}-{index}"
        roll = rng.random()
        if index == ops - 1 and not result.ops["session_cross_partition_refused"]:
            roll = 0.99  # at least one cross-partition attempt per run, however short
        kind = "?"
        try:
            if roll < 0.15 or not notes:
                kind = "orm_write_row_partition"
                note = TenantNote.objects.create(
                    tenant_id=partition, title=label, body=plaintext(partition, label)
                )
                notes.append((note.pk, partition, label))
            elif roll < 0.25 or not secrets:
                kind = "orm_write_session_scope"
                owner = f"{partition}|{label}"  # the Secret model's plain column
                with partition_scope(partition):
                    secret = Secret.objects.create(owner=owner, body=plaintext(partition, label))
                secrets.append((secret.pk, partition, label))
            elif roll < 0.37:
                kind = "orm_read_by_pk"
                pk, tenant, title = rng.choice(notes)
                note = TenantNote.objects.get(pk=pk)
                _check(result, note.body, tenant, title)
            elif roll < 0.42:
                kind = "orm_read_tenant_rows"
                pk, tenant, title = rng.choice(notes)
                for note in TenantNote.objects.filter(tenant_id=tenant).order_by("-pk")[:10]:
                    _check(result, note.body, note.tenant_id, note.title)
            elif roll < 0.50:
                kind = "orm_read_session_scope"
                pk, tenant, title = rng.choice(secrets)
                with partition_scope(tenant):
                    secret = Secret.objects.get(pk=pk)
                    _check(result, secret.body, tenant, title)
            elif roll < 0.75:
                kind = "session_encrypt"
                text = plaintext(partition, label)
                records.append((factory.get_session(partition).encrypt_text(text), partition, text))
            elif roll < 0.97 or len(records) < 2:
                kind = "session_decrypt"
                record, tenant, text = rng.choice(records) if records else ("", "", "")
                if record:
                    got = factory.get_session(tenant).decrypt_text(record)
                    if got != text:
                        result.wrong_value += 1
            else:
                kind = "session_cross_partition_refused"
                record, tenant, text = rng.choice(records)
                other = rng.choice([p for p in partitions[:8] if p != tenant])
                try:
                    factory.get_session(other).decrypt(record)
                except PartitionMismatchError:
                    pass
                else:
                    result.wrong_partition += 1
            result.ops[kind] += 1
        except Exception as exc:
            result.errors[f"{kind}: {type(exc).__name__}"] += 1
            if len(result.first_errors) < 5:
                result.first_errors.append(traceback.format_exc(limit=6))
    return result


def _check(result: MixResult, body: str, tenant: str, title: str) -> None:
    if body == plaintext(tenant, title):
        return
    if body.startswith(MARKER) and not body.startswith(plaintext(tenant, "")):
        result.wrong_partition += 1
    else:
        result.wrong_value += 1


def full_scan(prefix: str) -> tuple[int, int]:
    """Decrypt every TenantNote and Secret row whose partition starts with ``prefix``.
    Returns (rows read, rows whose value is not exactly the one written for that row)."""
    bad = rows = 0
    for note in TenantNote.objects.filter(tenant_id__startswith=prefix).iterator(chunk_size=500):
        rows += 1
        bad += note.body != plaintext(note.tenant_id, note.title)
    for secret in Secret.objects.filter(owner__startswith=prefix).iterator(chunk_size=500):
        rows += 1
        partition, _, label = secret.owner.partition("|")
        with partition_scope(partition):
            bad += secret.body != plaintext(partition, label)
    return rows, bad
