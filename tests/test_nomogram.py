"""Nomogram: Python arithmetic against lifelines, the JSON export, the ipywidgets nomogram, and JS == Python (node)."""
from __future__ import annotations

import json
import math
import shutil
import subprocess

import numpy as np
import pytest

from hcc_utils import survival as sv
from hcc_utils import stats
from hcc_utils.stats import NomogramCalculator as Nomogram
from hcc_utils.survival import ASSETS

from test_survival import MAPPING, make_table


@pytest.fixture(scope="module")
def fitted():
    t = make_table(seed=1)
    prep = sv.split_cohorts(sv.prepare_table(t, MAPPING), "Arm", seed=0, raw=t)
    dev = prep.data[prep.data["cohort"] == "development"]
    terms = [prep.var(n) for n in ("signature", "age", "male", "stage")]
    sub = dev.dropna(subset=[v["name"] for v in terms])
    fit = stats.cox_model(sub, terms)
    nomo = Nomogram.from_cox(fit, 24.0, risk_threshold=0.5, threshold_rule="test")
    return prep, sub, fit, nomo


def patients(sub, k=12):
    rows = []
    for pid, r in sub.head(k).iterrows():
        rows.append({"signature": float(r["signature"]), "age": float(r["age"]), "male": int(r["male"]),
                     "stage": str(r["stage"])})
    # extremes and out-of-sample values
    rows.append({"signature": 0.0, "age": 30.0, "male": 0, "stage": "I"})
    rows.append({"signature": 1.0, "age": 85.0, "male": 1, "stage": "III"})
    rows.append({"signature": 0.5, "age": 55.5, "male": "M", "stage": "II"})
    return rows


def test_nomogram_equals_cox_prediction_and_stats_nomogram(fitted):
    from hcc_utils import stats

    _, sub, fit, nomo = fitted
    pred = nomo.predict_frame(sub)
    # S(24 | x) = S0(24) ** exp(centred lp), S0 the Efron-type baseline at the means (R survfit.coxph)
    s0 = stats.cox_baseline_survival(fit.time, fit.event, fit.lp(), 24.0)
    np.testing.assert_allclose(pred["rfs"].to_numpy(), s0 ** np.exp(fit.lp()), rtol=1e-10)
    # the same model through hcc_utils.stats.Nomogram (verified against rms there) gives the same points and RFS
    X = fit.X.assign(time=fit.time, event=fit.event)
    spec = {}
    for v in nomo.variables:
        if v["type"] == "continuous":
            spec[v["name"]] = {"kind": "continuous", "values": [v["min"] / v["per"], v["max"] / v["per"]]}
    ref = stats.Nomogram.from_coefficients(fit.params.to_dict(), fit.centre, s0, 24.0, {
        **spec,
        "male": {"kind": "continuous", "values": [0.0, 1.0]},
        "stage": {"kind": "categorical", "values": ["I", "II", "III"]},
    })
    for r in patients(sub):
        vals = {"signature": r["signature"] / 0.1, "age": r["age"] / 10,
                "male": float(r["male"] == "M") if isinstance(r["male"], str) else float(r["male"]), "stage": r["stage"]}
        a, b = nomo.predict(r), ref.predict(vals)
        assert a["rfs"] == pytest.approx(b["survival"], rel=1e-12)
        assert a["total_points"] == pytest.approx(b["total"], rel=1e-12)
    assert len(X) == fit.n


def test_points_scaling_is_rms_style(fitted):
    *_, nomo = fitted
    spec = nomo.spec
    ranges = [v["lp_max"] - v["lp_min"] for v in spec["variables"]]
    assert max(ranges) * spec["scale"] == pytest.approx(100.0)
    for v in spec["variables"]:
        if v["type"] == "continuous":
            lo = v["min"] if v["beta"] >= 0 else v["max"]
        else:
            lo = v["levels"][int(np.argmin(v["lp"]))]
        assert nomo.points(v, lo) == pytest.approx(0.0, abs=1e-12)
    r = nomo.predict(nomo.defaults())
    assert r["total_points"] == pytest.approx(sum(r["points"].values()))
    assert r["er_prob"] == pytest.approx(1 - r["rfs"])
    assert r["risk_group"] == ("high" if r["er_prob"] >= 0.5 else "low")
    with pytest.raises(ValueError, match="stage.*'IV'"):
        nomo.predict({**nomo.defaults(), "stage": "IV"})
    with pytest.raises(ValueError, match="no value for 'age'"):
        nomo.predict({k: v for k, v in nomo.defaults().items() if k != "age"})


def test_json_round_trip(fitted, tmp_path):
    *_, nomo = fitted
    p = nomo.to_json(tmp_path / "nomogram.json")
    back = Nomogram.from_dict(json.loads(p.read_text()))
    for pt in patients(fitted[1]):
        assert back.predict(pt)["rfs"] == nomo.predict(pt)["rfs"]
    with pytest.raises(ValueError, match="not a nomogram"):
        Nomogram.from_dict({"format": "x"})


def test_widget_updates_live(fitted):
    from hcc_utils.nomogram_widget import NomogramWidget

    *_, nomo = fitted
    w = NomogramWidget(nomo.to_dict())
    assert set(w.controls) == {"signature", "age", "male", "stage"}
    assert type(w.controls["age"]).__name__ == "FloatSlider"
    assert type(w.controls["stage"]).__name__ == "Dropdown"
    before = w.result["rfs"]
    w.controls["stage"].value = "III"
    w.controls["signature"].value = 0.9
    w.controls["male"].value = "M"
    after = w.result
    assert after["rfs"] < before
    expected = nomo.predict(w.values())
    assert after["rfs"] == expected["rfs"]
    assert f"{100 * expected['rfs']:.1f}%" in w.output.value
    assert f"{expected['points']['stage']:.1f} points" in w.points["stage"].value


def node_compute(spec, rows):
    script = (
        "const N = require(process.argv[1]);\n"
        "let s = ''; process.stdin.on('data', d => s += d); process.stdin.on('end', () => {\n"
        "  const inp = JSON.parse(s);\n"
        "  const out = inp.rows.map(r => N.compute(inp.spec, r));\n"
        "  process.stdout.write(JSON.stringify(out));\n"
        "});\n")
    out = subprocess.run(["node", "-e", script, str(ASSETS / "nomogram.js")],
                         input=json.dumps({"spec": spec, "rows": rows}), capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.mark.skipif(shutil.which("node") is None, reason="node (Node.js) is not installed")
def test_js_equals_python(fitted):
    _, sub, _, nomo = fitted
    rows = patients(sub)
    js = node_compute(nomo.to_dict(), rows)
    assert len(js) == len(rows)
    for r, j in zip(rows, js):
        py = nomo.predict(r)
        assert j["rfs"] == pytest.approx(py["rfs"], rel=1e-13, abs=1e-15)
        assert j["total_points"] == pytest.approx(py["total_points"], rel=1e-13, abs=1e-12)
        assert j["risk_group"] == py["risk_group"]
        for k in py["points"]:
            assert j["points"][k] == pytest.approx(py["points"][k], rel=1e-13, abs=1e-12)
    # the JS rejects an unknown level as Python does
    bad = subprocess.run(["node", "-e", "const N=require(process.argv[1]);"
                          "try{N.compute(JSON.parse(process.argv[2]),JSON.parse(process.argv[3]));}"
                          "catch(e){console.log(e.message);process.exit(3)}",
                          str(ASSETS / "nomogram.js"), json.dumps(nomo.to_dict()),
                          json.dumps({**nomo.defaults(), "stage": "IV"})], capture_output=True, text=True)
    assert bad.returncode == 3 and "IV" in bad.stdout


def test_html_is_self_contained(fitted):
    *_, nomo = fitted
    html = sv.nomogram_html(nomo.to_dict(), standalone=True)
    frag = sv.nomogram_html(nomo.to_dict())
    for h in (html, frag):
        assert "http://" not in h and "https://" not in h and "src=" not in h
        assert 'id="hcc-nomogram-data"' in h and "HCCNomogram.render" in h
    assert html.lstrip().startswith("<!DOCTYPE html>")
    # JSON inlined verbatim
    start = frag.index('id="hcc-nomogram-data">') + len('id="hcc-nomogram-data">')
    payload = frag[start:frag.index("</script>", start)]
    assert json.loads(payload.replace("<\\/", "</")) == nomo.to_dict()
    assert math.isfinite(json.loads(payload)["baseline_survival"])
