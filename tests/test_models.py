"""Tests for hcc_utils.models on small synthetic feature tables (no images, no network)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from hcc_utils import classifiers, models, stats
from hcc_utils.manifest import CLINICAL_VARIABLES

from _tables import patient_table

GRID = {"C": [0.05, 1.0], "max_iter": [100], "tol": [1e-4, 1e-3]}


def make_cohort(n_dev=80, n_val=40, n_feat=20, signal=1.5, seed=0):
    """Patient table + AP/PP feature tables; ER depends on a latent that the first features carry (times signal)."""
    pt, rng, lat = patient_table(n_dev, n_val, seed, prefix="S", latent=True)
    n, idx = n_dev + n_val, pt.index
    feats = {}
    for k, ph in enumerate(["AP", "PP"]):
        F = rng.normal(size=(n, n_feat))
        F[:, :3] += signal * (0.5 + k) * lat[:, None]
        feats[ph] = pd.DataFrame(F, index=idx, columns=[f"dec1_c{j}" for j in range(n_feat)])
    feats["DP"] = pd.concat([feats["AP"].add_prefix("AP_"), feats["PP"].add_prefix("PP_")], axis=1)
    return pt, feats, lat


@pytest.fixture(scope="module")
def cohort():
    return make_cohort()


@pytest.fixture(scope="module")
def comparison(cohort):
    pt, feats, _ = cohort
    return models.run_comparison(pt, feats, GRID, n_folds=3, seed=7, progress=False)


def test_grid_translation_and_errors():
    g = classifiers.param_grid({"C": [0.1, 1], "max_iter": [100.0], "tol": [1e-4]})
    assert g == {"clf__C": [0.1, 1.0], "clf__max_iter": [100], "clf__tol": [1e-4]}
    with pytest.raises(ValueError, match="unknown keys"):
        classifiers.param_grid({"C": [1], "max_iter": [1], "tol": [1], "penalty": ["l1"]})
    with pytest.raises(ValueError, match="'tol'"):
        classifiers.param_grid({"C": [1], "max_iter": [1]})


def test_grid_search_deterministic(cohort):
    pt, feats, _ = cohort
    dev = pt.cohort == "development"
    X, y = feats["AP"][dev], pt.loc[dev, "er"]
    a = classifiers.fit_nested("a", X, y, feats["AP"][~dev], GRID, 3, seed=11)
    b = classifiers.fit_nested("b", X, y, feats["AP"][~dev], GRID, 3, seed=11)
    np.testing.assert_array_equal(a.cv_prob.to_numpy(), b.cv_prob.to_numpy())
    np.testing.assert_array_equal(a.val_prob.to_numpy(), b.val_prob.to_numpy())
    assert a.best_params == b.best_params and a.fold_params == b.fold_params
    c = classifiers.fit_nested("c", X, y, feats["AP"][~dev], GRID, 3, seed=12)
    assert not np.array_equal(a.cv_prob.to_numpy(), c.cv_prob.to_numpy())  # the seed does matter


def test_nested_cv_equals_sklearn_cross_val_predict(cohort):
    """The hand-written outer loop is exactly cross_val_predict(GridSearchCV) over the same outer folds."""
    pt, feats, _ = cohort
    dev = pt.cohort == "development"
    X, y = feats["PP"][dev], pt.loc[dev, "er"]
    f = classifiers.fit_nested("PP", X, y, None, GRID, 3, seed=5)
    outer = StratifiedKFold(n_splits=3, shuffle=True, random_state=5)
    ref = cross_val_predict(classifiers.make_search(GRID, 3, 6), X.to_numpy(), y.to_numpy(), cv=outer,
                            method="predict_proba")[:, 1]
    np.testing.assert_allclose(f.cv_prob.to_numpy(), ref, rtol=0, atol=1e-12)
    assert len(f.fold_params) == 3 and f.n_folds == (3, 3)


PAPER_GRID = {"C": [0.01, 0.1, 0.5, 1.2], "max_iter": [5, 20, 100, 500], "tol": [1e-5, 1e-3, 1e-2]}


@pytest.mark.parametrize("missing,n_jobs", [(False, 1), (True, 1), (False, 2)])
def test_converged_grid_search_equals_gridsearchcv(missing, n_jobs):
    """ConvergedGridSearch gives exactly GridSearchCV's scores, choice and refit, while running fewer fits.

    max_iter 5 and 20 stop lbfgs before convergence (so those candidates really differ), 100/500 mostly converge;
    with ``missing`` a few blank values go through the median imputer."""
    rng = np.random.default_rng(3)
    n, p = 90, 60  # p comparable to n: large C needs many iterations, as with the deep features
    X = rng.normal(size=(n, p)) * rng.uniform(0.5, 20, p)
    y = (X[:, 0] / X[:, 0].std() + rng.normal(size=n) > 0.3).astype(int)
    if missing:
        X[rng.random(X.shape) < 0.02] = np.nan
    ref = classifiers.make_search(PAPER_GRID, 4, 9).fit(X, y)
    fast = classifiers.ConvergedGridSearch(PAPER_GRID, 4, 9, n_jobs=n_jobs).fit(X, y)
    np.testing.assert_array_equal(fast.cv_results_["mean_test_score"], ref.cv_results_["mean_test_score"])
    np.testing.assert_array_equal(fast.cv_results_["rank_test_score"], ref.cv_results_["rank_test_score"])
    assert fast.best_params_ == ref.best_params_ and fast.best_score_ == ref.best_score_
    np.testing.assert_array_equal(fast.predict_proba(X), ref.predict_proba(X))
    # some candidates differ (early stopping is real) and fits were saved
    assert len(np.unique(ref.cv_results_["mean_test_score"])) > 4
    assert fast.cv_results_["n_lbfgs_fits"] < 0.6 * 4 * len(fast.cv_results_["params"])


def test_direct_lbfgs_equals_logistic_regression():
    """The grid search's own lbfgs call gives LogisticRegression's coefficients, intercept and iteration count bit
    for bit: converged and stopped early (max_iter 3), weak and strong penalties, more features than patients."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(11)
    cases = 0
    for n, p in [(40, 3), (90, 60), (60, 130)]:
        X = rng.normal(size=(n, p)) * rng.uniform(0.2, 5, p)
        y = (X[:, 0] + rng.normal(size=n) > 0).astype(int)
        for C in (0.01, 1.2, 50.0):
            for tol, max_iter in ((1e-5, 500), (1e-2, 100), (1e-5, 3)):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    ref = LogisticRegression(C=C, tol=tol, max_iter=max_iter, random_state=0).fit(X, y)
                coef, b, k = classifiers.lbfgs_logistic(X, y, C, tol, max_iter)
                np.testing.assert_array_equal(coef, ref.coef_)
                np.testing.assert_array_equal(b, ref.intercept_)
                assert k == int(ref.n_iter_.max())
                Xt = rng.normal(size=(7, p))
                np.testing.assert_array_equal((Xt @ coef.T + b).reshape(-1), ref.decision_function(Xt))
                cases += 1
    assert cases == 27
    with pytest.raises(ValueError, match="two classes"):
        classifiers.lbfgs_logistic(X, np.zeros(len(X)), 1.0, 1e-4, 100)


def test_fold_auc_equals_roc_auc_score():
    """The grid search's AUC is roc_auc_score's float, bit for bit, with and without tied scores."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(5)
    for trial in range(300):
        n = int(rng.integers(2, 60))
        y = rng.integers(0, 2, n)
        y[:2] = [0, 1]
        score = rng.normal(size=n)
        if trial % 3 == 0:
            score = np.round(score, 1)  # many ties
        elif trial % 3 == 1:
            score = (score > 0).astype(float) + y * rng.integers(0, 2, n)
        assert classifiers.roc_auc(y, score) == roc_auc_score(y, score)
    with pytest.raises(ValueError, match="both classes"):
        classifiers.roc_auc(np.ones(4, int), np.arange(4.0))


def test_every_development_patient_predicted_once(comparison, cohort):
    pt, _, _ = cohort
    pred = comparison.predictions
    for name in models.MODEL_ORDER:
        d = pred[(pred.model == name) & (pred.cohort == "development")]
        assert sorted(d.patient_id) == sorted(pt.index[pt.cohort == "development"])
        assert d.prob.between(0, 1).all() and d.prob.notna().all()
        v = pred[(pred.model == name) & (pred.cohort == "validation")]
        assert sorted(v.patient_id) == sorted(pt.index[pt.cohort == "validation"])


def test_development_predictions_are_out_of_fold(cohort):
    """A CV prediction differs from the all-development refit's prediction (it never saw the patient)."""
    pt, feats, _ = cohort
    dev = pt.cohort == "development"
    f = classifiers.fit_nested("AP", feats["AP"][dev], pt.loc[dev, "er"], None, GRID, 3, seed=3)
    refit = f.estimator.predict_proba(feats["AP"][dev].to_numpy())[:, 1]
    assert not np.allclose(refit, f.cv_prob.to_numpy())
    # and in-sample AUC is optimistic compared with the honest nested estimate
    y = pt.loc[dev, "er"].to_numpy()
    assert stats.roc_auc_ci(y, refit).auc >= stats.roc_auc_ci(y, f.cv_prob.to_numpy()).auc


def test_threshold_from_development_applied_to_validation(comparison, cohort):
    pt, _, _ = cohort
    t2 = comparison.table2
    pred = comparison.predictions
    for name, f in comparison.fits.items():
        d = pred[(pred.model == name) & (pred.cohort == "development")]
        assert f.threshold == pytest.approx(stats.youden_threshold(d.er.to_numpy(), d.prob.to_numpy()))
        v = pred[(pred.model == name) & (pred.cohort == "validation")]
        m = stats.classification_metrics(v.er.to_numpy(), v.prob.to_numpy(), f.threshold)
        row = t2[(t2.model == name) & (t2.cohort == "validation")].iloc[0]
        assert row.threshold == f.threshold
        assert row.accuracy == pytest.approx(m.accuracy)
        assert row.sensitivity == pytest.approx(m.sensitivity)
        assert row.specificity == pytest.approx(m.specificity)
        # the validation Youden threshold would generally differ: the table must not use it
        yv = stats.youden_threshold(v.er.to_numpy(), v.prob.to_numpy())
        if yv != f.threshold:
            assert row.threshold != yv


def test_table2_columns_and_delong(comparison):
    t2 = comparison.table2
    for col in ["model", "cohort", "n", "auc", "auc_lower", "auc_upper", "accuracy", "sensitivity", "specificity",
                "threshold", "delong_p", "dsfr"]:
        assert col in t2.columns
    assert set(t2.model) == set(models.MODEL_ORDER) and set(t2.cohort) == {"development", "validation"}
    assert (t2.auc_lower <= t2.auc).all() and (t2.auc <= t2.auc_upper).all()
    ref = t2[t2.dsfr]
    assert ref.model.nunique() == 1 and ref.model.iloc[0] == comparison.dsfr
    assert ref.delong_p.isna().all()
    others = t2[~t2.dsfr]
    assert others.delong_p.between(0, 1).all()
    # DeLong p equals a direct paired test on the stored predictions
    pred = comparison.predictions
    row = others[(others.model == "Visual") & (others.cohort == "validation")].iloc[0]
    a = pred[(pred.model == comparison.dsfr) & (pred.cohort == "validation")].set_index("patient_id")
    b = pred[(pred.model == "Visual") & (pred.cohort == "validation")].set_index("patient_id").loc[a.index]
    assert row.delong_p == pytest.approx(stats.delong_test(a.er.to_numpy(), a.prob.to_numpy(), b.prob.to_numpy()).p)
    fmt = models.format_table2(t2)
    assert list(fmt.columns) == ["Cohort", "Model", "AUC (95% CI)", "ACC", "SEN", "SPEC", "p (DeLong vs DSFR)"]
    assert (fmt["p (DeLong vs DSFR)"] == "ref").sum() == 2


def test_best_phase_chosen_by_development_cv_auc(comparison, cohort):
    pt, _, _ = cohort
    dev = pt[pt.cohort == "development"]
    aucs = {p: stats.roc_auc_ci(dev.er, comparison.fits[f"DSFR-{p}"].cv_prob.loc[dev.index]).auc
            for p in models.DSFR_PHASES}
    assert comparison.phase == max(aucs, key=aucs.get)
    assert comparison.phase in ("PP", "DP")  # PP carries the stronger planted signal
    c = comparison.fits["DSFR-C"]
    ph_feats = comparison.fits[comparison.dsfr].features
    assert c.features[:len(ph_feats)] == ph_feats
    assert {"sex_F", "child_pugh_B", "age", "ggt"} <= set(c.features)


def test_planted_signal_vs_noise():
    pt, feats, _ = make_cohort(n_dev=120, n_val=60, signal=1.5, seed=1)
    dev = pt.cohort == "development"
    f = classifiers.fit_nested("signal", feats["PP"][dev], pt.loc[dev, "er"], feats["PP"][~dev], GRID, 3, seed=1)
    auc_dev = stats.roc_auc_ci(pt.loc[dev, "er"], f.cv_prob).auc
    auc_val = stats.roc_auc_ci(pt.loc[~dev, "er"], f.val_prob).auc
    assert auc_dev > 0.7 and auc_val > 0.7  # the latent itself reaches about 0.88 (ER noise)
    pn, fn, _ = make_cohort(n_dev=120, n_val=60, signal=0.0, seed=2)
    dev = pn.cohort == "development"
    g = classifiers.fit_nested("noise", fn["PP"][dev], pn.loc[dev, "er"], fn["PP"][~dev], GRID, 3, seed=2)
    assert abs(stats.roc_auc_ci(pn.loc[dev, "er"], g.cv_prob).auc - 0.5) < 0.15
    assert abs(stats.roc_auc_ci(pn.loc[~dev, "er"], g.val_prob).auc - 0.5) < 0.2


def test_clinical_design_and_errors(cohort):
    pt, feats, _ = cohort
    X = classifiers.clinical_design(pt)
    assert set(X.columns) == {"sex_F", "age", "hbsag", "hbv_dna", "afp_ge400", "child_pugh_B", "tb", "alb", "alt",
                              "ggt"}
    assert set(np.unique(X["sex_F"])) <= {0.0, 1.0}
    bad = pt.copy()
    bad.loc["S005", "child_pugh"] = "C"
    with pytest.raises(ValueError, match=r"child_pugh.*S005"):
        classifiers.clinical_design(bad)
    blank = pt.copy()
    blank.loc["S004", "ggt"] = np.nan
    assert np.isnan(classifiers.clinical_design(blank).loc["S004", "ggt"])
    f = feats["AP"].copy()
    f.loc["S010", "dec1_c2"] = np.nan
    dev = pt.cohort == "development"
    with pytest.raises(ValueError, match=r"dec1_c2.*S010"):
        classifiers.fit_nested("AP", f[dev], pt.loc[dev, "er"], None, GRID, 3, seed=0)
    with pytest.raises(ValueError, match=r"no features for patient\(s\) \['S000'"):
        models.run_comparison(pt, {"AP": feats["AP"].drop(index="S000")}, GRID, 3, 0, progress=False)
    one = pt.loc[dev].copy()
    one["er"] = 1
    with pytest.raises(ValueError, match="single class"):
        classifiers.fit_nested("AP", feats["AP"][dev], one["er"], None, GRID, 3, seed=0)


def test_small_cohort_lowers_folds():
    pt, feats, _ = make_cohort(n_dev=12, n_val=6, seed=4)
    dev = pt.cohort == "development"
    y = pt.loc[dev, "er"]
    f = classifiers.fit_nested("tiny", feats["AP"][dev], y, feats["AP"][~dev], GRID, 5, seed=0)
    assert f.n_folds[0] <= min(y.sum(), (1 - y).sum()) and f.n_folds[1] >= 2
    assert f.cv_prob.notna().all()


def test_save_outputs(comparison, tmp_path):
    paths = models.save_comparison(comparison, tmp_path / "models", seed=7, grid=GRID)
    for p in paths.values():
        assert p.exists() and p.stat().st_size > 0
    pred = pd.read_csv(paths["predictions"])
    assert list(pred.columns) == ["patient_id", "cohort", "model", "prob", "er"]
    w = pd.read_csv(paths["dsfr_weights"])
    assert list(w.columns) == ["feature", "weight"]
    assert set(w.feature) == set(comparison.fits[comparison.dsfr].features)
    assert w.weight.abs().is_monotonic_decreasing
    sig = pd.read_csv(paths["signature"])
    assert list(sig.columns) == ["patient_id", "cohort", "dsfr_signature"]
    d = pred[pred.model == comparison.dsfr].set_index("patient_id")
    np.testing.assert_allclose(sig.set_index("patient_id").dsfr_signature.loc[d.index], d.prob)
    res = json.loads(paths["results"].read_text())
    assert res["chosen_phase"] == comparison.phase and res["nested_cv"] is True
    assert set(res["models"]) == set(models.MODEL_ORDER)
    t2 = pd.read_csv(paths["table2"])
    r = t2[(t2.model == "Visual") & (t2.cohort == "validation")].iloc[0]
    assert res["models"]["Visual"]["auc"]["validation"] == pytest.approx(r.auc)
    with pytest.raises(FileExistsError, match="already holds"):
        models.save_comparison(comparison, tmp_path / "models", seed=7, grid=GRID, overwrite=False)
    import joblib

    saved = joblib.load(paths["models"])
    est = saved["models"][comparison.dsfr]["estimator"]
    val = pred[(pred.model == comparison.dsfr) & (pred.cohort == "validation")]
    X = comparison_features(comparison, val.patient_id)
    np.testing.assert_allclose(est.predict_proba(X)[:, 1], val.prob.to_numpy(), rtol=1e-12)


def comparison_features(comp, ids):
    pt, feats, _ = make_cohort()
    ph = comp.phase
    return feats[ph].loc[list(ids)].to_numpy()


def test_load_features(tmp_path, cohort):
    _, feats, _ = cohort
    with pytest.raises(FileNotFoundError, match="03_feature_extraction"):
        models.load_features(tmp_path)
    feats["AP"].to_parquet(tmp_path / "AP.parquet")
    feats["PP"].reset_index().to_parquet(tmp_path / "PP.parquet")
    out = models.load_features(tmp_path)
    assert set(out) == {"AP", "PP", "DP"}
    assert out["DP"].shape[1] == feats["AP"].shape[1] * 2 and out["DP"].columns[0].startswith("AP_")


def test_ground_truth_check(comparison, cohort):
    pt, _, lat = cohort
    truth = pd.DataFrame({"patient_id": pt.index, "latent_aggressiveness": lat})
    res = models.ground_truth_check(truth, pt, comparison.signature(), GRID, 3, 0)
    assert res["latent_column"] == "latent_aggressiveness"
    assert res["spearman"]["development"]["rho"] > 0.3
    assert res["ceiling_auc"]["development"] > 0.8


def test_clinical_variables_known():
    assert {v.name for v in CLINICAL_VARIABLES} >= {"sex", "child_pugh", "ggt"}


# ----------------------------------------------------------------------------------------------------------------
# The clinical screen of DSFR-C
# ----------------------------------------------------------------------------------------------------------------
def test_score_test_equals_r_rao_test():
    from pathlib import Path

    r_dir = Path(__file__).parent / "r"
    ref = json.loads((r_dir / "screen_references.json").read_text())["rao"]
    d = pd.read_csv(r_dir / "data" / "aSAH.csv")
    d["gender_male"] = (d["gender"] == "Male").astype(int)
    p = classifiers.score_test_p(d[list(ref)], d["poor"])
    for col, r in ref.items():
        # R's null model is fitted by IRLS to glm's epsilon (1e-8 on the deviance); ours is exact
        assert p[col] == pytest.approx(r["p"], rel=1e-5), col


def test_score_test_blank_and_constant_columns():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 60)
    x = y + rng.normal(0, 1, 60)
    blank = pd.Series(x).where(np.arange(60) % 7 != 0)
    X = pd.DataFrame({"x": blank, "imputed": blank.fillna(blank.median()), "constant": 1.0, "empty": np.nan})
    p = classifiers.score_test_p(X, y)
    assert p["x"] == p["imputed"] < 0.05
    assert p["constant"] == 1.0 and p["empty"] == 1.0
    with pytest.raises(ValueError, match="rows"):
        classifiers.score_test_p(X, y[:-1])


def _screen_data(seed=0, n=150):
    """Image features carrying a latent, two clinical variables with a planted effect and six without."""
    rng = np.random.default_rng(seed)
    lat = rng.normal(size=n)
    clin = pd.DataFrame(rng.normal(size=(n, 8)), columns=["hbsag", "ggt"] + [f"noise{j}" for j in range(6)])
    y = (lat + 1.2 * clin["hbsag"] + 1.2 * clin["ggt"] + rng.logistic(size=n) > 0).astype(int)
    img = pd.DataFrame(rng.normal(size=(n, 4)) + lat[:, None], columns=[f"enc1_c{j}" for j in range(4)])
    X = pd.concat([img, clin], axis=1)
    X.index = [f"S{i:03d}" for i in range(n)]
    return X, pd.Series(y.to_numpy(), index=X.index), list(clin.columns)


def test_screen_keeps_image_features_and_planted_clinical_variables():
    X, y, clin = _screen_data()
    keep = classifiers.screen_columns(X, y, clin, 0.2)
    assert keep[:4] == [f"enc1_c{j}" for j in range(4)]  # never screened, in X's order
    assert {"hbsag", "ggt"} <= set(keep)
    p = classifiers.score_test_p(X[clin], y)
    assert set(keep) - set(X.columns[:4]) == {c for c in clin if p[c] < 0.2}
    with pytest.raises(ValueError, match="no column passes"):
        classifiers.screen_columns(X[clin] * 0, y, clin, 0.2)


def test_fit_nested_screens_inside_every_training_set():
    X, y, clin = _screen_data(seed=1)
    dev, val = X.index[:110], X.index[110:]
    f = classifiers.fit_nested("DSFR-C", X.loc[dev], y[dev], X.loc[val], GRID, 3, seed=5, screen=(clin, 0.2))
    s = f.extra["screen"]
    # the final model's columns: every image feature and the clinical variables that pass on all development patients
    assert f.features == classifiers.screen_columns(X.loc[dev], y[dev], clin, 0.2)
    assert s["kept"] == [c for c in f.features if c in clin] and {"hbsag", "ggt"} <= set(s["kept"])
    assert s["candidates"] == clin and s["alpha"] == 0.2 and set(s["p"]) == set(clin)
    assert f.estimator.named_steps["scale"].mean_.shape == (len(f.features),)
    # each outer fold screened its own training patients only
    outer = StratifiedKFold(n_splits=3, shuffle=True, random_state=5)
    yd = y[dev].to_numpy()
    expect = [[c for c in classifiers.screen_columns(X.loc[dev].iloc[tr], yd[tr], clin, 0.2) if c in clin]
              for tr, _ in outer.split(X.loc[dev], yd)]
    assert s["fold_kept"] == expect
    # the validation prediction is the final model on the kept columns
    np.testing.assert_allclose(f.val_prob.to_numpy(),
                               f.estimator.predict_proba(X.loc[val, f.features].to_numpy())[:, 1])
    # without a screen every column enters and nothing is recorded
    g = classifiers.fit_nested("all", X.loc[dev], y[dev], X.loc[val], GRID, 3, seed=5)
    assert g.features == list(X.columns) and "screen" not in g.extra


def test_run_comparison_screens_the_clinical_variables_of_dsfr_c(cohort, tmp_path):
    pt, feats, _ = cohort
    comp = models.run_comparison(pt, feats, GRID, n_folds=3, seed=7, progress=False, clinical_screen_p=0.2)
    fc = comp.fits["DSFR-C"]
    clin = list(classifiers.clinical_design(pt).columns)
    img = [c for c in fc.features if c not in clin]
    assert img == list(feats[comp.phase].columns)  # every image feature of the chosen phase
    assert [c for c in fc.features if c in clin] == fc.extra["screen"]["kept"]
    assert "screen" not in comp.fits[comp.dsfr].extra and "screen" not in comp.fits["Visual"].extra
    res = models.results_dict(comp, 7, GRID)
    assert res["models"]["DSFR-C"]["screen"]["kept"] == fc.extra["screen"]["kept"]
    # the other models are those of the unscreened comparison
    plain = models.run_comparison(pt, feats, GRID, n_folds=3, seed=7, progress=False)
    for m in (comp.dsfr, "Visual"):
        pd.testing.assert_series_equal(comp.fits[m].cv_prob, plain.fits[m].cv_prob)
    assert plain.fits["DSFR-C"].features == img + clin


def test_every_clinical_model_column_has_a_display_label(cohort):
    from hcc_utils.cohort_table import clinical_column_label

    pt, _, _ = cohort
    cols = list(classifiers.clinical_design(pt).columns)
    labels = [clinical_column_label(c) for c in cols]
    assert all(lab != c for lab, c in zip(labels, cols)) and len(set(labels)) == len(cols)
    assert clinical_column_label("child_pugh_B") == "Child-Pugh class B"
    assert clinical_column_label("afp_ge400") == "AFP \u2265 400 ng/mL"
