"""Transit operations: the stored format, a reference-format vector, rotation and rewrap,
blob errors, diagnostics, and how many calls reach Vault.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from asherah_django.core import EnvelopeKeyRecord, InMemoryMetastore, KMSError
from asherah_django.core.kms.vault import VaultTransitKMS
from asherah_django.core.kms.vault_errors import (
    VaultBlobError,
    VaultPermissionError,
    VaultRequestError,
)
from asherah_django.testing.openbao import TRANSIT_POLICY, OpenBaoServer
from tests.support.common import ROOT
from tests.support.sqlite_metastore import SqliteMetastore

from .conftest import factory_for, unique

pytestmark = pytest.mark.vault
MakeKMS = Callable[[dict[str, object]], VaultTransitKMS]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def seal(key: bytes, plaintext: bytes) -> bytes:
    """Asherah's AES-256-GCM layout, written out here: ciphertext || tag || 12-byte nonce."""
    nonce = os.urandom(12)
    return AESGCM(key).encrypt(nonce, plaintext, None) + nonce


def test_stored_system_key_is_the_utf8_of_vaults_ciphertext(
    bao: OpenBaoServer, root_kms: VaultTransitKMS
) -> None:
    metastore = InMemoryMetastore()
    with factory_for(root_kms, metastore) as factory:
        factory.get_session("alice").encrypt(b"x")
    records = {key_id: record for key_id, _, record in metastore.items()}
    stored = records["_SK_service_product"].encrypted_key
    text = stored.decode("ascii")
    assert text.startswith("vault:v") and VaultTransitKMS.key_version(stored) >= 1
    # The metastore JSON holds base64 of that ASCII string (base64 applied twice).
    assert json.loads(records["_SK_service_product"].to_json())["Key"] == b64(text.encode())
    # Anyone holding the ciphertext string can ask Vault directly (as asherah-ffi does);
    # the plaintext opens the intermediate key with plain AES-GCM.
    answer = bao.api("POST", "transit/decrypt/asherah-master", {"ciphertext": text})
    system_key = base64.b64decode(answer["data"]["plaintext"])
    ik = records["_IK_alice_service_product"].encrypted_key
    assert len(AESGCM(system_key).decrypt(ik[-12:], ik[:-12], None)) == 32


def test_reference_format_vector_decrypts(bao: OpenBaoServer, root_kms: VaultTransitKMS) -> None:
    # Built from asherah-ffi's documentation and source (kms_vault_transit.rs): the SK's
    # "Key" is base64 of the UTF-8 of Vault's "vault:vN:..." string; JSON in Go's order.
    system_key, intermediate_key, data_key = bytes(range(32)), bytes(range(32, 64)), os.urandom(32)
    vault_ciphertext = bao.api(
        "POST", "transit/encrypt/asherah-master", {"plaintext": b64(system_key)}
    )["data"]["ciphertext"]
    now = int(time.time())
    sk_created, ik_created = now - now % 60 - 120, now - now % 60 - 60
    sk_json = f'{{"Created":{sk_created},"Key":"{b64(vault_ciphertext.encode("utf-8"))}"}}'
    ik_json = (
        f'{{"Created":{ik_created},"Key":"{b64(seal(system_key, intermediate_key))}",'
        f'"ParentKeyMeta":{{"KeyId":"_SK_service_product","Created":{sk_created}}}}}'
    )
    drr = (
        f'{{"Key":{{"Created":{now},"Key":"{b64(seal(intermediate_key, data_key))}",'
        f'"ParentKeyMeta":{{"KeyId":"_IK_tenant_service_product","Created":{ik_created}}}}},'
        f'"Data":"{b64(seal(data_key, b"written by the reference"))}"}}'
    )
    metastore = InMemoryMetastore()
    metastore.store("_SK_service_product", sk_created, EnvelopeKeyRecord.from_json(sk_json))
    metastore.store("_IK_tenant_service_product", ik_created, EnvelopeKeyRecord.from_json(ik_json))
    assert root_kms.decrypt_key(vault_ciphertext.encode("utf-8")) == system_key
    with factory_for(root_kms, metastore) as factory:
        assert factory.get_session("tenant").decrypt(drr) == b"written by the reference"


def test_blob_errors_use_the_upstream_wording(
    bao: OpenBaoServer, root_kms: VaultTransitKMS
) -> None:
    context = f"(VAULT_ADDR={bao.addr}, mount=transit, key=asherah-master)"
    with pytest.raises(VaultBlobError) as raised:
        root_kms.decrypt_key(b"\xffnot utf-8")
    assert str(raised.value).startswith(
        f"Vault Transit decrypt: blob is not valid UTF-8 (invalid byte at offset 0) {context} "
        "(hint: the ciphertext in the metastore is corrupted or was encrypted by a different "
        "KMS backend"
    )
    with pytest.raises(VaultBlobError, match=r"does not start with the expected `vault:v<n>:`"):
        root_kms.decrypt_key(b"AAAA" * 15)  # e.g. a static-KMS key (60 bytes) read by mistake
    with pytest.raises(
        VaultRequestError, match=r"^Vault Transit decrypt failed: invalid ciphertext"
    ):
        root_kms.decrypt_key(b"vault:v1:AAAA")
    with pytest.raises(VaultBlobError):
        VaultTransitKMS.key_version(b"v1:abc")
    assert VaultTransitKMS.key_version(b"vault:v12:abc") == 12
    assert root_kms.stats.retries == 0  # no 4xx is retried
    assert issubclass(VaultBlobError, KMSError)


def test_rotation_rewrap_and_min_decryption_version(bao: OpenBaoServer, make_kms: MakeKMS) -> None:
    key = unique("rotation")
    bao.api("POST", f"transit/keys/{key}", {"type": "aes256-gcm96"})
    settings = bao.settings(VAULT_TOKEN=bao.root_token, VAULT_TRANSIT_KEY=key)
    metastore = InMemoryMetastore()
    with factory_for(make_kms(settings), metastore) as factory:
        old = {p: factory.get_session(p).encrypt(p.encode()) for p in ("a", "b", "c")}

    bao.api("POST", f"transit/keys/{key}/rotate")
    with factory_for(make_kms(settings), metastore) as factory:  # cold caches
        for partition, record in old.items():  # old system keys still decrypt
            assert factory.get_session(partition).decrypt(record) == partition.encode()
    with factory_for(make_kms(settings), metastore, product="product2") as factory:
        new = factory.get_session("a").encrypt(b"new")  # a new system key: version 2
    system_keys = {k: r for k, _, r in metastore.items() if k.startswith("_SK_")}
    versions = {k: VaultTransitKMS.key_version(r.encrypted_key) for k, r in system_keys.items()}
    assert versions == {"_SK_service_product": 1, "_SK_service_product2": 2}

    # Rewrap every stored system key inside Vault, then forbid version 1.
    kms = make_kms(settings)
    names = sorted(system_keys)
    rewrapped = kms.rewrap_keys([system_keys[k].encrypted_key for k in names])
    assert [VaultTransitKMS.key_version(blob) for blob in rewrapped] == [2, 2]
    assert kms.stats.rewrap == 1  # one batched request
    assert VaultTransitKMS.key_version(kms.rewrap_key(system_keys[names[0]].encrypted_key)) == 2
    migrated = InMemoryMetastore()
    for key_id, created, stored in metastore.items():
        if key_id in system_keys:
            stored = EnvelopeKeyRecord(
                created, rewrapped[names.index(key_id)], None, stored.revoked
            )
        migrated.store(key_id, created, stored)
    bao.api("POST", f"transit/keys/{key}/config", {"min_decryption_version": 2})
    assert kms.transit_key_info().min_decryption_version == 2

    with factory_for(make_kms(settings), migrated) as factory:
        for partition, record in old.items():
            assert factory.get_session(partition).decrypt(record) == partition.encode()
    with factory_for(make_kms(settings), migrated, product="product2") as factory:
        assert factory.get_session("a").decrypt(new) == b"new"
    # The un-migrated version-1 key is now refused by Vault itself.
    with pytest.raises(VaultRequestError, match="disallowed by policy") as raised:
        kms.decrypt_key(system_keys["_SK_service_product"].encrypted_key)
    assert "min_decryption_version" in raised.value.hint


def test_rewrap_refusals_name_the_key(root_kms: VaultTransitKMS) -> None:
    good = root_kms.encrypt_key(os.urandom(32))
    with pytest.raises(VaultRequestError, match=r"^Vault Transit rewrap failed for key 1 of 2: "):
        root_kms.rewrap_keys([good, b"vault:v1:AAAA"])
    assert root_kms.rewrap_keys([]) == []


def test_diagnostics_for_asherah_check(bao: OpenBaoServer, make_kms: MakeKMS) -> None:
    kms = make_kms(bao.settings(VAULT_TOKEN=bao.create_token([TRANSIT_POLICY], ttl="1h")))
    health = kms.health()
    assert health.ready and health.initialized and not health.sealed and health.version
    info = kms.token_info()
    assert 3500 < info.ttl <= 3600 and info.renewable
    assert set(info.policies) == {TRANSIT_POLICY, "default"}
    assert kms.capabilities() == {
        "encrypt": ("update",),
        "decrypt": ("update",),
        "rewrap": ("deny",),
    }
    with pytest.raises(VaultPermissionError, match=r"^Vault read key failed: 1 error occurred"):
        kms.transit_key_info()
    root = make_kms(bao.settings(VAULT_TOKEN=bao.root_token))
    key = root.transit_key_info()
    assert key.name == "asherah-master" and key.type == "aes256-gcm96"
    assert key.latest_version >= 1 and key.min_decryption_version == 1
    assert not key.exportable and not key.deletion_allowed and key.auto_rotate_period == 0
    assert root.capabilities()["rewrap"] == ("root",)


def test_ten_thousand_encrypts_cost_one_transit_call_and_another_process_one_decrypt(
    bao: OpenBaoServer, tmp_path: Path, make_kms: MakeKMS
) -> None:
    token = bao.create_token([TRANSIT_POLICY], ttl="1h")
    settings = bao.settings(VAULT_TOKEN=token)
    db = str(tmp_path / "metastore.sqlite3")
    encrypts = bao.audit_count("transit/encrypt/asherah-master")
    decrypts = bao.audit_count("transit/decrypt/asherah-master")
    kms = make_kms(settings)
    metastore = SqliteMetastore(db)
    try:
        with factory_for(kms, metastore) as factory:
            records = [
                (f"p{i % 100}", factory.get_session(f"p{i % 100}").encrypt(b"%d" % i))
                for i in range(10_000)
            ]
            for partition, record in records[::97]:
                factory.get_session(partition).decrypt(record)
            stats = kms.stats
    finally:
        metastore.close()
    assert (stats.transit_calls, stats.encrypt) == (1, 1)
    assert bao.audit_count("transit/encrypt/asherah-master") == encrypts + 1
    assert bao.audit_count("transit/decrypt/asherah-master") == decrypts

    # A second factory in another process (a fresh interpreter) reads everything back.
    sample = tmp_path / "records.json"
    sample.write_text(json.dumps(records[:300] + records[-300:]))
    env = {**os.environ, "VAULT_SETTINGS": json.dumps(settings)}
    result = subprocess.run(
        [sys.executable, "-c", SECOND_PROCESS, db, str(sample)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"decrypted": 600, "encrypt": 0, "decrypt": 1}
    assert bao.audit_count("transit/decrypt/asherah-master") == decrypts + 1
    assert bao.audit_count("transit/encrypt/asherah-master") == encrypts + 1


SECOND_PROCESS = """
import json, os, sys
from asherah_django.core import SessionFactory
from asherah_django.core.kms.vault import VaultTransitKMS
from tests.support.sqlite_metastore import SqliteMetastore

kms = VaultTransitKMS.from_mapping(json.loads(os.environ["VAULT_SETTINGS"]))
metastore = SqliteMetastore(sys.argv[1])
with SessionFactory("service", "product", kms, metastore) as factory:
    records = json.load(open(sys.argv[2]))
    done = sum(factory.get_session(p).decrypt(r) is not None for p, r in records)
    stats = kms.stats
metastore.close()
print(json.dumps({"decrypted": done, "encrypt": stats.encrypt, "decrypt": stats.decrypt}))
"""
