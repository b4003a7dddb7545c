"""Every page of a built book, opened in headless Chromium as a reader would.

Fails on a console error or an uncaught JavaScript error, a request that leaves ``file://``, a stderr block in a cell
output, an absolute local path in the text, an image without meaningful alt text, a pandas index column in a table,
and a file in ``_build/html`` that is not part of the book.

The book checked is ``$HCC_BOOK_HTML`` or, when unset, ``book/_build/html`` of this checkout (``make book
PROFILE=ci`` builds it) or, when that is not there either, the ci book that the tiny benchmark builds for the
test-suite (on the DICOM copy of the ci cohort, see :mod:`_privacy_book`).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from _privacy_book import finished_book
from test_nomogram_browser import CHROMIUM, CHROMIUM_ARGS, _skip_reason

ROOT = Path(__file__).resolve().parents[1]
HTML = Path(os.environ.get("HCC_BOOK_HTML", ROOT / "book" / "_build" / "html"))

#: Absolute local paths (a POSIX home, tmp, work or venv folder, a Windows drive).
ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])(?:/(?:home|tmp|work|root|Users|usr|opt|var)/[\w.+-]+|[A-Z]:\\[\w.]+)")
#: Alt texts that say nothing: empty, a file name, a hash.
MEANINGLESS_ALT = re.compile(r"^\s*$|\.(png|jpe?g|svg|gif)$|^[0-9a-f]{16,}|^(image|figure|img|png|output)\s*\d*$", re.I)
#: Folders of Sphinx's own output that are not pages of the book.
NOT_PAGES = {"_static", "_sources", "_images", "_sphinx_design_static", "_panels_static", "genindex.html",
             "search.html"}

pytestmark = pytest.mark.browser


def book_pages(html_dir: Path) -> list[Path]:
    """The HTML pages of the book (Sphinx's index and search pages left out)."""
    return sorted(p for p in html_dir.rglob("*.html")
                  if not (set(p.relative_to(html_dir).parts) & NOT_PAGES))


def page_problems(page, url: str) -> list[str]:
    """Open ``url`` in a Playwright page and return what a reader should not meet there."""
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"JavaScript error: {e}"))
    page.on("request", lambda r: problems.append(f"network request: {r.url}")
            if not r.url.startswith(("file:", "data:", "about:", "blob:")) else None)
    page.goto(url, wait_until="load")
    page.wait_for_timeout(300)
    for n in range(page.locator(".output.stderr, .cell_output .stderr").count()):
        text = page.locator(".output.stderr, .cell_output .stderr").nth(n).inner_text()[:120]
        problems.append(f"stderr block: {text!r}")
    # the text of the page, folded cells (hide-input, hide-output) included: a reader can unfold them
    body = page.evaluate("""() => {
        const root = (document.querySelector('article') || document.body).cloneNode(true);
        root.querySelectorAll('script, style').forEach(e => e.remove());
        return root.textContent;
    }""")
    for m in sorted(set(ABSOLUTE_PATH.findall(body))):
        problems.append(f"absolute path in the text: {m}")
    for img in page.locator("article img").all():
        alt = img.get_attribute("alt") or ""
        if MEANINGLESS_ALT.search(alt):
            problems.append(f"image without meaningful alt text: src={img.get_attribute('src')!r} alt={alt!r}")
    blank_heads = page.eval_on_selector_all(
        "article table thead tr th:first-child",
        "ths => ths.filter(th => th.classList.contains('blank') || th.classList.contains('index_name')).length")
    if blank_heads:
        problems.append(f"{blank_heads} table(s) with a pandas index column")
    return problems


def book_problems(html_dir: Path) -> dict[str, list[str]]:
    """Problems of every page of the book at ``html_dir`` (page -> list; pages without problems left out)."""
    from playwright.sync_api import sync_playwright

    found: dict[str, list[str]] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            for f in book_pages(html_dir):
                page = browser.new_page()
                try:
                    probs = page_problems(page, f.as_uri())
                finally:
                    page.close()
                if probs:
                    found[str(f.relative_to(html_dir))] = probs
        finally:
            browser.close()
    return found


def stray_files(html_dir: Path) -> list[str]:
    """Files in the build that do not belong to the book (test caches, READMEs of tools)."""
    bad = []
    for p in html_dir.rglob("*"):
        rel = p.relative_to(html_dir)
        if rel.parts[0].startswith((".pytest_cache", ".ruff_cache", ".venv", "node_modules", "outputs", "data")):
            bad.append(str(rel))
    return sorted(bad)


@pytest.fixture(scope="module")
def html_dir(request):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    if (HTML / "index.html").exists():
        return HTML
    if "HCC_BOOK_HTML" in os.environ:
        raise FileNotFoundError(f"HCC_BOOK_HTML={HTML}: no index.html there")
    bench = finished_book(request.getfixturevalue("tiny_benchmark"))
    assert (bench["html"] / "index.html").exists(), bench["logs"]["cold"][-3000:]
    return bench["html"]


def test_every_page_is_clean(html_dir):
    found = book_problems(html_dir)
    report = "\n".join(f"{page}:\n  " + "\n  ".join(p) for page, p in found.items())
    assert not found, "pages a reader should not see this way:\n" + report


def test_nothing_but_the_book_is_published(html_dir):
    assert stray_files(html_dir) == []


def test_every_paper_item_is_numbered_and_captioned(html_dir):
    """Each table and figure of the paper carries its number in a caption on its chapter's page."""
    expected = {"01_cohort_table.html": ["Table 1."],
                "04_model_comparison.html": ["Table 2.", "Figure 1."],
                "05_survival_nomogram.html": ["Figure 3.", "Table S1.", "Table 3.", "Figure 4a.", "Table 4.",
                                              "Figure S1."],
                "06_gradcam.html": ["Figure 2."]}
    from html.parser import HTMLParser

    class Captions(HTMLParser):
        def __init__(self):
            super().__init__()
            self.depth, self.text = 0, []

        def handle_starttag(self, tag, attrs):
            cls = dict(attrs).get("class") or ""
            if tag in ("figcaption", "caption") or "caption-text" in cls:
                self.depth += 1
            elif self.depth:
                self.depth += 1

        def handle_endtag(self, tag):
            if self.depth:
                self.depth -= 1

        def handle_data(self, data):
            if self.depth:
                self.text.append(data)

    missing = []
    for name, items in expected.items():
        page = next(iter(html_dir.rglob(name)), None)
        if page is None:
            missing.append(f"{name}: page missing")
            continue
        parser = Captions()
        parser.feed(page.read_text(encoding="utf-8"))
        captions = " ".join(parser.text)
        missing += [f"{name}: {item}" for item in items if item not in captions]
    assert not missing, missing


def test_a_local_path_in_a_folded_cell_is_caught(tmp_path):
    """A path in a cell whose input is folded away (hide-input) is still on the page: a reader can unfold it."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    page = tmp_path / "p.html"
    page.write_text("<html><body><article><p>text</p><details><summary>Show code</summary>"
                    "<pre>table_path = '/work/data/clinical.tsv'</pre></details></article></body></html>")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            problems = page_problems(browser.new_page(), page.as_uri())
        finally:
            browser.close()
    assert problems == ["absolute path in the text: /work/data"]
