"""Deep features pooled in the eroded or dilated mask (one pixel at network size)."""
from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest

from hcc_utils import features as fe
from hcc_utils import handcrafted as hc
from hcc_utils import preprocess as pp
from hcc_utils import segmentation as seg
from toy_cohort import make_cohort, toy_profile


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("perturb")
    manifest = make_cohort(root / "cohort", n_dev=3, n_val=1, n_annotated=3, seed=2)
    prof = toy_profile(root, unet={"epochs": 1, "batch_size": 8})
    seg.train_phase(manifest, prof, "AP", progress=False)
    return manifest, prof


@pytest.mark.parametrize("how", ["erode", "dilate"])
def test_perturbed_pooling_equals_pooling_in_the_perturbed_mask(trained, tmp_path, how):
    manifest, prof = trained
    model = seg.load_model(prof, "AP", "cpu")
    layers = prof["features"]["layers"]
    row = pp.load_manifest(manifest).iloc[0]
    case = pp.prepare_case(row, "AP", prof)
    f0, z0, a0, _ = fe.case_features(model, case, layers, "manual")
    f1, z1, a1, src = fe.case_features(model, case, layers, "manual", perturb=how)
    # the same thing computed by hand: a copy of the cached case whose mask is the perturbed one
    copy = tmp_path / "case"
    shutil.copytree(case.path, copy)
    pm = hc.perturb_mask(np.asarray(case.mask), how)
    np.save(copy / "mask.npy", pm)
    ref = dataclasses.replace(case, path=copy, meta={**case.meta, "tumour_slices": [int(z) for z in
                                                                                       np.flatnonzero(pm.any((1, 2)))]})
    f2, z2, a2, _ = fe.case_features(model, ref, layers, "manual")
    assert src == "manual" and z1 == z2 and a1 == a2
    np.testing.assert_array_equal(f1, f2)
    common = [z0.index(z) for z in z1]
    if how == "dilate":
        assert z1 == z0 and all(b > a for a, b in zip(a0, a1))
    else:
        assert set(z1) <= set(z0) and all(b < a0[i] for i, b in zip(common, a1))
    assert not np.allclose(f0[common], f1)


def test_extract_phase_perturbed_does_not_write(trained):
    manifest, prof = trained
    t = fe.extract_phase(manifest, prof, "AP", mask="manual", progress=False, perturb="dilate", write=False)
    assert t.shape[0] == 4 and np.isfinite(t.to_numpy()).all()
    assert not (prof.outputs / "features" / "AP.parquet").exists()
    base = fe.extract_phase(manifest, prof, "AP", mask="manual", progress=False)
    assert (prof.outputs / "features" / "AP.parquet").exists()
    assert list(base.columns) == list(t.columns) and not np.array_equal(base.to_numpy(), t.to_numpy())


def test_one_pass_over_all_masks_equals_one_pass_per_mask(trained):
    """extract_conditions pools every mask from one forward pass per case: the tables of one extract_phase call per
    mask (same patients, same columns, the same numbers to float rounding), the predicted mask found once."""
    manifest, prof = trained
    conds = [("manual", None), ("predicted", "erode"), ("predicted", "dilate"), ("manual", "dilate")]
    calls = []
    real = seg.predict_volume
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(seg, "predict_volume", lambda *a, **k: calls.append(1) or real(*a, **k))
        got = fe.extract_conditions(manifest, prof, "AP", conds, progress=False)
    assert len(calls) == len(pp.load_manifest(manifest))  # one prediction per case for both predicted masks
    for mask, perturb in conds:
        one = fe.extract_phase(manifest, prof, "AP", mask=mask, perturb=perturb, progress=False, write=False)
        assert list(got[(mask, perturb)].index) == list(one.index)
        assert list(got[(mask, perturb)].columns) == list(one.columns)
        np.testing.assert_allclose(got[(mask, perturb)].to_numpy(), one.to_numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="mask must be"):
        fe.extract_conditions(manifest, prof, "AP", [("truth", None)], progress=False)


def test_chapter_3_pools_the_masks_that_chapter_8_reads(trained):
    """extract_phase pools the eroded, dilated and manual masks in its own passes; deep_tables reads them (nothing
    pooled anew) and gets what extract_conditions computes, to float rounding; without them (an older run) it pools
    them anew."""
    import json

    import pandas as pd

    from hcc_utils import radiomics_study as rs

    manifest, prof = trained
    base = fe.extract_phase(manifest, prof, "AP", progress=False)
    base.index = base.index.astype(str)
    mask = prof["features"].get("mask", "predicted")
    conds = {"eroded": (mask, "erode"), "dilated": (mask, "dilate"), "manual": ("manual", None)}
    ref = fe.extract_conditions(manifest, prof, "AP", list(conds.values()), progress=False)
    tables, cost = rs.deep_tables(manifest, prof, phases=("AP",))
    assert cost.loc[0, "conditions_pooled"] == ""
    assert set(cost.loc[0, "conditions_from_chapter_3"].split(", ")) == set(conds)
    pd.testing.assert_frame_equal(tables["predicted"]["AP"], base)
    for name, c in conds.items():
        got, want = tables[name]["AP"], ref[c]
        assert list(got.index) == list(want.index.astype(str)) and list(got.columns) == list(base.columns)
        np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), rtol=1e-5, atol=1e-6)
    # a table of an older run, without the perturbed regions: chapter 8 pools those anew
    d = prof.outputs / "features"
    t = pd.read_parquet(d / "AP_ablation.parquet")
    t[[c for c in t.columns if "_eroded_" not in c and "_dilated_" not in c]].to_parquet(d / "AP_ablation.parquet")
    info = json.loads((d / "AP_info.json").read_text())
    info.pop("ablation_regions")
    (d / "AP_info.json").write_text(json.dumps(info))
    again, cost = rs.deep_tables(manifest, prof, phases=("AP",))
    assert set(cost.loc[0, "conditions_pooled"].split(", ")) == {"eroded", "dilated"}
    assert cost.loc[0, "conditions_from_chapter_3"] == "manual"
    for name in conds:
        np.testing.assert_allclose(again[name]["AP"].to_numpy(), tables[name]["AP"].to_numpy(), rtol=1e-5, atol=1e-6)
