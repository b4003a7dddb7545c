"""Several external cohorts (``validation:<name>``): the manifest, Table 2, Table 4, the survival figures and the
synthetic generator's optional third centre. One external cohort keeps every output as it was (other tests)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from hcc_utils import manifest, models, stats
from hcc_utils import survival as sv
from hcc_utils import synthetic as syn
from hcc_utils.config import load_profile

from test_manifest import Cohort
from test_models import GRID, make_cohort
from test_survival import MAPPING, make_table

matplotlib.use("Agg")
EXT = ["validation:centre2", "validation:centre3"]


# --- the cohort values ------------------------------------------------------------------------------------------

def test_cohort_helpers():
    assert manifest.is_external("validation") and manifest.is_external("validation:centre_3-b")
    for bad in ("development", "validation:", "validation:centre 3", "validation:a/b", "Validation", "val", None, 2):
        assert not manifest.is_external(bad), bad
    s = pd.Series(["development", "validation:b", "validation:a"], index=list("xyz"))
    ext = manifest.is_external(s)
    assert ext.tolist() == [False, True, True] and list(ext.index) == list("xyz")
    assert manifest.external_cohorts(s) == ["validation:a", "validation:b"]
    assert manifest.cohort_order(s) == ["development", "validation:a", "validation:b"]
    assert manifest.report_cohorts(["development"]) == ["development", "validation"]
    assert [manifest.cohort_label(c) for c in ("development", "validation", "validation:centre3")] == \
        ["Development", "Validation", "Validation (centre3)"]
    assert manifest.external_text({"validation": "0.71"}) == "0.71"
    assert manifest.external_text({EXT[0]: "0.71", EXT[1]: "0.65"}) == "0.71 (centre2), 0.65 (centre3)"


# --- the manifest -----------------------------------------------------------------------------------------------

@pytest.fixture
def cohort(tmp_path):
    return Cohort(tmp_path)


def test_manifest_accepts_named_external_cohorts(cohort):
    cohort.set("P003", "cohort", EXT[0])
    cohort.set("P008", "cohort", EXT[1])
    cohort.save()
    report = manifest.validate(cohort.manifest, progress=False)
    assert report.ok, str(report)  # the "no validation patient" precondition counts every external cohort
    t = manifest.load_patient_table(cohort.manifest)
    assert t.loc[["P003", "P008"], "cohort"].tolist() == EXT


@pytest.mark.parametrize("value", ["validation:", "validation:centre 3", "validation:c/3", "external:centre3"])
def test_bad_external_cohort_names_patient_file_and_column(cohort, value):
    cohort.set("P008", "cohort", value)
    cohort.save()
    report = manifest.validate(cohort.manifest, progress=False)
    bad = [p for p in report.errors if p.patient_id == "P008" and p.column == "cohort"
           and p.file.endswith("data_manifest.csv") and "unknown cohort" in p.message]
    assert bad and "validation:<name>" in bad[0].message, str(report)


def test_seg_train_is_forbidden_in_every_external_cohort(cohort):
    cohort.set("P008", "cohort", EXT[1])
    cohort.set("P008", "seg_train", 1)
    cohort.save()
    report = manifest.validate(cohort.manifest, progress=False)
    assert any(p.patient_id == "P008" and p.column == "seg_train" and "validation patient" in p.message
               and EXT[1] in p.message for p in report.errors), str(report)


# --- Table 2 ----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_centres():
    pt, feats, _ = make_cohort(n_dev=80, n_val=40)
    named = pt.copy()
    val = np.flatnonzero(pt["cohort"].to_numpy() == "validation")
    named.iloc[val, named.columns.get_loc("cohort")] = np.where(np.arange(len(val)) % 2 == 0, EXT[0], EXT[1])
    one = models.run_comparison(pt, feats, GRID, n_folds=3, seed=7, progress=False)
    two = models.run_comparison(named, feats, GRID, n_folds=3, seed=7, progress=False)
    return named, one, two


def test_table2_has_a_block_per_external_cohort(two_centres):
    named, one, two = two_centres
    t2 = two.table2
    assert list(dict.fromkeys(t2.cohort)) == ["development"] + EXT
    # the same final models: the development block and the pooled predictions are those of one external cohort
    cols = ["model", "auc", "accuracy", "delong_p"]
    pd.testing.assert_frame_equal(t2[t2.cohort == "development"][cols].reset_index(drop=True),
                                  one.table2[one.table2.cohort == "development"][cols].reset_index(drop=True))
    p1, p2 = one.predictions, two.predictions
    np.testing.assert_array_equal(p1["prob"].to_numpy(), p2["prob"].to_numpy())
    for c in EXT:
        ids = named.index[named.cohort == c]
        for m in models.MODEL_ORDER:
            r = t2[(t2.model == m) & (t2.cohort == c)].iloc[0]
            d = p2[(p2.model == m) & (p2.cohort == c)]
            assert sorted(d.patient_id) == sorted(ids) and r.n == len(ids)
            assert r.auc == pytest.approx(stats.roc_auc_ci(d.er.to_numpy(), d.prob.to_numpy()).auc)
            assert (m == two.dsfr) == np.isnan(r.delong_p)
    shown = models.format_table2(t2)
    assert list(dict.fromkeys(shown["Cohort"])) == ["Development", "Validation (centre2)", "Validation (centre3)"]
    res = models.results_dict(two, 7, GRID)
    assert list(res["n"]) == ["development"] + EXT and res["n"][EXT[0]] == 20
    assert set(res["models"][two.dsfr]["auc"]) == {"development", *EXT}


# --- Table 4 and the survival figures ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def survival_two_centres():
    table = make_table()
    arm = table["Arm"].to_numpy().copy()
    val = np.flatnonzero(arm == "validation")
    arm[val] = np.where(np.arange(len(val)) % 2 == 0, EXT[0], EXT[1])
    named = table.assign(Arm=arm)
    runs = []
    for t in (table, named):
        prep = sv.split_cohorts(sv.prepare_table(t, MAPPING), "Arm", seed=0, raw=t)
        runs.append(sv.run_survival(prep, landmark=24, n_bootstrap=5, seed=3, progress=False))
    return runs


def _titles(fig):
    return [a.get_title() for a in fig.axes if a.get_title()]


def test_table4_and_figures_have_a_block_per_external_cohort(survival_two_centres):
    import matplotlib.pyplot as plt

    one, two = survival_two_centres
    assert list(dict.fromkeys(two.table4["cohort"])) == ["development"] + EXT
    assert list(dict.fromkeys(sv.format_table4(two)["Cohort"])) == ["development"] + EXT
    dev = lambda r: r.table4[r.table4.cohort == "development"].reset_index(drop=True)
    pd.testing.assert_frame_equal(dev(one), dev(two))  # development is fitted alike
    assert set(two.km.index) == {"development", *EXT} and set(two.calibration["cohort"]) == {"development", *EXT}
    g = sv.glue_values(two)
    assert "(centre2)" in g["val_signature_c"] and "(centre3)" in g["val_signature_c"]
    assert "(centre" not in sv.glue_values(one)["val_signature_c"]
    km = sv.plot_km(two)
    titles = _titles(km)
    assert len(titles) == 3 and titles[1].startswith("Validation (centre2) cohort (n = ")
    assert _titles(sv.plot_km(one))[1].startswith("Validation cohort (n = ")
    cal, dca, td = sv.plot_calibration(two), sv.plot_decision_curves(two), sv.plot_tdauc(two)
    assert _titles(cal) == ["(b) Development cohort", "(c1) Validation (centre2) cohort",
                            "(c2) Validation (centre3) cohort"]
    assert _titles(dca)[2] == "(e2) Validation (centre3) cohort" and len(_titles(td)) == 3
    assert _titles(sv.plot_calibration(one)) == ["(b) Development cohort", "(c) Validation cohort"]
    plt.close("all")


# --- the synthetic generator ---------------------------------------------------------------------------------------

def _hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.name.startswith(".")}


def _tiny(root: Path, **kw) -> Path:
    return syn.generate_cohort(load_profile("ci"), root=root, n_development=2, n_validation=1, n_annotated=1,
                               workers=1, progress=False, **kw)


def test_third_centre_on_request_leaves_centres_1_and_2_unchanged(tmp_path):
    a, b, c = _tiny(tmp_path / "a"), _tiny(tmp_path / "b", n_external={}), _tiny(tmp_path / "c",
                                                                              n_external={"centre3": 2})
    ha, hb, hc = _hashes(a.parent), _hashes(b.parent), _hashes(c.parent)
    assert ha == hb  # asking for no extra centre is the default cohort, byte for byte
    images = [n for n in ha if n.startswith(("images/", "masks/"))]
    assert len(images) == 3 * 4 and all(hc[n] == ha[n] for n in images)
    assert sorted(set(hc) - set(ha)) == sorted(f"{d}/C3_00{i}_{ph}.nii.gz" for d in ("images", "masks")
                                               for i in (1, 2) for ph in ("AP", "PP"))
    for name in ("clinical.csv", "outcome.csv", "visual_reads.csv"):
        ta, tc = pd.read_csv(a.parent / name), pd.read_csv(c.parent / name)
        pd.testing.assert_frame_equal(ta, tc.iloc[:len(ta)])  # centres 1 and 2 drawn as before
    man = manifest.read_manifest(c)
    assert man["cohort"].tolist() == ["development", "development", EXT[0], EXT[1], EXT[1]]
    assert man["patient_id"].tolist()[-2:] == ["C3_001", "C3_002"] and man["centre"].tolist()[-1] == "3"
    assert manifest.read_manifest(a)["cohort"].tolist()[-1] == "validation"
    img = sitk.ReadImage(str(c.parent / "images" / "C3_001_PP.nii.gz"))
    assert img.GetSpacing() == pytest.approx((3.2, 3.2, 4.5))


def test_unknown_extra_centre_is_an_error(tmp_path):
    for bad in ({"centre2": 5}, {"centre9": 5}, {"site3": 5}, {"centre3": 0}):
        with pytest.raises(ValueError, match="n_external"):
            _tiny(tmp_path / "x", n_external=bad)
    with pytest.raises(SystemExit):
        syn.main(["--profile", "ci", "--external", "centre3"])
