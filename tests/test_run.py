"""Orchestration (hcc_utils.run): step plan, input hashing and skipping, failure handling, fallback pages, offline
check. Most tests use a fake executor (pure logic, fast); two execute tiny notebooks with papermill for real."""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from hcc_utils import run
from hcc_utils.config import load_profile


def _nb(path: Path, *sources: str, params: str = 'profile = "demo"\nmanifest = None\nseed = None\nphase = "AP"'):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell] + [nbformat.v4.new_code_cell(s) for s in sources]
    nb.metadata["kernelspec"] = {"name": run.KERNEL, "display_name": run.KERNEL, "language": "python"}
    nbformat.write(nb, str(path))
    return path


def _steps():
    base = {"profile": "ci", "manifest": None, "seed": None}
    return [
        run.Step("a", "a", dict(base)),
        run.Step("b_AP", "b", {**base, "phase": "AP"}, deps=("a",)),
        run.Step("b_PP", "b", {**base, "phase": "PP"}, deps=("a",)),
        run.Step("c", "c", dict(base), deps=("b_AP", "b_PP")),
    ]


@pytest.fixture()
def fake(tmp_path, monkeypatch):
    """Dummy notebooks a, b, c and a fake executor that records calls and writes the executed copy."""
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    for name in "abc":
        _nb(nbdir / f"{name}.ipynb", f"x = '{name}'")
    calls: list[tuple[str, dict]] = []

    def fake_execute(src, dst, params, **kw):
        calls.append((Path(dst).stem, dict(params)))
        if "boom" in Path(src).read_text():
            dst.write_text("{}")
            raise RuntimeError("boom in " + Path(src).name)
        Path(dst).parent.mkdir(parents=True, exist_ok=True)
        Path(dst).write_text(Path(src).read_text())

    monkeypatch.setattr("hcc_utils.run.execute.execute_notebook", fake_execute)

    def go(**kw):
        args = dict(notebooks_dir=nbdir, executed_dir=tmp_path / "out" / "executed",
                    state_path=tmp_path / "out" / "run_state.json", manifest_hash="m1", code_hash="c1",
                    settings={"unet": {"epochs": 1}}, log=lambda s: None)
        args.update(kw)
        calls.clear()
        return run.run_steps(_steps(), **args)

    return nbdir, calls, go, tmp_path


def _status(results):
    return {r.name: r.status for r in results}


def test_plan_order_and_parameters(ci_profile, monkeypatch, tmp_path):
    monkeypatch.setattr("hcc_utils.run.steps.GSE14520_FILE", tmp_path / "absent.tsv")
    steps = run.plan(ci_profile, None, 7)
    names = [s.name for s in steps]
    assert names == ["01_cohort_table", "02_unet_training_AP", "02_unet_training_PP", "03_feature_extraction_AP",
                     "03_feature_extraction_PP", "04_model_comparison", "08_radiomics_robustness",
                     "05_survival_nomogram", "06_gradcam", "09_tripod_ai", "05_survival_nomogram_gse14520",
                     "07_lits_segmentation", "10_ablation"]
    by = {s.name: s for s in steps}
    assert by["02_unet_training_PP"].params == {"profile": "ci", "manifest": None, "seed": 7, "phase": "PP"}
    assert by["03_feature_extraction_AP"].deps == ("02_unet_training_AP",)
    assert set(by["04_model_comparison"].deps) >= {"03_feature_extraction_AP", "03_feature_extraction_PP"}
    ok, reason = by["05_survival_nomogram_gse14520"].available()
    assert not ok and "absent.tsv" in reason
    # every step's notebook is named in the toc, under book/executed/
    toc = (run.CODE_ROOT / "_toc.yml").read_text()
    for n in names:
        assert f"book/executed/{n}\n" in toc


def test_second_run_skips_everything(fake):
    _, calls, go, _ = fake
    assert set(_status(go()).values()) == {"ran"}
    assert len(calls) == 4
    assert set(_status(go()).values()) == {"skipped"}
    assert calls == []


def test_changed_notebook_reruns_it_and_downstream_only(fake):
    nbdir, calls, go, _ = fake
    go()
    _nb(nbdir / "b.ipynb", "x = 'b changed'")
    st = _status(go())
    assert st == {"a": "skipped", "b_AP": "ran", "b_PP": "ran", "c": "ran"}


def test_outputs_of_a_notebook_do_not_count(fake):
    nbdir, calls, go, _ = fake
    go()
    nb = nbformat.read(str(nbdir / "c.ipynb"), as_version=4)
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="hello")]
    nb.cells[1].execution_count = 3
    nbformat.write(nb, str(nbdir / "c.ipynb"))
    assert set(_status(go()).values()) == {"skipped"}


@pytest.mark.parametrize("change", ["manifest_hash", "code_hash", "settings"])
def test_changed_inputs_rerun_everything(fake, change):
    _, calls, go, _ = fake
    go()
    new = {"manifest_hash": "m2", "code_hash": "c2", "settings": {"unet": {"epochs": 2}}}[change]
    assert set(_status(go(**{change: new})).values()) == {"ran"}


def test_result_neutral_settings_do_not_rerun(fake):
    """models.n_jobs changes speed, not results (tests/test_models.py): changing it skips finished steps."""
    _, calls, go, _ = fake
    go(settings={"unet": {"epochs": 1}, "models": {"cv_folds": 5}})
    res = go(settings={"unet": {"epochs": 1}, "models": {"cv_folds": 5, "n_jobs": 2}})
    assert set(_status(res).values()) == {"skipped"}
    res = go(settings={"unet": {"epochs": 1}, "models": {"cv_folds": 3, "n_jobs": 2}})
    assert set(_status(res).values()) == {"ran"}


def test_force_and_only(fake):
    _, calls, go, _ = fake
    go()
    assert set(_status(go(force=True)).values()) == {"ran"}
    res = go(only=["b"])  # a notebook name selects all its phases
    assert _status(res) == {"b_AP": "skipped", "b_PP": "skipped"}
    res = go(only=["b_PP"], force=True)
    assert _status(res) == {"b_PP": "ran"} and calls[0][1]["phase"] == "PP"
    with pytest.raises(run.RunError, match="no such step"):
        go(only=["zz"])


def test_upstream_change_propagates_with_only(fake):
    nbdir, calls, go, _ = fake
    go()
    _nb(nbdir / "a.ipynb", "x = 'a changed'")
    assert _status(go(only=["c"])) == {"c": "ran"}  # c's hash includes a's (through b)


def test_failure_stops_run_names_step_and_keeps_earlier(fake):
    nbdir, calls, go, tmp = fake
    go()
    _nb(nbdir / "b.ipynb", "raise RuntimeError('boom')")
    with pytest.raises(run.RunError) as ei:
        go()
    msg = str(ei.value)
    assert "b_AP" in msg and str(tmp / "out" / "executed" / "b_AP.ipynb") in msg
    assert _status(ei.value.results) == {"a": "skipped", "b_AP": "failed"}
    assert [c[0] for c in calls] == ["b_AP"]  # stopped: b_PP and c did not run
    state = json.loads((tmp / "out" / "run_state.json").read_text())["steps"]
    assert state["b_AP"]["status"] == "failed" and state["a"]["status"] == "ok"
    assert (tmp / "out" / "executed" / "a.ipynb").exists()
    # fixed: the failed step and its downstream run, the rest is skipped
    _nb(nbdir / "b.ipynb", "x = 'b fixed'")
    assert _status(go()) == {"a": "skipped", "b_AP": "ran", "b_PP": "ran", "c": "ran"}


def test_unavailable_and_missing_steps_get_pages(fake, tmp_path):
    nbdir, calls, go, tmp = fake
    steps = _steps() + [
        run.Step("opt", "a", {}, title="Optional chapter", available=lambda: (False, "the data are not here")),
        run.Step("nonb", "zz", {}, title="Not yet written"),
    ]
    res = run.run_steps(steps, notebooks_dir=nbdir, executed_dir=tmp / "out" / "executed",
                        state_path=tmp / "out" / "run_state.json", manifest_hash="m", code_hash="c", settings={},
                        log=lambda s: None)
    st = _status(res)
    assert st["opt"] == "unavailable" and st["nonb"] == "missing"
    book_exec = tmp / "book" / "executed"
    book_exec.mkdir(parents=True)
    (book_exec / "stale.ipynb").write_text("{}")
    run.sync_executed(steps, res, tmp / "out" / "executed", book_exec)
    assert not (book_exec / "stale.ipynb").exists()
    synced = nbformat.read(str(book_exec / "c.ipynb"), as_version=4)
    assert synced.cells[0].metadata["tags"] == ["parameters", "hide-input"]  # folded away in the book
    page = (book_exec / "opt.md").read_text()
    assert page.startswith("# Optional chapter") and "the data are not here" in page
    assert "zz.ipynb is not in this checkout" in (book_exec / "nonb.md").read_text()


def test_manifest_digest_follows_tables(tmp_path):
    (tmp_path / "clin.csv").write_text("patient_id,age\nP1,50\n")
    (tmp_path / "out.csv").write_text("patient_id,rfs_months,recurrence\nP1,3,1\n")
    m = tmp_path / "m.csv"
    m.write_text("patient_id,clinical_file,outcome_file,visual_file\nP1,clin.csv,out.csv,\n")
    h1 = run.manifest_digest(m)
    assert run.manifest_digest(m) == h1
    (tmp_path / "clin.csv").write_text("patient_id,age\nP1,51\n")
    h2 = run.manifest_digest(m)
    assert h2 != h1
    # images count by size and modification time (a DICOM folder by its files)
    (tmp_path / "dcm").mkdir()
    (tmp_path / "dcm" / "1.dcm").write_bytes(b"x")
    m.write_text("patient_id,clinical_file,outcome_file,visual_file,ct_ap\nP1,clin.csv,out.csv,,dcm\n")
    h3 = run.manifest_digest(m)
    assert run.manifest_digest(m) == h3
    (tmp_path / "dcm" / "2.dcm").write_bytes(b"y")
    assert run.manifest_digest(m) != h3


def test_remote_resources_detects_cdn(tmp_path):
    (tmp_path / "_static").mkdir()
    (tmp_path / "_static" / "a.css").write_text("@font-face{src:url(https://fonts.example/f.woff2)}")
    (tmp_path / "p.html").write_text(
        '<html><head><script src="https://cdn.example/require.js"></script>'
        '<link rel="stylesheet" href="//cdn.example/x.css"><link rel="next" href="https://example.org/n.html">'
        '<script src="_static/local.js"></script><style>@import "https://x.example/y.css";</style></head>'
        '<body><a href="https://example.org">a plain link</a></body></html>')
    found = {(f, u) for f, _, u in run.remote_resources(tmp_path)}
    assert found == {("p.html", "https://cdn.example/require.js"), ("p.html", "//cdn.example/x.css"),
                     ("p.html", "https://x.example/y.css"), (str(Path("_static/a.css")), "https://fonts.example/f.woff2")}


def test_papermill_really_executes_and_failure_keeps_error_copy(tmp_path):
    """Real papermill with the project's kernel: parameters are injected; a failing cell leaves an executed copy."""
    nbdir = tmp_path / "nb"
    nbdir.mkdir()
    _nb(nbdir / "ok.ipynb", "from pathlib import Path\nPath('ok_out.txt').write_text(f'{profile} {phase}')",
        "import matplotlib.pyplot as plt\nplt.plot([0, 1])\nplt.show()")
    _nb(nbdir / "bad.ipynb", "raise ValueError('planted failure 42')")
    steps = [run.Step("ok_PP", "ok", {"profile": "ci", "manifest": None, "seed": 1, "phase": "PP"}),
             run.Step("bad", "bad", {"profile": "ci"}, deps=("ok_PP",)),
             run.Step("after", "ok", {"profile": "ci"}, deps=("bad",))]
    kw = dict(notebooks_dir=nbdir, executed_dir=tmp_path / "ex", state_path=tmp_path / "state.json",
              manifest_hash="m", code_hash="c", settings={}, progress=False, log=lambda s: None)
    with pytest.raises(run.RunError, match="planted failure 42") as ei:
        run.run_steps(steps, **kw)
    assert "bad.ipynb" in str(ei.value)
    assert (nbdir / "ok_out.txt").read_text() == "ci PP"  # cwd = notebooks folder, parameters injected
    ok = nbformat.read(str(tmp_path / "ex" / "ok_PP.ipynb"), as_version=4)
    assert any("image/png" in o.get("data", {}) for o in ok.cells[-1].outputs)  # figures land in the notebook
    # even when the caller's environment says MPLBACKEND=Agg (conftest sets it for the test process)
    bad = nbformat.read(str(tmp_path / "ex" / "bad.ipynb"), as_version=4)
    errs = [o for c in bad.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert errs and errs[0]["ename"] == "ValueError"
    assert not (tmp_path / "ex" / "after.ipynb").exists()
    assert json.loads((tmp_path / "state.json").read_text())["steps"]["ok_PP"]["status"] == "ok"


def test_book_builds_offline_with_a_widget_page(tmp_path, monkeypatch):
    """A real Jupyter Book build (staged into HCC_ROOT) of a notebook holding an ipywidgets slider loads only local
    JavaScript: require.js, the widgets HTML manager and MathJax come from book/_static/vendor."""
    if not run.assets_present():
        run.vendor_assets(log=lambda s: None)
    steps = run.plan(load_profile("ci"), optional=False)
    monkeypatch.setenv("HCC_ROOT", str(tmp_path))
    nbdir = tmp_path / "nbsrc"
    nbdir.mkdir()
    _nb(nbdir / "w.ipynb", "import ipywidgets as w\nw.IntSlider(value=3, description='age')")
    nb = nbformat.read(str(nbdir / "w.ipynb"), as_version=4)
    nb.cells.insert(0, nbformat.v4.new_markdown_cell("# A widget page\n\n$$e^{i\\pi} + 1 = 0$$"))
    nbformat.write(nb, str(nbdir / "w.ipynb"))
    ex = tmp_path / "ex"
    import papermill as pm

    ex.mkdir()
    pm.execute_notebook(str(nbdir / "w.ipynb"), str(ex / "01_cohort_table.ipynb"), kernel_name=run.KERNEL,
                        progress_bar=False)
    res = [run.StepResult("01_cohort_table", "ran")] + [run.StepResult(s.name, "missing", reason="not in this test")
                                                         for s in steps[1:]]
    run.stage_book_sources(tmp_path)
    run.sync_executed(steps, res, ex, tmp_path / "book" / "executed")
    html = run.build_book(tmp_path, log=lambda s: None)
    assert html == tmp_path / "book" / "_build" / "html" / "index.html"
    page = (tmp_path / "book" / "_build" / "html" / "book" / "executed" / "01_cohort_table.html").read_text()
    assert "application/vnd.jupyter.widget-state+json" in page
    assert "_static/vendor/require.js" in page and "_static/vendor/html-manager/embed-amd.js" in page
    assert "_static/vendor/mathjax/tex-mml-chtml.js" in page
    assert (tmp_path / "book" / "_build" / "html" / "_static" / "vendor" / "html-manager" / "embed-amd.js").exists()
    assert run.remote_resources(html.parent) == []
    assert "not in this test" in (tmp_path / "book" / "_build" / "html" / "book" / "executed" /
                                  "06_gradcam.html").read_text()


def test_code_digest_follows_sources_not_caches(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "__pycache__").mkdir(parents=True)
    (pkg / "a.py").write_text("x = 1\n")
    (pkg / "run.py").write_text("# orchestration\n")
    h = run.code_digest(pkg)
    (pkg / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\0")
    (pkg / "run.py").write_text("# orchestration, edited\n")
    assert run.code_digest(pkg) == h
    (pkg / "a.py").write_text("x = 2\n")
    assert run.code_digest(pkg) != h


def test_invalid_manifest_stops_before_any_notebook(tmp_path, ci_profile):
    bad = tmp_path / "bad.csv"
    bad.write_text("patient_id,cohort,centre,ct_ap,ct_pp,seg_train,clinical_file,outcome_file\n"
                   "P001,training,1,nope_ap.nii.gz,nope_pp.nii.gz,1,clin.csv,out.csv\n")
    with pytest.raises(run.RunError) as ei:
        run.prepare_manifest(ci_profile, bad, log=lambda s: None)
    msg = str(ei.value)
    assert "nothing was run" in msg and "P001" in msg and "nope_ap.nii.gz" in msg


def test_run_book_flow_in_isolated_root(tmp_path, monkeypatch):
    """run_book end to end with stand-in notebooks and a fake executor (real Jupyter Book build): summary and state
    saved, executed copies synced, left-out chapters explained, HTML printed, the second run skips everything."""
    if not run.assets_present():
        run.vendor_assets(log=lambda s: None)
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    for name in ("01_cohort_table", "02_unet_training", "03_feature_extraction", "04_model_comparison",
                 "05_survival_nomogram", "06_gradcam", "08_radiomics_robustness", "09_tripod_ai",
                 "10_ablation"):
        _nb(nbdir / f"{name}.ipynb", f"x = '{name}'")
        nb = nbformat.read(str(nbdir / f"{name}.ipynb"), as_version=4)
        nb.cells.insert(0, nbformat.v4.new_markdown_cell(f"# Stand-in {name}"))
        nbformat.write(nb, str(nbdir / f"{name}.ipynb"))
    root = tmp_path / "root"
    manifest = tmp_path / "m.csv"
    manifest.write_text("patient_id,clinical_file,outcome_file\n")
    monkeypatch.setenv("HCC_ROOT", str(root))
    monkeypatch.setattr("hcc_utils.run.pipeline.NOTEBOOKS", nbdir)
    monkeypatch.setattr("hcc_utils.run.steps.GSE14520_FILE", tmp_path / "no_gse.tsv")
    monkeypatch.setattr("hcc_utils.run.steps.lits_available", lambda: (False, "no LiTS in this test"))
    monkeypatch.setattr("hcc_utils.run.pipeline.prepare_manifest", lambda profile, m, log=print: Path(m))
    monkeypatch.setattr("hcc_utils.run.pipeline.notebook_code_digest", lambda nb: "code")  # others may edit hcc_utils meanwhile
    calls = []

    def fake_execute(src, dst, params, **kw):
        calls.append(Path(dst).stem)
        Path(dst).parent.mkdir(parents=True, exist_ok=True)
        Path(dst).write_text(Path(src).read_text())

    monkeypatch.setattr("hcc_utils.run.execute.execute_notebook", fake_execute)
    lines: list[str] = []
    summary = run.run_book("ci", manifest, log=lines.append)
    # two jobs: the cohort table and the first U-Net start together, in either order
    assert len(calls) == 11 and set(calls[:2]) == {"01_cohort_table", "02_unet_training_AP"}
    html = root / "book" / "_build" / "html" / "index.html"
    assert summary.html == str(html) and html.exists()
    assert any(str(html) in line for line in lines)
    saved = json.loads((root / "outputs" / "ci" / "run_summary.json").read_text())
    assert [s["status"] for s in saved["steps"]] == ["ran"] * 10 + ["unavailable"] * 2 + ["ran"]
    assert saved["book_seconds"] > 0 and saved["manifest"] == str(manifest)
    pages = root / "book" / "_build" / "html" / "book" / "executed"
    assert "Stand-in 06_gradcam" in (pages / "06_gradcam.html").read_text()
    assert "no LiTS in this test" in (pages / "07_lits_segmentation.html").read_text()
    assert "no_gse.tsv" in (pages / "05_survival_nomogram_gse14520.html").read_text()
    calls.clear()
    summary = run.run_book("ci", manifest, log=lines.append)
    assert calls == [] and {r.status for r in summary.results} == {"skipped", "unavailable"}


def test_code_modules_follow_imports_transitively(tmp_path):
    """A step's code hash covers the hcc_utils modules its notebook imports and theirs, not unrelated ones."""
    pkg = tmp_path / "hcc_utils"
    (pkg / "stats").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "config.py").write_text("X = 1\n")
    (pkg / "seg.py").write_text("from hcc_utils.config import X\nfrom . import io\n")
    (pkg / "io.py").write_text("import json\n")
    (pkg / "stats" / "__init__.py").write_text("from .roc import auc\n")
    (pkg / "stats" / "roc.py").write_text("from ..config import X\ndef auc(): pass\n")
    (pkg / "survival.py").write_text("Y = 2\n")
    nb = _nb(tmp_path / "n.ipynb", "%matplotlib inline\nfrom hcc_utils import seg\nimport hcc_utils.stats as st",
             "x = __import__('json')")
    mods = run.code_modules(nb, pkg)
    assert mods == {"hcc_utils", "hcc_utils.seg", "hcc_utils.config", "hcc_utils.io", "hcc_utils.stats",
                    "hcc_utils.stats.roc"}
    h = run.code_digest(pkg, mods)
    (pkg / "survival.py").write_text("Y = 3\n")  # not used by the notebook
    assert run.code_digest(pkg, mods) == h
    (pkg / "stats" / "roc.py").write_text("from ..config import X\ndef auc(): return 1\n")
    assert run.code_digest(pkg, mods) != h
    dyn = _nb(tmp_path / "d.ipynb", "import importlib\nm = importlib.import_module('hcc_utils.' + name)")
    assert run.code_modules(dyn, pkg) is None  # unsure: the whole package counts


def test_book_copy_names_the_phase_in_the_title(tmp_path):
    """Two pages made from one notebook (AP and PP) get distinguishable titles in the table of contents."""
    import nbformat

    from hcc_utils import run

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("phase = 'AP'", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_markdown_cell("# U-Net training\nText."), nbformat.v4.new_markdown_cell("# Later"),
                nbformat.v4.new_code_cell("table_path = '/home/me/data/t.tsv'",
                                          metadata={"tags": ["injected-parameters"]})]
    src = tmp_path / "a.ipynb"
    nbformat.write(nb, str(src))
    step = run.Step(name="02_unet_training_AP", notebook="02_unet_training", params={"phase": "AP"})
    run.book.copy_for_book(src, tmp_path / "b.ipynb", run.book.title_suffix(step))
    out = nbformat.read(str(tmp_path / "b.ipynb"), as_version=4)
    assert out.cells[1].source == "# U-Net training (AP)\nText."
    assert out.cells[2].source == "# Later"
    assert "hide-input" in out.cells[0].metadata["tags"]
    # the injected values (local paths of this machine) are not on the page
    assert "remove-cell" in out.cells[3].metadata["tags"]
    gse = run.Step(name="05_gse", notebook="05_survival_nomogram", params={"chapter": "gse14520"})
    assert run.book.title_suffix(gse) == " (GSE14520)"


def _fresh_clone_profile(tmp_path):
    """The demo profile laid out as a fresh clone has it: the committed manifest (what the generator writes), no
    cohort. Small sizes keep it quick (but large enough for the cohort checks); the manifest sits where the demo profile's does (the repository root)."""
    import shutil

    from hcc_utils import synthetic

    shutil.copy(Path(run.__file__).resolve().parents[2] / "profiles.yaml", tmp_path / "profiles.yaml")
    prof = load_profile("demo", overrides={"cohort": {"n_development": 10, "n_validation": 3, "n_annotated": 3}},
                        path=tmp_path / "profiles.yaml")
    (tmp_path / "data_manifest.csv").write_text(synthetic.manifest_text(prof))
    return prof


def test_fresh_clone_generates_cohort_although_manifest_is_committed(tmp_path):
    prof = _fresh_clone_profile(tmp_path)
    committed = (tmp_path / "data_manifest.csv").read_text()
    assert not (tmp_path / "data" / "synthetic").exists()
    lines: list[str] = []
    manifest = run.prepare_manifest(prof, None, log=lines.append)
    assert manifest == (tmp_path / "data_manifest.csv").resolve()
    assert any("generating the synthetic demo cohort" in s and "is missing" in s for s in lines)
    assert (tmp_path / "data" / "synthetic" / "stamp.json").exists()
    assert manifest.read_text() == committed  # the generator rewrites exactly the committed file
    # a second preparation finds the complete cohort and generates nothing
    lines.clear()
    run.prepare_manifest(prof, None, log=lines.append)
    assert not any("generating" in s for s in lines)


@pytest.mark.parametrize("damage", ["stamp", "image"])
def test_interrupted_cohort_is_regenerated_not_used(tmp_path, damage):
    """An interrupted generation (no stamp: it is removed first and written last) or a lost file is completed."""
    prof = _fresh_clone_profile(tmp_path)
    run.prepare_manifest(prof, None, log=lambda s: None)
    root = tmp_path / "data" / "synthetic"
    lost = root / "stamp.json" if damage == "stamp" else root / "images" / "VAL002_PP.nii.gz"
    lost.unlink()
    lines: list[str] = []
    run.prepare_manifest(prof, None, log=lines.append)
    assert any("is incomplete" in s for s in lines)
    assert (root / "stamp.json").exists() and (root / "images" / "VAL002_PP.nii.gz").exists()


def test_check_on_committed_manifest_without_cohort_says_what_to_run(tmp_path, monkeypatch, capsys):
    from hcc_utils import manifest as mf

    _fresh_clone_profile(tmp_path)
    monkeypatch.setenv("HCC_ROOT", str(tmp_path))
    assert mf.main(["check", "--profile", "demo"]) == 1
    out = capsys.readouterr().out
    assert "make cohort PROFILE=demo" in out and "file not found" not in out


def test_notebook_digest_follows_sources_and_tags_not_outputs(tmp_path):
    """A changed cell tag (what the page shows) reruns the step; outputs and other metadata do not."""
    import nbformat

    from hcc_utils.run.hashing import notebook_digest

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    f = tmp_path / "n.ipynb"
    nbformat.write(nb, str(f))
    h = notebook_digest(f)
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", text="1\n")]
    nb.cells[0].metadata["collapsed"] = True
    nbformat.write(nb, str(f))
    assert notebook_digest(f) == h
    nb.cells[0].metadata["tags"] = ["remove-cell"]
    nbformat.write(nb, str(f))
    assert notebook_digest(f) != h


def _timed_executor(monkeypatch, seconds: dict[str, float], fail: set[str] = frozenset()):
    """A fake executor that sleeps per step, records (step, start, end) and fails the steps in ``fail``."""
    import threading
    import time

    spans: list[tuple[str, float, float]] = []
    lock = threading.Lock()

    def fake_execute(src, dst, params, **kw):
        t0 = time.monotonic()
        name = Path(dst).stem
        time.sleep(seconds.get(name, 0.05))
        Path(dst).parent.mkdir(parents=True, exist_ok=True)
        Path(dst).write_text(Path(src).read_text())
        with lock:
            spans.append((name, t0, time.monotonic()))
        if name in fail:
            raise RuntimeError(f"boom in {name}")

    monkeypatch.setattr("hcc_utils.run.execute.execute_notebook", fake_execute)
    return spans


def _parallel_plan(tmp_path):
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    for name in "abcde":
        _nb(nbdir / f"{name}.ipynb", f"x = '{name}'")
    steps = [run.Step("a", "a", {}), run.Step("b_AP", "b", {"phase": "AP"}), run.Step("b_PP", "b", {"phase": "PP"}),
             run.Step("c", "c", {}, deps=("a", "b_AP", "b_PP")), run.Step("d", "d", {}, deps=("c",)),
             run.Step("e", "e", {})]
    args = dict(notebooks_dir=nbdir, executed_dir=tmp_path / "out" / "executed",
                state_path=tmp_path / "out" / "run_state.json", manifest_hash="m", code_hash="c", settings={})
    return steps, args


def test_steps_run_side_by_side_after_their_dependencies(tmp_path, monkeypatch):
    """jobs=2: independent steps overlap, a step starts only after its dependencies ended, results in plan order,
    and the state file records every step; jobs=1 runs one step at a time in plan order."""
    steps, args = _parallel_plan(tmp_path)
    spans = _timed_executor(monkeypatch, {"a": 0.3, "b_AP": 0.9, "b_PP": 0.9, "c": 0.2})
    lines: list[str] = []
    res = run.run_steps(steps, jobs=2, log=lines.append, **args)
    assert [r.name for r in res] == [s.name for s in steps] and {r.status for r in res} == {"ran"}
    t = {n: (a, b) for n, a, b in spans}
    assert t["b_AP"][0] < t["b_PP"][1] and t["b_PP"][0] < t["b_AP"][1]  # the two phases overlap
    assert t["c"][0] >= max(t["a"][1], t["b_AP"][1], t["b_PP"][1]) and t["d"][0] >= t["c"][1]
    # the first ready steps in plan order take the two slots: nothing else starts before one of them ends (by
    # start times the two threads can come in either order)
    assert {n for n, t0, _ in spans if t0 < t["a"][1]} == {"a", "b_AP"}
    assert "up to 2 run at once" in lines[0]
    state = json.loads(args["state_path"].read_text())
    assert {n: v["status"] for n, v in state["steps"].items()} == {s.name: "ok" for s in steps}
    # unchanged inputs: everything is skipped, whatever the number of jobs
    assert {r.status for r in run.run_steps(steps, jobs=2, log=lambda s: None, **args)} == {"skipped"}
    spans.clear()
    run.run_steps(steps, jobs=1, force=True, log=lambda s: None, **args)
    order = sorted(spans, key=lambda x: x[1])
    assert [n for n, *_ in order] == [s.name for s in steps]
    assert all(order[i][2] <= order[i + 1][1] for i in range(len(order) - 1))  # never two at once


def test_a_failed_step_stops_new_steps_and_running_ones_finish(tmp_path, monkeypatch):
    steps, args = _parallel_plan(tmp_path)
    spans = _timed_executor(monkeypatch, {"a": 0.05, "b_AP": 0.5, "b_PP": 0.05}, fail={"a"})
    with pytest.raises(run.RunError, match="step a failed") as err:
        run.run_steps(steps, jobs=2, log=lambda s: None, **args)
    got = {r.name: r.status for r in err.value.results}
    assert got["a"] == "failed" and got["b_AP"] == "ran"  # b_AP was running when a failed: it finished
    assert "c" not in got and "d" not in got and "e" not in got  # nothing started after the failure
    assert {n for n, *_ in spans} == {"a", "b_AP"}
    state = json.loads(args["state_path"].read_text())
    assert state["steps"]["a"]["status"] == "failed" and state["steps"]["b_AP"]["status"] == "ok"


def test_a_finished_notebooks_kernel_is_shut_down_without_an_interrupt(tmp_path, monkeypatch):
    """jupyter_client interrupts a kernel before shutting it down; ipykernel then logs a KeyboardInterrupt ERROR."""
    import asyncio

    from jupyter_client.manager import KernelManager

    from hcc_utils.run import execute

    calls = []

    async def record(self):
        calls.append(self.shutting_down)

    monkeypatch.setattr(KernelManager, "_async_interrupt_kernel", record)
    _nb(tmp_path / "a.ipynb", "x = 1")
    execute.execute_notebook(tmp_path / "a.ipynb", tmp_path / "out" / "a.ipynb", {})
    assert (tmp_path / "out" / "a.ipynb").exists()
    assert calls == []
    # an interrupt asked for while the kernel is not shutting down still reaches jupyter_client
    km = execute.kernel_manager()()
    km.shutting_down = False
    asyncio.run(km._async_interrupt_kernel())
    assert calls == [False]
