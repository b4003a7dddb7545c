"""Sphinx extension of the book's HTML: no duplicate inline scripts, a valid theme mode, no unused widget JS.

* Jupyter Book 1.x with Sphinx 7.4 adds the inline configuration scripts of sphinx-thebe and sphinx-togglebutton
  twice, once with the file name None and once with "" (``Identifier 'THEBE_JS_URL' has already been declared``):
  keep the first of identical scripts.
* pydata-sphinx-theme logs ``Got invalid theme mode`` when the page's ``default_mode`` is empty: make it ``auto``.
* A page that shows no widget does not load require.js, the widget manager or the saved widget state (whose CSS
  would request icon fonts that are not there).
* Pages made from one notebook (the AP and PP pages, the GSE14520 page) carry the same figure and table labels:
  each such page gets its own labels (``fig-km`` -> ``fig-km-gse14520``) so that a cross-reference stays on its page.
"""
from __future__ import annotations

import re

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_FILES = ("vendor/require.js", "vendor/html-manager/")


def _key(script) -> tuple:
    attrs = getattr(script, "attributes", {}) or {}
    return (str(getattr(script, "filename", script) or ""), tuple(sorted((k, str(v)) for k, v in attrs.items())))


def _is_widget(script) -> bool:
    name = str(getattr(script, "filename", "") or "")
    attrs = getattr(script, "attributes", {}) or {}
    return any(f in name for f in WIDGET_FILES) or "widget-state" in str(attrs.get("type", ""))


def _page_context(app, pagename, templatename, context, doctree):
    if not context.get("default_mode"):
        context["default_mode"] = "auto"
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, kept = set(), []
    no_widget = WIDGET_VIEW not in str(context.get("body", ""))
    for s in scripts:
        k = _key(s)
        if k in seen or (no_widget and _is_widget(s)):
            continue
        seen.add(k)
        kept.append(s)
    scripts[:] = kept


def _config_inited(app, config):
    opts = dict(config.html_theme_options or {})
    if not opts.get("default_mode"):
        opts["default_mode"] = "auto"
    config.html_theme_options = opts


#: Pages that are a variant of another page's notebook: name suffix -> label suffix.
VARIANT = re.compile(r"_(AP|PP|gse\d+)$")
LABEL = re.compile(r"(?<![\w/.-])((?:fig|tbl)-[a-z0-9]+(?:-[a-z0-9]+)*)(?![\w.-])")


def _source_read(app, docname, source):
    m = VARIANT.search(docname)
    if m:
        suffix = m.group(1).lower()
        source[0] = LABEL.sub(lambda x: f"{x.group(1)}-{suffix}", source[0])


def setup(app):
    app.connect("source-read", _source_read)
    app.connect("config-inited", _config_inited)
    app.connect("html-page-context", _page_context, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
