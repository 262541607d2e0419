"""Sphinx configuration of the documentation site (``make docs``; ``make test`` builds it with
warnings as errors). Pages are MyST Markdown; the settings reference is generated at build time
from the code (``_ext/settings_reference.py``), and the API reference from docstrings."""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE / "_ext")]
# autodoc imports the package's public modules, some of which need configured settings.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "docs_settings")

import django  # noqa: E402

django.setup()

import asherah_django  # noqa: E402

project = "asherah_django"
author = "asherah_django developers"
copyright = "asherah_django developers"
release = asherah_django.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "settings_reference",
]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]
html_theme = "furo"
html_title = f"asherah_django {release}"
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
# Docstrings are written for readers of the code: their cross-references to private helpers
# and to Django's own objects are not targets of this site.
nitpicky = False
