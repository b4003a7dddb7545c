"""Deep semantic features: pooling against hand-computed values, end-to-end extraction, fallback, reproducibility."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from hcc_utils import features as fe
from hcc_utils import preprocess as pp
from hcc_utils import segmentation as seg
from toy_cohort import make_cohort, toy_profile


def test_pooling_hand_computed():
    fmap = torch.stack([torch.arange(16.0).reshape(4, 4), torch.full((4, 4), 7.0)])  # 2 x 4 x 4
    mask = torch.zeros(8, 8)
    mask[:4, :4] = 1  # covers map cells (0,0), (0,1), (1,0), (1,1) fully
    np.testing.assert_allclose(fe.pool_feature_map(fmap, mask).numpy(), [(0 + 1 + 4 + 5) / 4, 7.0])
    # a cell half covered counts (area >= 0.5), a quarter-covered one does not
    mask2 = torch.zeros(8, 8)
    mask2[6:8, 6:8] = 1  # cell (3,3) fully
    mask2[6:8, 4] = 1  # cell (3,2) half
    mask2[4, 6] = 1  # cell (2,3) a quarter
    np.testing.assert_allclose(fe.pool_feature_map(fmap, mask2).numpy(), [(15 + 14) / 2, 7.0])
    # tiny tumour (no cell reaches half): area-weighted mean of partly covered cells
    mask3 = torch.zeros(8, 8)
    mask3[1, 1] = 1  # cell (0,0), 1/4
    mask3[1, 2] = 1  # cell (0,1), 1/4
    mask3[2, 2] = 1  # cell (1,1), 1/4
    np.testing.assert_allclose(fe.pool_feature_map(fmap, mask3).numpy(), [(0 + 1 + 5) / 3, 7.0], rtol=1e-6)
    # batched form, same map resolution as the mask
    b = fe.pool_feature_map(fmap[None].repeat(2, 1, 1, 1), torch.stack([mask, mask2]))
    assert b.shape == (2, 2)


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    root = tmp_path_factory.mktemp("feat")
    manifest = make_cohort(root / "cohort", n_dev=3, n_val=1, n_annotated=3)
    prof = toy_profile(root, unet={"epochs": 1, "batch_size": 8})
    for ph in ("AP", "PP"):
        seg.train_phase(manifest, prof, ph, progress=False)
    tabs = {ph: fe.extract_phase(manifest, prof, ph, mask="manual", progress=False) for ph in ("AP", "PP")}
    return manifest, prof, tabs


def test_feature_tables_shape_names_no_nan(extracted):
    manifest, prof, tabs = extracted
    layers = prof["features"]["layers"]  # ci: bottleneck (32 ch), dec2 (8), dec1 (16) at base 8, depth 3
    model = seg.load_model(prof, "AP", "cpu")
    chans = dict(fe.layer_channels(model, layers, 64))
    n = sum(chans.values())
    for ph, t in tabs.items():
        assert t.shape == (4, n) and t.index.name == "patient_id"
        assert np.isfinite(t.to_numpy()).all()
        assert list(t.columns[:2]) == [f"{layers[0]}_c0", f"{layers[0]}_c1"]
        assert t.columns[-1] == f"{layers[-1]}_c{chans[layers[-1]] - 1}"
    dp = fe.write_dp(prof)
    assert dp.shape == (4, 2 * n) and dp.columns[0].startswith("AP_") and dp.columns[-1].startswith("PP_")
    assert pd.read_parquet(prof.outputs / "features" / "DP.parquet").equals(dp)
    sl = pd.read_parquet(prof.outputs / "features" / "AP_slices.parquet")
    assert {"patient_id", "z", "mask_source", "area_px"} <= set(sl.columns)
    # the patient vector is the mean of its tumour-slice vectors
    p0 = sl[sl["patient_id"] == "T000"]
    np.testing.assert_allclose(p0[tabs["AP"].columns].mean().to_numpy(), tabs["AP"].loc["T000"].to_numpy(),
                               rtol=1e-5, atol=1e-6)
    qc = pd.read_csv(prof.outputs / "features" / "AP_qc.csv")
    assert (qc["mask_source"] == "manual").all()


def test_no_predicted_tumour_warns_and_falls_back(extracted, tmp_path):
    manifest, prof, _ = extracted
    model = seg.load_model(prof, "PP", "cpu")
    with torch.no_grad():  # a network that never predicts tumour
        model.head.bias.copy_(torch.tensor([50.0, -50.0]))
    torch.save(model.state_dict(), prof.outputs / "segmentation" / "PP" / "model.pth")
    with pytest.warns(UserWarning, match="no tumour"):
        t = fe.extract_phase(manifest, prof, "PP", mask="predicted", progress=False)
    assert np.isfinite(t.to_numpy()).all() and not (t.to_numpy() == 0).all()
    qc = pd.read_csv(prof.outputs / "features" / "PP_qc.csv")
    assert (qc["mask_source"] == "fallback_max_prob").all() and (qc["n_tumour_slices"] == 1).all()


def test_bad_layer_name(extracted):
    _, prof, _ = extracted
    model = seg.load_model(prof, "AP", "cpu")
    with pytest.raises(ValueError, match="dec9"):
        fe.Hooks(model, ["dec9"])


def test_same_seed_same_features(tmp_path):
    manifest = make_cohort(tmp_path / "cohort", n_dev=3, n_val=0, n_annotated=3, seed=5)
    out = []
    for run in ("a", "b"):
        prof = toy_profile(tmp_path / run, unet={"epochs": 1, "batch_size": 8})
        seg.train_phase(manifest, prof, "AP", progress=False)
        out.append(fe.extract_phase(manifest, prof, "AP", mask="predicted", progress=False))
    pd.testing.assert_frame_equal(out[0], out[1], check_exact=True)


def test_ci_cohort_end_to_end(ci_manifest, tmp_path):
    """The ci synthetic cohort: train, select, predict, extract both phases, DP; right shapes, no NaN; and the
    networks learn: on patients they never saw, the PP network segments the tumours a 6-mm grid resolves (>= 30 mm,
    washing out) with mean Dice >= 0.6, and most cases are segmented by the network, not the fallback."""
    from benchmarks.ci_dice import resolved_unseen_dice
    from hcc_utils.config import load_profile
    from hcc_utils.manifest import read_manifest

    prof = load_profile("ci", overrides={"outputs": str(tmp_path / "out"), "cache": str(tmp_path / "cache")})
    n = len(read_manifest(ci_manifest))
    truth = pd.read_csv(ci_manifest.parent / "truth.csv", dtype={"patient_id": str}).set_index("patient_id")
    tabs, unseen_dice = {}, {}
    for ph in ("AP", "PP"):
        m = seg.train_phase(ci_manifest, prof, ph, progress=False)
        assert 0 <= m["best_valid_dice"] <= 1
        dsc = seg.predict_cohort(ci_manifest, prof, ph, progress=False)
        assert len(dsc) == n and (prof.outputs / "segmentation" / ph / "pred_masks").is_dir()
        unseen_dice[ph] = resolved_unseen_dice(dsc, truth)
        tabs[ph] = fe.extract_phase(ci_manifest, prof, ph, progress=False)
        assert tabs[ph].shape[0] == n and np.isfinite(tabs[ph].to_numpy()).all()
        qc = pd.read_csv(prof.outputs / "features" / f"{ph}_qc.csv")
        assert set(qc["mask_source"]) <= {"predicted", "fallback_max_prob"} and len(qc) == n
        assert (qc["mask_source"] == "predicted").mean() > 0.5, f"{ph}: most cases fell back"
    assert unseen_dice["PP"] >= 0.6, unseen_dice
    dp = fe.write_dp(prof)
    assert dp.shape == (n, tabs["AP"].shape[1] + tabs["PP"].shape[1])


def test_fallback_region_is_the_peak_component():
    p = torch.full((10, 10), 0.05)
    p[1:3, 1:3] = 0.30  # weaker blob
    p[6:9, 5:8] = 0.40  # strongest blob
    p[7, 6] = 0.45
    r = fe.fallback_region(p)
    assert r.dtype == torch.bool and r.sum() == 9 and r[7, 6] and not r[1, 1]


class _BrightIsTumour(seg.ClassicUNet):
    """A U-Net whose blocks run as usual (hooks fire) but whose output says: tumour where the input is bright."""

    def forward(self, x):
        super().forward(x)
        return torch.cat([-10 * x, 10 * x], 1)


def test_ablation_tables_hold_every_layer_and_leave_the_features_unchanged(tmp_path):
    manifest = make_cohort(tmp_path / "cohort", n_dev=3, n_val=1, n_annotated=3, seed=3)
    prof = toy_profile(tmp_path, unet={"epochs": 1, "batch_size": 8})
    seg.train_phase(manifest, prof, "PP", progress=False)
    plain = fe.extract_phase(manifest, prof, "PP", progress=False, write=False)
    table = fe.extract_phase(manifest, prof, "PP", progress=False)
    pd.testing.assert_frame_equal(plain, table, check_exact=True)  # same passes, same batches
    d = prof.outputs / "features"
    abl = pd.read_parquet(d / "PP_ablation.parquet")
    model = seg.load_model(prof, "PP", "cpu")
    names = fe.feature_names(model, list(seg.feature_modules(model)), int(prof["preprocess"]["size"]))
    split = [n.rsplit("_c", 1) for n in names]
    assert list(abl.columns) == [f"{lay}_{r}_c{k}" for r in fe.ABLATION_REGIONS for lay, k in split]
    assert list(abl.index) == list(table.index)
    tumour = abl[[f"{c.rsplit('_c', 1)[0]}_tumour_c{c.rsplit('_c', 1)[1]}" for c in table.columns]]
    np.testing.assert_array_equal(tumour.to_numpy(), table.to_numpy())
    ring = abl[[c.replace("_tumour_", "_ring_") for c in tumour.columns]]
    assert np.isfinite(ring.to_numpy()).all() and not np.allclose(ring.to_numpy(), tumour.to_numpy())
    info = json.loads((d / "PP_info.json").read_text())
    assert info["model_sha256"] == seg.file_sha256(prof.outputs / "segmentation" / "PP" / "model.pth")
    assert info["ring_px"] == fe.RING_PX and info["ablation_layers"] == list(seg.feature_modules(model))
    # the manual mask of each case, pooled on its own (batches of one pass over its slices)
    case = pp.prepare_case(pp.load_manifest(manifest).iloc[0], "PP", prof)
    zs = [z for z in range(case.n_slices) if np.asarray(case.mask[z]).any()]
    layers = list(seg.feature_modules(model))
    ref = fe.pool_regions(model, case.image, {"m": (zs, np.asarray(case.mask[zs], bool))}, layers)
    manual = abl.loc[case.patient_id, [f"{lay}_manual_c{k}" for lay, k in split]].to_numpy()
    np.testing.assert_allclose(manual, ref["m"].mean(0), rtol=1e-5, atol=1e-6)


def test_slices_from_inference_give_same_features(tmp_path, monkeypatch):
    manifest = make_cohort(tmp_path / "cohort", n_dev=3, n_val=1, n_annotated=3, seed=7)
    prof = toy_profile(tmp_path, unet={"epochs": 1, "batch_size": 8})
    seg.train_phase(manifest, prof, "PP", progress=False)
    u = prof["unet"]
    monkeypatch.setattr(seg, "build_model", lambda p: _BrightIsTumour(1, 2, u["base_width"], u["depth"]))
    full = fe.extract_phase(manifest, prof, "PP", progress=False)  # no slice_predictions for this checkpoint: all
    info = json.loads((prof.outputs / "features" / "PP_info.json").read_text())
    assert info["slices_from_inference"] is False
    dsc = seg.predict_cohort(manifest, prof, "PP", progress=False)
    assert dsc["dsc"].min() > 0.8  # the toy tumour is the bright region
    fast = fe.extract_phase(manifest, prof, "PP", progress=False)
    info = json.loads((prof.outputs / "features" / "PP_info.json").read_text())
    assert info["slices_from_inference"] is True and info["n_slices_visited"] < 5 * 10 / 2
    pd.testing.assert_frame_equal(full, fast, rtol=1e-4, atol=1e-5)
    qc = pd.read_csv(prof.outputs / "features" / "PP_qc.csv")
    assert (qc["mask_source"] == "predicted").all()


class _ShiftedBrightIsTumour(seg.ClassicUNet):
    """Tumour where the input is bright three pixels to the left: not mirror-symmetric, so mirroring changes masks."""

    def forward(self, x):
        super().forward(x)
        s = torch.roll(x, 3, -1)
        return torch.cat([-10 * s, 10 * s], 1)


def test_features_pool_in_the_stored_masks_of_mirrored_inference(tmp_path, monkeypatch):
    manifest = make_cohort(tmp_path / "cohort", n_dev=3, n_val=1, n_annotated=3, seed=7)
    prof = toy_profile(tmp_path, unet={"epochs": 1, "batch_size": 8, "tta": "flip"})
    seg.train_phase(manifest, prof, "PP", progress=False)
    u = prof["unet"]
    monkeypatch.setattr(seg, "build_model", lambda p: _ShiftedBrightIsTumour(1, 2, u["base_width"], u["depth"]))
    seg.predict_cohort(manifest, prof, "PP", progress=False)
    d = prof.outputs / "segmentation" / "PP"
    assert json.loads((d / "metrics.json").read_text())["inference"]["tta"] == "flip"
    stored = pd.read_parquet(d / "slice_predictions.parquet").groupby("patient_id")["pred_px"].sum()

    def areas(p):
        fe.extract_phase(manifest, p, "PP", progress=False)
        qc = pd.read_csv(p.outputs / "features" / "PP_qc.csv", dtype={"patient_id": str}).set_index("patient_id")
        assert (qc["mask_source"] == "predicted").all()
        return qc["tumour_area_px"]

    mirrored = areas(prof)
    assert json.loads((prof.outputs / "features" / "PP_info.json").read_text())["slices_from_inference"] is True
    np.testing.assert_array_equal(mirrored.to_numpy(), stored.loc[mirrored.index].to_numpy())
    # one pass: other masks, and the mirrored run's slice list is not reused for them
    one = toy_profile(tmp_path, unet={"epochs": 1, "batch_size": 8, "tta": "none"})
    assert fe._slices_to_visit(one, "PP") is None
    assert not np.array_equal(areas(one).to_numpy(), mirrored.to_numpy())
