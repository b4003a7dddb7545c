"""Sphinx extension of the book's HTML: no duplicate inline scripts, a valid theme mode, no unused widget JS.

* Jupyter Book 1.x with Sphinx 7.4 adds the inline configuration scripts of sphinx-thebe and sphinx-togglebutton
  twice (``Identifier 'THEBE_JS_URL' has already been declared``): keep the first of identical scripts.
* pydata-sphinx-theme logs ``Got invalid theme mode`` when ``default_mode`` is empty: set it to ``auto``.
* A page that shows no widget does not load require.js, the widget manager or the saved widget state (whose CSS
  would request icon fonts that are not there).
"""
from __future__ import annotations

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_FILES = ("vendor/require.js", "vendor/html-manager/")


def _key(script) -> tuple:
    attrs = getattr(script, "attributes", {}) or {}
    return (str(getattr(script, "filename", script)), tuple(sorted((k, str(v)) for k, v in attrs.items())))


def _is_widget(script) -> bool:
    name = str(getattr(script, "filename", "") or "")
    attrs = getattr(script, "attributes", {}) or {}
    return any(f in name for f in WIDGET_FILES) or "widget-state" in str(attrs.get("type", ""))


def _page_context(app, pagename, templatename, context, doctree):
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


def setup(app):
    app.connect("config-inited", _config_inited)
    app.connect("html-page-context", _page_context, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
