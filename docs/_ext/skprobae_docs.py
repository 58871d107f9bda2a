"""Build steps of the skprobae site that no Sphinx extension does for us.

- One page per ``benchmarks/results/*.md`` (with its figures), written into
  ``docs/benchmarks/`` before reading the sources, plus an index that lists them.
- After a build that ran the gallery, the figures that ``README.md`` shows are
  copied from the gallery's fresh output into ``docs/images/``, so every committed
  figure comes from the committed code.
- MathJax from Debian's ``libjs-mathjax`` copied into the build when ``conf.py``
  chose it, so the site renders equations offline.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

DOCS = Path(__file__).resolve().parents[1]
RESULTS = DOCS.parent / "benchmarks" / "results"
PAGES = DOCS / "benchmarks"

# README figure -> the gallery figure it copies (written by sphinx-gallery into auto_examples/images).
README_FIGURES = {
    "digits_demo.png": "sphx_glr_demo_digits_001.png",
}

_INDEX_HEADER = """\
.. _benchmarks:

Benchmarks
==========

What we measured, one page per file of ``benchmarks/results/``. Each page starts with
the command that produced it, the machine, the package versions and the commit; the
scripts are in ``benchmarks/`` and read the data sets from ``--data-dir`` or the
``SKPROBAE_DATA`` environment variable. Every figure on these pages is written by the
benchmark script named in its header.

.. toctree::
   :maxdepth: 1

"""


def _title(markdown: str, fallback: str) -> str:
    for line in markdown.splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return fallback


def write_benchmark_pages(app: Sphinx) -> None:
    if not RESULTS.is_dir():
        logger.warning("skprobae_docs: %s is missing; the benchmark pages are empty", RESULTS)
        return
    PAGES.mkdir(exist_ok=True)
    results = sorted(RESULTS.glob("*.md"))
    wanted = {path.name for path in results} | {path.name for path in RESULTS.glob("*.png")} | {"index.rst"}
    for stale in PAGES.iterdir():
        if stale.name not in wanted:
            stale.unlink()
    for path in [*results, *RESULTS.glob("*.png")]:
        target = PAGES / path.name
        if not target.exists() or target.read_bytes() != path.read_bytes():
            shutil.copyfile(path, target)  # unchanged pages keep their mtime: no rebuild
    lines = [f"   {path.stem}" for path in results]
    index = _INDEX_HEADER + "\n".join(lines) + "\n"
    target = PAGES / "index.rst"
    if not target.exists() or target.read_text() != index:
        target.write_text(index)


def copy_readme_figures(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or not app.config.sphinx_gallery_conf.get("plot_gallery", True):
        return
    gallery_images = DOCS / "auto_examples" / "images"
    for readme_name, gallery_name in README_FIGURES.items():
        source = gallery_images / gallery_name
        if not source.exists():
            logger.warning("skprobae_docs: the gallery wrote no %s for docs/images/%s", gallery_name, readme_name)
            continue
        shutil.copyfile(source, DOCS / "images" / readme_name)


# The parts of MathJax 2 that its TeX-AMS_CHTML configuration loads.
_MATHJAX_PARTS = (
    "MathJax.js",
    "config",
    "extensions",
    "jax/input/TeX",
    "jax/output/CommonHTML",
    "jax/element",
    "fonts/HTML-CSS/TeX/woff",
    "localization/en",
)


def copy_system_mathjax(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or not str(app.config.mathjax_path).startswith("mathjax/") or app.builder.format != "html":
        return
    source, target = Path("/usr/share/javascript/mathjax"), Path(app.outdir) / "_static" / "mathjax"
    for part in _MATHJAX_PARTS:
        if (source / part).is_dir():
            shutil.copytree(source / part, target / part, dirs_exist_ok=True)
        elif (source / part).exists():
            target.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / part, target / part)


def setup(app: Sphinx) -> dict[str, object]:
    app.connect("builder-inited", write_benchmark_pages)
    app.connect("build-finished", copy_readme_figures)
    app.connect("build-finished", copy_system_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
