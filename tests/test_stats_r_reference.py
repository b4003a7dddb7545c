"""hcc_utils.stats against reference values computed with R (tests/r/make_references.R -> tests/r/references.json).

R is not needed: the data sets and the R results are committed under tests/r/.
Tolerances: 1e-6 for closed forms, 1e-3 for time-dependent AUC and C-index standard errors (measured differences
are far smaller; see the report in hcc_utils/stats/__init__.py).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hcc_utils import stats

RDIR = Path(__file__).parent / "r"
R = json.loads((RDIR / "references.json").read_text())
CLOSED = 1e-6


def _na(x):
    return np.nan if x == "NA" else x


@pytest.fixture(scope="module")
def asah():
    return pd.read_csv(RDIR / "data" / "aSAH.csv")


@pytest.fixture(scope="module")
def lung():
    return pd.read_csv(RDIR / "data" / "lung.csv")


@pytest.fixture(scope="module")
def lung_lp():
    return pd.read_csv(RDIR / "data" / "lung_lp.csv")


@pytest.fixture(scope="module")
def pbc():
    return pd.read_csv(RDIR / "data" / "pbc.csv")


@pytest.mark.parametrize("marker", ["s100b", "ndka", "wfns", "age"])
def test_delong_ci_matches_pROC(asah, marker):
    ref = R["asah_auc"][marker]
    r = stats.roc_auc_ci(asah["poor"], asah[marker])
    assert r.auc == pytest.approx(ref["auc"], abs=CLOSED)
    assert r.lower == pytest.approx(ref["lower"], abs=CLOSED)
    assert r.upper == pytest.approx(ref["upper"], abs=CLOSED)
    assert r.se ** 2 == pytest.approx(ref["var"], abs=1e-9)
    r90 = stats.roc_auc_ci(asah["outcome"], asah[marker], level=0.90, positive="Poor")
    assert r90.lower == pytest.approx(ref["lower90"], abs=CLOSED)
    assert r90.upper == pytest.approx(ref["upper90"], abs=CLOSED)


@pytest.mark.parametrize("i", range(4))
def test_delong_paired_test_matches_pROC(asah, i):
    ref = R["asah_test"][i]
    r = stats.delong_test(asah["poor"], asah[ref["a"]], asah[ref["b"]])
    assert r.auc_a == pytest.approx(ref["auc_a"], abs=CLOSED)
    assert r.auc_b == pytest.approx(ref["auc_b"], abs=CLOSED)
    assert r.z == pytest.approx(ref["z"], abs=CLOSED)
    assert r.p == pytest.approx(ref["p"], abs=CLOSED)


@pytest.mark.parametrize("marker", ["s100b", "ndka", "wfns", "age"])
def test_youden_matches_pROC_coords_best(asah, marker):
    ref = R["asah_auc"][marker]
    thr = stats.youden_threshold(asah["poor"], asah[marker])
    assert thr == pytest.approx(np.min(ref["best_thresholds"]), abs=CLOSED)
    m = stats.classification_metrics(asah["poor"], asah[marker], thr)
    assert m.sensitivity == pytest.approx(np.atleast_1d(ref["best_sens"])[0], abs=CLOSED)
    assert m.specificity == pytest.approx(np.atleast_1d(ref["best_spec"])[0], abs=CLOSED)


def test_classification_metrics_match_pROC(asah):
    ref = R["asah_metrics_s100b_0.205"]
    m = stats.classification_metrics(asah["outcome"], asah["s100b"], 0.205, positive="Poor")
    for k in ("accuracy", "sensitivity", "specificity", "ppv", "npv"):
        assert getattr(m, k) == pytest.approx(ref[k], abs=CLOSED), k


def test_km_median_matches_survfit(lung):
    for key, level in (("lung_km", 0.95), ("lung_km90", 0.90)):
        r = stats.km_median(lung["time"], lung["event"], level=level)
        assert (r.median, r.lower, r.upper) == pytest.approx(tuple(R[key][k] for k in ("median", "lower", "upper")))
    ref = R["lung_km_by_sex"]
    for i, s in enumerate(ref["strata"]):
        d = lung[lung["sex"] == s.split("=")[1]]
        r = stats.km_median(d["time"], d["event"])
        assert (r.median, r.lower, r.upper) == pytest.approx((ref["median"][i], ref["lower"][i], ref["upper"][i]))


@pytest.mark.parametrize("key", ["a", "b", "c"])
def test_km_median_ties_and_exact_half(key):
    ref = R["tiny_km"][key]
    r = stats.km_median(ref["time"], ref["event"])
    np.testing.assert_allclose([r.median, r.lower, r.upper],
                               [_na(ref["median"]), _na(ref["lower"]), _na(ref["upper"])], atol=CLOSED)


def test_logrank_matches_survdiff(lung):
    r = stats.logrank(lung["time"], lung["event"], lung["sex"])
    assert r.chisq == pytest.approx(R["lung_logrank_sex"]["chisq"], abs=CLOSED)
    assert r.p == pytest.approx(R["lung_logrank_sex"]["p"], abs=CLOSED)
    d = lung[lung["ph_ecog"].notna() & (lung["ph_ecog"] < 3)]
    r = stats.logrank(d["time"], d["event"], d["ph_ecog"])
    assert r.df == 2
    assert r.chisq == pytest.approx(R["lung_logrank_ecog"]["chisq"], abs=CLOSED)
    assert r.p == pytest.approx(R["lung_logrank_ecog"]["p"], abs=CLOSED)


def test_cox_table_matches_coxph_efron(lung):
    d = lung[lung["ph_ecog"].notna()]
    tab = stats.cox_table(d, "time", "event", ["age", "sex", "ph_ecog"], reference={"sex": "female"})
    ref = R["lung_cox"]
    assert list(tab.index) == ["age", "sex[male]", "ph_ecog"]
    for col in ("coef", "se", "hr", "hr_lower", "hr_upper", "p"):
        np.testing.assert_allclose(tab[col], ref[col], atol=CLOSED, rtol=1e-6, err_msg=col)
    assert tab.attrs["loglik"] == pytest.approx(ref["loglik"], abs=1e-6)


def test_cox_table_factor_dummies_match_coxph(lung):
    d = lung[lung["ph_ecog"].notna()].assign(ecog_f=lambda x: x["ph_ecog"].astype(int).astype(str))
    tab = stats.cox_table(d, "time", "event", ["age", "sex", "ecog_f"])
    ref = R["lung_cox_factor"]
    assert list(tab.index) == ["age", "sex[male]", "ecog_f[1]", "ecog_f[2]", "ecog_f[3]"]
    for col in ("coef", "hr_lower", "hr_upper", "p"):
        np.testing.assert_allclose(tab[col], ref[col], atol=1e-6, rtol=1e-6, err_msg=col)


@pytest.mark.parametrize("key,col", [("lung_concordance_lp", "lp"), ("lung_concordance_ecog", "ph_ecog"),
                                     ("lung_concordance_age", "age")])
def test_harrell_c_matches_concordance(lung_lp, key, col):
    ref = R[key]
    r = stats.harrell_c(lung_lp["time"], lung_lp["event"], lung_lp[col])
    assert r.c == pytest.approx(ref["c"], abs=CLOSED)
    assert r.se == pytest.approx(ref["se"], abs=1e-6)  # required 1e-3; agrees to ~1e-15
    if "count" in ref:
        assert r.concordant == ref["count"]["concordant"]
        assert r.discordant == ref["count"]["discordant"]
        assert r.tied_risk == ref["count"]["tied.x"]


@pytest.mark.parametrize("i", range(12))
def test_td_auc_matches_riskRegression_score(pbc, i):
    ref = R["pbc_tdauc"][i]
    d = pbc.dropna(subset=["bili", "albumin", "age", "protime"])
    assert len(d) == R["pbc_tdauc_n"]
    marker = np.log(d["bili"]) - 2 * np.log(d["albumin"]) + 0.03 * d["age"] if ref["marker"] == "marker" else d[ref["marker"]]
    r = stats.time_dependent_auc(d["time"], d["event"], marker, ref["t"])
    assert r.auc == pytest.approx(ref["auc"], abs=1e-6)
    assert r.se == pytest.approx(ref["se"], abs=1e-6)  # required 1e-3; measured <= 3e-8
    assert r.lower == pytest.approx(ref["lower"], abs=1e-6)
    assert r.upper == pytest.approx(ref["upper"], abs=1e-6)


def test_td_auc_agrees_with_scikit_survival(pbc):
    from sksurv.metrics import cumulative_dynamic_auc
    from sksurv.util import Surv

    d = pbc.dropna(subset=["bili"])
    y = Surv.from_arrays(d["event"].astype(bool), d["time"])
    for t in (1000.0, 2000.0):
        auc, _ = cumulative_dynamic_auc(y, y, d["bili"].to_numpy(), [t])
        # scikit-survival's censoring KM treats censorings tied with events differently from prodlim's reverse KM
        # (riskRegression, matched to 1e-15 above): ~1e-5 apart on pbc.
        assert stats.time_dependent_auc(d["time"], d["event"], d["bili"], t).auc == pytest.approx(auc[0], abs=1e-4)


def test_table_one_tests_match_R(pbc):
    T = R["pbc_table1"]
    tab = stats.table_one(pbc, "trt", normal=list(T["normal"]), skewed=list(T["skewed"]),
                          categorical=list(T["categorical"]))
    first = tab.drop_duplicates("variable").set_index("variable")
    for v, ref in T["normal"].items():
        assert first.loc[v, "p"] == pytest.approx(ref["p"], abs=CLOSED)
        assert first.loc[v, "test"] == "Student's t"
        d = pbc[v].dropna()
        assert first.loc[v, "1"] == f"{ref['mean'][0]:.1f} ({ref['sd'][0]:.1f})"
        assert d.size > 0
    for v, ref in T["skewed"].items():
        assert first.loc[v, "p"] == pytest.approx(ref["p"], abs=CLOSED)
        assert first.loc[v, "test"] == "Mann-Whitney U"
        q = ref["q1"]
        assert first.loc[v, "1"] == f"{q[1]:.1f} ({q[0]:.1f}-{q[2]:.1f})"
    for v, ref in T["categorical"].items():
        if ref["min_expected"] < 5:
            assert first.loc[v, "test"] == "Fisher's exact"
            assert first.loc[v, "p"] == pytest.approx(ref["fisher_p"], abs=CLOSED)
        else:
            assert first.loc[v, "test"] == "Pearson chi-square"
            assert first.loc[v, "p"] == pytest.approx(ref["chisq_p"], abs=CLOSED)
        # both tests available separately, whatever the rule chose
        counts = np.asarray(ref["counts"])
        assert stats.fisher_exact_rxc(counts) == pytest.approx(ref["fisher_p"], abs=CLOSED)


@pytest.mark.parametrize("i", range(7))
def test_fisher_rxc_matches_fisher_test(i):
    ref = R["fisher"][i]
    assert stats.fisher_exact_rxc(np.asarray(ref["table"])) == pytest.approx(ref["p"], abs=CLOSED)


def test_compare_c_index_matches_concordance_pair(lung_lp):
    ref = R["lung_concordance_pair"]
    r = stats.compare_c_index(lung_lp["time"], lung_lp["event"], lung_lp["lp"], lung_lp["lp_b"])
    assert (r.a, r.b) == pytest.approx(tuple(ref["c"]), abs=CLOSED)
    assert r.se_diff == pytest.approx(ref["se_diff"], abs=1e-6)


@pytest.mark.parametrize("i", range(2))
def test_compare_td_auc_matches_score_contrast(pbc, i):
    ref = R["pbc_tdauc_compare"][i]
    d = pbc.dropna(subset=["bili", "albumin", "age", "protime"])
    marker = np.log(d["bili"]) - 2 * np.log(d["albumin"]) + 0.03 * d["age"]
    # riskRegression: delta = AUC(model b = bili) - AUC(reference a = marker)
    r = stats.compare_td_auc(d["time"], d["event"], d["bili"], marker, ref["t"])
    assert r.diff == pytest.approx(ref["delta"], abs=1e-6)
    assert r.se_diff == pytest.approx(ref["se"], abs=1e-6)
    assert r.p == pytest.approx(ref["p"], abs=1e-6)


def test_stepwise_aic_matches_R_step(lung):
    d = lung.dropna()
    ref = R["lung_step"]
    assert len(d) == ref["n"]
    r = stats.stepwise_aic(d, "time", "event", ["age", "sex", "ph_ecog", "ph_karno", "wt_loss", "meal_cal"])
    assert sorted(r.selected) == sorted(ref["selected"])
    assert r.aic == pytest.approx(ref["aic"], abs=1e-6)
    assert r.path["aic"].is_monotonic_decreasing
    kept = stats.stepwise_aic(d, "time", "event", ["age", "sex", "ph_ecog", "ph_karno", "wt_loss", "meal_cal"],
                              keep=["age"])
    assert "age" in kept.selected and kept.aic >= r.aic
    fwd = stats.stepwise_aic(d, "time", "event", ["age", "sex", "ph_ecog", "ph_karno", "wt_loss", "meal_cal"],
                             direction="forward")
    assert fwd.path["move"].iloc[1:].eq("+").all()


def test_logistic_calibration_matches_val_prob():
    ref = R["val_prob"]
    d = pd.read_csv(RDIR / "data" / "aSAH_prob.csv")
    cal = stats.logistic_calibration_curve(d["poor"], d["prob"])
    assert cal["intercept"] == pytest.approx(ref["intercept"], abs=1e-6)
    assert cal["slope"] == pytest.approx(ref["slope"], abs=1e-6)
    assert cal["brier"] == pytest.approx(ref["brier"], abs=1e-9)
    p2 = 1 / (1 + np.exp(-(0.5 * np.log(d["prob"] / (1 - d["prob"])) - 0.3)))
    cal2 = stats.logistic_calibration_curve(d["poor"], p2)
    assert cal2["intercept"] == pytest.approx(ref["intercept2"], abs=1e-6)
    assert cal2["slope"] == pytest.approx(ref["slope2"], abs=1e-6)
    assert cal2["citl"] == pytest.approx(ref["citl2"], abs=1e-6)
    assert cal2["brier"] == pytest.approx(ref["brier2"], abs=1e-9)
