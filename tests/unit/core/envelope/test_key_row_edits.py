"""Property tests (issue #13): a metastore writer's arbitrary edits to key rows (ids,
created, parents, wrapped keys, tags, JSON Created, Revoked) never make a session return
the plaintext of another partition or service; every failure is a typed AsherahError.

* With KEY_INTEGRITY="require", for any edits at all (the system key rows included).
* In every mode, for edits that leave this service's system key rows alone: another
  service's plaintext never comes out (the parent check). Within one service, without
  tags, a copied intermediate key does work (tests/unit/core/envelope/test_key_substitution.py).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asherah_django.core import (
    AsherahError,
    CryptoPolicy,
    EnvelopeKeyRecord,
    InMemoryMetastore,
    KeyMeta,
    SessionFactory,
    StaticKMS,
)
from asherah_django.core.kms.static import TEST_MASTER_KEY_HEX

KMS = StaticKMS.from_hex(TEST_MASTER_KEY_HEX)
OWNERS = [("svc", "A"), ("svc", "B"), ("other", "A")]
SVC_SK = "_SK_svc_prod"
IDS = [SVC_SK, "_SK_other_prod", "_IK_A_svc_prod", "_IK_B_svc_prod", "_IK_A_other_prod"]


@dataclass
class World:
    store: InMemoryMetastore
    values: dict[tuple[str, str], tuple[str, bytes]]


def build(mode: str) -> World:
    store = InMemoryMetastore()
    values = {}
    for service, partition in OWNERS:
        with SessionFactory(service, "prod", KMS, store, CryptoPolicy(key_integrity=mode)) as f:
            plaintext = f"{service}/{partition}".encode()
            values[(service, partition)] = f.get_session(partition).encrypt(plaintext), plaintext
    return World(store, values)


def rows(store: InMemoryMetastore) -> list[tuple[str, int, EnvelopeKeyRecord]]:
    return sorted(store.items(), key=lambda item: (item[0], item[1]))


def put(store: InMemoryMetastore, key_id: str, created: int, record: EnvelopeKeyRecord) -> None:
    """Insert or overwrite (the attacker's UPDATE)."""
    store._records.setdefault(key_id, {})[created] = record


@st.composite
def edits(draw: st.DrawFn, world: World, *, spare_own_system_key: bool) -> list[str]:
    store = world.store
    done = []
    for _ in range(draw(st.integers(1, 6))):
        current = rows(store)
        key_id, created, record = draw(st.sampled_from(current))
        if spare_own_system_key and key_id == SVC_SK:
            continue
        others = [r for _, _, r in current]
        metas = [KeyMeta(k, c) for k, c, _ in current]
        op = draw(st.sampled_from(["copy", "parent", "key", "tag", "created", "revoked"]))
        new = EnvelopeKeyRecord(
            record.created, record.encrypted_key, record.parent, record.revoked, record.tag
        )
        target = (key_id, created)
        if op == "copy":
            ids = [i for i in IDS if not (spare_own_system_key and i == SVC_SK)]
            target = (draw(st.sampled_from(ids)), created + draw(st.integers(-2, 90)))
            if draw(st.booleans()):
                new.tag = None
        elif op == "parent":
            new.parent = draw(st.sampled_from([*metas, None]))
        elif op == "key":
            donor = draw(st.sampled_from(others)).encrypted_key
            new.encrypted_key = draw(st.sampled_from([donor, os.urandom(len(donor))]))
        elif op == "tag":
            donor = draw(st.sampled_from(others)).tag
            new.tag = draw(st.sampled_from([donor, None, "v1:" + "A" * 43 + "=", "junk"]))
        elif op == "created":
            new.created = record.created + draw(st.integers(-3, 3))
        else:
            new.revoked = not record.revoked
        put(store, *target, new)
        done.append(f"{op} {key_id}@{created} -> {target[0]}@{target[1]}")
    return done


def retarget(value: str, meta: KeyMeta) -> str:
    row = json.loads(value)
    row["Key"]["ParentKeyMeta"] = {"KeyId": meta.key_id, "Created": meta.created}
    return json.dumps(row, separators=(",", ":"))


def attempts(world: World, mode: str) -> list[tuple[tuple[str, str], str, str]]:
    """(whose value, victim partition, outcome) for every value presented to every svc
    partition, pointed at every version of the victim's intermediate key."""
    seen = []
    for victim in ("A", "B"):
        with SessionFactory("svc", "prod", KMS, world.store, CryptoPolicy(key_integrity=mode)) as f:
            session = f.get_session(victim)
            versions = [
                KeyMeta(k, c) for k, c, _ in rows(world.store) if k == session.intermediate_key_id
            ]
            for owner, (value, plaintext) in world.values.items():
                for candidate in [value] + [retarget(value, meta) for meta in versions]:
                    try:
                        result = session.decrypt(candidate)
                    except AsherahError as exc:
                        seen.append((owner, victim, type(exc).__name__))
                        continue
                    assert result == plaintext, "a value decrypted to something else"
                    seen.append((owner, victim, "plaintext"))
    return seen


SETTINGS = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)


@SETTINGS
@given(st.data())
def test_with_require_no_edit_yields_another_partitions_or_services_plaintext(
    data: st.DataObject,
) -> None:
    world = build("require")
    note = data.draw(edits(world, spare_own_system_key=False))
    for owner, victim, outcome in attempts(world, "require"):
        if outcome == "plaintext":
            assert owner == ("svc", victim), (note, owner, victim)


@SETTINGS
@given(st.sampled_from(["off", "sign", "require"]), st.data())
def test_in_every_mode_no_edit_yields_another_services_plaintext(
    mode: str, data: st.DataObject
) -> None:
    world = build(mode)
    note = data.draw(edits(world, spare_own_system_key=True))
    for owner, victim, outcome in attempts(world, mode):
        if outcome == "plaintext":
            assert owner[0] == "svc", (mode, note, owner, victim)
