"""Grad-CAM of deep features: shapes, target = pooled feature, a disconnected channel gives no map, location table."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from hcc_utils import features as fe
from hcc_utils import gradcam as gc
from hcc_utils import segmentation as seg


@pytest.fixture()
def net_and_slice():
    torch.manual_seed(0)
    model = seg.ClassicUNet(1, 2, base_width=4, depth=3).eval()
    rng = np.random.default_rng(0)
    img = rng.normal(0, 1, (32, 32)).astype(np.float32)
    mask = np.zeros((32, 32), np.float32)
    mask[10:20, 12:22] = 1
    img[mask > 0] += 2
    return model, img, mask


@pytest.mark.parametrize("method", ["hires", "gradcam"])
@pytest.mark.parametrize("layer,channel", [("dec1", 3), ("bottleneck", 5), ("dec3", 0)])
def test_heatmap_shape_and_target(net_and_slice, layer, channel, method):
    model, img, mask = net_and_slice
    cam, target = gc.gradcam(model, img, mask, layer, channel, method)
    assert cam.shape == (32, 32) and cam.dtype == np.float32
    assert np.isfinite(cam).all() and cam.min() >= 0 and cam.max() <= 1
    with fe.Hooks(model, [layer]) as h, torch.no_grad():
        model(torch.from_numpy(img)[None, None])
        ref = fe.pool_feature_map(h.out[layer], torch.from_numpy(mask)[None])[0, channel]
    assert target == pytest.approx(float(ref), rel=1e-5, abs=1e-6)


def test_disconnected_channel_has_no_map_connected_one_does(net_and_slice):
    model, img, mask = net_and_slice
    blk = model.dec1.block
    with torch.no_grad():  # channel 2 of dec1 made constant zero: conv weights, BN scale and shift
        blk.conv2.weight[2] = 0
        blk.bn2.weight[2] = 0
        blk.bn2.bias[2] = 0
    cam, target = gc.gradcam(model, img, mask, "dec1", 2, "gradcam")
    assert target == 0 and cam.max() == 0
    maxima = [gc.gradcam(model, img, mask, "dec1", k, "gradcam")[0].max() for k in range(16) if k != 2]
    assert max(maxima) == pytest.approx(1.0)  # connected channels respond (maps are scaled to a maximum of 1)
    with pytest.raises(ValueError, match="channel 99"):
        gc.gradcam(model, img, mask, "dec1", 99)


def test_known_channel_looks_where_its_input_is(net_and_slice):
    """A channel wired to one input channel of its block responds to where that input is active."""
    model, img, mask = net_and_slice
    blk = model.dec3.block  # full resolution, 4 channels
    with torch.no_grad():
        blk.conv2.weight[0] = 0
        blk.conv2.weight[0, 1, 1, 1] = 1.0  # dec3 channel 0 = BN(ReLU-ed act1 channel 1) at the same pixel
    cam, _ = gc.gradcam(model, img, mask, "dec3", 0, "gradcam")
    # the target depends only on pixels in the tumour: only act1 channel 1 has a non-zero gradient there, so the
    # heatmap is proportional to that channel's activation map
    store = {}
    hk = blk.act1.register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    with torch.no_grad():
        model(torch.from_numpy(img)[None, None])
    hk.remove()
    a1 = store["a"][0, 1].numpy()
    assert a1.max() > 0
    np.testing.assert_allclose(cam, a1 / a1.max(), atol=1e-4)


def test_location_fractions_and_labels():
    mask = np.zeros((20, 20), bool)
    mask[8:12, 8:12] = True
    cam = mask.astype(np.float32)
    loc = gc.location_fractions(cam, mask, ring_px=2)
    assert loc["tumour_frac"] == pytest.approx(1) and loc["ring_frac"] == 0 and loc["location"] == "tumour"
    ring = gc.ring_mask(mask, 2)
    assert not (ring & mask).any() and ring.sum() > 0
    loc = gc.location_fractions(ring.astype(np.float32), mask, 2)
    assert loc["ring_frac"] == pytest.approx(1) and loc["location"] == "ring"
    loc = gc.location_fractions((ring | mask).astype(np.float32), mask, 2)
    assert loc["location"] == "both"
    far = np.zeros((20, 20), np.float32)
    far[0:3, 0:3] = 1
    assert gc.location_fractions(far, mask, 2)["location"] == "elsewhere"
    assert gc.location_fractions(np.zeros((20, 20)), mask, 2)["location"] == "none"


def test_top_features_from_weights(tmp_path):
    w = pd.DataFrame({"feature": ["afp_ge400", "AP_dec2_c3", "PP_bottleneck_c10", "AP_dec1_c0", "PP_dec3_c1"],
                      "weight": [5.0, -0.9, 0.4, 0.0, 1.3]})
    f = tmp_path / "dsfr_weights.csv"
    w.to_csv(f, index=False)
    top = gc.top_features(f, n=2)
    assert top["feature"].tolist() == ["PP_dec3_c1", "AP_dec2_c3"]
    assert top.loc[1, ["phase", "layer", "channel"]].tolist() == ["AP", "dec2", 3]
    assert len(gc.top_features(f, n=6)) == 3  # clinical and zero-weight rows are skipped
    with pytest.raises(ValueError, match="default_phase"):
        gc.top_features(pd.DataFrame({"feature": ["dec1_c2"], "weight": [1.0]}))
    assert gc.top_features(pd.DataFrame({"feature": ["dec1_c2"], "weight": [1.0]}), default_phase="PP")["phase"][0] \
        == "PP"


def test_gradcam_on_dynamic_unet(tmp_path):
    from toy_cohort import toy_profile

    torch.manual_seed(0)
    model = seg.build_model(toy_profile(tmp_path, unet={"arch": "dynamic", "resnet": "resnet18"})).eval()
    img = np.random.default_rng(1).normal(0, 1, (64, 64)).astype(np.float32)
    mask = np.zeros((64, 64), np.float32)
    mask[20:40, 24:44] = 1
    for layer in ("bottleneck", "dec2"):
        cam, target = gc.gradcam(model, img, mask, layer, 1)
        assert cam.shape == (64, 64) and np.isfinite(cam).all() and np.isfinite(target)


def test_hires_map_stays_where_the_gradient_is(net_and_slice):
    """Element-wise map at full resolution (dec3): non-zero only in the tumour and its 3x3-conv halo."""
    model, img, mask = net_and_slice
    cam, _ = gc.gradcam(model, img, mask, "dec3", 1, "hires")
    loc = gc.location_fractions(cam, mask > 0, ring_px=2)  # disk of radius 2 covers the 3x3 halo
    assert cam.max() == pytest.approx(1.0)
    assert loc["tumour_frac"] + loc["ring_frac"] == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="method"):
        gc.gradcam(model, img, mask, "dec3", 1, "lime")


def test_run_gradcam_end_to_end(tmp_path):
    from toy_cohort import make_cohort, toy_profile

    from hcc_utils import features as fe

    manifest = make_cohort(tmp_path / "cohort", n_dev=3, n_val=1, n_annotated=3)
    prof = toy_profile(tmp_path, unet={"epochs": 1, "batch_size": 8}, features={"mask": "manual"},
                       gradcam={"n_features": 3, "n_patients": 2})
    for ph in ("AP", "PP"):
        seg.train_phase(manifest, prof, ph, progress=False)
        seg.predict_cohort(manifest, prof, ph, progress=False)
        fe.extract_phase(manifest, prof, ph, progress=False)
    dp = fe.write_dp(prof)
    k = len(dp.columns) // 2 + 2
    w = pd.DataFrame({"feature": ["age", dp.columns[3], dp.columns[-2], dp.columns[k], dp.columns[k + 1]],
                      "weight": [9.0, 0.5, -0.9, 0.1, 0.7]})
    (prof.outputs / "models").mkdir(parents=True)
    w.to_csv(prof.outputs / "models" / "dsfr_weights.csv", index=False)
    table, panels = gc.run_gradcam(prof, manifest)
    assert len(table) == 3 * 2 and len(panels) == 6
    assert table["feature"].unique().tolist() == [dp.columns[-2], dp.columns[k + 1], dp.columns[3]]
    np.testing.assert_allclose(table["target"], table["stored_feature"], rtol=1e-4, atol=1e-5)
    assert set(table["location"]) <= {"tumour", "ring", "both", "elsewhere", "none"}
    assert (prof.outputs / "gradcam" / "locations.csv").exists() and (prof.outputs / "gradcam" / "summary.csv").exists()
    gc.plot_gradcam(panels, prof.outputs / "gradcam" / "figure2.png")
    assert (prof.outputs / "gradcam" / "figure2.png").stat().st_size > 0


def test_summary_labels_blank_features_none():
    t = pd.DataFrame({"feature": ["a", "a", "b", "b"], "weight": [1.0, 1.0, 2.0, 2.0],
                      "tumour_frac": [0, 0, 0.8, 0.6], "ring_frac": [0, 0, 0.1, 0.1],
                      "elsewhere_frac": [1, 1, 0.1, 0.3], "tumour_area_frac": [0.1] * 4, "ring_area_frac": [0.05] * 4,
                      "location": ["none", "none", "tumour", "tumour"]})
    s = gc.summarise(t)
    assert s.loc["a", "location"] == "none" and s.loc["b", "location"] == "tumour"
    assert s.loc["b", "tumour_frac"] == pytest.approx(0.7) and s.loc["a", "n_blank"] == 2
