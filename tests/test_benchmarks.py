"""Benchmarks: the runner's tiny mode writes a valid results JSON and a results page; nothing is timed here.

Speed is measured by ``make bench``, never asserted in tests: these tests only check that every benchmark path runs
and records what it says it records.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_quadratic_delong_matches_fast_delong():
    from benchmarks.tasks import _quadratic_delong
    from hcc_utils import stats

    rng = np.random.default_rng(3)
    n = 600
    y = (rng.random(n) < 0.4).astype(int)
    a = np.round(0.9 * y + rng.normal(size=n), 1)  # many ties
    b = np.round(0.5 * y + rng.normal(size=n), 1)
    q = _quadratic_delong(y, a, b, budget_s=60)
    r = stats.delong_test(y, a, b)
    assert not q["extrapolated"]
    assert q["auc_a"] == pytest.approx(r.auc_a, abs=1e-12) and q["auc_b"] == pytest.approx(r.auc_b, abs=1e-12)
    assert q["z"] == pytest.approx(r.z, rel=1e-9)


def test_scaling_sizes_keep_the_profile_proportions():
    from benchmarks.tasks import bench_profile, sizes_for

    demo = {"n_development": 180, "n_validation": 28, "n_annotated": 60}
    assert sizes_for(208, demo) == (180, 28, 60)
    nd, nv, na = sizes_for(400, demo)
    assert nd + nv == 400 and na == 115
    p = bench_profile("demo", "t-n50", 50)
    assert p.cohort_root == ROOT / "data" / "bench" / "t-n50"
    assert p.outputs == ROOT / "outputs" / "bench" / "t-n50"  # never the book's outputs
    assert int(p["cohort"]["n_development"]) + int(p["cohort"]["n_validation"]) == 50


def test_gpu_script_cpu_path(tmp_path):
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--tiny", "--models", "classic",
                           "--modes", "fp32,bf16_cl", "--out", str(tmp_path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    files = list(tmp_path.glob("gpu-*-tiny.json"))
    assert len(files) == 1
    d = json.loads(files[0].read_text())
    assert d["tiny"] and d["device"] == "CPU"
    assert [r["mode"] for r in d["rows"]] == ["fp32", "bf16_cl"]
    for r in d["rows"]:
        assert r["train_slices_per_s"] > 0 and r["infer_slices_per_s"] > 0
        assert r["gflop_train_step"] > 2 * r["gflop_forward"] > 0  # backward costs about twice the forward


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_tiny_run_writes_valid_json_and_page(tiny_benchmark, tmp_path):
    """The tiny run (its ``make book`` on the DICOM privacy cohort, shared with ``tests/test_book.py``)."""
    proc, files = tiny_benchmark["proc"], tiny_benchmark["files"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert len(files) == 1
    d = tiny_benchmark["json"]
    assert d["schema"] == 1 and d["mode"] == "tiny" and d["profile"] == "ci"
    assert d["git"]["commit"] and d["versions"]["torch"] and d["machine"]["usable_cpus"] >= 1
    assert d["errors"] == [], d["errors"]
    figs = d["figures"]
    assert all({"group", "stage", "metric", "value", "unit"} <= set(f) and f["unit"] for f in figs)
    groups = {f["group"] for f in figs}
    assert {"machine", "flops", "stage", "ratio", "book", "scaling"} <= groups
    book = {f["stage"]: f for f in figs if f["group"] == "book" and f["metric"] == "wall time"}
    assert set(book) == {"make book PROFILE=ci (cold)", "make book PROFILE=ci (warm)"}
    assert "0 skipped" in book["make book PROFILE=ci (cold)"]["note"]  # cold: every notebook ran
    assert "0 notebook runs" in book["make book PROFILE=ci (warm)"]["note"]  # warm: every notebook skipped
    assert any(f["stage"].startswith("notebook 02_unet_training") for f in figs if f["group"] == "book")
    assert any(f["group"] == "book" and f["stage"] == "machine" and f["value"] > 0 for f in figs)  # the book's CPU
    stages = {f["stage"] for f in figs if f["group"] == "stage"}
    for s in ("cohort generation", "slice cache build", "U-Net training (classic)", "U-Net training (dynamic)",
              "inference (PP, all patients)", "feature extraction (PP)", "survival statistics (synthetic)"):
        assert s in stages, s
    assert any(f["stage"].startswith("model grid search") for f in figs)
    rss = [f["value"] for f in figs if f["metric"] == "peak RSS"]
    assert rss and all(100 < v < 24 * 1024 for v in rss)  # MiB, a Python process with torch
    sc = [f for f in figs if f["group"] == "scaling" and f["stage"] == "all stages" and f["metric"] == "wall time"]
    assert [f["extra"]["n"] for f in sc] == [24]
    # the O(n^2) DeLong agrees with the fast one where both were computed in full
    dl = [f for f in figs if f["group"] == "ratio" and f["stage"].startswith("DeLong") and f["unit"] == "x"]
    assert dl and all("|dAUC|" in f["note"] for f in dl)
    assert "cohort generation" in proc.stdout  # the short table

    from benchmarks.report import write_report

    page = write_report(files[0], readme=tmp_path / "README.md", plot=tmp_path / "scaling.png")
    text = page.read_text()
    for section in ("## Stages of the book", "## The whole book", "## Scaling with the cohort", "## Side-by-side ratios",
                    "## U-Net FLOPs per slice"):
        assert section in text
    assert (tmp_path / "scaling.png").stat().st_size > 5000
    assert "Slowest stage measured" in text


def test_book_page_reads_the_stored_results_or_says_there_are_none(tmp_path):
    """The book's benchmarks page: every figure from the stored JSON; without one, a page saying so."""
    import json

    from hcc_utils.run import book

    latest = ROOT / "benchmarks" / "latest.json"
    data = json.loads(latest.read_text())
    page = book.write_benchmarks_page(tmp_path, results=latest, book_results=tmp_path / "absent.json")
    text = page.read_text()
    assert page == tmp_path / "book" / "benchmarks.md" and text.startswith("# Benchmarks\n")
    assert "benchmarks/latest.json" in text and "Do not edit by hand" not in text
    # numbers of the stored results appear on the page (the machine, a stage's value as the report formats it)
    assert data["machine"]["cpu"] in text and data["timestamp"] in text
    from benchmarks.report import _fmt

    stage = next(f for f in data["figures"] if f["group"] == "stage")
    assert f"| {_fmt(stage['value'], stage['unit'])} |" in text
    # another results file gives another page
    other = json.loads(latest.read_text())
    other["timestamp"] = "20990101T000000Z"
    (tmp_path / "other.json").write_text(json.dumps(other))
    assert "20990101T000000Z" in book.write_benchmarks_page(tmp_path, results=tmp_path / "other.json").read_text()
    # no results: the page says so, and a figure of earlier results is removed
    (tmp_path / "book" / "benchmarks_scaling.png").write_bytes(b"old")
    empty = book.write_benchmarks_page(tmp_path, results=tmp_path / "none.json",
                                       book_results=tmp_path / "none-book.json").read_text()
    assert "No benchmark results are stored" in empty and not any(ch.isdigit() for ch in empty.split("`")[0][12:])
    assert not (tmp_path / "book" / "benchmarks_scaling.png").exists()


def test_the_benchmarks_page_is_in_the_table_of_contents():
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    ref = next(p for p in toc["parts"] if p["caption"] == "Reference")
    assert {"file": "book/benchmarks"} in ref["chapters"]


def test_stability_collects_every_figure_and_the_ablation(tmp_path):
    from benchmarks import stability

    out = tmp_path / "outputs" / "demo"
    (out / "models").mkdir(parents=True)
    pd.DataFrame([{"model": m, "cohort": c, "auc": 0.6 + i / 100} for i, (m, c) in enumerate(
        [("DSFR-PP", "development"), ("DSFR-PP", "validation"), ("Visual", "development")])]).to_csv(
        out / "models" / "table2.csv", index=False)
    (out / "models" / "results.json").write_text(json.dumps({"dsfr_model": "DSFR-PP"}))
    for ph, dice in (("AP", 0.5), ("PP", 0.7)):
        (out / "segmentation" / ph).mkdir(parents=True)
        (out / "segmentation" / ph / "metrics.json").write_text(
            json.dumps({"dsc_by_group": [{"group": "validation", "mean": dice}]}))
    pd.DataFrame([{"factor": "feature layer", "variant": "enc1 (tumour mean)", "default": True, "phase": "PP",
                   "n_features": 8, "development": 0.74, "validation": 0.69}]).to_csv(
        out / "models" / "ablation.csv", index=False)
    (out / "survival" / "synthetic").mkdir(parents=True)
    (out / "survival" / "synthetic" / "results.json").write_text(json.dumps(
        {"cohorts": {"development": {"logrank_p": 1e-5}, "validation": {"logrank_p": 0.2}},
         "signature_hr_final": {"hr": 2.5, "p": 3e-6}}))
    res = stability.collect(out)
    assert res["Table 2 AUC | DSFR (the phase chosen by development CV) | validation"] == pytest.approx(0.61)
    assert res["Survival | KM log-rank p | development"] == 1e-5 and res["Survival | KM log-rank p | validation"] == 0.2
    assert res["Survival | signature in the final Cox model: p | development"] == 3e-6
    assert res["Table 2 AUC | DSFR - Visual | development"] == pytest.approx(0.60 - 0.62)
    assert res["DSFR phase chosen is PP (1) or not (0)"] == 1.0
    assert res["Dice | PP | validation"] == 0.7
    assert not any(k.startswith("Ablation") for k in res)
    res = stability.collect(out, ablation=True)
    assert res["Ablation AUC | enc1 (tumour mean) | PP | development"] == 0.74
    assert res["Ablation AUC | enc1 (tumour mean) | PP | validation"] == 0.69
    table = stability.summarise({1: res, 2: {**res, "Dice | PP | validation": 0.8}})
    assert table.loc["Dice | PP | validation", "mean"] == pytest.approx(0.75)
    assert table.loc["Dice | PP | validation", "min"] == 0.7


def test_the_results_page_shows_the_stored_stability_runs_and_compares_machines(tmp_path):
    from benchmarks.report import stability_runs, stability_section, write_report
    from benchmarks.stability import machine_kind

    def fig(name, a, b):
        return {"figure": name, "mean": (a + b) / 2, "min": min(a, b), "max": max(a, b), "seed 2022": a,
                "seed 2023": b}

    figures = [fig("Table 2 AUC | DSFR - Visual | development", 0.1, -0.01),
               fig("DSFR phase chosen is PP (1) or not (0)", 1.0, 0.0),
               fig("Survival | KM log-rank p | development", 1e-6, 3.9e-5),
               fig("Dice | PP | validation", 0.64, 0.71),
               fig("Ablation AUC | enc1 (tumour mean) | PP | development", 0.7, 0.7)]
    run = {"profile": "demo", "seeds": [2022, 2023], "timestamp": "20261208T000000Z", "finished": {"2022": "x"},
           "git": {"commit": "0123456789abcdef"}, "figures": figures,
           "machine": {"cpu": "Some CPU", "simd": ["avx2", "fma"], "usable_cpus": 2, "gflops_sgemm": 61.4}}
    assert machine_kind(run["machine"]) == "avx2" and machine_kind({"simd": ["avx2", "avx512f"]}) == "avx512"
    folder = tmp_path / "stability"
    folder.mkdir()
    (folder / "demo-avx2.json").write_text(json.dumps(run))
    text = "\n".join(stability_section(stability_runs(folder)))
    assert text.startswith("## Stability across synthetic cohorts and machines")
    assert "### demo book on Some CPU (avx2, fma; 2 usable CPUs; 1-thread fp32 matmul 61 GFLOP/s)" in text
    assert "`benchmarks/stability/demo-avx2.json`" in text and "`0123456789`" in text
    assert "| Table 2 AUC: DSFR - Visual, development | 0.045 | -0.010 | 0.100 | 0.100 | -0.010 |" in text
    assert "| DSFR phase chosen is PP (1) or not (0) | 0.50 | no | yes | yes | no |" in text
    assert "| Survival: KM log-rank p, development | 2.00e-05 | 1.00e-06 | 3.90e-05 |" in text
    # every row has as many cells as its header (no figure name breaks the table)
    for table in [t for t in text.split("\n\n") if t.startswith("| ")]:
        assert len({row.count(" | ") for row in table.splitlines() if not row.startswith("|---")}) == 1
    assert "Ablation" not in text and "seed 2022 from a `make bench-book` run" in text
    assert "across machines\n" not in text  # one machine: nothing to compare
    # a second kind of CPU on a shared seed: the figures side by side with their difference
    other = {**run, "seeds": [2023], "finished": {}, "machine": {"cpu": "Other CPU", "simd": ["avx2", "avx512f"]},
             "figures": [{"figure": "Dice | PP | validation", "mean": 0.68, "min": 0.68, "max": 0.68,
                          "seed 2023": 0.68}]}
    (folder / "demo-avx512.json").write_text(json.dumps(other))
    text = "\n".join(stability_section(stability_runs(folder)))
    assert "### The demo book across machines" in text
    assert "| Dice: PP, validation | 2023 | 0.710 | 0.680 | 0.030 |" in text
    assert "| Dice: PP, validation | 2022 |" not in text
    assert stability_section([tmp_path / "absent.json"]) == [] and stability_runs(tmp_path / "none") == []
    latest = ROOT / "benchmarks" / "latest.json"
    page = write_report(latest, readme=tmp_path / "README.md", plot=tmp_path / "s.png",
                        stability=stability_runs(folder)).read_text()
    assert "## Stability across" in page and page.index("## Stability") < page.index("## GPU")
    page = write_report(latest, readme=tmp_path / "README.md", plot=tmp_path / "s.png", stability=[]).read_text()
    assert "## Stability" not in page


def test_stability_takes_a_finished_book_only_on_its_own_seed(tmp_path):
    from benchmarks import stability

    root = tmp_path / "book-demo"
    (root / "data" / "synthetic").mkdir(parents=True)
    (root / "data" / "synthetic" / "stamp.json").write_text(json.dumps({"spec": {"seed": 2022, "n_development": 9}}))
    out = root / "outputs" / "demo"
    out.mkdir(parents=True)
    steps = [{"step": "02_unet_training_PP", "status": "ran"}, {"step": "07_lits_segmentation", "status": "skipped"}]
    (out / "run_summary.json").write_text(json.dumps({"steps": steps}))
    assert stability.finished_outputs(f"2022={root}") == (2022, out)
    with pytest.raises(SystemExit, match="generated with seed"):
        stability.finished_outputs(f"2023={root}")
    with pytest.raises(SystemExit, match="SEED=ROOT"):
        stability.finished_outputs(str(root))
    steps[0]["status"] = "failed"
    (out / "run_summary.json").write_text(json.dumps({"steps": steps}))
    with pytest.raises(SystemExit, match="did not finish"):
        stability.finished_outputs(f"2022={root}")



def test_planted_fits_the_books_visual_model_on_the_cohort_make_cohort_writes(ci_profile, ci_manifest):
    from sklearn.metrics import roc_auc_score

    from benchmarks import planted
    from hcc_utils.classifiers import fit_nested, visual_design
    from hcc_utils.config import load_profile
    from hcc_utils.manifest import load_patient_table

    small = {"grid": {"C": [0.1, 1.0], "max_iter": [200], "tol": [1e-4]}, "cv_folds": 3, "n_jobs": 1}
    profile = load_profile("ci", overrides={"models": small})
    res = planted.seed_figures(ci_profile["cohort"]["seed"], profile)
    pts = load_patient_table(ci_manifest)
    dev = pts[pts["cohort"] == "development"]
    y = dev["er"].astype(int)
    f = fit_nested("Visual", visual_design(dev), y, None, small["grid"], 3, profile.seed)
    assert res["visual"] == pytest.approx(roc_auc_score(y, f.cv_prob.loc[y.index]), abs=1e-12)
    assert res["er_rate"] == pytest.approx(y.mean())
    assert res["gap"] == pytest.approx(res["image phenotype"] - res["visual"])
    other = planted.seed_figures(ci_profile["cohort"]["seed"] + 1, profile)
    assert other["er_rate"] != res["er_rate"] or other["visual"] != res["visual"]


def test_a_book_only_run_keeps_the_committed_full_run_on_the_page(tmp_path, monkeypatch):
    from benchmarks import report, runner

    latest = tmp_path / "latest.json"
    full = {"timestamp": "20260101T000000Z", "mode": "full",
            "figures": [{"group": "scaling", "stage": "s", "metric": "m", "value": 1.0, "unit": "s"}]}
    latest.write_text(json.dumps(full))
    monkeypatch.setattr(report, "LATEST", latest)
    results = tmp_path / "results"
    results.mkdir()
    (results / "20261203T000000Z.json").write_text(json.dumps(
        {"timestamp": "20261203T000000Z", "mode": "full",
         "figures": [{"group": "book", "stage": "b", "metric": "m", "value": 2.0, "unit": "s"}]}))
    assert runner.latest_result(results, group="scaling") is None
    got = runner._committed_full_run(results)
    assert got == results / "20260101T000000Z.json"
    assert json.loads(got.read_text()) == full
    assert runner.latest_result(results, group="scaling") == got
    latest.write_text(json.dumps({**full, "figures": full["figures"][:0]}))  # no scaling figures: not used
    assert runner._committed_full_run(tmp_path / "other") is None


def test_the_book_section_gives_the_cpu_figure_and_shares_of_the_cold_wall_time(tmp_path):
    from benchmarks.report import write_report

    latest = json.loads((ROOT / "benchmarks" / "latest.json").read_text())
    fig = [("make book PROFILE=demo (cold)", "wall time", 1000.0, "s"), ("machine", "fp32 matmul throughput, 1 thread",
           87.5, "GFLOP/s"), ("notebook 02_unet_training_AP", "time (cold run)", 600.0, "s"),
           ("notebook 02_unet_training_PP", "time (cold run)", 550.0, "s"),
           ("the notebooks, start of the first to end of the last", "time (cold run)", 900.0, "s")]
    book = {**latest, "figures": [{"group": "book", "stage": a, "metric": b, "value": v, "unit": u, "note": ""}
                                  for a, b, v, u in fig]}
    main = {**latest, "figures": [f for f in latest["figures"] if f["group"] != "book"]}
    (tmp_path / "main.json").write_text(json.dumps(main))
    (tmp_path / "book.json").write_text(json.dumps(book))
    text = write_report(tmp_path / "main.json", readme=tmp_path / "README.md", plot=tmp_path / "s.png",
                        book_json=tmp_path / "book.json").read_text()
    section = text[text.index("## The whole book"):]
    assert "| machine | fp32 matmul throughput, 1 thread | 87.5 | GFLOP/s |" in section
    assert "| notebook 02_unet_training_AP | 600 | 60 % |" in section  # of the cold wall time, not of the sum
    assert "Slowest part of the cold book: **notebook 02_unet_training_AP** (600 s)" in section
    assert latest["machine"]["cpu"] in section
