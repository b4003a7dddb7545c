"""Chapter 08 helpers: ComBat on development only within the study, ICC filter per phase, degenerate centres."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hcc_utils import radiomics_study as rs


def cohort(n_dev=12, n_val=6, seed=0):
    rng = np.random.default_rng(seed)
    ids = [f"P{i:02d}" for i in range(n_dev + n_val)]
    pt = pd.DataFrame({"cohort": ["development"] * n_dev + ["validation"] * n_val,
                       "centre": ["1"] * n_dev + ["2"] * n_val}, index=ids)
    x = rng.normal(size=(len(ids), 5))
    x[n_dev:] = x[n_dev:] * 2.0 + 3.0  # the validation centre: shifted and scaled
    t = pd.DataFrame(x, index=ids, columns=[f"dec1_c{j}" for j in range(5)])
    t["dec1_c5"] = 0.0  # a dead channel: left as it is
    return pt, t


def test_harmonise_table_moves_only_the_new_centre():
    pt, t = cohort()
    h = rs.harmonise_table(t, pt)
    dev = pt.cohort == "development"
    pd.testing.assert_frame_equal(h[dev], t[dev].astype(float))  # one development centre: its own reference
    assert (h["dec1_c5"] == 0).all()
    assert rs.centre_separation(t, pt) > 1.0 > 5 * rs.centre_separation(h, pt)
    # the validation rows do not depend on other validation data beyond their own centre's features
    t2 = t.copy()
    t2.loc[~dev, "dec1_c0"] += 10
    assert np.allclose(rs.harmonise_table(t2, pt)[dev], h[dev])


def test_harmonise_table_too_few_patients_per_centre():
    pt, t = cohort()
    pt.loc["P17", "centre"] = "3"
    with pytest.raises(ValueError, match="at least 2"):
        rs.harmonise_table(t, pt)


def test_filter_tables_by_icc():
    _, t = cohort()
    tabs = {"AP": t, "PP": t * 2}
    icc = pd.Series({f"{ph}_{c}": v for ph in ("AP", "PP") for c, v in zip(t.columns, np.linspace(0, 1, 6))})
    out = rs.filter_tables(tabs, icc, 0.5, deep=True)
    assert list(out["AP"].columns) == ["dec1_c3", "dec1_c4", "dec1_c5"]
    assert list(out["DP"].columns) == [f"{ph}_dec1_c{j}" for ph in ("AP", "PP") for j in (3, 4, 5)]
    assert rs.filter_tables(tabs, icc, None, deep=True)["DP"].shape[1] == 12
    assert rs.filter_tables(tabs, icc, 1.5, deep=True) == {}
    assert rs.family_of("AP_glcm_Contrast") == "texture" and rs.family_of("PP_shape_Sphericity") == "shape"
