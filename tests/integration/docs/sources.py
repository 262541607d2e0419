"""The documentation's Markdown sources and their fenced code blocks, read by the tests that
check them: README.md (the front page) and every page under docs/ (SECURITY.md and
CHANGELOG.md are included into the site from the repository root)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

from tests.support.common import ROOT

DOCS = ROOT / "docs"
_FENCE = re.compile(r"^([ \t]*)```([^\n`]*)\n(.*?)^[ \t]*```", re.M | re.S)
#: A page whose code blocks another test file checks says so in its first lines.
_CHECKED_ELSEWHERE = re.compile(r"<!-- code blocks checked by (tests/[\w/]+\.py) -->")


def documents() -> list[Path]:
    """README.md, SECURITY.md and every Markdown page of docs/ (not the build output)."""
    pages = sorted(p for p in DOCS.rglob("*.md") if "_build" not in p.relative_to(DOCS).parts)
    return [ROOT / "README.md", ROOT / "SECURITY.md", *pages]


def checked_elsewhere(path: Path) -> Path | None:
    """The test file that checks ``path``'s blocks, when the page names one that exists."""
    found = _CHECKED_ELSEWHERE.search(path.read_text(encoding="utf-8")[:2000])
    return ROOT / found.group(1) if found and (ROOT / found.group(1)).is_file() else None


def blocks(lang: str, *, include_elsewhere: bool = False) -> list[tuple[Path, str]]:
    """Every fenced block of ``lang`` (list items' indented blocks too), dedented."""
    found = []
    for path in documents():
        if not include_elsewhere and checked_elsewhere(path) is not None:
            continue
        for match in _FENCE.finditer(path.read_text(encoding="utf-8")):
            if match.group(2).strip() == lang:
                found.append((path, textwrap.dedent(match.group(3))))
    return found


def block(lang: str, marker: str) -> str:
    """The one block of ``lang`` containing ``marker``, in any document."""
    found = [body for _, body in blocks(lang) if marker in body]
    assert len(found) == 1, f"expected one {lang} block containing {marker!r} in the docs"
    return found[0]


def all_text() -> str:
    """Every document's text, for claims that must be stated somewhere in the docs."""
    return "\n".join(path.read_text(encoding="utf-8") for path in documents())


def page(name: str) -> str:
    """One page of docs/, e.g. ``page("vault.md")``."""
    return (DOCS / name).read_text(encoding="utf-8")
