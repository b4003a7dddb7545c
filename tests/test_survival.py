"""Survival stage: mapping and cleaning, split rule, the notebook-05 pipeline on a small synthetic survival table."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from hcc_utils import stats
from hcc_utils import survival as sv


def make_table(n=160, seed=0, messy=True):
    """A small clinical table with a planted signature effect, as text with messy cells."""
    rng = np.random.default_rng(seed)
    sig = rng.uniform(0, 1, n)
    age = rng.normal(55, 10, n).round()
    sex = rng.choice(["M", "F"], n, p=[0.8, 0.2])
    stage = rng.choice(["I", "II", "III"], n, p=[0.5, 0.3, 0.2])
    afp = rng.choice(["high", "low"], n)
    lp = 2.0 * sig + 1.2 * (stage == "III") + 0.6 * (stage == "II")
    t_event = rng.exponential(60 * np.exp(-lp))
    t_cens = rng.uniform(12, 72, n)
    time = np.minimum(t_event, t_cens).round(1)
    event = (t_event <= t_cens).astype(int)
    df = pd.DataFrame({
        "ID": [f"P{i:03d}" for i in range(n)],
        "RFS (days)": (time * 30.4375).round(1).astype(str),
        "Relapse": np.where(event == 1, "yes", "no"),
        "Score": sig.round(4).astype(str),
        "Age": age.astype(int).astype(str),
        "Sex": sex,
        "Stage": stage,
        "AFP": afp,
        "Arm": np.where(np.arange(n) % 3 == 0, "validation", "development"),
    })
    if messy:
        df.loc[1, "Age"] = "NA"
        df.loc[2, "Age"] = "."
        df.loc[3, "Sex"] = " M "
        df.loc[4, "Stage"] = ""
        df.loc[5, "AFP"] = "  high"
        df.loc[6, "Score"] = "."        # row dropped: no signature
        df.loc[7, "RFS (days)"] = "NA"  # row dropped: no time
    return df


MAPPING = {
    "name": "toy", "id": "ID", "time": "RFS (days)", "event": "Relapse", "time_unit": "days",
    "signature": {"column": "Score", "type": "continuous", "per": 0.1, "label": "Score (per 0.1)"},
    "covariates": [
        {"column": "Age", "name": "age", "type": "continuous", "per": 10},
        {"column": "Sex", "name": "male", "type": "binary", "reference": "F"},
        {"column": "Stage", "name": "stage", "type": "categorical", "reference": "I"},
        {"column": "AFP", "name": "afp_high", "type": "binary", "reference": "low"},
    ],
}


@pytest.fixture(scope="module")
def table():
    return make_table()


def test_cleaning_report_counts_and_recodes(table):
    prep = sv.prepare_table(table, MAPPING, source="toy.csv")
    d, rep = prep.data, prep.report.set_index("column")
    assert prep.n_raw == 160 and len(d) == 158
    assert prep.dropped == {"RFS (days)": ["P007"], "Score": ["P006"]}
    assert rep.loc["Age", "n_missing"] == 2 and rep.loc["Age", "n_missing_token"] == 2
    assert "'NA'" in rep.loc["Age", "missing_tokens_seen"] and "'.'" in rep.loc["Age", "missing_tokens_seen"]
    assert rep.loc["Sex", "n_stripped_spaces"] == 1 and rep.loc["AFP", "n_stripped_spaces"] == 1
    assert rep.loc["Stage", "n_blank"] == 1
    assert "'F'->0, 'M'->1" in rep.loc["Sex", "recoded"]
    assert rep.loc["RFS (days)", "n_rows_dropped"] == 1
    assert d.loc["P003", "male"] == 1 and d.loc["P005", "afp_high"] == 1 and pd.isna(d.loc["P004", "stage"])
    # days -> months
    raw_days = float(table.set_index("ID").loc["P000", "RFS (days)"])
    assert d.loc["P000", "time"] == pytest.approx(raw_days * 12 / 365.25)
    assert set(d["event"]) == {0, 1}
    assert ((d["er"] == 1) == ((d["event"] == 1) & (d["time"] < 24))).all()


def test_clear_errors_name_patient_file_and_column(table):
    t = table.copy()
    t.loc[10, "Relapse"] = "maybe"
    with pytest.raises(ValueError, match=r"toy\.csv.*P010.*'maybe'.*Relapse"):
        sv.prepare_table(t, MAPPING, source="toy.csv")
    t = table.copy()
    t.loc[11, "Age"] = "fifty"
    with pytest.raises(ValueError, match=r"P011.*'fifty'.*Age"):
        sv.prepare_table(t, MAPPING, source="toy.csv")
    t = table.copy()
    t.loc[12, "Sex"] = "X"
    with pytest.raises(ValueError, match=r"Sex.*binary but has levels.*P012"):
        sv.prepare_table(t, MAPPING, source="toy.csv")
    t = table.copy()
    t.loc[13, "RFS (days)"] = "-5"
    with pytest.raises(ValueError, match=r"P013.*negative time"):
        sv.prepare_table(t, MAPPING, source="toy.csv")
    t = table.copy()
    t.loc[14, "ID"] = "P000"
    with pytest.raises(ValueError, match=r"P000.*more than once"):
        sv.prepare_table(t, MAPPING, source="toy.csv")
    with pytest.raises(ValueError, match=r"not in the table"):
        sv.prepare_table(table, {**MAPPING, "time": "nope"}, source="toy.csv")
    with pytest.raises(ValueError, match=r"needs a 'reference'"):
        sv.normalise_mapping({**MAPPING, "covariates": [{"column": "Stage", "type": "categorical"}]})
    with pytest.raises(ValueError, match=r"time_unit"):
        sv.normalise_mapping({**MAPPING, "time_unit": "fortnights"})


def test_mapping_is_json_and_gse_mapping_valid():
    for m in (MAPPING, sv.GSE14520_MAPPING, sv.synthetic_mapping()):
        n = sv.normalise_mapping(m)
        json.dumps(n)
    # covariates may also be given as {column: spec}; extra missing tokens add to the defaults
    alt = {**MAPPING, "missing": ["unknown"],
           "covariates": {c["column"]: {k: v for k, v in c.items() if k != "column"} for c in MAPPING["covariates"]}}
    n = sv.normalise_mapping(alt)
    assert [c["name"] for c in n["covariates"]] == ["age", "male", "stage", "afp_high"]
    assert "unknown" in n["missing"] and "NA" in n["missing"]
    t = make_table()
    t.loc[30, "Age"] = "unknown"
    assert np.isnan(sv.prepare_table(t, alt).data.loc["P030", "age"])
    p = sv.gse14520_parameters()
    assert p["chapter"] == "gse14520" and p["column_map"]["id"] == "Affy_GSM"
    json.dumps(p)


def test_split_rules(table):
    prep = sv.prepare_table(table, MAPPING)
    a = sv.split_cohorts(prep, {"method": "stratified", "fraction": 0.3, "seed": 7}, seed=1).data["cohort"].copy()
    prep2 = sv.prepare_table(table, MAPPING)
    b = sv.split_cohorts(prep2, {"method": "stratified", "fraction": 0.3, "seed": 7}, seed=99).data["cohort"]
    assert (a == b).all()  # the rule's own seed wins, deterministic
    prep3 = sv.prepare_table(table, MAPPING)
    c = sv.split_cohorts(prep3, {"method": "stratified", "fraction": 0.3}, seed=8).data["cohort"]
    assert not (a == c).all()
    assert (a == "validation").sum() == int(np.ceil(0.3 * len(a)))  # sklearn rounds the test size up
    ev = prep.data["event"]
    # stratified by event: event rates of the two cohorts differ by less than one patient's share
    r_dev, r_val = ev[a == "development"].mean(), ev[a == "validation"].mean()
    assert abs(r_dev - r_val) < 2 / (a == "validation").sum()
    # a given column
    prep4 = sv.prepare_table(table, MAPPING)
    g = sv.split_cohorts(prep4, "Arm", seed=0, raw=table).data
    assert (g["cohort"] == table.set_index("ID").loc[g.index, "Arm"]).all()
    t = table.copy()
    t.loc[20, "Arm"] = "other"
    with pytest.raises(ValueError, match=r"P020.*'other'"):
        sv.split_cohorts(sv.prepare_table(t, MAPPING), "Arm", seed=0, raw=t)
    with pytest.raises(ValueError, match=r"fraction"):
        sv.split_cohorts(sv.prepare_table(table, MAPPING), {"method": "stratified", "fraction": 1.5}, seed=0)


def test_stepwise_matches_exhaustive_search_on_aic(table):
    """Both-direction stepwise from the full model reaches a local AIC optimum: no single add/drop improves."""
    prep = sv.split_cohorts(sv.prepare_table(table, MAPPING), "Arm", seed=0, raw=table)
    dev = prep.data[prep.data["cohort"] == "development"]
    sel, trace = sv.select_terms(dev, prep.variables, keep=("signature",))
    names = [v["name"] for v in sel]
    assert "signature" in names and "stage" in names  # the planted effects
    assert trace["aic"].is_monotonic_decreasing and trace["action"].iloc[0] == "start"
    sub = dev.dropna(subset=[v["name"] for v in prep.variables])

    def aic(terms):
        f = stats.cox_model(sub, [prep.var(t) for t in terms])
        return -2 * f.loglik + 2 * len(f.params)

    best = aic(names)
    assert best == pytest.approx(trace["aic"].iloc[-1])
    for v in prep.variables:
        if v["name"] == "signature":
            continue
        alt = [n for n in names if n != v["name"]] if v["name"] in names else names + [v["name"]]
        assert aic(alt) >= best - 1e-9
    # with an empty lower scope the signature may go; with keep it stays
    free, _ = sv.select_terms(dev, prep.variables, keep=())
    assert {v["name"] for v in free} <= {v["name"] for v in prep.variables}


def test_pipeline_on_synthetic_table(table, tmp_path):
    prep = sv.split_cohorts(sv.prepare_table(table, MAPPING), "Arm", seed=0, raw=table)
    res = sv.run_survival(prep, landmark=24, n_bootstrap=10, seed=3, progress=False)
    # risk groups: Youden cutoff chosen on development, inside the signature's range
    assert res.cutoff["method"] == "youden" and 0 < res.cutoff["cutoff"] < 1
    assert set(res.prep.data["risk_group"]) == {"high", "low"}
    # KM / log-rank: planted effect found in development
    assert res.km.loc["development", "logrank_p"] < 0.05 and res.km.loc["development", "hr"] > 1
    # Table S1 has the signature and one row per non-reference stage level
    uni = res.univariable.set_index("column")
    assert {"signature", "stage[II]", "stage[III]", "male", "age", "afp_high"} <= set(uni.index)
    assert uni.loc["signature", "hr"] > 1 and uni.loc["signature", "p"] < 0.05
    assert np.isfinite(res.table3[["uni_hr", "multi_hr"]].to_numpy()).all()
    # univariable HR equals a direct lifelines fit
    from lifelines import CoxPHFitter

    dev = res.prep.data[res.prep.data["cohort"] == "development"]
    x = dev[["time", "event"]].assign(signature=dev["signature"] / 0.1)
    direct = CoxPHFitter().fit(x, "time", "event").summary.loc["signature", "exp(coef)"]
    assert uni.loc["signature", "hr"] == pytest.approx(direct, rel=1e-4)  # lifelines' tolerance differs from R
    # Table 4
    t4 = res.table4.set_index(["cohort", "model"])
    for key in t4.index:
        r = t4.loc[key]
        assert r["c_index_lower"] < r["c_index"] < r["c_index_upper"]
        assert 0.5 < r["c_index"] < 1
    assert 0 <= t4.loc[("validation", "Signature"), "c_index_p"] <= 1
    # calibration and decision curves for both cohorts
    assert set(res.calibration["cohort"]) == {"development", "validation"}
    dv = res.calibration[(res.calibration["cohort"] == "development") & (res.calibration["model"] == "Nomogram")]
    assert dv["observed_corrected"].notna().any()
    assert set(res.decision["cohort"]) == {"development", "validation"}
    assert res.decision["treat_none"].eq(0).all()
    assert res.tdauc_time["tdauc"].notna().any()
    # outputs
    paths = sv.save_results(res, tmp_path)
    for name in ("results.json", "nomogram.json", "nomogram.html", "table3_cox.csv", "table4_discrimination.csv",
                 "tableS1_univariable_cox.csv", "cleaning_report.csv", "figure3_km.png", "figure4a_nomogram.png",
                 "figure4bc_calibration.png", "figure4de_decision.png", "figureS1_tdauc.png"):
        assert paths[name].exists() and paths[name].stat().st_size > 0, name
    js = json.loads((tmp_path / "results.json").read_text())
    assert js["n"] == 158 and js["cohorts"]["validation"]["n"] == int((res.prep.data["cohort"] == "validation").sum())
    assert js["signature_hr_uni"]["hr"] == pytest.approx(uni.loc["signature", "hr"])
    # deterministic for a seed
    prep2 = sv.split_cohorts(sv.prepare_table(table, MAPPING), "Arm", seed=0, raw=table)
    res2 = sv.run_survival(prep2, landmark=24, n_bootstrap=10, seed=3, progress=False)
    pd.testing.assert_frame_equal(res.table4, res2.table4)
    pd.testing.assert_frame_equal(res.calibration, res2.calibration)


def test_survival_stage_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, hcc_utils.survival, hcc_utils.nomogram_widget; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _write_synthetic_like(tmp, n=60, seed=0):
    """A manifest with clinical/outcome tables in the manifest schema, and a signature.csv as notebook 04 writes it."""
    rng = np.random.default_rng(seed)
    pids = [f"S{i:03d}" for i in range(n)]
    coh = np.where(np.arange(n) < 40, "development", "validation")
    pd.DataFrame({"patient_id": pids, "cohort": coh, "centre": np.where(coh == "development", 1, 2),
                  "ct_ap": [f"images/{p}_AP.nii.gz" for p in pids], "ct_pp": [f"images/{p}_PP.nii.gz" for p in pids],
                  "seg_train": 0, "clinical_file": "clinical.csv", "outcome_file": "outcome.csv"}
                 ).to_csv(tmp / "data_manifest.csv", index=False)
    sig = rng.uniform(0, 1, n)
    pd.DataFrame({"patient_id": pids, "sex": rng.choice(["M", "F"], n), "age": rng.normal(55, 8, n).round(),
                  "hbsag": rng.integers(0, 2, n), "hbv_dna": rng.integers(0, 2, n), "afp_ge400": rng.integers(0, 2, n),
                  "child_pugh": rng.choice(["A", "B"], n, p=[.85, .15]), "tb": rng.uniform(5, 30, n).round(1),
                  "alb": rng.uniform(30, 50, n).round(1), "alt": rng.uniform(10, 100, n).round(),
                  "ggt": rng.uniform(10, 200, n).round()}).to_csv(tmp / "clinical.csv", index=False)
    t, c = rng.exponential(40 * np.exp(-2 * sig)), rng.uniform(12, 60, n)
    pd.DataFrame({"patient_id": pids, "rfs_months": np.minimum(t, c).round(1), "recurrence": (t <= c).astype(int)}
                 ).to_csv(tmp / "outcome.csv", index=False)
    pd.DataFrame({"patient_id": pids, "cohort": coh, "dsfr_signature": sig}).to_csv(tmp / "signature.csv", index=False)
    return tmp / "data_manifest.csv", tmp / "signature.csv"


def test_synthetic_input_joins_manifest_and_signature(tmp_path):
    man, sig = _write_synthetic_like(tmp_path)
    raw = sv.load_synthetic_table(man, sig)
    prep = sv.split_cohorts(sv.prepare_table(raw, sv.synthetic_mapping()), None, seed=1, raw=raw)
    assert len(prep.data) == 60 and prep.mapping["split"] == {"column": "cohort"}
    assert (prep.data["cohort"] == "development").sum() == 40
    s = pd.read_csv(sig).set_index("patient_id")["dsfr_signature"]
    np.testing.assert_allclose(prep.data["signature"].to_numpy(), s.loc[prep.data.index].to_numpy())
    res = sv.run_survival(prep, 24, n_bootstrap=5, seed=1, progress=False)
    assert res.cutoff["method"] == "youden" and "signature" in res.final_terms
    # a patient without a signature is named
    pd.read_csv(sig).iloc[:-1].to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(ValueError, match=r"S059"):
        sv.load_synthetic_table(man, tmp_path / "short.csv")
    with pytest.raises(FileNotFoundError, match="notebook 04"):
        sv.load_synthetic_table(man, tmp_path / "missing.csv")


@pytest.mark.slow
def test_notebook_runs_on_another_table_with_parameters_only(tmp_path, monkeypatch):
    """Papermill executes notebook 05 on a clinical table it has never seen, through its parameters alone."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    if subprocess.run([sys.executable, "-m", "jupyter", "kernelspec", "list"], capture_output=True,
                      text=True).stdout.find("hcc-dsfr") < 0:
        pytest.skip("the hcc-dsfr kernel is not registered (make env registers it)")
    import papermill as pm

    home = tmp_path / "root"
    home.mkdir()
    shutil.copy(root / "profiles.yaml", home / "profiles.yaml")
    monkeypatch.setenv("HCC_ROOT", str(home))
    table = make_table()
    csv = tmp_path / "toy.csv"
    table.to_csv(csv, index=False)
    out = tmp_path / "executed.ipynb"
    pm.execute_notebook(str(root / "notebooks" / "05_survival_nomogram.ipynb"), str(out), kernel_name="hcc-dsfr",
                        parameters={"profile": "ci", "table_path": str(csv), "column_map": MAPPING, "split": "Arm",
                                    "chapter": "toy", "landmark": 24}, cwd=str(root / "notebooks"),
                        progress_bar=False)
    res_dir = home / "outputs" / "ci" / "survival" / "toy"
    js = json.loads((res_dir / "results.json").read_text())
    assert js["n"] == 158 and js["table"] == "toy"
    for name in ("nomogram.json", "figure3_km.png", "table4_discrimination.csv", "cleaning_report.csv"):
        assert (res_dir / name).exists()
    text = out.read_text()
    assert "hcc-nomogram-data" in text  # the static calculator is in the executed notebook's output


def test_tdauc_at_a_landmark_where_follow_up_ends(table):
    """Administrative censoring at the landmark (the synthetic cohort): tdAUC(24) = AUC of ER among all patients."""
    t = table.copy()
    tm = pd.to_numeric(t["RFS (days)"], errors="coerce") * 12 / 365.25
    late = tm >= 24
    t.loc[late, "RFS (days)"] = str(24 * 365.25 / 12)
    t.loc[late, "Relapse"] = "no"
    t = t[~((tm < 24) & (t["Relapse"] == "no"))]  # no loss to follow-up before the landmark
    prep = sv.split_cohorts(sv.prepare_table(t, MAPPING), "Arm", seed=0, raw=t)
    assert prep.data["time"].max() == pytest.approx(24)
    res = sv.run_survival(prep, landmark=24, n_bootstrap=5, seed=1, progress=False)
    t4 = res.table4
    assert t4["tdauc"].notna().all() and (t4["tdauc_time"] < 24).all()
    # with no censoring before 24 months it is the plain AUC of early recurrence
    from sklearn.metrics import roc_auc_score

    for coh, d in res.predictions.dropna(subset=["nomogram_lp"]).groupby("cohort"):
        assert not ((d["time"] < 24) & (d["event"] == 0)).any()
        r = t4[(t4["cohort"] == coh) & (t4["model"] == "Nomogram")].iloc[0]
        assert r["tdauc"] == pytest.approx(roc_auc_score(d["er"], d["nomogram_lp"]), abs=1e-9)
    assert 24.0 in set(res.tdauc_time["time"])


def test_non_estimable_terms_are_reported_not_fatal(table):
    """A covariate that separates events perfectly must not stop the analysis: it is left out with a note in
    ``skipped_covariates`` (R would say 'coefficient may be infinite')."""
    t = table.copy()
    rng = np.random.default_rng(1)
    relapse_free = np.flatnonzero(t["Relapse"].to_numpy() == "no")
    rare = np.zeros(len(t), dtype=bool)
    rare[rng.choice(relapse_free, 6, replace=False)] = True  # a level held only by patients without an event
    t["Rare"] = np.where(rare, "yes", "no")
    mapping = json.loads(json.dumps(MAPPING))
    mapping["covariates"].append({"column": "Rare", "name": "rare", "type": "binary", "reference": "no"})
    prep = sv.split_cohorts(sv.prepare_table(t, mapping), "Arm", seed=0, raw=t)
    assert prep.data.loc[prep.data["cohort"] == "development", "rare"].sum() > 0
    res = sv.run_survival(prep, landmark=24, n_bootstrap=5, seed=3, progress=False)
    assert "not estimable" in res.results["skipped_covariates"]["rare"]
    assert "rare" not in set(res.univariable["variable"])
    assert np.isfinite(res.table3["uni_hr"]).all()


def test_hr_of_a_group_without_events_is_nan_with_a_warning():
    d = pd.DataFrame({"cohort": ["validation"] * 8, "time": [3, 5, 8, 12, 14, 20, 24, 24.0],
                      "event": [1, 1, 1, 0, 0, 0, 0, 0],
                      "risk_group": ["high", "high", "high", "low", "low", "low", "low", "high"]})
    with pytest.warns(UserWarning, match="not estimable"):
        km = sv.km_table(d)
    assert np.isnan(km.loc["validation", "hr"]) and 0 <= km.loc["validation", "logrank_p"] <= 1


def test_km_figure_has_confidence_bands_and_numbers_at_risk(table):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.collections import PolyCollection

    from hcc_utils.survival import figures

    prep = sv.split_cohorts(sv.prepare_table(table, MAPPING), "Arm", seed=0, raw=table)
    res = sv.run_survival(prep, landmark=24, n_bootstrap=5, seed=3, progress=False)
    fig = figures.plot_km(res)
    panels = [ax for ax in fig.axes if ax.get_title().endswith(")")]
    assert len(panels) == 2
    for ax in panels:
        # a shaded 95% band per risk group
        assert sum(isinstance(c, PolyCollection) for c in ax.collections) == 2
        ticks = ax.get_xticks()
        assert np.allclose(ticks, np.round(ticks)) and ticks[0] == 0
    # the numbers-at-risk rows: one labelled row per group under each panel, counted at the panel's ticks
    tables = [ax for ax in fig.axes if ax not in panels]
    assert len(tables) == 2
    for ax in tables:
        labels = [t.get_text() for t in ax.get_yticklabels()] + [t.get_text() for t in ax.get_xticklabels()]
        assert any("High risk" in lb for lb in labels) and any("Low risk" in lb for lb in labels)
    # the figure's data: KM steps with their band and the numbers at risk
    data = figures.km_curves(res)
    assert {"cohort", "risk_group", "time", "survival", "ci_lower", "ci_upper", "at_risk"} <= set(data.columns)
    assert (data["ci_lower"] <= data["survival"] + 1e-12).all() and (data["survival"] <= data["ci_upper"] + 1e-12).all()
    dev_high = data[(data.cohort == "development") & (data.risk_group == "high")]
    assert dev_high["at_risk"].iloc[0] == int(((res.prep.data.cohort == "development")
                                               & (res.prep.data.risk_group == "high")).sum())
    # tdAUC over time: ticks at whole months
    for ax in figures.plot_tdauc(res).axes:
        ticks = ax.get_xticks()
        assert np.allclose(ticks % 6, 0), ticks
