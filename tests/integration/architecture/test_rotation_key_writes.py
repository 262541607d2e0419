"""rotation/ changes key rows only through the metastore: no SQL that writes, in any module.

Every string in ``asherah_django/rotation/*.py`` outside docstrings (plain literals and the
literal parts of f-strings) is searched for ``UPDATE``, ``INSERT INTO`` and ``DELETE FROM``:
writes to the key table go through :class:`~asherah_django.metastore.DjangoMetastore`
(``rewrap``, ``delete_version``, ``revoke``, ``delete_key_id``), which keeps the SQL of every
database in one place and forgets its prefetched rows.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import asherah_django

ROTATION = Path(asherah_django.__file__).parent / "rotation"
WRITE = re.compile(r"\b(UPDATE\s+\S+\s+SET|INSERT\s+INTO|DELETE\s+FROM)\b", re.IGNORECASE)


def _docstrings(tree: ast.Module) -> set[int]:
    ids: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def _text(node: ast.JoinedStr) -> str:
    return "".join(
        str(part.value) if isinstance(part, ast.Constant) else "{x}" for part in node.values
    )


def sql_writes(source: str, filename: str) -> list[str]:
    """``file:line: text`` for each string of ``source`` that reads as an SQL write."""
    tree = ast.parse(source)
    skip = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            text = _text(node)
            skip.update(id(part) for part in node.values)
        elif (
            isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip
        ):
            text = node.value
        else:
            continue
        if WRITE.search(text):
            found.append(f"{filename}:{node.lineno}: {text.strip()[:60]}")
    return found


def test_the_rule_sees_plain_and_f_string_sql() -> None:
    source = (
        '"""UPDATE t SET x = 1 in a docstring is prose."""\n'
        'a = "update encryption_key set key_record = %s"\n'
        'b = f"DELETE FROM {table} WHERE id = %s"\n'
        'c = "SELECT id FROM encryption_key"\n'
        'd = f"UPDATE {quote(table)} SET {sets} "\n'
    )
    assert [line.split(":")[1] for line in sql_writes(source, "x.py")] == ["2", "3", "5"]


def test_rotation_writes_no_sql() -> None:
    found = [
        hit
        for path in sorted(ROTATION.rglob("*.py"))
        for hit in sql_writes(path.read_text(encoding="utf-8"), str(path.relative_to(ROTATION)))
    ]
    assert not found, "rotation/ writes key rows through the metastore, not SQL:\n" + "\n".join(
        found
    )
