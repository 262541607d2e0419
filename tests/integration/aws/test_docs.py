"""Every test the KMS guide (docs/kms.md) names next to a claim exists (issue 24)."""

from __future__ import annotations

import ast
import re

from tests.support.common import ROOT


def test_tests_named_in_the_kms_section_exist() -> None:
    section = (ROOT / "docs" / "kms.md").read_text(encoding="utf-8")
    references = re.findall(r"`((?:tests/[\w/]+\.py|\.\.\.)(?:::\w+)?)`", section)
    assert len(references) >= 15
    last_file = None
    for reference in references:
        path, _, name = reference.partition("::")
        if path == "...":
            path = last_file
        assert path is not None, reference
        last_file = path
        source = ROOT / path
        assert source.is_file(), reference
        if name:
            tree = ast.parse(source.read_text(encoding="utf-8"))
            defined = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
            assert name in defined, f"{reference}: no such test"
