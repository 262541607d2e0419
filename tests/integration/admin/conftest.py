"""Fixtures for the admin tests: a metastore with every kind of key row, staff users with
chosen permissions, and one headless Chromium (Debian's /usr/bin/chromium, driven by
Playwright) shared by the browser tests of this package.

Playwright's sync API keeps an asyncio loop running in the test thread while it is open,
and Django refuses ORM calls from a thread with a running loop. The browser therefore
lives in a package-scoped fixture that also sets DJANGO_ALLOW_ASYNC_UNSAFE for exactly
that lifetime; the views themselves run in the live server's thread, which has no loop.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.common import ROOT

ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path(os.environ.get("ASHERAH_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
]
PASSWORD = "correct horse battery staple"
SERVICE, PRODUCT = "testsvc", "testprod"
DAY = datetime.timedelta(days=1)
UTC = datetime.UTC


# -- the runtime -----------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _fresh_runtime() -> Iterator[None]:
    """A fresh process-wide SessionFactory per test (the health panel and the encrypted
    fields use it); closing it closes its key connections before the database goes."""
    from asherah_django import runtime

    runtime.reset_session_factory()
    yield
    runtime.reset_session_factory()


# -- the metastore ---------------------------------------------------------------------------


@dataclass
class Keyring:
    """What the ``keyring`` fixture stored, by a short name per row."""

    rows: dict[str, tuple[str, datetime.datetime]] = field(default_factory=dict)

    def object_id(self, name: str) -> str:
        from asherah_django.admin.keys import object_id

        return object_id(*self.rows[name])

    def detail_path(self, name: str) -> str:
        from django.contrib.admin.utils import quote
        from django.urls import reverse

        return reverse(
            "admin:asherah_django_encryptionkey_change", args=[quote(self.object_id(name))]
        )

    def revoke_path(self, name: str) -> str:
        from django.contrib.admin.utils import quote
        from django.urls import reverse

        return reverse(
            "admin:asherah_django_encryptionkey_revoke", args=[quote(self.object_id(name))]
        )


def minute(moment: datetime.datetime) -> datetime.datetime:
    return moment.replace(second=0, microsecond=0)


def vault_sk_record(created: datetime.datetime, version: int) -> str:
    """A system key record as Vault Transit wraps it: Key = base64("vault:vN:...")."""
    from asherah_django.core.records import EnvelopeKeyRecord

    ciphertext = f"vault:v{version}:" + base64.b64encode(secrets.token_bytes(60)).decode()
    return EnvelopeKeyRecord(int(created.timestamp()), ciphertext.encode()).to_json()


def ik_record(
    created: datetime.datetime, parent: tuple[str, datetime.datetime], *, revoked: bool = False
) -> str:
    from asherah_django.core.records import EnvelopeKeyRecord, KeyMeta

    meta = KeyMeta(parent[0], int(parent[1].timestamp()))
    return EnvelopeKeyRecord(
        int(created.timestamp()), secrets.token_bytes(60), meta, revoked
    ).to_json()


def build_keyring() -> Keyring:
    """SK and IKs written by the real engine (static KMS, DjangoMetastore), plus rows made
    here: an expired Vault-wrapped SK version with an IK, an older (superseded) version of
    alice's IK, a revoked IK, another service's keys, the Rust core's drift guard row and
    a malformed record."""
    from django.conf import settings

    from asherah_django.core.kms.static import StaticKMS
    from asherah_django.core.session import SessionFactory
    from asherah_django.metastore import DjangoMetastore
    from asherah_django.models import EncryptionKey

    keyring = Keyring()
    metastore = DjangoMetastore("default", system_key_id=f"_SK_{SERVICE}_{PRODUCT}")
    factory = SessionFactory(
        SERVICE, PRODUCT, StaticKMS.from_hex(settings.ASHERAH["STATIC_MASTER_KEY_HEX"]), metastore
    )
    try:
        for name in ("alice", "bob@example.com", "carol/7"):
            factory.get_session(name).encrypt(b"payload of " + name.encode())
    finally:
        factory.close()
        metastore.close()
    for key in EncryptionKey.objects.all():
        name = "sk" if key.id.startswith("_SK_") else key.id.split("_")[2]
        keyring.rows[name] = (key.id, key.created)

    now = minute(datetime.datetime.now(UTC))
    old = now - 200 * DAY
    sk_old = (f"_SK_{SERVICE}_{PRODUCT}", old)
    made = {
        "sk_old": (sk_old, vault_sk_record(old, 1)),
        "dave": ((f"_IK_dave_{SERVICE}_{PRODUCT}", old), ik_record(old, sk_old)),
        "alice_old": (
            (f"_IK_alice_{SERVICE}_{PRODUCT}", now - 10 * DAY),
            ik_record(now - 10 * DAY, sk_old),
        ),
        "frank": (
            (f"_IK_frank_{SERVICE}_{PRODUCT}", now - 2 * DAY),
            ik_record(now - 2 * DAY, sk_old, revoked=True),
        ),
        "other_sk": (("_SK_othersvc_otherprod", now - DAY), vault_sk_record(now - DAY, 3)),
        "erin": (
            ("_IK_erin_othersvc_otherprod", now - DAY),
            ik_record(now - DAY, ("_SK_othersvc_otherprod", now - DAY)),
        ),
        "guard": (
            (
                "__asherah_internal_config_drift_guard_v1__:O-mWdsyUj1N1pac51xnTwqLSiZxEi6N8QYefpolyGl0",
                datetime.datetime(2000, 1, 1, tzinfo=UTC),
            ),
            json.dumps(
                {
                    "Created": 946684800,
                    "Key": base64.b64encode(
                        b'{"schema_version":1,"service_name":"testsvc"}'
                    ).decode(),
                },
                separators=(",", ":"),
            ),
        ),
        "broken": (
            (f"_IK_broken_{SERVICE}_{PRODUCT}", now - 3 * DAY),
            '{"Created":"soon","Key":"@@"}',
        ),
    }
    EncryptionKey.objects.bulk_create(
        EncryptionKey(id=key_id, created=created, key_record=record)
        for (key_id, created), record in made.values()
    )
    for name, (row, _) in made.items():
        keyring.rows[name] = row
    return keyring


def stored_secrets() -> list[str]:
    """Every stored key's base64 ``Key`` and the same bytes in hex (and as text when they
    are ASCII, e.g. a Vault ciphertext): none may appear in any admin page."""
    from asherah_django.models import EncryptionKey

    found: list[str] = []
    for record in EncryptionKey.objects.values_list("key_record", flat=True):
        try:
            value = json.loads(record).get("Key")
        except (ValueError, AttributeError):
            continue
        if not isinstance(value, str) or len(value) < 16:
            continue
        found.append(value)
        try:
            raw = binascii.a2b_base64(value, strict_mode=True)
        except binascii.Error:
            continue
        found += [raw.hex(), raw.hex().upper()]
        if raw.isascii():
            found.append(raw.decode("ascii"))
    return found


@pytest.fixture
def keyring(transactional_db: None) -> Keyring:
    from asherah_django.models import EncryptionKey

    # On PostgreSQL and MariaDB, keys are committed on their own connection, so earlier
    # tests' keys outlive their transactions: start from an empty table.
    EncryptionKey.objects.all().delete()
    return build_keyring()


# -- users -----------------------------------------------------------------------------------


def make_staff(username: str, *codenames: str) -> Any:
    """A staff user (not a superuser) holding exactly ``codenames`` of asherah_django."""
    from django.contrib.auth.models import Permission, User
    from django.contrib.contenttypes.models import ContentType

    from asherah_django.models import EncryptionKey

    user = User.objects.create_user(username, password=PASSWORD, is_staff=True)
    content_type = ContentType.objects.get_for_model(EncryptionKey)
    for codename in codenames:
        permission = Permission.objects.filter(content_type=content_type, codename=codename).first()
        if permission is None and codename == "revoke_encryptionkey":
            # Until EncryptionKey.Meta.permissions declares it (see the admin's docs).
            permission = Permission.objects.create(
                content_type=content_type, codename=codename, name="Can revoke encryption keys"
            )
        assert permission is not None, codename
        user.user_permissions.add(permission)
    return user


@pytest.fixture
def inspector(transactional_db: None) -> Any:
    """May view and revoke keys."""
    return make_staff("inspector", "view_encryptionkey", "revoke_encryptionkey")


@pytest.fixture
def viewer(transactional_db: None) -> Any:
    """May view keys, not revoke them."""
    return make_staff("viewer", "view_encryptionkey")


@pytest.fixture
def outsider(transactional_db: None) -> Any:
    """Staff without any asherah_django permission."""
    return make_staff("outsider")


# -- the browser -----------------------------------------------------------------------------


def _install_browser() -> str | None:
    """Install Chromium through the project's script when missing; the reason if it can't."""
    if CHROMIUM.exists():
        return None
    script = ROOT / "scripts" / "install-browser.sh"
    if script.exists() and shutil.which("bash"):
        result = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=False)
        if CHROMIUM.exists():
            return None
        return f"{CHROMIUM} is missing and scripts/install-browser.sh could not install it: {result.stderr.strip()[-500:]}"
    return f"{CHROMIUM} is missing (install the Debian packages chromium and chromium-driver)"


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    reason = _install_browser()
    if reason is None:
        try:
            from playwright.sync_api import sync_playwright
        except ImportError as exc:
            reason = f"the playwright package is not installed ({exc})"
    if reason is not None:
        message = f"ADMIN BROWSER TESTS SKIPPED: {reason}"
        print(f"\n{'!' * 20} {message} {'!' * 20}", file=sys.stderr)
        pytest.skip(message)
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            # Playwright starts Chromium with a fresh temporary --user-data-dir of its own.
            chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                yield chromium
            finally:
                chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page_for(browser: Any, live_server: Any) -> Iterator[Any]:
    """``page_for(user)``: a fresh browser context logged into the admin as ``user``."""
    contexts: list[Any] = []

    def login(user: Any) -> Any:
        context = browser.new_context(
            base_url=live_server.url, viewport={"width": 1600, "height": 1000}
        )
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        page.goto("/admin/login/?next=/admin/")
        page.fill("#id_username", user.get_username())
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        page.wait_for_url("**/admin/")
        return page

    yield login
    for context in contexts:
        context.close()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
