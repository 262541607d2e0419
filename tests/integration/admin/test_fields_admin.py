"""EncryptedFieldsAdminMixin: users' ModelAdmins show plaintext where the row's key can be
had and a placeholder otherwise, in lists and change forms, and never fail with a stack
trace (the test client re-raises any exception a view lets through)."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client

from asherah_django import runtime
from asherah_django.models import EncryptionKey
from tests.testapp.models import Secret, TenantNote

pytestmark = pytest.mark.urls("tests.integration.admin.urls")

NOTES = "/admin/testapp/tenantnote/"
SECRETS = "/admin/testapp/secret/"
BARE = "/bare/testapp/secret/"


@pytest.fixture
def client(transactional_db: None) -> Client:
    user = User.objects.create_superuser("root", password="x")
    client = Client()
    client.force_login(user)
    return client


def cells(response: Any, name: str) -> list[str]:
    """The text of a column's cells (``field-<name>``) in a changelist."""
    text = response.content.decode()
    found = re.findall(rf'<(?:td|th) class="field-{name}[^"]*">(.*?)</(?:td|th)>', text, re.S)
    return [html.unescape(re.sub(r"<[^>]+>", "", cell)).strip() for cell in found]


def write_raw(model: Any, pk: int, column: str, value: str) -> None:
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {quote(model._meta.db_table)} SET {quote(column)} = %s WHERE id = %s",
            [value, pk],
        )


def raw(model: Any, pk: int, column: str) -> str:
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {quote(column)} FROM {quote(model._meta.db_table)} WHERE id = %s", [pk]
        )
        row = cursor.fetchone()
    assert row is not None
    return str(row[0])


def test_row_partitions_show_plaintext_or_a_placeholder(client: Client) -> None:
    ok = TenantNote.objects.create(tenant_id="t1", title="fine", body="hello from t1")
    moved = TenantNote.objects.create(tenant_id="t2", title="moved", body="hello from t2")
    lost = TenantNote.objects.create(tenant_id="t3", title="lost", body="hello from t3")
    # A record of t1 in t2's row; t3's key deleted from the metastore (and from the caches).
    write_raw(TenantNote, moved.pk, "body", raw(TenantNote, ok.pk, "body"))
    EncryptionKey.objects.filter(id__startswith="_IK_t3_").delete()
    runtime.reset_session_factory()

    response = client.get(NOTES)
    assert response.status_code == 200
    bodies = dict(zip(cells(response, "title"), cells(response, "body"), strict=True))
    assert bodies == {
        "fine": "hello from t1",
        "moved": "\N{LOCK} Encrypted: encrypted for another partition",
        "lost": "\N{LOCK} Encrypted: its key is not in the metastore",
    }
    assert f'href="{NOTES}{ok.pk}/change/"' in response.content.decode()  # body is the link

    # The change form: plaintext in the textarea where it can be decrypted...
    form = client.get(f"{NOTES}{ok.pk}/change/").content.decode()
    assert "\nhello from t1</textarea>" in form
    # ...else a read-only placeholder, and the stored record stays as it was on save.
    before = raw(TenantNote, lost.pk, "body")
    form = client.get(f"{NOTES}{lost.pk}/change/").content.decode()
    assert 'name="body"' not in form and "its key is not in the metastore" in form
    saved = client.post(
        f"{NOTES}{lost.pk}/change/", {"title": "renamed", "tenant_id": "t3", "extra": "null"}
    )
    assert saved.status_code == 302
    assert raw(TenantNote, lost.pk, "body") == before
    assert TenantNote.objects.get(pk=lost.pk).title == "renamed"

    # Saving a row whose record belongs to another partition is refused without a crash.
    refused = client.post(
        f"{NOTES}{moved.pk}/change/",
        {"title": "x", "tenant_id": "t2", "extra": "null"},
        follow=True,
    )
    assert refused.status_code == 200
    assert "nothing was saved" in refused.content.decode()
    assert TenantNote.objects.get(pk=moved.pk).title == "moved"

    # An edit of a readable value is encrypted under the row's partition.
    client.post(
        f"{NOTES}{ok.pk}/change/",
        {"title": "fine", "tenant_id": "t1", "body": "new text", "extra": "null"},
    )
    assert TenantNote.objects.get(pk=ok.pk).body == "new text"
    assert "new text" not in raw(TenantNote, ok.pk, "body")


def test_session_partitions_use_the_admins_hook_or_show_a_placeholder(client: Client) -> None:
    # Added through the admin: the hook names the owner as the partition.
    added = client.post(f"{SECRETS}add/", {"owner": "alice", "body": "alice's secret"})
    assert added.status_code == 302
    secret = Secret.objects.get()
    assert "alice's secret" not in raw(Secret, secret.pk, "body")
    assert '"KeyId":"_IK_alice_' in raw(Secret, secret.pk, "body")

    response = client.get(SECRETS)
    assert cells(response, "body") == ["alice's secret"]
    form = client.get(f"{SECRETS}{secret.pk}/change/").content.decode()
    assert "alice&#x27;s secret</textarea>" in form

    # Without the hook no session is open: a placeholder, and adding gives a form error.
    response = client.get(BARE)
    assert cells(response, "body") == ["\N{LOCK} Encrypted: no session for this partition"]
    form = client.get(f"{BARE}{secret.pk}/change/").content.decode()
    assert "no session for this partition" in form and 'name="body"' not in form
    refused = client.post(f"{BARE}add/", {"owner": "bob", "body": "bob's secret"})
    assert refused.status_code == 200
    assert "Body cannot be encrypted: no session for this partition." in refused.content.decode()
    assert Secret.objects.count() == 1


def test_kms_failure_shows_placeholders(client: Client, settings: Any) -> None:
    TenantNote.objects.create(tenant_id="t1", title="fine", body="hello")
    # Another master key: the stored system key no longer opens.
    settings.ASHERAH = {**settings.ASHERAH, "STATIC_MASTER_KEY_HEX": "11" * 32}
    response = client.get(NOTES)
    assert response.status_code == 200
    assert cells(response, "body")[0].startswith("\N{LOCK} Encrypted: ")
    note = TenantNote.objects.get()
    form = client.get(f"{NOTES}{note.pk}/change/")
    assert form.status_code == 200 and "\N{LOCK} Encrypted" in html.unescape(form.content.decode())


def test_a_str_that_reads_encrypted_fields_does_not_break_the_list(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    note = TenantNote.objects.create(tenant_id="t1", title="fine", body="hello")
    EncryptionKey.objects.filter(id__startswith="_IK_t1_").delete()
    runtime.reset_session_factory()
    monkeypatch.setattr(TenantNote, "__str__", lambda self: self.body)
    response = client.get(NOTES)
    assert response.status_code == 200
    assert f'name="_selected_action" value="{note.pk}"' in response.content.decode()
    # The change form's title is str(obj): back to the list with a message, no crash.
    response = client.get(f"{NOTES}{note.pk}/change/", follow=True)
    assert response.status_code == 200
    assert "its key is not in the metastore" in response.content.decode()
