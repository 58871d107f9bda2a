"""Sphinx configuration of the skprobae documentation site.

Build (warnings are errors, the gallery executed)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

``-D plot_gallery=0`` skips running the gallery scripts for a quick text-only build.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS / "_ext"))
os.environ.setdefault("OMP_NUM_THREADS", "1")  # the gallery scripts run one after another in this process

from inventories import write_inventories  # noqa: E402

import skprobae  # noqa: E402

project = "skprobae"
author = "the skprobae developers"
copyright = "2026, the skprobae developers"
release = skprobae.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "myst_parser",
    "skprobae_docs",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py", "**/*.zip", "**/*.md5", "**/*.json"]
templates_path = ["_templates"]
html_static_path = ["_static"]

# autodoc / autosummary / numpydoc: one page per public object, sections from the numpydoc docstrings.
autosummary_generate = True
autodoc_default_options = {"members": True, "show-inheritance": False}
autodoc_typehints = "none"  # numpydoc's Parameters section already states the types
autodoc_inherit_docstrings = True  # an override without a docstring shows the documented base method's
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = False

# Inventories cannot be fetched here (no network but the package registries): the
# mappings read inventories written from a list of the objects these pages refer to
# (docs/_ext/inventories.py), so intersphinx fetches nothing and warns of nothing.
intersphinx_mapping = write_inventories(DOCS / "_build" / "inventories")

sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/(plot_|demo_)",
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "show_memory": False,
    "reset_modules": ("matplotlib", "seaborn"),
    "matplotlib_animations": False,
    "min_reported_time": 1,
    "doc_module": ("skprobae",),
    "backreferences_dir": None,
}

# MathJax from Debian's libjs-mathjax when it is installed (copied into the build by
# docs/_ext/skprobae_docs.py), so pages render their equations without a network;
# otherwise Sphinx's default, MathJax from its CDN.
SYSTEM_MATHJAX = Path("/usr/share/javascript/mathjax")
if (SYSTEM_MATHJAX / "MathJax.js").exists():
    mathjax_path = "mathjax/MathJax.js?config=TeX-AMS_CHTML"

myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3

html_theme = "pydata_sphinx_theme"
html_title = f"skprobae {release}"
html_theme_options = {
    "navbar_align": "left",
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "header_links_before_dropdown": 7,
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_sidebars = {"index": [], "install": [], "quickstart": []}
html_context = {"default_mode": "light"}  # the theme's colour scheme before a reader picks one
html_favicon = "_static/favicon.svg"
html_show_sourcelink = False
html_copy_source = False
