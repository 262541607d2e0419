"""Key substitution through the database itself (issue #13): the attacker runs SQL against
the ``encryption_key`` table and the model's table, never Vault. Runs on SQLite, and with
DATABASE_URL on PostgreSQL and MariaDB (marked ``database``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from django.db import connection
from django.test import override_settings

from asherah_django import runtime
from asherah_django.core import KeyMeta
from asherah_django.core.errors import KeyIntegrityError, KeyParentMismatchError
from asherah_django.models import EncryptionKey
from tests.testapp.models import TenantNote
from tests.unit.conftest import unique

pytestmark = pytest.mark.django_db(transaction=True)
SECRET = "tenant A's diagnosis"
MASTER = "746869734973415374617469634d61737465724b6579466f7254657374696e67"


@pytest.fixture
def configure() -> Iterator[object]:
    overrides: list[object] = []

    def apply(service: str, mode: str) -> None:
        settings = {
            "SERVICE_NAME": service,
            "PRODUCT_ID": "prod",
            "KMS": "static",
            "STATIC_MASTER_KEY_HEX": MASTER,
            "KEY_INTEGRITY": mode,
        }
        override = override_settings(ASHERAH=settings)
        override.enable()
        overrides.append(override)
        runtime.reset_session_factory()

    yield apply
    for override in reversed(overrides):
        override.disable()  # type: ignore[attr-defined]
    runtime.reset_session_factory()


def _raw(pk: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT body FROM {TenantNote._meta.db_table} WHERE id = %s", [pk])
        (value,) = cursor.fetchone()
    return value.decode() if isinstance(value, bytes) else value


def _write_raw(pk: int, value: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {TenantNote._meta.db_table} SET body = %s WHERE id = %s", [value, pk]
        )


def _parent(value: str) -> KeyMeta:
    meta = json.loads(value)["Key"]["ParentKeyMeta"]
    return KeyMeta(meta["KeyId"], meta["Created"])


def _retarget(value: str, meta: KeyMeta) -> str:
    row = json.loads(value)
    row["Key"]["ParentKeyMeta"] = {"KeyId": meta.key_id, "Created": meta.created}
    return json.dumps(row, separators=(",", ":"))


def _copy_key_row(source: KeyMeta, target: KeyMeta, *, keep_tag: bool) -> None:
    """INSERT ... SELECT of a key row under another (id, created); the tag is copied with a
    second statement (MySQL cannot UPDATE a table from a subquery on itself)."""
    row = EncryptionKey.objects.get(id=source.key_id, created=_dt(source.created))
    EncryptionKey.objects.create(
        id=target.key_id, created=_dt(target.created), key_record=row.key_record
    )
    if not keep_tag:
        return
    quote = connection.ops.quote_name
    table = quote(EncryptionKey._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT integrity_tag FROM {table} WHERE {quote('id')} = %s", [source.key_id]
        )
        (tag,) = cursor.fetchone()
        cursor.execute(
            f"UPDATE {table} SET integrity_tag = %s WHERE {quote('id')} = %s", [tag, target.key_id]
        )


def _dt(created: int) -> object:
    import datetime

    return datetime.datetime.fromtimestamp(created, datetime.UTC)


def _cross_tenant(mode: str, configure: object, *, keep_tag: bool) -> TenantNote:
    """Tenant A's IK row copied under ``_IK_<B>_...`` with a new created; one of B's rows
    pointed at the copy. Returns B's row, freshly loaded (no cached keys)."""
    service = unique("svc")
    configure(service, mode)  # type: ignore[operator]
    a, b = unique("A"), unique("B")
    note_a = TenantNote.objects.create(tenant_id=a, body=SECRET)
    note_b = TenantNote.objects.create(tenant_id=b, body="B's own")
    a_value = _raw(note_a.pk)
    a_meta = _parent(a_value)
    b_meta = KeyMeta(f"_IK_{b}_{service}_prod", a_meta.created + 7)
    _copy_key_row(a_meta, b_meta, keep_tag=keep_tag)
    _write_raw(note_b.pk, _retarget(a_value, b_meta))
    runtime.reset_session_factory()  # a fresh process: nothing cached
    return TenantNote.objects.get(pk=note_b.pk)


@pytest.mark.parametrize("mode", ["off", "sign"])
def test_cross_tenant_copy_without_tags_decrypts(mode: str, configure: object) -> None:
    """Attack (a) through SQL, where it still works: KEY_INTEGRITY off, or sign with the
    copied row left untagged.

    Demonstration (main before issue #13): ``INSERT INTO encryption_key SELECT
    '_IK_B_svc_prod', <new created>, key_record FROM encryption_key WHERE id =
    '_IK_A_svc_prod'``, then ``UPDATE testapp_tenantnote SET body = <A's value with
    ParentKeyMeta {"KeyId":"_IK_B_svc_prod","Created":<new created>}>`` on one of B's
    rows: reading B's row returned A's plaintext.
    """
    note = _cross_tenant(mode, configure, keep_tag=False)
    assert note.body == SECRET


@pytest.mark.parametrize("keep_tag", [True, False])
def test_cross_tenant_copy_is_refused_with_require(keep_tag: bool, configure: object) -> None:
    """Attack (a) with KEY_INTEGRITY="require": refused with KeyIntegrityError whether
    the copy keeps A's tag (it names ``_IK_A_...`` and another created) or has none."""
    with pytest.raises(KeyIntegrityError):
        _cross_tenant("require", configure, keep_tag=keep_tag).body  # noqa: B018


def test_copy_with_the_tag_is_refused_with_sign(configure: object) -> None:
    """With KEY_INTEGRITY="sign" a copy that keeps its (wrong) tag is refused: only an
    untagged row is accepted in that mode."""
    with pytest.raises(KeyIntegrityError):
        _cross_tenant("sign", configure, keep_tag=True).body  # noqa: B018


@pytest.mark.parametrize("mode", ["off", "sign", "require"])
def test_cross_service_parent_is_refused(mode: str, configure: object) -> None:
    """Attack (b) through SQL, refused in every mode.

    Demonstration (main before issue #13): service ``other`` encrypts a value; its IK row
    (ParentKeyMeta ``_SK_other_prod``) is copied under ``_IK_B_svc_prod`` and the value
    put in one of ``svc``'s rows pointing at the copy: ``svc`` decrypted it with
    ``other``'s system key. Now: KeyParentMismatchError.
    """
    other = unique("other")
    configure(other, mode)  # type: ignore[operator]
    b = unique("B")
    o_value = _raw(TenantNote.objects.create(tenant_id=b, body=SECRET).pk)
    o_meta = _parent(o_value)
    service = unique("svc")
    configure(service, mode)  # type: ignore[operator]
    note_b = TenantNote.objects.create(tenant_id=b, body="svc's own")
    b_meta = KeyMeta(f"_IK_{b}_{service}_prod", o_meta.created + 3)
    _copy_key_row(o_meta, b_meta, keep_tag=mode != "off")
    _write_raw(note_b.pk, _retarget(o_value, b_meta))
    runtime.reset_session_factory()
    with pytest.raises(KeyParentMismatchError) as raised:
        TenantNote.objects.get(pk=note_b.pk).body  # noqa: B018
    assert f"_SK_{other}_prod" in str(raised.value)
    assert SECRET not in str(raised.value)


def test_reencryption_never_launders_a_value_through_a_foreign_parented_key(
    configure: object,
) -> None:
    """``asherah_rotate --reencrypt`` reads stale values through sessions: a value pointing
    at a copied intermediate key whose parent is another service's system key (marked
    revoked by the attacker, so that it looks stale) is counted unreadable and left as it
    is, never re-encrypted under the reading partition's key."""
    from django.core.management import call_command

    other = unique("other")
    configure(other, "off")  # type: ignore[operator]
    b = unique("B")
    o_value = _raw(TenantNote.objects.create(tenant_id=b, body=SECRET).pk)
    o_meta = _parent(o_value)
    service = unique("svc")
    configure(service, "off")  # type: ignore[operator]
    note_b = TenantNote.objects.create(tenant_id=b, body="svc's own")
    b_meta = KeyMeta(f"_IK_{b}_{service}_prod", o_meta.created + 3)
    _copy_key_row(o_meta, b_meta, keep_tag=False)
    row = EncryptionKey.objects.get(id=b_meta.key_id, created=_dt(b_meta.created))
    row.key_record = row.key_record.replace("{", '{"Revoked":true,', 1)
    row.save()
    forged = _retarget(o_value, b_meta)
    _write_raw(note_b.pk, forged)
    runtime.reset_session_factory()
    import io

    out = io.StringIO()
    with pytest.raises(SystemExit) as exited:  # finished with unreadable values (issue #14)
        call_command("asherah_rotate", "--reencrypt", "testapp.TenantNote", stdout=out)
    assert exited.value.code == 3
    assert "unreadable" in out.getvalue()
    assert _raw(note_b.pk) == forged
