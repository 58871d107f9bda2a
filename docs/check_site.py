"""Open the built site in headless Chromium and check that pages load cleanly.

Serves ``docs/_build/html`` on localhost, opens the index, one user-guide page, one API
page and one gallery page in Debian's Chromium (driven by Playwright, which uses the
browser at ``--chromium``, by default ``/usr/bin/chromium``), and fails if a page has a
missing image, a console error, an uncaught script error, or a request to the site
that fails. Screenshots go to ``--screenshots`` (outside the repository by default).

Run after the build: ``python docs/check_site.py [--html docs/_build/html]``.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import sys
import threading
from pathlib import Path

from playwright.sync_api import sync_playwright

PAGES = {
    "index": "index.html",
    "user guide": "user_guide/pae.html",
    "API": "generated/skprobae.PAE.html",
    "gallery": "auto_examples/demo_digits.html",
}
# The flags this machine's Chromium needs: no sandbox as root, no background connections
# (this network refuses them), no GPU.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

_MISSING_IMAGES = """() => Array.from(document.images)
    .filter(img => !(img.complete && img.naturalWidth > 0))
    .map(img => img.getAttribute('src'))"""


_UNRENDERED_MATH = """() => document.querySelectorAll('.math').length > 0 && typeof window.MathJax === 'undefined'"""


def _serve(folder: Path) -> http.server.ThreadingHTTPServer:
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


def check_page(browser, base: str, path: str, screenshot: Path) -> list[str]:
    """Load ``path`` and return its problems (empty when it loaded cleanly)."""
    problems: list[str] = []
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("console", lambda message: message.type == "error" and problems.append(f"console: {message.text}"))
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    page.on("requestfailed", lambda request: problems.append(f"request failed: {request.url} ({request.failure})"))
    page.on(
        "response",
        lambda response: response.status >= 400 and problems.append(f"HTTP {response.status}: {response.url}"),
    )
    response = page.goto(f"{base}/{path}", wait_until="networkidle")
    if response is None or not response.ok:
        problems.append(f"page did not load: {path}")
    page.wait_for_timeout(500)  # let late scripts (MathJax, theme) finish
    problems.extend(f"missing image: {src}" for src in page.evaluate(_MISSING_IMAGES))
    if page.evaluate(_UNRENDERED_MATH):
        problems.append("math on the page but MathJax did not load")
    page.screenshot(path=str(screenshot), full_page=True)
    title = page.title()
    page.close()
    print(
        f"{path}: title {title!r}, {'ok' if not problems else f'{len(problems)} problem(s)'}; screenshot {screenshot}"
    )
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--html", type=Path, default=Path(__file__).resolve().parent / "_build" / "html")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--screenshots", type=Path, default=Path("/tmp/skprobae-site-screenshots"))
    args = parser.parse_args()
    args.screenshots.mkdir(parents=True, exist_ok=True)
    server = _serve(args.html)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    failures = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        for name, path in PAGES.items():
            problems = check_page(browser, base, path, args.screenshots / f"{name.replace(' ', '_')}.png")
            if problems:
                failures[path] = problems
        browser.close()
    server.shutdown()
    for path, problems in failures.items():
        print(f"FAILED {path}:", *problems, sep="\n  ")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
