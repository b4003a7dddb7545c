"""The offline audit of the built book: every resource an HTML page or stylesheet would fetch from the network."""
from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

_REMOTE = ("http://", "https://", "//")
_LOAD_TAGS = {"script": "src", "img": "src", "iframe": "src", "source": "src", "audio": "src", "video": "src",
              "embed": "src", "object": "data"}
_LINK_NAV = {"next", "prev", "index", "search", "canonical", "author", "license", "help", "alternate"}


def remote_resources(html_dir: Path) -> list[tuple[str, str, str]]:
    """Resources that the built book would fetch from the network.

    Scans every HTML page for ``<script src>``, ``<link href>`` (stylesheets, icons, preloads, fonts), ``<img src>``
    and similar attributes, inline ``<style>`` ``@import``/``url()``, and the CSS files under ``_static`` for
    ``url(http...)``/``@import``. Plain links in prose (``<a href>``) do not load anything and are not reported.

    Returns
    -------
    list of (file, what, url)
    """
    css_url = re.compile(r"""(?:url\(\s*['"]?|@import\s+['"])\s*((?:https?:)?//[^'")\s]+)""", re.I)
    found: list[tuple[str, str, str]] = []
    html_dir = Path(html_dir)

    class _P(HTMLParser):
        def __init__(self, fname: str):
            super().__init__(convert_charrefs=True)
            self.fname, self.in_style = fname, False

        def handle_starttag(self, tag, attrs):
            a = {k.lower(): (v or "") for k, v in attrs}
            if tag == "style":
                self.in_style = True
            if tag in _LOAD_TAGS and a.get(_LOAD_TAGS[tag], "").lower().startswith(_REMOTE):
                found.append((self.fname, f"<{tag} {_LOAD_TAGS[tag]}>", a[_LOAD_TAGS[tag]]))
            if tag == "link" and a.get("href", "").lower().startswith(_REMOTE):
                rel = set(a.get("rel", "").lower().split())
                if not rel or not rel <= _LINK_NAV:
                    found.append((self.fname, f"<link rel={a.get('rel', '')}>", a["href"]))

        def handle_endtag(self, tag):
            if tag == "style":
                self.in_style = False

        def handle_data(self, data):
            if self.in_style:
                for m in css_url.finditer(data):
                    found.append((self.fname, "<style> url/@import", m.group(1)))

    for page in sorted(html_dir.rglob("*.html")):
        p = _P(str(page.relative_to(html_dir)))
        p.feed(page.read_text(errors="replace"))
    for css in sorted(html_dir.rglob("*.css")):
        for m in css_url.finditer(css.read_text(errors="replace")):
            found.append((str(css.relative_to(html_dir)), "css url/@import", m.group(1)))
    return found
