"""The TRIPOD+AI checklist filled from a finished ci run: numbers from stored files, every answer sourced."""
from __future__ import annotations

import pandas as pd
import pytest
import yaml

from hcc_utils import run, tripod

pytestmark = pytest.mark.slow


def test_checklist_answers_from_stored_files(ci_run):
    prof = ci_run["profile"]
    t = tripod.checklist(prof)
    assert list(t["item"]) == [i for i, _, _ in tripod.ITEMS]
    done = t[t["status"] == "answered"]
    assert len(done) >= 20
    assert set(t.loc[t["status"] != "answered", "status"]) == {tripod.TO_COMPLETE}
    for item in ("5a", "10", "11", "12c", "12e", "20a", "23a"):
        assert item in set(done["item"]), item
    for _, r in done.iterrows():
        assert r["chapter_link"].endswith(".html") and r["source"], r["item"]
        for f in r["source"].split(","):
            f = f.strip()
            if not f.startswith(("profiles.yaml", "bundle/")):
                assert (prof.outputs / f).is_file(), (r["item"], f)
    t2 = pd.read_csv(prof.outputs / "models" / "table2.csv")
    a = done.set_index("item")["answer"]
    for _, r in t2.iterrows():
        assert f"{r['model']} {r['cohort']} AUC {r['auc']:.3f}" in a["23a"]
    res = pd.read_json(prof.outputs / "models" / "results.json", typ="series")
    assert f"development {res['n']['development']} ({res['n_er']['development']} early recurrences)" in a["10"]
    html = tripod.to_html(t, "outputs/ci/")
    assert html.count("<tr data-item=") == len(t) and 'href="04_model_comparison.html"' in html


def test_page_is_a_step_and_in_the_toc(ci_profile):
    steps = [s.name for s in run.plan(ci_profile, optional=False)]
    assert "09_tripod_ai" in steps
    toc = yaml.safe_load((run.CODE_ROOT / "_toc.yml").read_text())
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    assert "book/executed/09_tripod_ai" in files
