"""hcc_utils.stats: properties, edge cases and agreement with other libraries (dcurves, scipy, brute force)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from hcc_utils import stats

RDIR = Path(__file__).parent / "r"
R = json.loads((RDIR / "references.json").read_text())


def _brute_auc(y, s):
    pos, neg = s[y == 1], s[y == 0]
    return ((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])).mean()


@pytest.fixture(scope="module")
def toy():
    rng = np.random.default_rng(7)
    n = 400
    y = rng.integers(0, 2, n)
    a = np.round(y + rng.normal(size=n), 1)  # rounded: many ties
    b = np.round(0.5 * y + rng.normal(size=n), 1)
    t = np.round(rng.exponential(20, n))  # tied times
    e = (rng.uniform(size=n) < 0.7).astype(int)
    return y, a, b, t, e


# ---------------------------------------------------------------------------------------------------- ROC
def test_delong_auc_with_ties_equals_brute_force_and_sklearn(toy):
    from sklearn.metrics import roc_auc_score

    y, a, b, *_ = toy
    r = stats.roc_auc_ci(y, a)
    assert r.auc == pytest.approx(_brute_auc(y, a), abs=1e-12)
    assert r.auc == pytest.approx(roc_auc_score(y, a), abs=1e-12)
    assert r.lower < r.auc < r.upper


def test_delong_placements_equal_definition(toy):
    y, a, *_ = toy
    auc, v10, v01 = stats.delong_placements(y, a)
    pos, neg = a[y == 1], a[y == 0]
    np.testing.assert_allclose(v10, ((pos[:, None] > neg) + 0.5 * (pos[:, None] == neg)).mean(1), atol=1e-12)
    np.testing.assert_allclose(v01, ((pos[:, None] > neg) + 0.5 * (pos[:, None] == neg)).mean(0), atol=1e-12)


def test_delong_test_symmetry_and_identical_scores(toy):
    y, a, b, *_ = toy
    ab, ba = stats.delong_test(y, a, b), stats.delong_test(y, b, a)
    assert ab.z == pytest.approx(-ba.z) and ab.p == pytest.approx(ba.p)
    assert ab.z > 0  # a is the better marker by construction
    same = stats.delong_test(y, a, 2 * a + 1)  # monotone transform: identical ROC
    assert same.z == 0 and same.p == 1


def test_booleans_strings_and_ints_agree(toy):
    y, a, *_ = toy
    r1 = stats.roc_auc_ci(y, a)
    r2 = stats.roc_auc_ci(y.astype(bool), a)
    r3 = stats.roc_auc_ci(np.where(y == 1, "ER", "no ER"), a, positive="ER")
    r4 = stats.roc_auc_ci(pd.Series(y, name="er"), pd.Series(a, name="prob"))
    assert r1 == r2 == r3 == r4
    with pytest.raises(ValueError, match="positive"):
        stats.roc_auc_ci(np.where(y == 1, "ER", "no ER"), a)


def test_perfect_separation():
    y = np.array([0, 0, 0, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    r = stats.roc_auc_ci(y, s)
    assert r.auc == 1.0 and r.se == 0.0 and r.upper == 1.0
    assert stats.youden_threshold(y, s) == pytest.approx(0.5)
    m = stats.classification_metrics(y, s, 0.5)
    assert (m.accuracy, m.sensitivity, m.specificity) == (1.0, 1.0, 1.0)


@pytest.mark.parametrize("fn", ["roc_auc_ci", "youden_threshold"])
def test_roc_bad_inputs_raise_clear_errors(fn):
    f = getattr(stats, fn)
    with pytest.raises(ValueError, match="only one class"):
        f(np.ones(10, int), np.arange(10.0))
    with pytest.raises(ValueError, match="missing"):
        f(np.array([0, 1, 0, 1]), np.array([0.1, np.nan, 0.3, 0.4]))
    with pytest.raises(ValueError, match="missing"):
        f(pd.Series([0, 1, None, 1]), np.arange(4.0))
    with pytest.raises(ValueError, match="length mismatch"):
        f(np.array([0, 1, 0, 1]), np.arange(5.0))
    with pytest.raises(ValueError, match="0/1"):
        f(np.array([0, 1, 2, 1]), np.arange(4.0))


def test_missing_value_error_names_the_row():
    s = pd.Series([0.1, 0.2, np.nan, 0.4], index=["P001", "P002", "P003", "P004"], name="dsfr_prob")
    with pytest.raises(ValueError, match=r"dsfr_prob.*P003"):
        stats.roc_auc_ci(np.array([0, 1, 0, 1]), s)


def test_bootstrap_auc_is_seeded_and_independent_of_n_jobs(toy):
    y, a, *_ = toy
    r1 = stats.bootstrap_auc_ci(y, a, n_boot=200, seed=3, n_jobs=1)
    r2 = stats.bootstrap_auc_ci(y, a, n_boot=200, seed=3, n_jobs=2)
    r3 = stats.bootstrap_auc_ci(y, a, n_boot=200, seed=4, n_jobs=1)
    assert r1 == r2
    assert r1 != r3
    d = stats.roc_auc_ci(y, a)
    assert r1.lower < d.auc < r1.upper
    assert r1.se == pytest.approx(d.se, rel=0.3)  # bootstrap SD close to the DeLong SE


def test_logistic_calibration_curve_perfectly_calibrated_data():
    rng = np.random.default_rng(0)
    p = rng.uniform(0.05, 0.95, 5000)
    y = (rng.uniform(size=p.size) < p).astype(int)
    cal = stats.logistic_calibration_curve(y, p, n_groups=10)
    assert cal["slope"] == pytest.approx(1.0, abs=0.15)
    assert cal["intercept"] == pytest.approx(0.0, abs=0.1)
    assert cal["citl"] == pytest.approx(0.0, abs=0.1)
    g = cal["groups"]
    assert len(g) == 10 and (np.abs(g["observed"] - g["predicted"]) < 0.08).all()
    with pytest.raises(ValueError, match="strictly between"):
        stats.logistic_calibration_curve(y, np.clip(p, 0, 0.5) * 2)


# ------------------------------------------------------------------------------------------------ survival
def test_survival_bad_inputs(toy):
    *_, t, e = toy
    risk = np.arange(len(t), dtype=float)
    with pytest.raises(ValueError, match="all .* censored"):
        stats.km_median(t, np.zeros_like(e))
    with pytest.raises(ValueError, match="all .* censored"):
        stats.harrell_c(t, np.zeros_like(e), risk)
    with pytest.raises(ValueError, match="all .* censored"):
        stats.time_dependent_auc(t, np.zeros_like(e), risk, 10)
    with pytest.raises(ValueError, match="negative"):
        stats.km_median(-t, e)
    with pytest.raises(ValueError, match="missing"):
        stats.harrell_c(np.r_[t[:-1], np.nan], e, risk)
    with pytest.raises(ValueError, match="length mismatch"):
        stats.logrank(t, e, np.zeros(3))
    with pytest.raises(ValueError, match="no controls"):
        stats.time_dependent_auc(t, e, risk, t.max() + 1)
    with pytest.raises(ValueError, match="no cases"):
        stats.time_dependent_auc(t + 5, e, risk, 1)
    with pytest.raises(ValueError, match="two groups"):
        stats.logrank(t, e, np.zeros(len(t)))


def test_harrell_c_brute_force_with_ties(toy):
    _, a, _, t, e = toy
    c = stats.harrell_c(t, e, a)
    num = den = 0.0
    for i in np.flatnonzero(e == 1):
        comp = (t > t[i]) | ((t == t[i]) & (e == 0))
        den += comp.sum()
        num += ((a[i] > a[comp]) + 0.5 * (a[i] == a[comp])).sum()
    assert c.c == pytest.approx(num / den, abs=1e-12)


def test_harrell_c_perfect_and_reversed():
    t = np.arange(1.0, 11.0)
    e = np.ones(10, int)
    assert stats.harrell_c(t, e, -t).c == 1.0
    assert stats.harrell_c(t, e, t).c == 0.0
    assert stats.harrell_c(t, e, np.ones(10)).c == 0.5


def test_cox_table_errors_and_categorical(toy):
    y, a, b, t, e = toy
    df = pd.DataFrame({"t": t, "e": e, "a": a, "grade": np.where(y == 1, "B", "A"), "const": 1.0})
    tab = stats.cox_table(df, "t", "e", ["a", "grade"])
    assert list(tab.columns[:6]) == ["coef", "se", "hr", "hr_lower", "hr_upper", "z"]
    assert "grade[B]" in tab.index and (tab["hr_lower"] < tab["hr"]).all() and (tab["hr"] < tab["hr_upper"]).all()
    with pytest.raises(ValueError, match="constant"):
        stats.cox_table(df, "t", "e", ["a", "const"])
    df.loc[3, "a"] = np.nan
    with pytest.raises(ValueError, match=r"'a'.*missing.*\[3\]"):
        stats.cox_table(df, "t", "e", ["a"])
    with pytest.raises(ValueError, match="not found"):
        stats.cox_table(df, "t", "e", ["nope"])


def test_cox_perfect_separation_raises():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"t": np.r_[rng.uniform(0, 5, 30), rng.uniform(6, 10, 30)], "e": np.r_[np.ones(30), np.zeros(30)],
                       "x": np.r_[np.ones(30), np.zeros(30)], "z": rng.normal(size=60)})
    with pytest.raises(ValueError, match=r"\['x'\] diverge"):
        stats.cox_table(df, "t", "e", ["x", "z"])


def test_cox_screen_and_multivariable():
    lung = pd.read_csv(RDIR / "data" / "lung.csv").dropna()
    tab, screen, sel = stats.cox_multivariable(lung, "time", "event", ["age", "sex", "ph_ecog", "meal_cal"], 0.05)
    assert set(screen["variable"]) == {"age", "sex", "ph_ecog", "meal_cal"}
    assert sel == [v for v in ["age", "sex", "ph_ecog", "meal_cal"]
                   if screen.set_index("variable").loc[v, "p_variable"] < 0.05]
    assert list(tab.index) == ["age", "sex[male]", "ph_ecog"]
    # LR p for a 3-level factor in the screen
    lung = lung.assign(ecog=lung["ph_ecog"].clip(upper=2).astype(int).astype(str))
    sc = stats.cox_univariable_screen(lung, "time", "event", ["ecog"])
    assert len(sc) == 2 and sc["p_variable"].nunique() == 1


def test_td_auc_t_equal_event_time_counts_case_as_T_le_t():
    # the only case exactly at t: with T <= t it is a case (riskRegression/sksurv); timeROC's T < t would drop it
    t = np.array([1.0, 2, 3, 4, 5, 6, 7, 8])
    e = np.array([1, 0, 1, 1, 0, 1, 0, 1])
    m = np.array([8.0, 1, 7, 6, 2, 5, 3, 4])
    r = stats.time_dependent_auc(t, e, m, 4.0)
    assert r.n_cases == 3
    r2 = stats.time_dependent_auc(t, e, m, 3.999)
    assert r2.n_cases == 2


def test_compare_bootstrap_methods_seeded():
    lp = pd.read_csv(RDIR / "data" / "lung_lp.csv")
    a = stats.compare_c_index(lp["time"], lp["event"], lp["lp"], lp["lp_b"], method="bootstrap", n_boot=100,
                              seed=5, n_jobs=1)
    b = stats.compare_c_index(lp["time"], lp["event"], lp["lp"], lp["lp_b"], method="bootstrap", n_boot=100,
                              seed=5, n_jobs=2)
    assert a == b
    ij = stats.compare_c_index(lp["time"], lp["event"], lp["lp"], lp["lp_b"])
    assert a.se_diff == pytest.approx(ij.se_diff, rel=0.35)
    c1 = stats.bootstrap_c_index_ci(lp["time"], lp["event"], lp["lp"], n_boot=100, seed=1, n_jobs=1)
    c2 = stats.bootstrap_c_index_ci(lp["time"], lp["event"], lp["lp"], n_boot=100, seed=1, n_jobs=2)
    assert c1 == c2 and c1.lower < c1.c < c1.upper


def test_calibration_apparent_part_matches_rms_and_is_seeded():
    ref = R["calibrate_km"]
    lung = pd.read_csv(RDIR / "data" / "lung.csv")
    lung = lung[lung["ph_ecog"].notna()]
    kw = dict(m=ref["m"], n_boot=12, seed=2)
    c1 = stats.calibration_at_time(lung, "time", "event", ["age", "sex", "ph_ecog"], ref["u"], n_jobs=1, **kw)
    c2 = stats.calibration_at_time(lung, "time", "event", ["age", "sex", "ph_ecog"], ref["u"], n_jobs=2, **kw)
    pd.testing.assert_frame_equal(c1.table, c2.table)
    tab = c1.table
    # KM per group and its SE are identical to rms; mean predictions differ by cph's looser convergence (eps=1e-4)
    np.testing.assert_allclose(tab["km"], ref["KM"], atol=1e-6)
    np.testing.assert_allclose(tab["std_err"], ref["std_err"], atol=1e-6)
    np.testing.assert_allclose(tab["mean_predicted"], ref["mean_predicted"], atol=1e-3)
    # the same grouping from the apparent predictions
    ext = stats.calibration_from_predictions(lung["time"], lung["event"], c1.predicted, ref["u"], n_groups=len(tab))
    np.testing.assert_allclose(ext["km"], tab["km"], atol=1e-12)
    np.testing.assert_allclose(ext["mean_predicted"], tab["mean_predicted"], atol=1e-12)
    # optimism is small relative to the spread of observed survival (bootstrap draws differ from R's)
    assert np.all(np.abs(tab["optimism"]) < 0.1)
    assert np.all(np.abs(tab["km_corrected"] - np.asarray(ref["KM_corrected"])) < 0.1)


# ----------------------------------------------------------------------------------------------- Table 1
def test_table_one_cells_and_tests():
    rng = np.random.default_rng(2)
    n = 120
    df = pd.DataFrame({"cohort": np.repeat(["development", "validation"], n // 2),
                       "age": rng.normal(60, 10, n), "afp": rng.lognormal(3, 1, n),
                       "sex": rng.choice(["M", "F"], n, p=[0.8, 0.2]),
                       "child_pugh": np.r_[np.repeat("A", 112), np.repeat("B", 8)]})
    df.loc[5, "afp"] = np.nan
    tab = stats.table_one(df, "cohort", normal=["age"], skewed=["afp"], categorical=["sex", "child_pugh"])
    first = tab.drop_duplicates("variable").set_index("variable")
    d, v = df[df.cohort == "development"], df[df.cohort == "validation"]
    assert first.loc["age", "p"] == pytest.approx(sps.ttest_ind(d.age, v.age).pvalue)
    assert first.loc["afp", "missing"] == 1
    assert first.loc["sex", "test"] == "Pearson chi-square"
    ct = pd.crosstab(df.sex, df.cohort).to_numpy()
    assert first.loc["sex", "p"] == pytest.approx(sps.chi2_contingency(ct, correction=False)[1])
    # 0 vs 8 Child-Pugh B: expected counts < 5 -> Fisher, equal to scipy's exact 2x2
    assert first.loc["child_pugh", "test"] == "Fisher's exact"
    ct = pd.crosstab(df.child_pugh, df.cohort).to_numpy()
    assert first.loc["child_pugh", "p"] == pytest.approx(sps.fisher_exact(ct)[1], abs=1e-12)
    lv = tab[(tab.variable == "child_pugh") & (tab.level == "B")].iloc[0]
    assert lv["development"] == "0 (0.0%)" and lv["validation"] == "8 (13.3%)"
    with pytest.raises(ValueError, match="not found"):
        stats.table_one(df, "cohort", normal=["nope"])
    with pytest.raises(ValueError, match="missing"):
        stats.table_one(df.assign(cohort=df.cohort.where(df.index != 0)), "cohort", normal=["age"])


@pytest.mark.parametrize("tab", [[[3, 1], [1, 5]], [[10, 2], [3, 15]], [[0, 5], [6, 1]]])
def test_fisher_rxc_equals_scipy_for_2x2(tab):
    assert stats.fisher_exact_rxc(tab) == pytest.approx(sps.fisher_exact(tab)[1], abs=1e-12)


# ------------------------------------------------------------------------------------------ net benefit
def test_net_benefit_hand_computed():
    y = np.array([1, 1, 0, 0, 1, 0, 0, 0, 1, 0])
    p = np.array([0.9, 0.6, 0.55, 0.2, 0.3, 0.1, 0.7, 0.05, 0.45, 0.3])
    nb = stats.net_benefit(y, p, [0.3, 0.5])
    # pt = 0.3: treated p >= 0.3 -> idx 0,1,2,4,6,8,9 -> TP 4 (0,1,4,8), FP 3 (2,6,9)
    assert nb["model"].iloc[0] == pytest.approx(4 / 10 - 3 / 10 * 0.3 / 0.7)
    # pt = 0.5: treated 0,1,2,6 -> TP 2, FP 2
    assert nb["model"].iloc[1] == pytest.approx(2 / 10 - 2 / 10 * 1.0)
    assert nb["treat_all"].iloc[0] == pytest.approx(0.4 - 0.6 * 0.3 / 0.7)
    assert (nb["treat_none"] == 0).all()


def test_net_benefit_matches_dcurves_binary_and_boolean_outcome(toy):
    from dcurves import dca

    y, a, *_ = toy
    prob = 1 / (1 + np.exp(-a))
    th = np.round(np.arange(0.05, 0.96, 0.05), 2)
    ours = stats.net_benefit(y.astype(bool), prob, th)
    ref = dca(data=pd.DataFrame({"y": y.astype(int), "p": prob}), outcome="y", modelnames=["p"], thresholds=th)
    np.testing.assert_allclose(ours["model"], ref[ref.model == "p"]["net_benefit"], atol=1e-12)
    np.testing.assert_allclose(ours["treat_all"], ref[ref.model == "all"]["net_benefit"], atol=1e-12)


def test_survival_net_benefit_matches_dcurves():
    from dcurves import dca

    lp = pd.read_csv(RDIR / "data" / "lung_lp.csv")
    risk = 1 - 0.6 ** np.exp(lp["lp"])  # a predicted risk of death by t
    th = np.round(np.arange(0.1, 0.91, 0.1), 2)
    ours = stats.survival_net_benefit(lp["time"], lp["event"], risk, 365, th)
    ref = dca(data=pd.DataFrame({"time": lp["time"], "event": lp["event"], "risk": risk}), outcome="event",
              modelnames=["risk"], thresholds=th, time=365, time_to_outcome_col="time")
    np.testing.assert_allclose(ours["model"], ref[ref.model == "risk"]["net_benefit"], atol=1e-9)
    np.testing.assert_allclose(ours["treat_all"], ref[ref.model == "all"]["net_benefit"], atol=1e-9)
