"""The key inspection pages driven in real headless Chromium against the live server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from asherah_django.models import EncryptionKey

from .conftest import Keyring

pytestmark = pytest.mark.browser

LIST = "/admin/asherah_django/encryptionkey/"
DASH = "\N{EN DASH}"


def key_ids(page: Any) -> list[str]:
    return page.locator("#result_list tbody tr.key-row th a").all_inner_texts()


def column(page: Any, attribute: str) -> set[str]:
    rows = page.locator("#result_list tbody tr.key-row")
    return {rows.nth(i).get_attribute(attribute) for i in range(rows.count())}


def test_inspect_filter_search_detail_and_revoke(
    keyring: Keyring, inspector: Any, page_for: Any, artifacts: Path
) -> None:
    page = page_for(inspector)

    # The admin index lists the keys under the app; the list shows every row.
    page.click("text=Encryption keys")
    page.wait_for_url(f"**{LIST}")
    assert page.locator("#result-count").inner_text() == "12 keys"
    assert column(page, "data-status") == {
        "current",
        "superseded",
        "revoked",
        "expired",
        "internal",
        "malformed",
    }
    first = page.locator("#result_list tbody tr.key-row").first
    assert first.locator(".field-kind").inner_text() == "System"
    page.screenshot(path=artifacts / "admin-key-list.png", full_page=True)

    # Filters (sidebar links), then search by partition.
    with page.expect_navigation():  # wait for the new page, not the old one
        page.click("#changelist-filter details[data-filter-title=kind] >> text=System")
    assert column(page, "data-kind") == {"system"}
    assert sorted(page.locator(".field-vault_version").all_inner_texts()) == ["v1", "v3", DASH]
    with page.expect_navigation():  # wait for the new page, not the old one
        page.click("#changelist-filter details[data-filter-title=status] >> text=Expired")
    assert key_ids(page) == ["_SK_testsvc_testprod"]
    with page.expect_navigation():  # wait for the new page, not the old one
        page.click("text=Clear all filters")
    with page.expect_navigation():  # wait for the new page, not the old one
        page.click("#changelist-filter details[data-filter-title=status] >> text=Revoked")
    assert key_ids(page) == ["_IK_frank_testsvc_testprod"]
    with page.expect_navigation():  # wait for the new page, not the old one
        page.click("text=Clear all filters")
    page.fill("#searchbar", "bob@example.com")
    page.press("#searchbar", "Enter")
    page.wait_for_url("**q=bob*")
    assert key_ids(page) == ["_IK_bob@example.com_testsvc_testprod"]
    assert page.locator(".field-partition").inner_text() == "bob@example.com"

    # Sorting by created: oldest first puts the drift guard row (year 2000) on top.
    page.goto(LIST)
    with page.expect_navigation():  # wait for the new page, not the old one
        page.click("#sort-created")
    assert key_ids(page)[0].startswith("__asherah_internal_")

    # The detail page of an intermediate key: metadata, lineage, masked record.
    page.goto(LIST + "?q=bob%40example.com")
    with page.expect_navigation():
        page.click("#result_list tbody tr.key-row th a")
    page.wait_for_selector("#key-metadata")
    assert page.locator("#key-status").inner_text() == "Current"
    assert "_SK_testsvc_testprod" in page.locator("#key-parent").inner_text()
    assert "<masked: 80 base64 characters>" in page.locator(".asherah-record").inner_text()
    page.screenshot(path=artifacts / "admin-key-detail.png", full_page=True)

    # Revoke through the confirmation page.
    with page.expect_navigation():
        page.click("#revoke-link")
    page.wait_for_selector("#revoke-form")
    assert "Are you sure" in page.content()
    page.screenshot(path=artifacts / "admin-key-revoke-confirm.png", full_page=True)
    with page.expect_navigation():
        page.click("#confirm-revoke")
    page.wait_for_selector("#key-metadata")
    assert "was revoked" in page.locator(".messagelist").inner_text()
    assert page.locator("#key-status").inner_text() == "Revoked"
    assert page.locator("#revoke-link").count() == 0
    assert "Changed Revoked." in page.locator("#key-history").inner_text()
    page.goto(LIST + "?status=revoked")
    assert sorted(key_ids(page)) == [
        "_IK_bob@example.com_testsvc_testprod",
        "_IK_frank_testsvc_testprod",
    ]
    stored = EncryptionKey.objects.get(pk=keyring.rows["bob@example.com"])
    assert stored.revoked

    # The system key's page lists the intermediate keys it wraps.
    page.goto(keyring.detail_path("sk"))
    children = page.locator("#key-children").inner_text()
    assert "_IK_alice_testsvc_testprod" in children
    assert "_IK_carol/7_testsvc_testprod" in children
    page.screenshot(path=artifacts / "admin-system-key-detail.png", full_page=True)

    # The health panel on the app's index runs only on request.
    page.goto("/admin/asherah_django/")
    assert page.locator("#asherah-health-panel").count() == 1
    page.click("#run-health-checks")
    page.wait_for_selector("#health-results, #health-unavailable, #health-error")
    page.screenshot(path=artifacts / "admin-health.png", full_page=True)


def test_users_without_permission_are_refused(
    keyring: Keyring, outsider: Any, viewer: Any, page_for: Any
) -> None:
    page = page_for(outsider)
    assert page.locator("text=Encryption keys").count() == 0
    response = page.goto(LIST)
    assert response is not None and response.status == 403
    response = page.goto(keyring.detail_path("alice"))
    assert response is not None and response.status == 403

    # A viewer sees the keys but cannot revoke: no button, and the URL refuses.
    page = page_for(viewer)
    page.goto(keyring.detail_path("alice"))
    assert page.locator("#key-status").inner_text() == "Current"
    assert page.locator("#revoke-link").count() == 0
    response = page.goto(keyring.revoke_path("alice"))
    assert response is not None and response.status == 403
    assert not EncryptionKey.objects.get(pk=keyring.rows["alice"]).revoked
