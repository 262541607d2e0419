"""Keys shared with the ``asherah`` wheel (Asherah's Rust core) through our very table.

The wheel writes into the ``encryption_key`` table that our migration created in the test
database (SQLite file; MariaDB through its ``rdbms`` metastore); DjangoMetastore reads its
rows and our SessionFactory decrypts its values, and the other way round.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from django.db import connection

from asherah_django.core import CryptoPolicy, SessionFactory, StaticKMS
from asherah_django.core.key_ids import KeyIds
from asherah_django.core.kms.static import TEST_MASTER_KEY_HEX
from asherah_django.metastore import DjangoMetastore
from asherah_django.models import EncryptionKey
from tests.support import optional
from tests.unit.conftest import unique, vendor

# Required (fails, not skips, when missing) unless ASHERAH_DJANGO_REQUIRE_PEER=0.
asherah = optional.asherah_peer()

pytestmark = [pytest.mark.interop, pytest.mark.django_db(transaction=True)]
PAYLOADS = [b"", b"mySuperSecretPayload", "héllo ✓".encode(), bytes(range(256))]
WHY_NOT_POSTGRES = (
    "the asherah wheel's PostgreSQL metastore binds key_record as JSON and needs a json/jsonb "
    "column, while this table is text like Asherah's canonical one (the JSONB layout is "
    "covered in test_adopted_tables, and live with the wheel in test_interop_tags); runs on SQLite (default) and with "
    "DATABASE_URL=mysql://root@127.0.0.1:3306/test"
)


def peer_config(service: str) -> dict[str, Any]:
    config: dict[str, Any] = {
        "ServiceName": service,
        "ProductID": "prod",
        "KMS": "static",
        "StaticMasterKeyHex": TEST_MASTER_KEY_HEX,
        "EnableSessionCaching": False,
    }
    settings = connection.settings_dict
    if vendor() == "sqlite":
        config.update(Metastore="sqlite", ConnectionString=settings["NAME"])
    elif vendor() == "mysql":
        user = quote(settings["USER"] or "root")
        password = f":{quote(settings['PASSWORD'])}" if settings["PASSWORD"] else ""
        host = f"{settings['HOST'] or '127.0.0.1'}:{settings['PORT'] or 3306}"
        config.update(
            Metastore="rdbms",
            SQLMetastoreDBType="mysql",
            ConnectionString=f"mysql://{user}{password}@{host}/{settings['NAME']}",
        )
    else:
        pytest.skip(WHY_NOT_POSTGRES)
    return config


@pytest.fixture
def peer(service: str) -> Iterator[Any]:
    factory = asherah.SessionFactory(peer_config(service))
    yield factory
    factory.close()


@pytest.fixture(params=["off", "sign"])
def ours(service: str, request: pytest.FixtureRequest) -> Iterator[SessionFactory]:
    """Ours with KEY_INTEGRITY off and sign: with sign, our rows carry tags in the
    integrity_tag column, which the wheel never names (tests/integration/interop/test_shared_table_tags.py)."""
    mode = request.param
    store = DjangoMetastore(
        system_key_id=KeyIds(service, "prod").system, integrity_tags=mode != "off"
    )
    kms = StaticKMS.from_hex(TEST_MASTER_KEY_HEX)
    with SessionFactory(service, "prod", kms, store, CryptoPolicy(key_integrity=mode)) as f:
        yield f
    store.close()


def test_values_written_by_the_wheel_decrypt_with_ours(
    peer: Any, ours: SessionFactory, service: str
) -> None:
    partitions = [unique("p"), unique("p_with_underscores_")]
    written = {
        (p, payload): peer.get_session(p).encrypt_bytes(payload)
        for p in partitions
        for payload in PAYLOADS
    }
    rows = {row.id: row for row in EncryptionKey.objects.all()}
    assert rows[KeyIds(service, "prod").system].kind == "system"
    for (partition, payload), value in written.items():
        assert ours.get_session(partition).decrypt(value) == payload
    # The wheel's bookkeeping row (if it wrote one) is never taken for a key.
    assert all(row.info is None for row in rows.values() if row.kind == "internal")


def test_values_written_by_ours_decrypt_with_the_wheel(peer: Any, ours: SessionFactory) -> None:
    partition = unique("ours")
    written = {payload: ours.get_session(partition).encrypt(payload) for payload in PAYLOADS}
    session = peer.get_session(partition)
    for payload, value in written.items():
        assert session.decrypt_bytes(value) == payload
    # The wheel reuses the intermediate key we created, and we read what it writes with it.
    again = session.encrypt_bytes(b"from the wheel")
    assert '"KeyId":"_IK_' + partition in again
    assert ours.get_session(partition).decrypt(again) == b"from the wheel"
