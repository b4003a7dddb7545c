"""The ablation's pieces: the stored tables, the compared designs, the contrast design, the page table, its step."""
import json

import numpy as np
import pandas as pd
import pytest

from hcc_utils import ablation
from hcc_utils import features as fe
from hcc_utils.files import file_sha256


def test_ring_surrounds_the_tumour_and_excludes_it():
    m = np.zeros((1, 20, 20), bool)
    m[0, 8:12, 8:12] = True
    r = fe.ring_region(m, width=2)
    assert not (r & m).any()
    assert r[0, 6, 6] and r[0, 13, 13] and not r[0, 5, 5] and not r[0, 14, 14]
    assert r.sum() == 8 * 8 - 4 * 4


def test_variants_mark_the_profile_default_once_per_factor():
    v = ablation.variants(["enc2"], ["enc1", "enc2", "dec1"])
    defaults = [(f, lab) for f, lab, d, _ in v if d]
    assert ("feature layer", "enc2 (tumour mean)") in defaults
    assert sum(f == "pooling region" for f, _ in defaults) == 1
    assert {f for f, *_ in v} == {"feature layer", "pooling region", "mask"}


def _tables():
    idx = pd.Index(["a", "b", "c"], name="patient_id")
    t = {}
    for ph in ("AP", "PP"):
        for region, add in (("tumour", 10.0), ("ring", 3.0)):
            t.setdefault(ph, {})[("enc2", region)] = pd.DataFrame(
                np.full((3, 2), add), index=idx, columns=[f"{ph}_enc2_{region}_c{k}" for k in range(2)])
    return t


def test_contrast_design_is_tumour_minus_ring_and_dp_joins_phases():
    X = ablation._design(_tables(), ["AP", "PP"], [("enc2", "contrast")])
    assert list(X.columns) == ["AP_enc2_contrast_c0", "AP_enc2_contrast_c1", "PP_enc2_contrast_c0",
                               "PP_enc2_contrast_c1"]
    assert (X.to_numpy() == 7.0).all()


def test_missing_region_gives_no_design():
    assert ablation._design(_tables(), ["PP"], [("enc2", "manual")]) is None


def test_summary_has_one_row_per_variant_and_phase_columns():
    rows = [{"factor": "feature layer", "variant": v, "default": False, "phase": ph, "n_features": 2,
             "development": 0.6 + i / 10, "validation": 0.5} for i, v in enumerate(["x", "y"]) for ph in ablation.PHASES]
    s = ablation.summary(pd.DataFrame(rows, columns=ablation.COLUMNS))
    assert list(s["variant"]) == ["x", "y"]
    assert list(s.columns[2:]) == [f"{ph} {c}" for c in ("development", "validation") for ph in ablation.PHASES]
    assert s.loc[1, "PP development"] == pytest.approx(0.7)


def _profile(tmp_path):
    from hcc_utils.config import load_profile

    prof = load_profile("ci", overrides={"outputs": str(tmp_path / "out")})
    for ph in ("AP", "PP"):
        prof.out("segmentation", ph, "model.pth").write_bytes(ph.encode())
    return prof


def _store_tables(prof, phase="PP", manual_missing=False, old=False):
    d = prof.outputs / "features"
    d.mkdir(parents=True, exist_ok=True)
    cols = [f"{layer}_{r}_c{k}" for r in fe.ABLATION_REGIONS for layer in ("enc1", "dec2") for k in range(2)]
    t = pd.DataFrame(np.arange(2 * len(cols), dtype=np.float32).reshape(2, -1),
                     index=pd.Index(["1", "2"], name="patient_id"), columns=cols)
    if manual_missing:
        t.loc["2", [c for c in cols if "_manual_" in c]] = np.nan
    sha = file_sha256(prof.outputs / "segmentation" / phase / "model.pth")
    info = {"model_sha256": sha, "ablation_layers": ["enc1", "dec2"], "ablation_regions": list(fe.ABLATION_REGIONS)}
    if old:  # written before the eroded and dilated regions: no region list, no such columns
        info.pop("ablation_regions")
        t = t[[c for c in cols if "_eroded_" not in c and "_dilated_" not in c]]
    t.to_parquet(d / f"{phase}_ablation.parquet")
    (d / f"{phase}_info.json").write_text(json.dumps(info))
    return t


def test_stored_tables_are_read_per_layer_and_region(tmp_path):
    prof = _profile(tmp_path)
    t = _store_tables(prof)
    tabs = ablation.load_tables(prof, "PP")
    assert list(tabs) == [(layer, r) for r in fe.ABLATION_REGIONS for layer in ("enc1", "dec2")]
    ring = tabs[("dec2", "ring")]
    assert list(ring.columns) == ["PP_dec2_ring_c0", "PP_dec2_ring_c1"]
    np.testing.assert_array_equal(ring.to_numpy(), t[["dec2_ring_c0", "dec2_ring_c1"]].to_numpy())


def test_a_table_of_an_older_run_gives_its_three_regions(tmp_path):
    prof = _profile(tmp_path)
    _store_tables(prof, old=True)
    assert {r for _, r in ablation.load_tables(prof, "PP")} == {"tumour", "ring", "manual"}
    assert fe.stored_region(prof, "PP", "eroded", ["enc1"]) is None
    got = fe.stored_region(prof, "PP", "ring", ["dec2"])
    assert list(got.columns) == ["dec2_c0", "dec2_c1"] and list(got.index) == ["1", "2"]


def test_the_manual_region_is_left_out_when_a_patient_has_no_manual_mask(tmp_path):
    prof = _profile(tmp_path)
    _store_tables(prof, manual_missing=True)
    assert {r for _, r in ablation.load_tables(prof, "PP")} == set(fe.ABLATION_REGIONS) - {"manual"}


def test_tables_of_another_network_or_none_are_refused(tmp_path):
    prof = _profile(tmp_path)
    with pytest.raises(FileNotFoundError, match="PP_ablation.parquet.*chapter 3"):
        ablation.load_tables(prof, "PP")
    _store_tables(prof)
    prof.out("segmentation", "PP", "model.pth").write_bytes(b"retrained")
    with pytest.raises(RuntimeError, match="another PP network"):
        ablation.load_tables(prof, "PP")


def test_the_ablation_step_follows_the_features_and_table2_and_comes_last(tmp_path):
    from hcc_utils.run import steps

    plan = steps.plan(_profile(tmp_path), optional=False)
    assert plan[-1].name == "10_ablation"
    assert set(plan[-1].deps) == {"04_model_comparison", "03_feature_extraction_AP", "03_feature_extraction_PP"}
