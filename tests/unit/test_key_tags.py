"""KEY_INTEGRITY through Django (issue #13): tags written and checked on every kind of key
row, asherah_sign_keys, the key_integrity health check, tables without the column, the
setting and its checks. Runs on SQLite, and with DATABASE_URL on PostgreSQL and MariaDB.
"""

from __future__ import annotations

import datetime
import io
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import override_settings

from asherah_django import runtime
from asherah_django.blind_index.keyring import index_keys
from asherah_django.checks import check_database, check_settings
from asherah_django.conf import asherah_settings
from asherah_django.core.errors import KeyIntegrityError, KeyParentMismatchError, MetastoreError
from asherah_django.core.integrity import ADD_TAG_COLUMN_SQL
from asherah_django.core.key_ids import KeyIds
from asherah_django.health import Status, run
from asherah_django.metastore import DjangoMetastore
from asherah_django.models import EncryptionKey
from tests.testapp.models import TenantNote

from .conftest import unique, vendor

pytestmark = pytest.mark.django_db(transaction=True)
MASTER = "746869734973415374617469634d61737465724b6579466f7254657374696e67"


@pytest.fixture
def configure() -> Iterator[Any]:
    overrides: list[Any] = []

    def apply(service: str, mode: str) -> None:
        override = override_settings(
            ASHERAH={
                "SERVICE_NAME": service,
                "PRODUCT_ID": "prod",
                "KMS": "static",
                "STATIC_MASTER_KEY_HEX": MASTER,
                "KEY_INTEGRITY": mode,
            }
        )
        override.enable()
        overrides.append(override)
        runtime.reset_session_factory()

    yield apply
    for override in reversed(overrides):
        override.disable()
    runtime.reset_session_factory()


def tags(service: str) -> dict[str, str | None]:
    """``{id: integrity_tag}`` of the service's rows (one version per id here)."""
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {quote('id')}, integrity_tag FROM encryption_key WHERE {quote('id')} LIKE %s",
            [f"%{service}%"],
        )
        return {key_id: tag for key_id, tag in cursor.fetchall()}


def set_tag(key_id: str, tag: str | None) -> None:
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE encryption_key SET integrity_tag = %s WHERE {quote('id')} = %s", [tag, key_id]
        )


def populate(service: str) -> dict[str, str]:
    """Two tenants' values and one blind index key: 4 key rows. Returns tenant -> pk."""
    made = {}
    for tenant in ("alice", "bob"):
        made[tenant] = TenantNote.objects.create(tenant_id=tenant, body=f"{tenant}'s note").pk
    keys = index_keys(runtime.get_session_factory())
    keys.write_version(keys.key_id(None))
    assert len(tags(service)) == 4
    return made


def read_all(made: dict[str, Any]) -> None:
    runtime.reset_session_factory()  # a fresh process: every key is loaded again
    for tenant, pk in made.items():
        assert TenantNote.objects.get(pk=pk).body == f"{tenant}'s note"
    keys = index_keys(runtime.get_session_factory())
    assert keys.lookup_versions(keys.key_id(None))


def sign_keys(*args: str) -> str:
    out = io.StringIO()
    call_command("asherah_sign_keys", *args, stdout=out)
    return out.getvalue()


def test_sign_tags_every_kind_of_key_row_and_require_reads_them(configure: Any) -> None:
    service = unique("svc")
    configure(service, "sign")
    made = populate(service)
    found = tags(service)
    assert all(tag is not None and tag.startswith("v1:") for tag in found.values()), found
    assert {key_id[:4] for key_id in found} == {"_SK_", "_IK_", "_BID"}
    configure(service, "require")
    read_all(made)


def test_sign_accepts_untagged_rows_and_require_refuses_them(configure: Any) -> None:
    """Rows written by another Asherah implementation have no tag: "sign" reads them,
    "require" refuses them with a KeyIntegrityError that names the row and the command."""
    service = unique("svc")
    configure(service, "off")
    made = populate(service)
    assert set(tags(service).values()) == {None}
    configure(service, "sign")
    read_all(made)
    configure(service, "require")
    runtime.reset_session_factory()
    with pytest.raises(KeyIntegrityError) as raised:
        TenantNote.objects.get(pk=made["alice"]).body  # noqa: B018
    assert f"_SK_{service}_prod" in str(raised.value)
    assert "asherah_sign_keys" in str(raised.value)


def test_a_wrong_tag_is_refused_with_sign_too(configure: Any) -> None:
    service = unique("svc")
    configure(service, "sign")
    made = populate(service)
    found = tags(service)
    alice = f"_IK_alice_{service}_prod"
    bob = f"_IK_bob_{service}_prod"
    set_tag(alice, found[bob])
    runtime.reset_session_factory()
    with pytest.raises(KeyIntegrityError, match="does not verify"):
        TenantNote.objects.get(pk=made["alice"]).body  # noqa: B018
    assert TenantNote.objects.get(pk=made["bob"]).body == "bob's note"


def test_sign_keys_verifies_signs_resumes_and_reports(configure: Any) -> None:
    service = unique("svc")
    configure(service, "off")
    made = populate(service)
    configure(service, "sign")
    label = f"{service}/prod (database 'default')"
    assert sign_keys("--dry-run") == (
        f"{label}: 4 key row(s), 4 would be signed, 0 with a valid tag.\n"
    )
    assert set(tags(service).values()) == {None}
    assert sign_keys() == f"{label}: 4 key row(s), 4 signed now, 0 with a valid tag.\n"
    assert sign_keys() == f"{label}: 4 key row(s), 4 with a valid tag.\n"  # resumed: nothing left
    configure(service, "require")
    read_all(made)

    # A half-done run carries on where it stopped.
    set_tag(f"_IK_bob_{service}_prod", None)
    assert sign_keys() == f"{label}: 4 key row(s), 1 signed now, 3 with a valid tag.\n"

    # A wrong tag and a foreign parent are reported, left alone, and fail the command.
    found = tags(service)
    set_tag(f"_IK_alice_{service}_prod", found[f"_IK_bob_{service}_prod"])
    other = unique("other")
    configure(other, "off")
    TenantNote.objects.create(tenant_id="carol", body="x")
    row = EncryptionKey.objects.get(id=f"_IK_carol_{other}_prod")
    EncryptionKey.objects.create(
        id=f"_IK_carol_{service}_prod", created=row.created, key_record=row.key_record
    )
    configure(service, "require")
    out = io.StringIO()
    with pytest.raises(CommandError, match="2 key row"):
        call_command("asherah_sign_keys", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0] == (
        f"{label}: 5 key row(s), 3 with a valid tag, 1 with an invalid tag (left alone), "
        "1 naming another system key as parent (left unsigned)"
        "."
    )
    assert any(
        f"'_IK_alice_{service}_prod'" in line and "does not verify" in line for line in lines
    )
    assert any(f"_SK_{other}_prod" in line for line in lines)
    assert tags(service)[f"_IK_carol_{service}_prod"] is None


@pytest.mark.parametrize("mode", ["sign", "require"])
def test_key_integrity_health_check_counts_rows(configure: Any, mode: str) -> None:
    service = unique("svc")
    configure(service, "off")
    populate(service)
    configure(service, mode)
    (result,) = run(["key_integrity"]).checks
    assert result.status is (Status.FAIL if mode == "require" else Status.WARN)
    assert result.data["untagged"] == 4 and result.data["signed"] == 0
    assert "4 untagged" in result.detail and "asherah_sign_keys" in result.hint
    sign_keys()
    (result,) = run(["key_integrity"]).checks
    assert result.status is Status.OK
    assert result.detail == f"KEY_INTEGRITY is '{mode}': 4 key row(s), 4 with a valid tag"
    set_tag(f"_IK_alice_{service}_prod", tags(service)[f"_IK_bob_{service}_prod"])
    (result,) = run(["key_integrity"]).checks
    assert result.status is Status.FAIL and result.data["invalid"] == 1


def test_key_integrity_check_does_not_run_when_off(configure: Any) -> None:
    configure(unique("svc"), "off")
    assert "key_integrity" not in [r.name for r in run().checks]


# -- tables without the column ------------------------------------------------------------


@pytest.fixture
def bare_table() -> Iterator[str]:
    """Asherah's canonical table made by hand, without integrity_tag."""
    table = unique("asherah_bare_")
    created = "DATETIME" if vendor() == "mysql" else "TIMESTAMP"
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE {table} (id VARCHAR(255) NOT NULL, created {created} NOT NULL, "
            "key_record TEXT NOT NULL, PRIMARY KEY (id, created))"
        )
    yield table
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE {table}")


def test_a_table_without_the_column_works_off_and_says_what_to_do_otherwise(
    bare_table: str, configure: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from .test_metastore import record

    service = unique("svc")
    sk = KeyIds(service, "prod").system
    off = DjangoMetastore(system_key_id=sk, table=bare_table)
    assert off.store(sk, 60, record(60)) and off.load(sk, 60) == record(60)
    off.close()
    tagged = DjangoMetastore(system_key_id=sk, table=bare_table, integrity_tags=True)
    with pytest.raises(MetastoreError) as raised:
        tagged.load(sk, 60)
    assert ADD_TAG_COLUMN_SQL.replace("encryption_key", bare_table) in str(raised.value)
    # The system check says the same before anything runs.
    monkeypatch.setattr(EncryptionKey._meta, "db_table", bare_table)
    configure(service, "sign")
    (warning,) = [m for m in check_database(databases=["default"]) if m.id == "asherah.W206"]
    assert ADD_TAG_COLUMN_SQL in str(warning.hint)
    with connection.cursor() as cursor:
        cursor.execute(ADD_TAG_COLUMN_SQL.replace("encryption_key", bare_table))
    assert not [m for m in check_database(databases=["default"]) if m.id == "asherah.W206"]
    assert tagged.load(sk, 60) == record(60)
    tagged.close()


def test_the_migration_added_the_column_as_nullable_varchar() -> None:
    with connection.cursor() as cursor:
        columns = connection.introspection.get_table_description(cursor, "encryption_key")
    (column,) = [c for c in columns if c.name == "integrity_tag"]
    assert column.null_ok
    assert "integrity_tag" not in [f.name for f in EncryptionKey._meta.get_fields()]


# -- the setting --------------------------------------------------------------------------


def test_key_integrity_setting_values_environment_and_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base = {
        "SERVICE_NAME": "s",
        "PRODUCT_ID": "p",
        "KMS": "static",
        "STATIC_MASTER_KEY_HEX": MASTER,
    }
    with override_settings(ASHERAH=base):
        assert asherah_settings.KEY_INTEGRITY == "off"
        monkeypatch.setenv("ASHERAH_KEY_INTEGRITY", "Require")
        asherah_settings.reload()
        assert asherah_settings.KEY_INTEGRITY == "require"
        assert asherah_settings.source("KEY_INTEGRITY") == "environment"
    monkeypatch.delenv("ASHERAH_KEY_INTEGRITY")
    with override_settings(ASHERAH={**base, "KEY_INTEGRITY": "verify"}):
        (error,) = [m for m in check_settings() if m.id == "asherah.E013"]
        assert "KEY_INTEGRITY 'verify' is unknown" in error.msg
        assert "off, sign or require" in error.hint


# -- blind index keys and the admin ---------------------------------------------------------


def _copy_row(source_id: str, target_id: str, *, seconds_later: int, keep_tag: bool) -> None:
    row = EncryptionKey.objects.get(id=source_id)
    created = row.created + datetime.timedelta(seconds=seconds_later)
    EncryptionKey.objects.create(id=target_id, created=created, key_record=row.key_record)
    if keep_tag:
        set_tag(target_id, tags(source_id)[source_id])


@pytest.mark.parametrize("keep_tag", [True, False])
def test_blind_index_key_copied_to_another_partition_is_refused_with_require(
    configure: Any, keep_tag: bool
) -> None:
    """Reindexing and lookups load blind index keys through the same checks: with
    "require" a partition's key row copied under another partition's id is refused."""
    service = unique("svc")
    configure(service, "require")
    keys = index_keys(runtime.get_session_factory())
    alice, bob = keys.key_id("alice"), keys.key_id("bob")
    keys.write_version(alice)
    _copy_row(alice, bob, seconds_later=5, keep_tag=keep_tag)
    runtime.reset_session_factory()
    keys = index_keys(runtime.get_session_factory())
    with pytest.raises(KeyIntegrityError):
        keys.lookup_versions(bob)
    assert keys.lookup_versions(alice)


@pytest.mark.parametrize("mode", ["off", "sign", "require"])
def test_blind_index_key_of_another_service_is_refused(configure: Any, mode: str) -> None:
    other = unique("other")
    configure(other, mode)
    keys = index_keys(runtime.get_session_factory())
    source = keys.key_id("alice")
    keys.write_version(source)
    service = unique("svc")
    configure(service, mode)
    keys = index_keys(runtime.get_session_factory())
    _copy_row(source, keys.key_id("alice"), seconds_later=0, keep_tag=mode != "off")
    with pytest.raises(KeyParentMismatchError, match=f"_SK_{other}_prod"):
        keys.lookup_versions(keys.key_id("alice"))


def test_admin_detail_flags_a_key_whose_parent_is_another_services(
    configure: Any, admin_client: Any
) -> None:
    from django.contrib.admin.utils import quote
    from django.urls import reverse

    from asherah_django.admin.keys import object_id

    other = unique("other")
    configure(other, "off")
    TenantNote.objects.create(tenant_id="carol", body="x")
    row = EncryptionKey.objects.get(id=f"_IK_carol_{other}_prod")
    service = unique("svc")
    configure(service, "off")
    TenantNote.objects.create(tenant_id="dave", body="y")
    copied = EncryptionKey.objects.create(
        id=f"_IK_carol_{service}_prod", created=row.created, key_record=row.key_record
    )
    honest = EncryptionKey.objects.get(id=f"_IK_dave_{service}_prod")
    for key, flagged in ((copied, True), (honest, False)):
        url = reverse(
            "admin:asherah_django_encryptionkey_change",
            args=[quote(object_id(key.id, key.created))],
        )
        text = admin_client.get(url).content.decode()
        assert ('id="foreign-parent"' in text) is flagged
        if flagged:
            assert f"_SK_{other}_prod" in text and "substituted" in text


def test_revoking_keeps_tags_valid(configure: Any) -> None:
    """Revocation rewrites key_record with plain SQL (as Asherah's scripts do); Revoked is
    not covered by the tag, so "require" still reads and a new key replaces the revoked one."""
    service = unique("svc")
    configure(service, "require")
    made = populate(service)
    store = runtime.get_session_factory().metastore
    assert isinstance(store, DjangoMetastore)
    for key_id in (f"_IK_alice_{service}_prod", KeyIds(service, "prod").system):
        row = EncryptionKey.objects.get(id=key_id)
        assert store.revoke(key_id, row.created_epoch) and row.id in tags(service)
    read_all(made)
    TenantNote.objects.create(tenant_id="alice", body="after the revocation")
    assert EncryptionKey.objects.filter(id=f"_IK_alice_{service}_prod").count() == 2
    assert None not in tags(service).values()
