"""Every test that SECURITY.md, README.md and the docs pages name (``tests/x.py::test_name``, or
``::test_name`` for another test of the last file named) exists, so that a security
sentence cannot outlive the test behind it unnoticed."""

from __future__ import annotations

import re

import pytest

from tests.integration.docs import sources
from tests.support.common import ROOT

# A path, or "::" continuing the last path, then the test name; "[...]" ids are ignored.
REF = re.compile(r"(tests/[\w/]+\.py)?::\s*(test_\w+)")


def references(document: str) -> list[tuple[str, str]]:
    text = (ROOT / document).read_text(encoding="utf-8")
    found, path = [], None
    for match in REF.finditer(text):
        path = match.group(1) or path
        assert path is not None, f"{document}: '::{match.group(2)}' follows no test file"
        found.append((path, match.group(2)))
    return found


@pytest.mark.parametrize("document", [str(p.relative_to(ROOT)) for p in sources.documents()])
def test_named_tests_exist(document: str) -> None:
    missing = [
        f"{path}::{name}"
        for path, name in references(document)
        if not (ROOT / path).is_file()
        or not re.search(rf"^(async )?def {name}\(", (ROOT / path).read_text(), re.MULTILINE)
    ]
    assert not missing, f"{document} names tests that do not exist: {missing}"


def test_the_key_integrity_section_names_its_tests() -> None:
    assert len(references("SECURITY.md")) >= 20


def test_the_docs_name_the_tests_behind_their_claims() -> None:
    """The guides moved out of README kept their references (issue 19)."""
    named = sum(len(references(str(p.relative_to(ROOT)))) for p in sources.documents())
    assert named >= 60
