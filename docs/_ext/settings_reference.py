"""The settings reference, generated at build time from the code that reads the settings.

``.. settings-reference::`` (in MyST: a ```` ```{settings-reference} ```` block) renders one
entry per setting: its name, its environment variables in order of precedence, its
default and, where the code documents it, its meaning. The rows come from
:func:`settings_rows`, never from text written here, so the page cannot drift from the code
(``tests/integration/docs/test_site.py`` compares the rendered page with the code).

The rows come from the settings registry, ``asherah_django.conf.registry.SETTINGS`` (key,
environment variables, default, kind, the KMS values it applies to, and its doc), in its
order, then the Django settings read outside ``ASHERAH`` (``ASHERAH_HEALTH_TOKEN``).

Options: ``:names: A, B`` keeps those rows only (a guide's table), ``:exclude: A, B`` drops
them; a name that is not a setting is a build error.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

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


def _token_setting() -> str:
    """The readiness view's token setting, wherever the view lives (it is moving into
    ``asherah_django.health``)."""
    for module in ("asherah_django.health.views",):
        try:
            return str(importlib.import_module(module).TOKEN_SETTING)
        except ModuleNotFoundError:
            continue
    raise ModuleNotFoundError("the readiness view's module (TOKEN_SETTING)")


def settings_rows() -> list[Row]:
    """Every setting the code reads, in the registry's order."""
    registry = importlib.import_module("asherah_django.conf.registry")
    rows = []
    for setting in registry.SETTINGS:
        kms = " or ".join(f"``KMS={value}``" for value in setting.kms)
        applies = f" Used only with {kms}." if setting.kms else ""
        rows.append(
            Row(
                name=setting.key,
                env=tuple(setting.env),
                default=setting.shown_default,
                doc=f"*{setting.kind}.* {setting.doc}{applies}",
                where="ASHERAH",
            )
        )
    token = _token_setting()
    rows.append(
        Row(
            token,
            (token,),
            "none",
            "*string.* The bearer token that lets a request read the readiness view's full "
            "report (``asherah_django.health.views.ReadinessView``); a Django setting, or the "
            "environment variable.",
            "settings",
        )
    )
    return rows


def _names(argument: str) -> list[str]:
    return [name.strip() for name in argument.split(",") if name.strip()]


def _reference(
    rows: Sequence[Row], inline: Callable[[str], list[nodes.Node]]
) -> nodes.definition_list:
    """One entry per setting: its name (the anchor ``setting-NAME``), where it is read from
    and its default, then its doc."""
    listing = nodes.definition_list(classes=["asherah-settings"])
    for row in rows:
        term = nodes.term()
        term += nodes.literal(text=row.name)
        if row.where != "ASHERAH":
            term += nodes.Text(" (a Django setting)")
        term["ids"].append(nodes.make_id(f"setting-{row.name}"))
        where = nodes.paragraph(classes=["asherah-setting-source"])
        where += nodes.Text("Environment: ")
        for index, name in enumerate(row.env):
            if index:
                where += nodes.Text(", then ")
            where += nodes.literal(text=name, classes=["asherah-env"])
        where += nodes.Text(". Default: ")
        where += nodes.literal(text=row.default, classes=["asherah-default"])
        where += nodes.Text(".")
        doc = nodes.paragraph()
        doc.extend(inline(row.doc))
        definition = nodes.definition()
        definition += where
        definition += doc
        item = nodes.definition_list_item()
        item += term
        item += definition
        listing += item
    return listing


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

        def inline(text: str) -> list[nodes.Node]:
            parsed, messages = self.state.inline_text(text, self.lineno)
            if messages:
                raise self.error(f"settings-reference: bad markup in a doc: {text!r}")
            return list(parsed)

        return [_reference(rows, inline)]


def setup(app: Sphinx) -> dict[str, object]:
    app.add_directive("settings-reference", SettingsReference)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
