"""Radiomics and Radiomics-C in Table 2 (toy feature tables, no images), and Table 2 unchanged without them."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hcc_utils import classifiers, models, stats

from _tables import patient_table

GRID = {"C": [0.1, 1.0], "max_iter": [100], "tol": [1e-4]}


def toy(n_dev=60, n_val=30, seed=3):
    """Deep tables (AP/PP/DP) with a weak signal; radiomics tables whose PP texture carries a strong one."""
    pt, rng, lat = patient_table(n_dev, n_val, seed, prefix="R", latent=True)
    n = len(pt)
    deep, rad = {}, {}
    for k, ph in enumerate(["AP", "PP"]):
        F = rng.normal(size=(n, 8))
        F[:, 0] += 0.8 * lat
        deep[ph] = pd.DataFrame(F, index=pt.index, columns=[f"dec1_c{j}" for j in range(8)])
        R = rng.normal(size=(n, 6))
        R[:, :2] += (0.5 + 2.0 * k) * lat[:, None]
        cols = [f"{ph}_glcm_f{j}" for j in range(5)] + [f"{ph}_shape_Flatness"]
        rad[ph] = pd.DataFrame(R, index=pt.index, columns=cols)
    rad["AP"].iloc[3, -1] = np.nan  # an undefined feature for one patient: its column is dropped
    rad["PP"].iloc[4] = np.nan  # no features at all (empty predicted mask): imputed inside the folds
    deep["DP"] = pd.concat([deep["AP"].add_prefix("AP_"), deep["PP"].add_prefix("PP_")], axis=1)
    rad["DP"] = rad["AP"].join(rad["PP"])
    return pt, deep, rad


@pytest.fixture(scope="module")
def runs():
    pt, deep, rad = toy()
    plain = models.run_comparison(pt, deep, GRID, 3, 5, progress=False)
    full = models.run_comparison(pt, deep, GRID, 3, 5, progress=False, radiomics=rad)
    return pt, deep, rad, plain, full


def test_table2_without_radiomics_is_unchanged(runs):
    pt, deep, _, plain, full = runs
    assert list(plain.table2.model.unique()) == list(models.MODEL_ORDER)
    again = models.run_comparison(pt, deep, GRID, 3, 5, progress=False, radiomics=None)
    assert again.table2.to_csv(index=False) == plain.table2.to_csv(index=False)
    assert models.run_comparison(pt, deep, GRID, 3, 5, progress=False, radiomics={}).table2.equals(plain.table2)
    # adding the comparators leaves every DSFR/Visual row byte for byte
    base = full.table2[full.table2.model.isin(models.MODEL_ORDER)].reset_index(drop=True)
    assert base.to_csv(index=False) == plain.table2.to_csv(index=False)
    assert full.dsfr == plain.dsfr
    assert "radiomics_phase" not in models.results_dict(plain, 5, GRID)


def test_radiomics_rows_phase_choice_and_delong(runs):
    pt, _, rad, _, full = runs
    t2 = full.table2
    assert list(t2.model.unique()) == list(models.MODEL_ORDER) + list(models.RADIOMICS_ORDER)
    r = full.fits["Radiomics"]
    dev = pt[pt.cohort == "development"]
    # the phase with the best development nested-CV AUC, each phase fitted as DSFR is
    aucs = {ph: stats.roc_auc_ci(dev.er, classifiers.fit_nested(ph, classifiers.radiomics_design(rad[ph]).loc[dev.index],
                                                           dev.er.astype(int), None, GRID, 3, 5,
                                                           allow_missing=True).cv_prob).auc
            for ph in models.DSFR_PHASES}
    assert r.extra["phase"] == max(aucs, key=aucs.get) and r.extra["phase"] in ("PP", "DP")
    assert r.extra["phase_cv_auc"] == pytest.approx(aucs)
    assert "AP_shape_Flatness" not in r.features and r.extra["n_dropped_non_finite"]["AP"] == 1
    assert r.extra["n_dropped_non_finite"]["PP"] == 0 and r.extra["n_dropped_non_finite"]["DP"] == 1
    assert r.extra["n_without_features"] == 1
    assert full.predictions.prob.notna().all()
    rc = full.fits["Radiomics-C"]
    assert rc.features[:len(r.features)] == r.features and {"sex_F", "ggt"} <= set(rc.features)
    pred = full.predictions
    for name in models.RADIOMICS_ORDER:
        for cohort in ("development", "validation"):
            row = t2[(t2.model == name) & (t2.cohort == cohort)].iloc[0]
            a = pred[(pred.model == full.dsfr) & (pred.cohort == cohort)].set_index("patient_id")
            b = pred[(pred.model == name) & (pred.cohort == cohort)].set_index("patient_id").loc[a.index]
            assert row.delong_p == pytest.approx(stats.delong_test(a.er.to_numpy(), a.prob.to_numpy(),
                                                                   b.prob.to_numpy()).p)
            assert row.auc == pytest.approx(stats.roc_auc_ci(b.er.to_numpy(), b.prob.to_numpy()).auc)
    # the planted texture signal is stronger than the deep one: Radiomics beats DSFR in development
    dsfr_dev = t2[(t2.model == full.dsfr) & (t2.cohort == "development")].auc.iloc[0]
    assert t2[(t2.model == "Radiomics") & (t2.cohort == "development")].auc.iloc[0] > dsfr_dev
    res = models.results_dict(full, 5, GRID)
    assert res["radiomics_phase"] == r.extra["phase"] and set(models.RADIOMICS_ORDER) <= set(res["models"])
    fmt = models.format_table2(t2)
    assert (fmt["p (DeLong vs DSFR)"] == "ref").sum() == 2 and fmt.Model.str.startswith("Radiomics").sum() == 4


def test_radiomics_errors(runs):
    pt, deep, rad, _, _ = runs
    with pytest.raises(ValueError, match="no table for any"):
        models.run_comparison(pt, deep, GRID, 3, 5, progress=False, radiomics={"XX": rad["AP"]})
    with pytest.raises(ValueError, match="no features for patient"):
        models.run_comparison(pt, {"AP": deep["AP"]}, GRID, 3, 5, progress=False,
                              radiomics={"AP": rad["AP"].drop(index="R001")})
