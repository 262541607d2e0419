"""Apply test-file moves (``old -> new`` lines) and rewrite every reference to the moved files.

    python scripts/relayout_tests.py MOVES.txt            # git mv + rewrite references
    python scripts/relayout_tests.py --refs-only MOVES.txt  # rewrite references only

For each line whose old file still exists: ``git mv`` (the new folders get an ``__init__.py``,
as every test folder is a package). Then, in every text file of the repository: the slash form
(``tests/core/test_session.py``) and the dotted form (``tests.core.test_session``) of each moved
file become the new ones; in a moved file, a relative import of a module that now lives in
another folder becomes absolute, and ``Path(__file__).resolve().parents[N]`` (the repository
root) follows the new depth. Lines whose old file is gone are skipped, so the lead can append
lines for files added on other branches and run it again after a merge.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEXT = {".py", ".md", ".toml", ".sh", ".ini", ".cfg", ".txt", ".yml", ".yaml"}
SKIP = {"MOVES.txt", "CHANGELOG.md", "relayout_tests.py"}  # the record of moves, history, this


def read_moves(path: Path) -> list[tuple[str, str]]:
    moves = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "->" in line:
            old, new = (part.strip() for part in line.split("->"))
            moves.append((old, new))
    return moves


def dotted(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".")


def git_mv(old: str, new: str) -> None:
    target = ROOT / new
    folder = target.parent
    created = []
    while not folder.exists():
        created.append(folder)
        folder = folder.parent
    for made in reversed(created):
        made.mkdir()
        if made == target.parent and target.name == "__init__.py":
            continue  # the package's own __init__.py is the one being moved
        (made / "__init__.py").touch()
        subprocess.run(["git", "add", str(made / "__init__.py")], cwd=ROOT, check=True)  # noqa: S603, S607
    subprocess.run(["git", "mv", old, new], cwd=ROOT, check=True)  # noqa: S603, S607


def fix_relative(text: str, old: str, new: str, where: dict[str, str]) -> str:
    """``from .x import`` / ``from . import x`` of a module that is no longer beside us."""
    old_pkg, new_pkg = str(Path(old).parent), str(Path(new).parent)

    def absolute(module: str) -> str | None:
        moved = where.get(f"{old_pkg}/{module}.py", f"{old_pkg}/{module}.py")
        if str(Path(moved).parent) == new_pkg and Path(moved).stem == module:
            return None
        return dotted(moved)

    def from_dot(match: re.Match[str]) -> str:
        found = absolute(match.group(2))
        return match.group(0) if found is None else f"{match.group(1)}from {found} import"

    text = re.sub(r"(^[ \t]*)from \.([A-Za-z_]\w*) import", from_dot, text, flags=re.M)

    def import_dot(match: re.Match[str]) -> str:
        found = absolute(match.group(2))
        if found is None:
            return match.group(0)
        package, _, name = found.rpartition(".")
        return f"{match.group(1)}from {package} import {name}"

    return re.sub(r"(^[ \t]*)from \. import ([A-Za-z_]\w*)\b", import_dot, text, flags=re.M)


def fix_depth(text: str, old: str, new: str) -> str:
    before, after = len(Path(old).parts) - 1, len(Path(new).parts) - 1
    pattern = rf"(Path\(__file__\)\.resolve\(\)\.parents)\[{before}\]"
    return re.sub(pattern, rf"\g<1>[{after}]", text)


def rewrite(moves: list[tuple[str, str]]) -> list[Path]:
    pairs = sorted(moves, key=lambda pair: -len(pair[0]))
    slash = {old: new for old, new in pairs}
    dots = {dotted(old): dotted(new) for old, new in pairs}
    # A moved package (its __init__.py) is named by its folder: tests.integrations.app
    dots |= {
        dotted(str(Path(old).parent)): dotted(str(Path(new).parent))
        for old, new in pairs
        if Path(old).name == "__init__.py"
    }
    dots = dict(sorted(dots.items(), key=lambda item: -len(item[0])))
    slash_re = re.compile(
        r"(?<![\w/.])(" + "|".join(re.escape(old) for old, _ in pairs) + r")(?![\w/])"
    )
    dot_re = re.compile(
        r"(?<![\w/.])(" + "|".join(re.escape(d) for d in dots) + r")(?![\w/])(?!\.py)"
    )
    moved_to = {new: old for old, new in moves}
    changed = []
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)  # noqa: S607
    for name in files.stdout.splitlines():
        path = ROOT / name
        if (path.suffix not in TEXT and path.name != "Makefile") or path.name in SKIP:
            continue
        if not path.is_file():
            continue
        text = path.read_text()
        new_text = slash_re.sub(lambda m: slash[m.group(1)], text)
        new_text = dot_re.sub(lambda m: dots[m.group(1)], new_text)
        if name in moved_to:
            new_text = fix_relative(new_text, moved_to[name], name, slash)
            new_text = fix_depth(new_text, moved_to[name], name)
        if new_text != text:
            path.write_text(new_text)
            changed.append(path)
    return changed


def _init_first(pair: tuple[str, str]) -> tuple[bool, int]:
    return not pair[0].endswith("__init__.py"), len(Path(pair[1]).parts)


def main(argv: list[str]) -> int:
    refs_only = "--refs-only" in argv
    args = [a for a in argv if a != "--refs-only"]
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    moves = read_moves(Path(args[0]))
    if not refs_only:
        # A package's own __init__.py first, so no empty one is made in its place.
        for old, new in sorted(moves, key=_init_first):
            if (ROOT / old).exists() and not (ROOT / new).exists():
                git_mv(old, new)
    live = [(old, new) for old, new in moves if (ROOT / new).exists()]
    for path in rewrite(live):
        print(f"rewrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
