"""GSE14520 (real data): the survival chapter's computation on ../shared/data/gse14520/clinical.tsv."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hcc_utils import survival as sv
from hcc_utils.manifest import read_table

pytestmark = pytest.mark.realdata


def _run(shared_data, seed=2022):
    path = shared_data / "gse14520" / "clinical.tsv"
    raw = read_table(path)
    prep = sv.prepare_table(raw, sv.GSE14520_MAPPING)
    prep = sv.split_cohorts(prep, sv.GSE14520_SPLIT, seed=seed, raw=raw)
    return raw, sv.run_survival(prep, landmark=24, n_bootstrap=20, seed=seed, progress=False)


@pytest.fixture(scope="module")
def gse(shared_data):
    return _run(shared_data)


def test_basic_facts_of_the_table(gse):
    raw, res = gse
    d = res.prep.data
    assert len(raw) == 242 and res.prep.n_raw == 242 and len(d) == 242
    assert d.index.is_unique
    assert int(d["event"].sum()) == 136  # recurrences ("Recurr status" = 1)
    assert int((d["signature"] == 1).sum()) == 121  # "high" signature
    rep = res.prep.report.set_index("column")
    # '.' is read as missing and counted
    assert rep.loc["HBV viral status", "n_missing"] == 18
    assert rep.loc["TNM staging", "n_missing"] == 17 and rep.loc["AFP (>/<=300ng/ml)", "n_missing"] == 4
    assert "'IIIA'->'III'" in rep.loc["TNM staging", "recoded"]
    assert (d["cohort"] == "validation").sum() == 73  # ceil(0.3 * 242)
    # early recurrence as the manifest defines it
    from hcc_utils.manifest import early_recurrence

    assert (d["er"].to_numpy() == early_recurrence(d["time"], d["event"])).all()
    assert res.results["n_er"] == int(d["er"].sum())


def test_cox_fit_is_not_degenerate(gse):
    _, res = gse
    uni = res.univariable
    assert np.isfinite(uni[["hr", "hr_lower", "hr_upper", "p"]].to_numpy()).all()
    assert (uni["p"] < 1).all() and (uni["p"] < 0.05).any()
    assert (uni["hr_lower"] < uni["hr"]).all() and (uni["hr"] < uni["hr_upper"]).all()
    sig = uni.set_index("variable").loc["signature"]
    assert 1.0 < sig["hr"] < 5.0  # high signature -> more recurrence, as published
    assert "signature" in res.final_terms and len(res.final_terms) >= 2
    fin = res.final
    assert np.isfinite(fin[["hr", "hr_lower", "hr_upper", "p"]].to_numpy()).all()
    t4 = res.table4.set_index(["cohort", "model"])
    for key in t4.index:
        assert 0.5 < t4.loc[key, "c_index"] < 0.9
        assert 0.5 < t4.loc[key, "tdauc"] < 0.95
    nomo = res.nomogram.spec
    assert 0 < nomo["baseline_survival"] < 1 and nomo["scale"] > 0


def test_deterministic(shared_data, gse):
    _, a = gse
    _, b = _run(shared_data)
    pd.testing.assert_frame_equal(a.table4, b.table4)
    pd.testing.assert_frame_equal(a.table3, b.table3)
    pd.testing.assert_frame_equal(a.calibration, b.calibration)
    assert a.nomogram.to_dict() == b.nomogram.to_dict()
    assert (a.prep.data["cohort"] == b.prep.data["cohort"]).all()
