"""The settings reference, generated at build time from the code that reads the settings.

``.. settings-reference::`` (in MyST: a ```` ```{settings-reference} ```` block) renders one
table row per setting: its name, its environment variables in order of precedence, its
default and, where the code documents it, its meaning. The rows come from
:func:`settings_rows`, never from text written here, so the page cannot drift from the code
(``tests/docs/test_site.py`` compares the rendered page with the code).

Where the rows come from: the settings registry (``asherah_django.conf``'s ``REGISTRY``/
``SETTINGS``, a sequence of entries with ``name``, ``default``, ``env`` and ``doc``
attributes) when the package has one; otherwise ``asherah_django.conf.DEFAULTS`` and
``env_names`` (every key of ``ASHERAH``), plus the settings read outside that dict.

Options: ``:names: A, B`` keeps those rows only (a guide's table), ``:exclude: A, B`` drops
them; a name that is not a setting is a build error.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective


@dataclass(frozen=True)
class Row:
    """One setting as the reference shows it."""

    name: str
    env: tuple[str, ...]
    default: str
    doc: str
    where: str  # "ASHERAH" (a key of the dict) or "settings" (a top-level Django setting)


def _default_text(value: object) -> str:
    if value is None:
        return "none"
    return repr(value) if isinstance(value, str) else str(value)


def _registry() -> Sequence[Any] | None:
    conf = importlib.import_module("asherah_django.conf")
    for holder in (conf, getattr(conf, "registry", None)):
        for attribute in ("REGISTRY", "SETTINGS"):
            found = getattr(holder, attribute, None) if holder is not None else None
            if found is not None and not isinstance(found, str | dict):
                return list(found.values()) if hasattr(found, "values") else list(found)
    return None


def _from_registry(entries: Iterable[Any]) -> list[Row]:
    rows = []
    for entry in entries:
        env = getattr(entry, "env", None) or getattr(entry, "env_names", ())
        rows.append(
            Row(
                name=str(entry.name),
                env=tuple(env() if callable(env) else env),
                default=_default_text(getattr(entry, "default", None)),
                doc=str(getattr(entry, "doc", "") or getattr(entry, "help", "") or ""),
                where=str(getattr(entry, "where", "ASHERAH") or "ASHERAH"),
            )
        )
    return rows


def _from_defaults() -> list[Row]:
    conf = importlib.import_module("asherah_django.conf")
    views = importlib.import_module("asherah_django.views")
    rows = [
        Row(name, tuple(conf.env_names(name)), _default_text(default), "", "ASHERAH")
        for name, default in conf.DEFAULTS.items()
    ]
    token = views.TOKEN_SETTING
    rows.append(Row(token, (token,), "none", "", "settings"))
    return rows


def settings_rows() -> list[Row]:
    """Every setting the code reads, in the code's order."""
    entries = _registry()
    return _from_registry(entries) if entries is not None else _from_defaults()


def _names(argument: str) -> list[str]:
    return [name.strip() for name in argument.split(",") if name.strip()]


def _table(rows: Sequence[Row]) -> nodes.table:
    headers = ("Setting", "Environment", "Default", "Meaning")
    widths = (22, 26, 16, 36)
    table = nodes.table(classes=["asherah-settings"])
    group = nodes.tgroup(cols=len(headers))
    table += group
    for width in widths:
        group += nodes.colspec(colwidth=width)
    head = nodes.thead()
    group += head
    head += _row([nodes.Text(h) for h in headers])
    body = nodes.tbody()
    group += body
    for row in rows:
        name = row.name if row.where == "ASHERAH" else f"{row.name} (Django setting)"
        cells: list[nodes.Node] = [
            nodes.literal(text=name),
            _literals(row.env),
            nodes.literal(text=row.default),
            nodes.Text(row.doc),
        ]
        tr = _row(cells)
        tr["ids"].append(nodes.make_id(f"setting-{row.name}"))
        body += tr
    return table


def _literals(names: Sequence[str]) -> nodes.Node:
    paragraph = nodes.inline()
    for index, name in enumerate(names):
        if index:
            paragraph += nodes.Text(", then ")
        paragraph += nodes.literal(text=name)
    return paragraph


def _row(cells: Sequence[nodes.Node]) -> nodes.row:
    row = nodes.row()
    for cell in cells:
        entry = nodes.entry()
        paragraph = nodes.paragraph()
        paragraph += cell
        entry += paragraph
        row += entry
    return row


class SettingsReference(SphinxDirective):
    has_content = False
    option_spec = {"names": directives.unchanged, "exclude": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        rows = settings_rows()
        known = {row.name for row in rows}
        wanted = _names(self.options.get("names", ""))
        excluded = _names(self.options.get("exclude", ""))
        unknown = sorted((set(wanted) | set(excluded)) - known)
        if unknown:
            raise self.error(f"settings-reference: not settings the code reads: {unknown}")
        if wanted:
            rows = sorted((r for r in rows if r.name in wanted), key=lambda r: wanted.index(r.name))
        rows = [row for row in rows if row.name not in excluded]
        self.env.note_dependency(importlib.import_module("asherah_django.conf").__file__ or "")
        return [_table(rows)]


def setup(app: Sphinx) -> dict[str, object]:
    app.add_directive("settings-reference", SettingsReference)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
