"""rms-style nomogram: scaling against rms::nomogram (tests/r/references.json), baseline survival against
survival::survfit, and the JSON export / predict round trip."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hcc_utils import stats
from hcc_utils.stats.nomogram import Nomogram, cox_baseline_survival

RDIR = Path(__file__).parent / "r"
R = json.loads((RDIR / "references.json").read_text())


@pytest.fixture(scope="module")
def lung():
    d = pd.read_csv(RDIR / "data" / "lung.csv")
    return d[d["ph_ecog"].notna()].reset_index(drop=True)


@pytest.fixture(scope="module")
def rms_nom():
    ref = R["nomogram"]
    coef = {"age": ref["coef"]["age"], "sex[male]": ref["coef"]["sex_f=male"], "ph_ecog": ref["coef"]["ph_ecog"]}
    spec = {"age": {"kind": "continuous", "values": [40, 50, 60, 70, 80]},
            "sex": {"kind": "categorical", "values": ["female", "male"]},
            "ph_ecog": {"kind": "continuous", "values": [0, 1, 2, 3]}}
    return Nomogram.from_coefficients(coef, ref["center"], ref["baseline_surv365"], 365, spec), ref


def test_points_match_rms(rms_nom):
    nom, ref = rms_nom
    for ax, rname in zip(nom.axes, ["age", "sex_f", "ph_ecog"]):
        np.testing.assert_allclose(ax.points, ref["axes"][rname]["points"], atol=1e-6)
        assert [str(v).rstrip("0").rstrip(".") if ax.kind == "continuous" else v for v in ax.values] == \
            ref["axes"][rname]["values"]
    assert nom.scale == pytest.approx(ref["info"], abs=1e-6)


def test_total_points_lp_and_survival_axes_match_rms(rms_nom):
    nom, ref = rms_nom
    np.testing.assert_allclose(nom.points_from_lp(ref["total_points_for_lp"]["lp"]),
                               ref["total_points_for_lp"]["points"], atol=1e-6)
    np.testing.assert_allclose(nom.lp_from_points(ref["total_points_for_lp"]["points"]),
                               ref["total_points_for_lp"]["lp"], atol=1e-6)
    # rms places the survival ticks by linear interpolation of fun(lp) on a grid: ~1e-6 relative (6e-5 points)
    np.testing.assert_allclose(nom.points_for_survival(ref["fun_at"]["surv"]), ref["fun_at"]["points"], rtol=1e-5)
    np.testing.assert_allclose(nom.survival_from_lp(ref["surv365_at_lp"]["lp"]), ref["surv365_at_lp"]["surv"],
                               atol=1e-6)


def test_baseline_survival_matches_survfit_coxph(lung):
    ref = R["lung_cox_baseline"]
    fit, X = stats.cox_fit(lung, "time", "event", ["age", "sex", "ph_ecog"], reference={"sex": "female"})
    b = np.asarray(fit.params)
    # survival >= 3 centres factor dummies at the reference level (fit$means = 0 for sexmale)
    centre_r = X["age"].mean() * b[0] + X["ph_ecog"].mean() * b[2]
    lp = X.to_numpy() @ b - centre_r
    for t, s in zip(ref["t"], ref["surv"]):
        assert cox_baseline_survival(lung["time"], lung["event"], lp, t) == pytest.approx(s, abs=1e-6)


def test_from_cox_centre_and_predict_consistency(lung):
    nom = Nomogram.from_cox(lung, "time", "event", ["age", "sex", "ph_ecog"], t=365,
                            axes={"age": [40, 50, 60, 70, 80]}, reference={"sex": "female"})
    assert nom.centre == pytest.approx(R["lung_cox_baseline"]["center"], abs=1e-6)
    assert max(max(a.points) for a in nom.axes) == pytest.approx(100.0)
    fit, X = stats.cox_fit(lung, "time", "event", ["age", "sex", "ph_ecog"], reference={"sex": "female"})
    # predict() reproduces S0 ** exp(x'b - centre) for every patient
    for i in [0, 5, 17, 100]:
        row = lung.iloc[i]
        out = nom.predict({"age": row["age"], "sex": row["sex"], "ph_ecog": row["ph_ecog"]})
        lp = float(X.iloc[i].to_numpy() @ np.asarray(fit.params)) - nom.centre
        assert out["lp"] == pytest.approx(lp, abs=1e-9)
        assert out["survival"] == pytest.approx(nom.baseline_survival ** np.exp(lp), abs=1e-12)
        assert out["total"] == pytest.approx(sum(out["points"].values()))
    with pytest.raises(ValueError, match="missing value"):
        nom.predict({"age": 60})
    with pytest.raises(ValueError, match="level"):
        nom.predict({"age": 60, "sex": "other", "ph_ecog": 1})


def test_to_dict_is_json_and_round_trips(lung):
    nom = Nomogram.from_cox(lung, "time", "event", ["age", "sex", "ph_ecog"], t=365)
    d = json.loads(json.dumps(nom.to_dict()))
    back = Nomogram.from_dict(d)
    v = {"age": 70, "sex": "male", "ph_ecog": 2}
    a, b = back.predict(v), nom.predict(v)
    assert a["points"] == pytest.approx(b["points"])
    assert (a["total"], a["lp"], a["survival"]) == pytest.approx((b["total"], b["lp"], b["survival"]))
    # the documented formulas reproduce predict() from the exported numbers alone (what the JS calculator does)
    pts = 0.0
    for ax in d["axes"]:
        x = v[ax["variable"]]
        bx = ax["beta"][ax["variable"]] * x if ax["kind"] == "continuous" else ax["beta"].get(f"{ax['variable']}[{x}]", 0)
        pts += d["scale"] * (bx - ax["min_bx"])
    lp = pts / d["scale"] + d["lp_offset"]
    assert d["baseline_survival"] ** np.exp(lp) == pytest.approx(nom.predict(v)["survival"], abs=1e-12)
    frame = nom.axes_frame()
    assert set(frame["variable"]) == {"age", "sex", "ph_ecog"}
    tp = nom.total_points_axis()
    assert np.all(np.diff(tp["survival"]) < 0)
