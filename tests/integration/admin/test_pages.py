"""The key inspection pages through Django's test client: registration, permissions, the
list's filters and keyset pages, lineage, revoke (CSRF, permission, LogEntry, signal), the
health panel, no key bytes anywhere, and bad references answered with 400/404."""

from __future__ import annotations

import binascii
import html
import importlib.machinery
import json
import re
import sys
import types
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.admin.sites import AdminSite
from django.core.exceptions import ImproperlyConfigured
from django.test import Client

from asherah_django.admin import EncryptionKeyAdmin, keys, register
from asherah_django.admin import health as admin_health
from asherah_django.models import EncryptionKey
from asherah_django.signals import key_revoked

from .conftest import Keyring, stored_secrets

LIST = "/admin/asherah_django/encryptionkey/"
HEALTH = LIST + "health/"


def login(user: Any, *, csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(user)
    return client


def listed(response: Any) -> list[str]:
    """The key ids of a list page, in order."""
    text = response.content.decode()
    return [
        html.unescape(m) for m in re.findall(r'<th class="field-key_id"><a [^>]*>([^<]*)</a>', text)
    ]


def link(response: Any, element_id: str) -> str | None:
    match = re.search(rf'href="([^"]*)" id="{element_id}"', response.content.decode())
    return html.unescape(match.group(1)) if match else None


@pytest.fixture
def superuser(transactional_db: None) -> Any:
    from django.contrib.auth.models import User

    return User.objects.create_superuser("root", password="x")


# -- registration and permissions ----------------------------------------------------------


def test_registered_on_the_default_site_although_register_refuses_composite_keys() -> None:
    assert isinstance(admin.site._registry[EncryptionKey], EncryptionKeyAdmin)
    assert register() is admin.site._registry[EncryptionKey]  # idempotent
    with pytest.raises(ImproperlyConfigured, match="composite primary key"):
        AdminSite(name="other").register(EncryptionKey)
    other = AdminSite(name="other")
    assert isinstance(register(other), EncryptionKeyAdmin)
    names = {pattern.name for pattern in other._registry[EncryptionKey].get_urls()}
    assert names == {
        "asherah_django_encryptionkey_changelist",
        "asherah_django_encryptionkey_change",
        "asherah_django_encryptionkey_revoke",
        "asherah_django_encryptionkey_health",
    }
    assert admin.site._registry[EncryptionKey].check() == []


def test_index_lists_the_keys_to_viewers_only(keyring: Keyring, viewer: Any, outsider: Any) -> None:
    page = login(viewer).get("/admin/")
    assert f'href="{LIST}"' in page.content.decode()
    assert (
        'id="asherah-health-panel"' in login(viewer).get("/admin/asherah_django/").content.decode()
    )

    client = login(outsider)
    assert f'href="{LIST}"' not in client.get("/admin/").content.decode()
    assert client.get("/admin/asherah_django/").status_code == 404
    assert client.get(LIST).status_code == 403
    assert client.get(keyring.detail_path("alice")).status_code == 403
    assert client.get(HEALTH).status_code == 403
    assert client.post(HEALTH).status_code == 403
    anonymous = Client().get(LIST)
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/admin/login/")


# -- the list --------------------------------------------------------------------------------


def test_list_filters_search_and_order(keyring: Keyring, viewer: Any) -> None:
    client = login(viewer)
    everything = listed(client.get(LIST))
    assert len(everything) == 12
    assert everything[-1].startswith("__asherah_internal_")  # created in 2000: last
    assert listed(client.get(LIST + "?o=created"))[0].startswith("__asherah_internal_")

    def ids(query: str) -> set[str]:
        response = client.get(LIST + "?" + query)
        assert response.status_code == 200, query
        return set(listed(response))

    sk, alice = keyring.rows["sk"][0], keyring.rows["alice"][0]
    assert ids("kind=system") == {sk, "_SK_othersvc_otherprod"}
    assert ids("kind=internal") == {keyring.rows["guard"][0]}
    assert ids("status=revoked") == {keyring.rows["frank"][0]}
    assert ids("status=expired") == {sk, keyring.rows["dave"][0]}
    assert ids("status=superseded") == {alice}
    current = ids("status=current")
    assert alice in current and keyring.rows["frank"][0] not in current
    assert keyring.rows["guard"][0] not in current
    assert ids("kind=system&status=current") == {sk, "_SK_othersvc_otherprod"}
    assert ids("q=bob%40example.com") == {keyring.rows["bob@example.com"][0]}
    assert ids("q=othersvc") == {"_SK_othersvc_otherprod", "_IK_erin_othersvc_otherprod"}
    assert ids("partition=alice") == {alice}
    assert ids("partition=nobody") == set()
    sk_old_epoch = int(keyring.rows["sk_old"][1].timestamp())
    assert ids(f"parent={sk}@{sk_old_epoch}") == {
        keyring.rows["dave"][0],
        keyring.rows["frank"][0],
        alice,
    }
    # Exactly one version of alice's key is the parent filter's.
    response = client.get(LIST + f"?parent={sk}@{sk_old_epoch}")
    assert response.content.decode().count('data-status="superseded"') == 1


@pytest.mark.parametrize("ascending", [False, True])
def test_keyset_pages_walk_every_row_once(
    transactional_db: None, viewer: Any, ascending: bool
) -> None:
    import datetime

    from .conftest import ik_record

    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    parent = ("_SK_testsvc_testprod", start)
    # 250 keys, many sharing a created time: the keyset must break ties by id.
    EncryptionKey.objects.bulk_create(
        EncryptionKey(
            id=f"_IK_p{i:03d}_testsvc_testprod",
            created=start + datetime.timedelta(minutes=i // 7),
            key_record=ik_record(start + datetime.timedelta(minutes=i // 7), parent),
        )
        for i in range(250)
    )
    client = login(viewer)
    url: str | None = LIST + ("?o=created" if ascending else "")
    pages: list[list[str]] = []
    while url:
        response = client.get(url if url.startswith("/") else LIST + url)
        assert response.status_code == 200
        pages.append(listed(response))
        url = link(response, "page-next")
    assert [len(page) for page in pages] == [100, 100, 50]
    seen = [key_id for page in pages for key_id in page]
    expected = sorted(seen, key=lambda key_id: (int(key_id[5:8]) // 7, key_id))
    assert seen == (expected if ascending else expected[::-1])
    # And back again from the last page.
    back = LIST + link(response, "page-previous")  # type: ignore[operator]
    assert listed(client.get(back)) == pages[1]
    assert "more than" not in response.content.decode()
    assert 'id="result-count">250 keys<' in response.content.decode()


# -- the detail page -------------------------------------------------------------------------


def test_detail_shows_lineage_versions_and_a_masked_record(keyring: Keyring, viewer: Any) -> None:
    client = login(viewer)
    text = client.get(keyring.detail_path("sk")).content.decode()
    children = text[text.index('id="key-children"') :]
    for name in ("alice", "bob@example.com", "carol/7"):
        assert html.escape(keyring.rows[name][0]) in children
    assert keyring.rows["dave"][0] not in children

    text = client.get(keyring.detail_path("sk_old")).content.decode()
    assert "v1 <span" in text  # the Vault key version of this system key
    children = text[text.index('id="key-children"') : text.index('id="key-versions"')]
    assert keyring.rows["dave"][0] in children and keyring.rows["frank"][0] in children

    text = client.get(keyring.detail_path("alice_old")).content.decode()
    assert ">Superseded<" in text
    versions = text[text.index('id="key-versions"') :]
    assert versions.count("asherah-status") == 2  # both versions of alice's key
    assert "&lt;masked: 80 base64 characters&gt;" in text

    text = client.get(keyring.detail_path("guard")).content.decode()
    assert "It is not a key" in text and 'id="revoke-link"' not in text
    assert ">Malformed<" in client.get(keyring.detail_path("broken")).content.decode()

    # An intermediate key whose parent row is gone says so.
    EncryptionKey.objects.filter(pk=keyring.rows["sk_old"]).delete()
    text = client.get(keyring.detail_path("dave")).content.decode()
    assert "is not in the metastore" in text


# -- revoke ----------------------------------------------------------------------------------


@pytest.fixture
def revocations() -> Iterator[list[dict[str, Any]]]:
    sent: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        sent.append(kwargs)

    key_revoked.connect(receiver, weak=False)
    yield sent
    key_revoked.disconnect(receiver)


def csrf_token(response: Any) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', response.content.decode())
    assert match, "no CSRF token in the form"
    return match.group(1)


def test_revoke_needs_permission_csrf_and_confirmation(
    keyring: Keyring, viewer: Any, inspector: Any, revocations: list[dict[str, Any]]
) -> None:
    url, pk = keyring.revoke_path("alice"), keyring.rows["alice"]

    assert login(viewer).get(url).status_code == 403
    assert login(viewer).post(url, {"post": "yes"}).status_code == 403

    client = login(inspector, csrf=True)
    confirm = client.get(url)
    assert confirm.status_code == 200 and b"Are you sure" in confirm.content
    assert client.post(url, {"post": "yes"}).status_code == 403  # no CSRF token
    token = csrf_token(confirm)
    assert login(inspector).put(url).status_code == 405
    # Without the confirmation field nothing happens.
    assert client.post(url, {"csrfmiddlewaretoken": token}).status_code == 200
    assert not EncryptionKey.objects.get(pk=pk).revoked and revocations == []

    done = client.post(url, {"csrfmiddlewaretoken": token, "post": "yes"})
    assert done.status_code == 302 and done["Location"] == keyring.detail_path("alice")
    assert EncryptionKey.objects.get(pk=pk).revoked
    assert revocations == [
        {"signal": key_revoked, "key_id": pk[0], "created": int(pk[1].timestamp())}
    ]
    entry = LogEntry.objects.get()
    assert entry.action_flag == CHANGE and entry.user_id == inspector.pk
    assert entry.object_id == keyring.object_id("alice")
    assert entry.get_admin_url() == keyring.detail_path("alice")
    assert entry.get_change_message() == "Changed Revoked."
    page = client.get(done["Location"]).content.decode()
    assert "was revoked" in page and 'id="key-status"><span class="asherah-status revoked"' in page
    assert "Changed Revoked." in page  # the key's history

    # Once revoked, or not a key at all: nothing to confirm.
    for name, reason in (("alice", "already revoked"), ("guard", "is not a key")):
        again = client.get(keyring.revoke_path(name), follow=True)
        assert reason in again.content.decode()
    assert LogEntry.objects.count() == 1 and len(revocations) == 1
    guard = EncryptionKey.objects.get(pk=keyring.rows["guard"])
    assert "Revoked" not in guard.key_record


# -- the health panel ------------------------------------------------------------------------


def fake_health(monkeypatch: pytest.MonkeyPatch, run_checks: Any) -> list[int]:
    calls: list[int] = []
    module = types.ModuleType("tests_admin_fake_health")
    module.__spec__ = importlib.machinery.ModuleSpec(module.__name__, None)

    def counting() -> Any:
        calls.append(1)
        return run_checks()

    module.run_checks = counting  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setattr(admin_health, "HEALTH_MODULE", module.__name__)
    return calls


def test_health_panel_runs_checks_only_on_request(
    transactional_db: None, viewer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = types.SimpleNamespace(name="metastore table", status="ok", detail="12 keys", hint="")
    calls = fake_health(
        monkeypatch,
        lambda: [
            {"name": "Vault Transit", "status": "FAIL", "detail": "refused", "hint": "start it"},
            {"name": "kms.round_trip", "status": "FAIL", "detail": "not run", "skipped": True},
            result,
        ],
    )
    client = login(viewer)
    assert b"Run the health checks" in client.get("/admin/asherah_django/").content
    assert client.get(HEALTH).status_code == 200
    assert calls == []
    text = client.post(HEALTH).content.decode()
    assert calls == [1]
    assert 'class="fail">FAIL<' in text and "start it" in text
    assert 'class="ok">OK<' in text and "metastore table" in text
    assert "not run (skipped)" in text

    def broken() -> list[Any]:
        raise RuntimeError("the checks themselves broke")

    fake_health(monkeypatch, broken)
    text = client.post(HEALTH).content.decode()
    assert "failed to run: RuntimeError: the checks themselves broke" in text

    monkeypatch.setattr(admin_health, "HEALTH_MODULE", "asherah_django.no_such_health_module")
    text = client.post(HEALTH).content.decode()
    assert "Health checks are not available" in text


# -- no key bytes anywhere -------------------------------------------------------------------


def wrapped_keys() -> list[str]:
    """The base64 ``Key`` of every stored record that holds random bytes (a wrapped key)."""
    found = []
    for record in EncryptionKey.objects.values_list("key_record", flat=True):
        try:
            value = json.loads(record).get("Key")
            raw = binascii.a2b_base64(value, strict_mode=True)
        except (ValueError, AttributeError, TypeError):  # the fixture's malformed rows
            continue
        if len(raw) >= 32 and not raw.isascii():
            found.append(value)
    return found


def windows(secret: str, size: int) -> list[str]:
    """Every substring of ``secret`` of ``size`` characters (prefixes and slices alike)."""
    return [secret[i : i + size] for i in range(len(secret) - size + 1)]


def test_no_page_shows_key_bytes(
    keyring: Keyring, superuser: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_health(monkeypatch, list)
    client = login(superuser)
    secrets = stored_secrets()
    assert len(secrets) > 20
    pages = ["/admin/", "/admin/asherah_django/", HEALTH, LIST, LIST + "?o=created"]
    pages += [LIST + f"?kind={kind}" for kind in (*keys.KINDS, keys.UNKNOWN)]
    pages += [LIST + f"?status={status}" for status in keys.STATUSES]
    pages += [LIST + "?q=_", LIST + "?partition=alice", LIST + "?after=" + keyring.object_id("sk")]
    pages += [keyring.detail_path(name) for name in keyring.rows]
    pages += [keyring.revoke_path(name) for name in keyring.rows]
    pages += [LIST + "nope/change/", LIST + "x@1/change/", LIST + "?kind=bogus"]
    seen = 0
    for url in pages:
        response = client.get(url, follow=True)
        assert response.status_code in (200, 400, 404), url
        text = response.content.decode()
        leaked = [secret[:12] for secret in secrets if secret in text]
        assert not leaked, f"{url} shows key material starting {leaked}"
        # Nor any part of it: every 12-character window (72 bits of base64, 48 of hex; a
        # chance match in a page is negligible), so a prefix or a slice is caught too.
        parts = [w for secret in secrets for w in windows(secret, 12) if w in text]
        assert not parts, f"{url} shows part of key material: {parts[:1]}"
        seen += 1
    for name in keyring.rows:  # the detail page's record: Key is masked, no part shown
        text = client.get(keyring.detail_path(name)).content.decode()
        shown = re.search(r'<pre class="asherah-record">(.*?)</pre>', text, re.S)
        assert shown is not None, name
        record = html.unescape(shown.group(1))
        assert re.search(r'"Key": "<masked: \d+ base64 characters>"', record), record
        for secret in wrapped_keys():
            assert not [w for w in windows(secret, 4) if w in record], (name, record)
    response = client.post(HEALTH)
    assert not [s for s in secrets if s in response.content.decode()]
    # A revocation and the pages after it.
    response = client.post(keyring.revoke_path("carol/7"), {"post": "yes"}, follow=True)
    assert b"was revoked" in response.content
    assert not [s for s in stored_secrets() if s in response.content.decode()]
    assert seen == len(pages)


# -- bad references --------------------------------------------------------------------------


BAD_OBJECT_IDS = [
    "",
    "x",
    "@",
    "@1",
    "_SK_a@",
    "_SK_a@1.5",
    "_SK_a@1e9",
    "_SK_a@-99999999999",
    "_SK_a@99999999999",
    "_SK_a@1795866780.12345",
    "_SK_a\x00@1795866780",
    "_SK_a\n@1795866780",
    "a" * 300 + "@1795866780",
    "../../@1",
    "%00@1",
    "_SK_a@0001795866780",
    "_SK_a@\u0661\u0662",  # Arabic-Indic digits
]


@pytest.mark.parametrize("object_id", BAD_OBJECT_IDS)
def test_bad_object_ids_are_400_or_404(keyring: Keyring, superuser: Any, object_id: str) -> None:
    from django.contrib.admin.utils import quote

    client = login(superuser)
    for suffix in ("change", "revoke"):
        for path in (quote(object_id), urllib.parse.quote(object_id, safe="")):
            url = f"{LIST}{path}/{suffix}/"
            assert client.get(url).status_code in (400, 404), url
            assert client.post(url, {"post": "yes"}).status_code in (400, 404), url
    assert client.get(f"{LIST}{quote('_SK_absent@1795866780')}/change/").status_code == 404


BAD_LIST_PARAMS = [
    "kind=bogus",
    "status=CURRENT",
    "o=id",
    "after=nope",
    "before=x@",
    "after=a@1&before=a@2",
    "parent=_SK_a",
    "parent=_SK_a@soon",
    "q=" + "a" * 300,
    "q=%00",
    "partition=%0A",
    "after=_SK_a%00@1",
]


@pytest.mark.parametrize("query", BAD_LIST_PARAMS)
def test_bad_list_parameters_are_400(keyring: Keyring, viewer: Any, query: str) -> None:
    assert login(viewer).get(f"{LIST}?{query}").status_code == 400


def test_fuzzed_references_never_fail(keyring: Keyring, viewer: Any) -> None:
    from hypothesis import HealthCheck, example, given, settings
    from hypothesis import strategies as st

    client = login(viewer)

    @settings(
        max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    @given(
        key_id=st.text(max_size=40),
        created=st.one_of(st.integers(), st.text(max_size=12)),
        param=st.sampled_from(["after", "before", "q", "partition", "parent", "kind", "status"]),
    )
    # Superscript digits pass str.isdigit() but not int(): once a server error.
    @example(key_id="_IK_p_s_p", created="\u00b9", param="parent")
    @example(key_id="_IK_p_s_p", created="\u00b9", param="after")
    def check(key_id: str, created: object, param: str) -> None:
        reference = f"{key_id}@{created}"
        url = LIST + urllib.parse.quote(reference, safe="") + "/change/"
        assert client.get(url).status_code in (400, 404), url
        query = urllib.parse.urlencode({param: reference})
        assert client.get(f"{LIST}?{query}").status_code in (200, 400), query

    check()


# -- helpers ---------------------------------------------------------------------------------


def test_object_ids_round_trip_and_records_are_masked() -> None:
    import datetime

    moment = datetime.datetime(2026, 11, 28, 11, 53, tzinfo=datetime.UTC)
    assert keys.object_id("_IK_a@b_s_p", moment) == "_IK_a@b_s_p@1795866780"
    assert keys.parse_object_id("_IK_a@b_s_p@1795866780") == ("_IK_a@b_s_p", moment)
    precise = moment.replace(microsecond=250)
    assert keys.parse_object_id(keys.object_id("k", precise)) == ("k", precise)

    wrapped = "q83vASNFZ4mrze8BI0VniavN7wEjRWeJq83vASNFZ4mrze8BI0VniavN7wEjRWeJ"
    masked = keys.masked_record(
        f'{{"Revoked":true,"Created":1,"Key":"{wrapped}","ParentKeyMeta":'
        '{"KeyId":"_SK_s_p","Created":1},"Extra":"c2VjcmV0"}'
    )
    assert "c2VjcmV0" not in masked and '"Extra": "<masked>"' in masked
    assert json.loads(masked)["Key"] == f"<masked: {len(wrapped)} base64 characters>"
    assert not [w for w in windows(wrapped, 3) if w in masked]  # no prefix, no slice
    assert '"KeyId": "_SK_s_p"' in masked and '"Revoked": true' in masked
    assert keys.masked_record("c2VjcmV0 not json") == "<not JSON: 17 characters, not shown>"
    assert keys.masked_record('["c2VjcmV0"]').startswith("<not a JSON object")
    assert keys.vault_key_version(b"vault:v12:abc") == 12
    assert keys.vault_key_version(b"\x00vault:v1:") is None
