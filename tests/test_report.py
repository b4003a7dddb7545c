"""Tests for hcc_utils.report: Table 1, outcome summary, case figure and ROC figure produce correct files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from hcc_utils import cohort_table, report, stats
from hcc_utils import files as hfiles
from hcc_utils.manifest import CLINICAL_VARIABLES, VISUAL_FEATURES

import _tables


def patient_table(n_dev=60, n_val=30, seed=0):
    """A planted 8-year age difference between the cohorts; few Child-Pugh B."""
    return _tables.patient_table(n_dev, n_val, seed, prefix="R", sex_p=[0.85, 0.15], child_b=0.05, age_shift=8.0)[0]


def test_table_one_uses_paper_tests_and_order():
    pt = patient_table()
    t1 = cohort_table.table_one(pt)
    names = list(dict.fromkeys(t1["name"]))
    assert names == [v.name for v in (*CLINICAL_VARIABLES, *VISUAL_FEATURES)]
    first = t1.groupby("name", sort=False).first()
    assert first.loc["age", "test"] == "Student's t"
    assert first.loc["ggt", "test"] == "Mann-Whitney U"
    assert first.loc["hbsag", "test"] in ("Pearson chi-square", "Fisher's exact")
    assert first.loc["child_pugh", "test"] == "Fisher's exact"  # expected count < 5 in validation
    # the p value is the Student's t-test of the two cohorts
    from scipy.stats import ttest_ind

    dev, val = pt[pt.cohort == "development"], pt[pt.cohort == "validation"]
    assert first.loc["age", "p"] == pytest.approx(ttest_ind(dev.age, val.age).pvalue)
    assert first.loc["age", "p"] < 0.05
    fmt = cohort_table.format_table_one(t1)
    assert list(fmt.columns) == ["Variable", "Development (n = 60)", "Validation (n = 30)", "p", "Test"]
    hb = fmt[fmt.Variable == "HBsAg positive"].iloc[0]
    k = int(dev.hbsag.sum())
    assert hb["Development (n = 60)"] == f"{k} ({100 * k / 60:.1f}%)"
    legend = cohort_table.table_one_legend(t1)
    assert "Student's t" in legend and "Mann-Whitney" in legend


def test_table_one_without_visual_reads():
    pt = patient_table()
    for v in VISUAL_FEATURES:
        pt[v.name] = np.nan
    t1 = cohort_table.table_one(pt)
    assert not any(n.startswith("vis_") for n in t1["name"])


def test_cohort_summary_matches_stats():
    pt = patient_table()
    s = cohort_table.cohort_summary(pt)
    dev = pt[pt.cohort == "development"]
    km = stats.km_median(dev.rfs_months, dev.recurrence)
    c = s["cohorts"]["development"]
    assert c["median_rfs"] == pytest.approx(km.median)
    assert c["er"] == int(dev.er.sum()) and c["er_rate"] == pytest.approx(dev.er.mean())
    lr = stats.logrank(pt.rfs_months, pt.recurrence, pt.cohort)
    assert s["logrank"]["p"] == pytest.approx(lr.p)
    tab = cohort_table.summary_table(s)
    assert len(tab) == 2 and "Median RFS, months (95% CI)" in tab.columns


def _write_case(tmp_path, pid, rng):
    from hcc_utils import imaging

    paths = {"patient_id": pid}
    for ph in ("ap", "pp"):
        arr = rng.normal(40, 10, (12, 48, 48)).astype(np.float32)
        m = np.zeros_like(arr, dtype=np.uint8)
        zz, yy, xx = np.ogrid[:12, :48, :48]
        m[((zz - 6) ** 2 / 9 + (yy - 24) ** 2 / 64 + (xx - 20) ** 2 / 64) <= 1] = 1
        arr[m > 0] += 80
        img = sitk.GetImageFromArray(arr)
        img.SetSpacing((0.8, 0.8, 2.5))
        msk = sitk.GetImageFromArray(m)
        msk.CopyInformation(img)
        paths[f"ct_{ph}"] = str(imaging.write_image(img, tmp_path / "images" / f"{pid}_{ph.upper()}.nii.gz"))
        paths[f"mask_{ph}"] = str(imaging.write_image(msk, tmp_path / "masks" / f"{pid}_{ph.upper()}.nii.gz"))
        paths[f"series_uid_{ph}"] = np.nan
    return paths


def test_case_figure_writes_png_and_svg(tmp_path):
    rng = np.random.default_rng(0)
    man = pd.DataFrame([_write_case(tmp_path, pid, rng) for pid in ("R000", "R070")])
    pt = patient_table()
    ids = cohort_table.pick_cases(pt, n=2, seed=1)
    assert len(ids) == 2 and len(set(ids)) == 2
    assert cohort_table.pick_cases(pt, n=2, seed=1) == ids
    windows = {"AP": {"level": 70, "width": 150}, "PP": {"level": 100, "width": 200}}
    fig = cohort_table.case_figure(man, ["R000", "R070"], windows, patients=pt)
    assert len(fig.axes) == 4
    assert "slice 6" in fig.axes[0].get_title()  # the largest tumour cross-section
    files = hfiles.save_figure(fig, tmp_path / "fig" / "cases")
    assert [p.suffix for p in files] == [".png", ".svg"] and all(p.stat().st_size > 1000 for p in files)
    with pytest.raises(ValueError, match="R999"):
        cohort_table.case_figure(man, ["R999"], windows)


def test_roc_figure_legend_from_table2(tmp_path):
    rng = np.random.default_rng(3)
    rows = []
    for cohort, n in (("development", 60), ("validation", 30)):
        y = rng.integers(0, 2, n)
        for m, s in (("DSFR-PP", 1.5), ("DSFR-C", 2.0), ("Visual", 0.5)):
            p = 1 / (1 + np.exp(-(s * (y - 0.5) + rng.normal(0, 1, n))))
            rows.append(pd.DataFrame({"patient_id": [f"P{i}" for i in range(n)], "cohort": cohort, "model": m,
                                      "prob": p, "er": y}))
    pred = pd.concat(rows, ignore_index=True)
    t2 = []
    for (m, c), d in pred.groupby(["model", "cohort"]):
        ci = stats.roc_auc_ci(d.er, d.prob)
        t2.append({"model": m, "cohort": c, "auc": ci.auc, "auc_lower": ci.lower, "auc_upper": ci.upper})
    t2 = pd.DataFrame(t2)
    fig = report.roc_figure(pred, t2, ["DSFR-PP", "DSFR-C", "Visual"])
    texts = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    r = t2[(t2.model == "Visual") & (t2.cohort == "validation")].iloc[0]
    assert f"Visual: AUC {r.auc:.3f} ({r.auc_lower:.3f}-{r.auc_upper:.3f})" in texts
    files = hfiles.save_figure(fig, tmp_path / "figure1.png")
    assert all(p.exists() for p in files)
    with pytest.raises(ValueError, match="no predictions of model 'DSFR-AP'"):
        report.roc_figure(pred, t2, ["DSFR-AP"])


def test_write_json(tmp_path):
    p = hfiles.write_json({"a": np.int64(3), "b": np.float64(0.5)}, tmp_path / "x" / "s.json")
    assert p.read_text().count("3") == 1
    assert stats.format_p(0.0001) == "<0.001" and stats.format_p(0.0123) == "0.012"
    assert stats.format_p(float("nan")) == "" and stats.format_p(None, missing="NA") == "NA"
    assert stats.format_p(0.0123, prefix=True) == "p = 0.012" and stats.format_p(1e-5, prefix=True) == "p < 0.001"
    # one NaN rule: NaN and inf become null, numpy values plain JSON
    q = hfiles.write_json({"x": float("nan"), "y": np.float64("inf"), "z": [np.nan, np.int64(2)]}, tmp_path / "n.json")
    import json

    assert json.loads(q.read_text()) == {"x": None, "y": None, "z": [None, 2]}


# ----------------------------------------------------------------------------------------------------------------
# The two notebooks, executed by papermill on the ci cohort (slow: part of `make test`, not of `-m "not slow"`)
# ----------------------------------------------------------------------------------------------------------------
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def _kernel():
    from jupyter_client.kernelspec import KernelSpecManager

    return "hcc-dsfr" if "hcc-dsfr" in KernelSpecManager().find_kernel_specs() else "python3"


def _glued(nb_path):
    import nbformat

    nb = nbformat.read(nb_path, 4)
    out = {}
    for c in nb.cells:
        for o in c.get("outputs", []):
            name = o.get("metadata", {}).get("scrapbook", {}).get("name")
            if name:
                data = o["data"]
                key = next(k for k in data if k.startswith("application/papermill.record/"))
                out[name] = data[key]
            assert o.get("output_type") != "error", o
    return out


def _isolated_root(tmp_path, ci_manifest):
    """A root with the repository's profiles and the ci cohort, so outputs go to tmp (``$HCC_ROOT``)."""
    import shutil

    from hcc_utils.config import load_profile

    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(NOTEBOOKS.parent / "profiles.yaml", root / "profiles.yaml")
    rel = Path(load_profile("ci", path=root / "profiles.yaml")["cohort"]["root"])
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).symlink_to(Path(ci_manifest).parent, target_is_directory=True)
    return root


def _run_ci_notebook(name: str, root: Path, tmp_path: Path, monkeypatch) -> Path:
    """Execute ``notebooks/<name>.ipynb`` with papermill on the ci profile inside the isolated ``root``."""
    import papermill as pm

    monkeypatch.setenv("HCC_ROOT", str(root))
    out = tmp_path / f"{name}.ipynb"
    pm.execute_notebook(str(NOTEBOOKS / f"{name}.ipynb"), str(out), parameters={"profile": "ci"},
                        kernel_name=_kernel(), cwd=str(NOTEBOOKS), progress_bar=False)
    return out


@pytest.mark.slow
def test_notebook_01_on_ci_cohort(tmp_path, ci_manifest, monkeypatch):
    import json

    from hcc_utils.manifest import load_patient_table

    root = _isolated_root(tmp_path, ci_manifest)
    out = _run_ci_notebook("01_cohort_table", root, tmp_path, monkeypatch)
    cohort = root / "outputs" / "ci" / "cohort"
    for f in ("table1.csv", "table1_full.csv", "summary.json", "figures/cases.png", "figures/cases.svg"):
        assert (cohort / f).exists(), f
    summary = json.loads((cohort / "summary.json").read_text())
    pt = load_patient_table(ci_manifest)
    dev = pt[pt.cohort == "development"]
    assert summary["cohorts"]["development"]["er"] == int(dev.er.sum())
    g = _glued(out)
    assert g["n_dev"] == repr(str(len(dev)))
    assert "synthetic" in g["data_source"]


@pytest.mark.slow
def test_notebook_04_on_planted_features(tmp_path, ci_manifest, monkeypatch):
    """Notebook 04 end to end on feature tables that carry the planted latent: outputs written, truth check run."""
    import json

    root = _isolated_root(tmp_path, ci_manifest)
    truth = pd.read_csv(Path(ci_manifest).parent / "truth.csv").set_index("patient_id")
    rng = np.random.default_rng(0)
    fdir = root / "outputs" / "ci" / "features"
    fdir.mkdir(parents=True)
    for k, ph in enumerate(["AP", "PP"]):
        F = rng.normal(size=(len(truth), 12))
        F[:, :3] += (0.5 + k) * truth["latent"].to_numpy()[:, None]
        pd.DataFrame(F, index=pd.Index(truth.index, name="patient_id"),
                     columns=[f"dec1_c{j}" for j in range(12)]).to_parquet(fdir / f"{ph}.parquet")
    out = _run_ci_notebook("04_model_comparison", root, tmp_path, monkeypatch)
    mdir = root / "outputs" / "ci" / "models"
    for f in ("predictions.csv", "table2.csv", "table2_formatted.csv", "dsfr_weights.csv", "signature.csv",
              "results.json", "models.joblib", "figure1_roc.png", "figure1_roc.svg", "ground_truth.json"):
        assert (mdir / f).exists(), f
    res = json.loads((mdir / "results.json").read_text())
    t2 = pd.read_csv(mdir / "table2.csv")
    g = _glued(out)
    r = t2[(t2.model == res["dsfr_model"]) & (t2.cohort == "validation")].iloc[0]
    assert g["dsfr_val_auc"] == repr(f"{r.auc:.3f} (95% CI {r.auc_lower:.3f} to {r.auc_upper:.3f})")
    gt = json.loads((mdir / "ground_truth.json").read_text())
    assert gt["latent_column"] == "latent" and "development" in gt["spearman"]


@pytest.mark.slow
def test_table2_does_not_read_truth(tmp_path, ci_manifest, monkeypatch):
    """No model, feature or selection step reads truth.csv: with truth.csv replaced by noise, notebook 04 writes the
    same Table 2, predictions and signature byte for byte, while its ground-truth check (the one reader) changes."""
    import shutil

    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(NOTEBOOKS.parent / "profiles.yaml", root / "profiles.yaml")
    cohort = root / "data" / "synthetic-ci"
    cohort.mkdir(parents=True)
    for f in Path(ci_manifest).parent.iterdir():  # the cohort, with a private copy of truth.csv
        (cohort / f.name).symlink_to(f) if f.name != "truth.csv" else shutil.copy(f, cohort / f.name)
    truth = pd.read_csv(cohort / "truth.csv")
    rng = np.random.default_rng(1)
    fdir = root / "outputs" / "ci" / "features"
    fdir.mkdir(parents=True)
    for ph in ("AP", "PP"):
        F = rng.normal(size=(len(truth), 10))
        F[:, :2] += truth["latent"].to_numpy()[:, None]
        pd.DataFrame(F, index=pd.Index(truth["patient_id"], name="patient_id"),
                     columns=[f"dec1_c{j}" for j in range(10)]).to_parquet(fdir / f"{ph}.parquet")
    mdir = root / "outputs" / "ci" / "models"
    files = ("table2.csv", "predictions.csv", "signature.csv", "dsfr_weights.csv", "results.json")
    runs = []
    for k in range(2):
        if k == 1:  # every column but the id replaced by noise
            noise = truth.copy()
            for c in noise.columns.drop("patient_id"):
                noise[c] = rng.normal(size=len(noise)) if noise[c].dtype.kind in "fi" else rng.permutation(noise[c])
            noise.to_csv(cohort / "truth.csv", index=False)
        _run_ci_notebook("04_model_comparison", root, tmp_path, monkeypatch)
        runs.append({f: (mdir / f).read_bytes() for f in (*files, "ground_truth.json")})
    for f in files:
        assert runs[0][f] == runs[1][f], f
    assert runs[0]["ground_truth.json"] != runs[1]["ground_truth.json"]


def test_table_one_display_indents_levels_and_writes_units_with_symbols():
    t1 = cohort_table.table_one(patient_table())
    fmt = cohort_table.format_table_one(t1)
    labels = list(fmt["Variable"])
    # level rows sit under their heading, indented with non-breaking spaces (kept by HTML), heading without counts
    i = labels.index("Child-Pugh class")
    assert labels[i + 1] == "\u00a0" * 4 + "Class A" and labels[i + 2] == "\u00a0" * 4 + "Class B"
    assert fmt.iloc[i]["p"] != "" and fmt.iloc[i + 1]["p"] == ""
    assert "\u00a0" * 4 + "Male" in labels and "Sex" in labels
    # units and comparisons with their symbols; no typed ">=", "umol" or "^"
    assert "HBV-DNA \u2265 10\u2074 IU/mL" in labels and "AFP \u2265 400 ng/mL" in labels
    assert "Total bilirubin (\u00b5mol/L), median (IQR)" in labels and "Age (years), mean (SD)" in labels
    assert not any(s in lb for lb in labels for s in (">=", "umol", "^"))
    # the HTML of the page keeps the indentation
    html = fmt.style.hide(axis="index").to_html()
    assert "\u00a0\u00a0\u00a0\u00a0Class A" in html
    assert cohort_table.display_label("plt", "Platelets (x 10^9/L)") == "Platelets (\u00d7 10\u2079/L)"
