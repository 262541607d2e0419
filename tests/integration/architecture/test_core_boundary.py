"""The core's front door: nothing outside ``asherah_django.core`` touches a core object's
private attributes or reaches through the factory into its key hierarchy.

Every module of the package outside ``core/`` is parsed with ``ast``. An access
``<expr>._name`` is refused when ``_name`` is a private attribute or method of a class of
the core (collected from the core's own source: ``self._name = ...``, ``def _name``,
``__slots__``) and ``<expr>`` is not ``self``/``cls``/``super()`` of the module's own class;
``<expr>.keys.<attr>`` (the old ``factory.keys.*`` reach-through) is refused unless ``<expr>``
names an imported module (``rotation.keys`` is a module) or is ``self``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import asherah_django

PACKAGE = Path(asherah_django.__file__).parent
CORE = PACKAGE / "core"
_OWN = {"self", "cls", "mcs"}


def _core_private_names() -> set[str]:
    names: set[str] = set()
    for path in CORE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
            for node in ast.walk(cls):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    if node.name.startswith("_") and not node.name.startswith("__"):
                        names.add(node.name)
                elif (
                    isinstance(node, ast.Attribute)
                    and isinstance(node.ctx, ast.Store)
                    and isinstance(node.value, ast.Name)
                    and node.value.id in _OWN
                    and node.attr.startswith("_")
                    and not node.attr.startswith("__")
                ):
                    names.add(node.attr)
                elif isinstance(node, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == "__slots__" for t in node.targets
                ):
                    for item in ast.walk(node.value):
                        if isinstance(item, ast.Constant) and str(item.value).startswith("_"):
                            names.add(str(item.value))
    return names


def _imported_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return names


def violations(source: str, filename: str, private: set[str]) -> list[str]:
    """What in ``source`` crosses the core's boundary, as ``file:line: text``."""
    tree = ast.parse(source, filename)
    modules = _imported_names(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        owner = node.value
        if node.attr in private:
            own = isinstance(owner, ast.Name) and owner.id in _OWN
            own = own or (
                isinstance(owner, ast.Call)
                and isinstance(owner.func, ast.Name)
                and owner.func.id == "super"
            )
            if not own:
                found.append(f"{filename}:{node.lineno}: {ast.unparse(node)}")
        if isinstance(owner, ast.Attribute) and owner.attr == "keys":
            base = owner.value
            # (``self.keys`` is an object's own attribute, e.g. a reindexer's IndexKeys.)
            if not (isinstance(base, ast.Name) and (base.id in modules or base.id in _OWN)):
                found.append(f"{filename}:{node.lineno}: {ast.unparse(node)}")
    return sorted(found, key=lambda line: int(line.split(":")[1]))


def test_the_core_private_names_are_collected() -> None:
    private = _core_private_names()
    # The names the Django layer once reached for, and a sample of the rest.
    assert {"_keys", "_sessions_lock", "_locks", "_lock", "_secret", "_call", "_store"} <= private


def test_nothing_outside_the_core_touches_its_private_attributes() -> None:
    private = _core_private_names()
    found = []
    checked = 0
    for path in sorted(PACKAGE.rglob("*.py")):
        if CORE in path.parents:
            continue
        checked += 1
        found += violations(
            path.read_text(encoding="utf-8"), str(path.relative_to(PACKAGE)), private
        )
    assert checked > 50  # the whole Django layer was read
    assert found == []


def test_a_violation_is_caught() -> None:
    private = _core_private_names()
    source = (
        "from . import rotation\n"
        "def f(factory, other):\n"
        "    factory.keys.system_keys.clear()\n"  # reach-through
        "    factory._keys.close()\n"  # private attribute of the factory
        "    other._lock = None\n"  # private attribute of a core object (a cache)
        "    rotation.keys.metastore_of(factory)\n"  # a module: allowed
        "    self._lock = None\n"  # its own: allowed
    )
    assert violations(source, "m.py", private) == [
        "m.py:3: factory.keys.system_keys",
        "m.py:4: factory._keys",
        "m.py:5: other._lock",
    ]
