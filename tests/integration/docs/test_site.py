"""The documentation site (issue 19): Sphinx builds it with warnings as errors, the generated
settings reference lists exactly the settings the code reads, and two rendered pages are
photographed in headless Chromium (test-artifacts/docs/, committed)."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from asherah_django import conf
from tests.support.common import ROOT

DOCS = ROOT / "docs"
SHOTS = ROOT / "test-artifacts" / "docs"
sys.path.insert(0, str(DOCS / "_ext"))
from settings_reference import settings_rows  # noqa: E402


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The HTML site, built once for this module exactly as ``make docs`` builds it."""
    out = tmp_path_factory.mktemp("site")
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["PYTHONWARNINGS"] = "ignore::DeprecationWarning"  # third-party; Sphinx's -W is ours
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(out / "doctrees"), str(DOCS), str(out / "html")],
        capture_output=True, text=True, timeout=300, check=False, env=env, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, f"docs build failed:\n{result.stdout}\n{result.stderr}"
    assert "WARNING" not in result.stderr, result.stderr
    return out / "html"


PAGES = (
    "quickstart", "tutorial", "fields", "vault", "kms", "admin", "testing", "integrations",
    "interop", "performance", "operations", "troubleshooting", "settings", "security", "api",
    "changelog",
)  # fmt: skip


def test_the_site_builds_without_warnings_and_has_every_page(site: Path) -> None:
    missing = [page for page in PAGES if not (site / f"{page}.html").is_file()]
    assert not missing
    security = (site / "security.html").read_text(encoding="utf-8")
    assert "Incident runbook" in security  # SECURITY.md, included, not copied
    assert "Unreleased" in (site / "changelog.html").read_text(encoding="utf-8")
    api = (site / "api.html").read_text(encoding="utf-8")
    for name in ("EncryptedTextField", "PartitionMismatchError", "KMSConformance", "session"):
        assert name in api, name


def _documented(page: str) -> dict[str, list[str]]:
    """The settings of a rendered reference: name -> environment variables."""
    rows = {}
    pattern = r'<dt[^>]*id="setting-([^"]+)"[^>]*>(.*?)</dt>\s*<dd>(.*?)</dd>'
    for _, term, definition in re.findall(pattern, page, re.S):
        name = html.unescape(re.sub(r"<[^>]+>", "", term)).split(" (")[0].strip()
        source = re.search(r'class="asherah-setting-source">(.*?)</p>', definition, re.S)
        assert source is not None, name
        rows[name] = re.findall(r'asherah-env[^"]*"><span class="pre">([^<]+)</span>', source[1])
    return rows


def test_settings_reference_lists_exactly_what_the_code_reads(site: Path) -> None:
    """Every setting of the registry is on the page with its environment variables, and the
    page documents no other; every key of ``ASHERAH`` the code reads is in the registry."""
    documented = _documented((site / "settings.html").read_text(encoding="utf-8"))
    registry = {row.name: list(row.env) for row in settings_rows()}
    assert documented == registry
    assert set(conf.DEFAULTS) <= set(documented)
    assert "ASHERAH_HEALTH_TOKEN" in documented  # read by the readiness view
    for name in conf.DEFAULTS:
        assert documented[name] == list(conf.env_names(name)), name


@pytest.mark.browser
def test_screenshots_of_two_rendered_pages(site: Path) -> None:
    from tests.integration.admin.conftest import CHROMIUM, CHROMIUM_ARGS

    playwright_api = pytest.importorskip("playwright.sync_api")
    assert CHROMIUM.is_file(), f"{CHROMIUM} is missing (scripts/install-browser.sh)"
    SHOTS.mkdir(parents=True, exist_ok=True)
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            for name, heading in (
                ("tutorial", "Tutorial: encrypt an existing column"),
                ("settings", "Settings reference"),
            ):
                page.goto((site / f"{name}.html").as_uri())
                assert page.locator("h1").first.inner_text().startswith(heading)
                if name == "settings":  # the generated table, not only the prose above it
                    page.locator("dl.asherah-settings").scroll_into_view_if_needed()
                page.screenshot(path=SHOTS / f"{name}.png", full_page=False)
                assert (SHOTS / f"{name}.png").stat().st_size > 10_000
        finally:
            browser.close()
