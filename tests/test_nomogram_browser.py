"""End to end: the static nomogram calculator in headless Chromium (Playwright driving the system browser).

Opens an HTML page holding the calculator, changes inputs and reads the new probability from ``#nomo-prob``; the
values must equal :meth:`hcc_utils.stats.NomogramCalculator.predict`. The book helper runs the same check on the built page
through :func:`check_calculator_page`.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hcc_utils import stats
from hcc_utils import survival as sv

from test_survival import MAPPING, make_table

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


def _skip_reason():
    if CHROMIUM is None:
        return "chromium is not installed (Debian package 'chromium'; `make test` installs it when apt is usable)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the Python package playwright is not installed"
    return None


def check_calculator_page(url: str, nomo: stats.NomogramCalculator, changes: list[dict],
                          offline: bool = True) -> list[tuple[float, float]]:
    """Open ``url`` in headless Chromium, apply each dict of input changes, and return (shown, expected) RFS pairs.

    Fails on a JavaScript error raised by the calculator and, with ``offline``, when the page requests anything outside
    ``file://``/``data:``/``about:``/``blob:`` (no network). Errors of other scripts on a book page are ignored.
    """
    from playwright.sync_api import sync_playwright

    pairs = []
    external = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            page.on("request", lambda r: external.append(r.url)
                    if not r.url.startswith(("file:", "data:", "about:", "blob:")) else None)
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url)
            page.wait_for_selector(".hcc-nomogram[data-ready='1'] #nomo-prob", timeout=15000)
            values = nomo.defaults()
            for v in nomo.variables:  # what the page really holds (a range input snaps to its step)
                if v["type"] == "continuous":
                    values[v["name"]] = float(page.eval_on_selector(f"[data-var='{v['name']}']", "el => el.value"))
            shown0 = float(page.get_attribute("#nomo-prob", "data-value"))
            pairs.append((shown0, nomo.predict(values)["rfs"]))
            for ch in changes:
                for name, val in ch.items():
                    var = next(v for v in nomo.variables if v["name"] == name)
                    sel = f"[data-var='{name}']"
                    if var["type"] == "continuous":
                        page.eval_on_selector(sel, "(el, v) => { el.value = v; "
                                              "el.dispatchEvent(new Event('input', {bubbles: true})); }", str(val))
                        val = float(page.eval_on_selector(sel, "el => el.value"))  # after the slider's step
                    else:
                        page.select_option(sel, str(val))
                    values[name] = val
                shown = float(page.get_attribute("#nomo-prob", "data-value"))
                text = page.inner_text("#nomo-prob")
                exp = nomo.predict(values)
                assert text == f"{100 * exp['rfs']:.1f}%"
                assert page.inner_text("#nomo-group") == exp["risk_group"]
                pairs.append((shown, exp["rfs"]))
            mine = [e for e in errors if "nomogram" in e.lower()]
            assert not mine, mine
        finally:
            browser.close()
    if offline:
        assert not external, f"the page tried to load {external}"
    return pairs


@pytest.mark.browser
def test_calculator_in_headless_chromium(tmp_path):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    t = make_table(seed=2)
    prep = sv.split_cohorts(sv.prepare_table(t, MAPPING), "Arm", seed=0, raw=t)
    dev = prep.data[prep.data["cohort"] == "development"]
    terms = [prep.var(n) for n in ("signature", "age", "stage", "afp_high")]
    sub = dev.dropna(subset=[v["name"] for v in terms])
    nomo = stats.NomogramCalculator.from_cox(stats.cox_model(sub, terms), 24.0, risk_threshold=0.6, threshold_rule="test")
    page = tmp_path / "calculator.html"
    page.write_text(sv.nomogram_html(nomo.to_dict(), standalone=True))
    changes = [{"stage": "III"}, {"signature": 0.9}, {"age": 70}, {"afp_high": "high", "stage": "I"},
               {"signature": 0.05, "stage": "II"}]
    pairs = check_calculator_page(page.as_uri(), nomo, changes)
    assert len(pairs) == len(changes) + 1
    shown = [a for a, _ in pairs]
    assert len(set(shown)) == len(shown)  # every change moved the probability
    for a, b in pairs:
        assert a == pytest.approx(b, rel=1e-12)


@pytest.mark.browser
def test_calculator_refuses_invalid_input(tmp_path):
    """Typed values outside the fitted range, empty or non-numeric boxes give a visible message and no result."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    t = make_table(seed=2)
    prep = sv.split_cohorts(sv.prepare_table(t, MAPPING), "Arm", seed=0, raw=t)
    dev = prep.data[prep.data["cohort"] == "development"]
    terms = [prep.var(n) for n in ("signature", "age", "stage")]
    sub = dev.dropna(subset=[v["name"] for v in terms])
    nomo = stats.NomogramCalculator.from_cox(stats.cox_model(sub, terms), 24.0, risk_threshold=0.6,
                                             threshold_rule="test rule")
    sig = next(v for v in nomo.variables if v["name"] == "signature")
    page_file = tmp_path / "calculator.html"
    page_file.write_text(sv.nomogram_html(nomo.to_dict(), standalone=True))
    box = "[data-var-number='signature']"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            page.goto(page_file.as_uri())
            page.wait_for_selector(".hcc-nomogram[data-ready='1']", timeout=15000)
            cut = page.inner_text("#nomo-cutoff")
            assert "60.0%" in cut and "test rule" in cut
            assert float(page.get_attribute("#nomo-cutoff", "data-value")) == pytest.approx(0.6)
            slider_before = page.eval_on_selector("[data-var='signature']", "el => el.value")
            for typed in (str(sig["max"] + 5), str(sig["min"] - 1), "", "abc"):
                page.fill(box, typed) if typed != "abc" else page.eval_on_selector(
                    box, "el => { el.type = 'text'; el.value = 'abc'; "
                         "el.dispatchEvent(new Event('input', {bubbles: true})); }")
                assert page.get_attribute(".hcc-nomogram", "data-valid") == "0", typed
                status = page.inner_text("#nomo-status")
                assert status.startswith("Not computed")
                assert page.is_visible("#nomo-status")
                assert page.get_attribute("#nomo-prob", "data-value") is None
                assert page.inner_text("#nomo-prob") == "\u2014"
                assert page.inner_text("#nomo-group") == "\u2014"
                assert page.inner_text("[data-msg-for='signature']")
                assert page.eval_on_selector(box, "el => el.value") in (typed, "")  # the box keeps what was typed
                assert page.eval_on_selector("[data-var='signature']", "el => el.value") == slider_before
                page.eval_on_selector(box, "el => { el.type = 'number'; }")
            inside = round(sig["min"] + 0.37 * (sig["max"] - sig["min"]), 6)
            page.fill(box, repr(inside))
            assert page.get_attribute(".hcc-nomogram", "data-valid") == "1"
            assert not page.is_visible("#nomo-status")
            values = {**nomo.defaults(), "signature": inside}
            for v in nomo.variables:
                if v["type"] != "continuous" and v["name"] != "signature":
                    values[v["name"]] = page.eval_on_selector(f"[data-var='{v['name']}']", "el => el.value")
                elif v["name"] != "signature":
                    values[v["name"]] = float(page.eval_on_selector(f"[data-var-number='{v['name']}']",
                                                                    "el => el.value"))
            exp = nomo.predict(values)
            assert float(page.get_attribute("#nomo-prob", "data-value")) == pytest.approx(exp["rfs"], rel=1e-12)
            assert page.inner_text("#nomo-group") == exp["risk_group"]
        finally:
            browser.close()
