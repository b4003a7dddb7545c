"""The study bundle and prediction for new patients, on a finished ci run.

Predicting the book's validation patients with the bundle must give the book's stored values (the same final models):
the DSFR signature (``models/signature.csv``), the DSFR-C probability (``models/predictions.csv``) and the nomogram's
24-month RFS (``survival/synthetic/predictions.csv``), to 1e-9; the predicted masks equal the book's.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from _ci_run import prediction_manifest
from hcc_utils import bundle as bd
from hcc_utils.manifest import ManifestError

pytestmark = pytest.mark.slow
N_VALIDATION = 5


@pytest.fixture(scope="module")
def written(ci_run, tmp_path_factory):
    return bd.write_bundle(ci_run["profile"], ci_run["manifest"], tmp_path_factory.mktemp("b") / "bundle")


@pytest.fixture(scope="module")
def predicted(ci_run, written, tmp_path_factory):
    from hcc_utils.manifest import load_patient_table
    from hcc_utils.predict import predict

    pt = load_patient_table(ci_run["manifest"])
    ids = pt.index[pt["cohort"] == "validation"][:N_VALIDATION].tolist() + \
        pt.index[pt["cohort"] == "development"][:1].tolist()
    d = tmp_path_factory.mktemp("pred")
    man = prediction_manifest(ci_run["manifest"], ids, d / "new" / "manifest.csv")
    table = predict(written, man, d / "out", progress=False)
    return {"table": table, "out": d / "out", "ids": ids, "validation": ids[:N_VALIDATION], "development": ids[-1]}


def test_bundle_holds_everything_and_reloads(written):
    b = bd.load_bundle(written)
    for rel in ("segmentation/AP/model.pth", "segmentation/PP/model.pth", "models/models.joblib",
                "models/models.json", "survival/nomogram.json", "training_summary.json", "code_version.json",
                "preprocessing.json", "settings.json"):
        assert (written / rel).is_file(), rel
    sums = json.loads((written / "checksums.json").read_text())["files"]
    assert set(sums) == {str(p.relative_to(written)) for p in written.rglob("*") if p.name != "checksums.json"
                         and p.is_file()}
    assert b.code["source_digest"] == bd.source_digest()
    assert set(b.models) >= {"DSFR", "DSFR-C", "phase"}
    # the JSON numbers are the fitted pipeline
    m = b.models["DSFR-C"]
    rng = np.random.default_rng(0)
    x = np.asarray(m["mean"]) + rng.normal(size=(4, len(m["features"]))) * np.asarray(m["scale"])
    z = m["intercept"] + ((x - np.asarray(m["mean"])) / np.asarray(m["scale"])) @ np.asarray(m["coef"])
    assert np.allclose(1 / (1 + np.exp(-z)), b.estimator("DSFR-C").predict_proba(x)[:, 1], rtol=0, atol=1e-12)
    assert b.summary["inputs"] and b.summary["cohorts"]["development"]["n"] > 0


def test_bundle_refuses_changed_files_and_other_code(written, tmp_path):
    bad = tmp_path / "changed"
    shutil.copytree(written, bad)
    with open(bad / "models" / "models.json", "a") as fh:
        fh.write(" ")
    with pytest.raises(bd.BundleError, match="models/models.json"):
        bd.load_bundle(bad)
    extra = tmp_path / "extra"
    shutil.copytree(written, extra)
    (extra / "notes.txt").write_text("x")
    with pytest.raises(bd.BundleError, match="notes.txt.*not listed"):
        bd.load_bundle(extra)
    other = tmp_path / "other_code"
    shutil.copytree(written, other)
    cv = json.loads((other / "code_version.json").read_text())
    cv["source_digest"] = "0" * 64
    (other / "code_version.json").write_text(json.dumps(cv))
    sums = json.loads((other / "checksums.json").read_text())
    sums["files"]["code_version.json"] = bd.file_sha256(other / "code_version.json")
    (other / "checksums.json").write_text(json.dumps(sums))
    with pytest.raises(bd.BundleError, match="source digest"):
        bd.load_bundle(other)
    with pytest.warns(UserWarning, match="other code"):
        bd.load_bundle(other, check_code=False)
    cv["package_version"] = "0.0.0-old"
    (other / "code_version.json").write_text(json.dumps(cv))
    sums["files"]["code_version.json"] = bd.file_sha256(other / "code_version.json")
    (other / "checksums.json").write_text(json.dumps(sums))
    with pytest.raises(bd.BundleError, match="0.0.0-old"):
        bd.load_bundle(other)


def test_prediction_reproduces_the_book_for_validation_patients(ci_run, predicted):
    out = ci_run["profile"].outputs
    t = predicted["table"]
    val = predicted["validation"]
    sig = pd.read_csv(out / "models" / "signature.csv", dtype={"patient_id": str}).set_index("patient_id")
    mp = pd.read_csv(out / "models" / "predictions.csv", dtype={"patient_id": str})
    dsfrc = mp[(mp["model"] == "DSFR-C") & (mp["cohort"] == "validation")].set_index("patient_id")["prob"]
    sv = pd.read_csv(out / "survival" / "synthetic" / "predictions.csv", dtype={"patient_id": str}
                     ).set_index("patient_id")
    d_sig = np.abs(t.loc[val, "dsfr_signature"] - sig.loc[val, "dsfr_signature"]).max()
    d_c = np.abs(t.loc[val, "dsfrc_er_prob"] - dsfrc.loc[val]).max()
    d_rfs = np.abs(t.loc[val, "nomogram_rfs"] - sv.loc[val, "nomogram_rfs"]).max()
    d_pts = np.abs(t.loc[val, "nomogram_total_points"] - sv.loc[val, "nomogram_total_points"]).max()
    print(f"\nmax |difference| over {len(val)} validation patients: signature {d_sig:.3g}, DSFR-C {d_c:.3g}, "
          f"nomogram RFS {d_rfs:.3g}, total points {d_pts:.3g}")
    assert d_sig <= 1e-9 and d_c <= 1e-9 and d_rfs <= 1e-9 and d_pts <= 1e-9
    assert (t.loc[val, "nomogram_risk_group"] == sv.loc[val, "nomogram_risk_group"]).all()
    assert (t.loc[val, "book_cohort"] == "validation").all()
    assert t["value_kind"].str.contains("final model").all()


def test_predicted_masks_are_the_books_on_the_image_grid(ci_run, predicted):
    import SimpleITK as sitk

    from hcc_utils.imaging import read_image
    from hcc_utils.manifest import read_manifest, safe_name

    df = read_manifest(ci_run["manifest"]).set_index("patient_id")
    for pid in predicted["validation"][:2]:
        for ph in ("AP", "PP"):
            mine = read_image(predicted["out"] / predicted["table"].loc[pid, f"mask_{ph}"])
            ct = read_image(df.loc[pid, f"ct_{ph.lower()}"])
            assert mine.GetSize() == ct.GetSize() and np.allclose(mine.GetSpacing(), ct.GetSpacing())
            assert np.allclose(mine.GetOrigin(), ct.GetOrigin()) and np.allclose(mine.GetDirection(),
                                                                                 ct.GetDirection())
            book = read_image(ci_run["profile"].outputs / "segmentation" / ph / "pred_masks"
                              / f"{safe_name(pid)}.nii.gz")
            assert np.array_equal(sitk.GetArrayFromImage(mine), sitk.GetArrayFromImage(book))


def test_a_development_patient_is_flagged(predicted):
    r = predicted["table"].loc[predicted["development"]]
    assert r["book_cohort"] == "development"
    assert "development cohort" in r["warnings"] and "cross-validated" in r["warnings"]


def test_outputs_per_patient(predicted):
    out, t = predicted["out"], predicted["table"]
    run = json.loads((out / "run.json").read_text())
    assert run["n_patients"] == len(predicted["ids"]) and all(s > 0 for s in run["seconds_per_patient"])
    pid = predicted["validation"][0]
    detail = json.loads((out / "patients" / f"{pid}.json").read_text())
    assert detail["nomogram_points"] and detail["dsfr_signature"] == pytest.approx(t.loc[pid, "dsfr_signature"])
    assert (out / t.loc[pid, "report"]).is_file()


def test_bad_manifest_stops_before_any_work(ci_run, written, tmp_path):
    from hcc_utils.predict import predict

    pid = "VAL001"
    man = prediction_manifest(ci_run["manifest"], [pid], tmp_path / "m.csv")
    df = pd.read_csv(man, dtype=str)
    df.loc[0, "ct_pp"] = str(tmp_path / "missing.nii.gz")
    df.to_csv(man, index=False)
    with pytest.raises(ManifestError) as exc:
        predict(written, man, tmp_path / "out", progress=False)
    assert pid in str(exc.value) and "ct_pp" in str(exc.value) and "missing.nii.gz" in str(exc.value)
    assert not (tmp_path / "out" / "predictions.csv").exists()


def test_outcome_is_not_needed(ci_run, tmp_path):
    from hcc_utils.manifest import validate

    man = prediction_manifest(ci_run["manifest"], ["VAL001"], tmp_path / "m.csv")
    assert validate(man, check_images=False, purpose="predict").ok
    book = validate(man, check_images=False)
    assert any(p.column == "outcome_file" for p in book.errors)


@pytest.mark.browser
def test_report_in_headless_chromium(predicted):
    from test_nomogram_browser import CHROMIUM, CHROMIUM_ARGS, _skip_reason

    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    pid = predicted["validation"][0]
    r = predicted["table"].loc[pid]
    page_file = predicted["out"] / r["report"]
    external = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            page.on("request", lambda q: external.append(q.url)
                    if not q.url.startswith(("file:", "data:", "about:")) else None)
            page.goto(page_file.as_uri())
            assert page.inner_text("#patient-id") == pid
            shown = float(page.get_attribute("#dsfrc-prob", "data-value"))
            assert shown == pytest.approx(r["dsfrc_er_prob"], abs=1e-12)
            assert page.inner_text("#dsfrc-prob") == f"{100 * r['dsfrc_er_prob']:.1f}%"
            assert float(page.get_attribute("#nomo-rfs", "data-value")) == pytest.approx(r["nomogram_rfs"], abs=1e-12)
            assert page.inner_text("#risk-group") == r["nomogram_risk_group"]
            srcs = page.eval_on_selector_all("img", "els => els.map(e => e.src)")
            assert len(srcs) == 3 and all(s.startswith("data:image/png;base64,") for s in srcs)
            n_warn = page.eval_on_selector_all("#warnings li", "els => els.length")
            assert n_warn == r["n_warnings"]
        finally:
            browser.close()
    assert not external, external


def test_blank_clinical_value_warns_only_for_the_models_that_use_it(ci_run, written):
    from hcc_utils.manifest import CLINICAL_VARIABLES, load_patient_table
    from hcc_utils.predict import range_warnings

    b = bd.load_bundle(written)
    pt = load_patient_table(ci_run["manifest"])
    row = pt[pt["cohort"] == "validation"].iloc[[0]].copy()
    in_c = set(b.models["DSFR-C"]["features"])
    in_nomogram = {w["name"] for w in b.nomogram.variables}
    res = {"dsfr_signature": 0.5}
    for v in CLINICAL_VARIABLES:
        blank = row.copy()
        blank[v.name] = np.nan
        said = [w for w in range_warnings(b, blank, {}, res) if w.startswith(f"{v.label} is blank")]
        used = v.name in in_c or any(c.startswith(f"{v.name}_") for c in in_c)
        assert bool(said) == (used or v.name in in_nomogram), v.name
        if said:
            assert ("DSFR-C uses the development median" in said[0]) == used
            assert ("nomogram cannot be computed" in said[0]) == (v.name in in_nomogram)
