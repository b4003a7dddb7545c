"""Segmentation: networks, split, loss, and a tiny end-to-end train/select/predict run (CPU, seconds)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import torch

from hcc_utils import segmentation as seg
from hcc_utils import training
from toy_cohort import SHAPE, make_cohort, toy_profile


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("seg")
    manifest = make_cohort(root / "cohort", n_dev=4, n_val=1, n_annotated=3)
    prof = toy_profile(root, unet={"epochs": 2, "batch_size": 8})
    metrics = seg.train_phase(manifest, prof, "AP", progress=False)
    dsc = seg.predict_cohort(manifest, prof, "AP", progress=False)
    return manifest, prof, metrics, dsc


def test_classic_unet_shapes_and_names():
    m = seg.ClassicUNet(1, 2, base_width=4, depth=3)
    assert m(torch.zeros(2, 1, 32, 32)).shape == (2, 2, 32, 32)
    mods = seg.feature_modules(m)
    assert list(mods) == ["enc1", "enc2", "enc3", "bottleneck", "dec1", "dec2", "dec3"]
    out = {}
    hs = [mods[n].register_forward_hook(lambda mod, i, o, n=n: out.__setitem__(n, o.shape)) for n in mods]
    m(torch.zeros(1, 1, 32, 32))
    for h in hs:
        h.remove()
    assert out["bottleneck"] == (1, 32, 4, 4) and out["dec1"] == (1, 16, 8, 8) and out["dec3"] == (1, 4, 32, 32)


def test_dynamic_unet_builds_with_named_layers(tmp_path):
    prof = toy_profile(tmp_path, unet={"arch": "dynamic", "resnet": "resnet18"})
    m = seg.build_model(prof).eval()
    with torch.no_grad():
        assert m(torch.zeros(1, 1, 64, 64)).shape == (1, 2, 64, 64)
    mods = seg.feature_modules(m)
    assert "bottleneck" in mods and "dec1" in mods and "dec4" in mods
    assert seg.gradcam_source(m, "dec2") is mods["dec2"].conv1


def test_bad_arch_and_size(tmp_path):
    with pytest.raises(ValueError, match="arch"):
        seg.build_model(toy_profile(tmp_path, unet={"arch": "vnet"}))
    with pytest.raises(ValueError, match="divisible"):
        seg.build_model(toy_profile(tmp_path, preprocess={"size": 60}))


def test_split_is_patient_level_and_seeded():
    ids = [f"P{i}" for i in range(10)]
    tr, va = seg.split_patients(ids, 0.2, 1)
    assert len(va) == 2 and not set(tr) & set(va) and set(tr) | set(va) == set(ids)
    assert seg.split_patients(ids, 0.2, 1) == (tr, va)
    assert seg.split_patients(ids, 0.2, 2) != (tr, va)
    with pytest.raises(ValueError):
        seg.split_patients(["P1"], 0.2, 1)


def test_dice_ce_loss_prefers_right_answer():
    t = torch.zeros(1, 8, 8, dtype=torch.long)
    t[0, 2:5, 2:5] = 1
    good = torch.stack([(1 - t.float()) * 8 - 4, t.float() * 8 - 4], 1)
    bad = -good
    loss = training.DiceCELoss()
    assert loss(good, t) < 0.1 < loss(bad, t)
    assert seg.dice_score(np.array([1, 1, 0]), np.array([1, 0, 0])) == pytest.approx(2 / 3)
    assert np.isnan(seg.dice_score(np.zeros(3), np.zeros(3)))


def test_per_slice_dice_weighs_each_tumour_slice_alike():
    """``dice_ce_slice``: the mean of the Dice of the slices with tumour; ``dice_ce``: one Dice over the batch."""
    t = torch.zeros(2, 16, 16, dtype=torch.long)
    t[0, 2:14, 2:14] = 1  # a large tumour, found
    t[1, 7:9, 7:9] = 1  # a small tumour, missed
    fg = torch.zeros(2, 16, 16)
    fg[0] = t[0].float()
    logits = torch.stack([(1 - fg) * 20 - 10, fg * 20 - 10], 1)
    ce = torch.nn.functional.cross_entropy(logits, t)
    p = logits.softmax(1)[:, 1]
    per_slice = [(2 * (p[i] * t[i]).sum() + 1) / (p[i].sum() + t[i].sum() + 1) for i in range(2)]
    batch = (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1)
    assert training.loss_function("dice_ce_slice")(logits, t) == pytest.approx(float(ce + 1 - sum(per_slice) / 2), rel=1e-5)
    assert training.loss_function("dice_ce")(logits, t) == pytest.approx(float(ce + 1 - batch), rel=1e-5)
    # the missed small tumour costs about half the Dice per slice, little in the batch Dice
    assert training.loss_function("dice_ce_slice")(logits, t) > training.loss_function("dice_ce")(logits, t) + 0.3
    # no tumour in the batch: both are the batch Dice
    z = torch.zeros(2, 16, 16, dtype=torch.long)
    assert training.loss_function("dice_ce_slice")(logits, z) == pytest.approx(float(training.loss_function("dice_ce")(logits, z)))
    with pytest.raises(ValueError, match="unet.loss"):
        training.loss_function("focal")


def test_intensity_augment_draws_what_a_scanner_changes():
    """Offset, contrast, blur and noise in their stated ranges, seeded; zero ranges leave the slices unchanged."""
    unit = 1 / training.pp.NORM_STD
    x = torch.zeros(64, 1, 24, 24)
    x[:, :, 8:16, 8:16] = 1.0
    y = training.intensity_augment(x, torch.Generator().manual_seed(1), {"noise": 0, "blur_p": 0, "contrast": 0})
    shift = (y - x).mean(dim=(1, 2, 3))
    assert (shift.abs() <= 0.10 * unit + 1e-6).all() and shift.std() > 0.02 * unit  # one offset per slice
    assert torch.allclose(y - x, shift[:, None, None, None].expand_as(x), atol=1e-5)
    # contrast about the slice mean within 1 +/- 0.15
    y = training.intensity_augment(x, torch.Generator().manual_seed(1), {"noise": 0, "blur_p": 0, "shift": 0})
    gain = y[:, 0, 12, 12] - y[:, 0, 0, 0]  # the step of height 1, scaled
    assert gain.min() >= 0.85 - 1e-5 and gain.max() <= 1.15 + 1e-5 and gain.std() > 0.03
    # blur: some slices (about blur_p) soften the edge, the others keep it
    y = training.intensity_augment(x, torch.Generator().manual_seed(1), {"noise": 0, "contrast": 0, "shift": 0})
    blurred = (y[:, 0, 12, 7] - x[:, 0, 12, 7]).abs() > 1e-3
    assert 0.1 < blurred.float().mean() < 0.6
    assert torch.allclose(y[~blurred], x[~blurred])
    # noise: SD per slice within 0..0.08 window widths
    y = training.intensity_augment(x, torch.Generator().manual_seed(1), {"blur_p": 0, "contrast": 0, "shift": 0})
    sd = (y - x).flatten(1).std(1)
    assert sd.max() <= 0.08 * unit * 1.2 and sd.max() > 0.05 * unit
    # seeded, and nothing drawn changes a slice when every range is zero
    a = training.intensity_augment(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, training.intensity_augment(x, torch.Generator().manual_seed(3)))
    zero = {"shift": 0, "contrast": 0, "noise": 0, "blur_p": 0}
    assert torch.allclose(training.intensity_augment(x, torch.Generator().manual_seed(3), zero), x)
    with pytest.raises(ValueError, match="unet.augment"):
        training.augment_callback(0, "elastic")


def test_random_crop_takes_the_same_window_of_slice_and_mask():
    """Each slice and its mask are cut at the same drawn position; positions vary, are seeded, stay inside."""
    x = torch.arange(8 * 32 * 32, dtype=torch.float32).reshape(8, 1, 32, 32)
    y = torch.arange(8 * 32 * 32).reshape(8, 32, 32)
    xc, yc = training.random_crop(x, y, 16, torch.Generator().manual_seed(0))
    assert xc.shape == (8, 1, 16, 16) and yc.shape == (8, 16, 16)
    assert torch.equal(xc[:, 0].long(), yc)  # the same window in image and mask
    starts = {(int(v[0, 0]) % 1024 // 32, int(v[0, 0]) % 32) for v in yc}
    assert len(starts) > 1 and all(a <= 16 and b <= 16 for a, b in starts)
    again = training.random_crop(x, y, 16, torch.Generator().manual_seed(0))[1]
    assert torch.equal(again, yc)


def test_crop_setting_is_checked_before_training():
    assert training.check_crop(None, 128, 16) is None and training.check_crop(0, 128, 16) is None
    assert training.check_crop(128, 128, 16) is None  # the whole slice
    assert training.check_crop(96, 128, 16) == 96
    assert "96-pixel window" in training.crop_text(96, 128) and "whole 128" in training.crop_text(None, 128)
    for bad in (100, 160, -16, "big"):
        with pytest.raises(ValueError, match="unet.crop"):
            training.check_crop(bad, 128, 16)


def test_training_on_crops_keeps_whole_slice_validation(trained, tmp_path):
    from types import SimpleNamespace

    cb = training.augment_callback(0, "spatial_intensity", 16)
    x, y = torch.rand(4, 1, 32, 32), (torch.rand(4, 32, 32) > 0.5).long()
    for is_training, side in ((True, 16), (False, 32)):
        cb.learn = SimpleNamespace(training=is_training, xb=(x,), yb=(y,))
        cb.before_batch()
        assert cb.learn.xb[0].shape == (4, 1, side, side) and cb.learn.yb[0].shape == (4, side, side)
    manifest = trained[0]
    prof = toy_profile(tmp_path / "c", unet={"epochs": 1, "batch_size": 8, "crop": 32})
    m = seg.train_phase(manifest, prof, "AP", progress=False)
    assert m["unet"]["crop"] == 32 and np.isfinite(m["best_valid_dice"])
    bad = toy_profile(tmp_path / "b", unet={"crop": 36})  # not a multiple of 2**depth (8)
    with pytest.raises(ValueError, match="unet.crop"):
        seg.train_phase(manifest, bad, "AP", progress=False)
    assert not (bad.outputs / "segmentation" / "AP").exists()


def test_intensity_augmentation_trains_and_unknown_names_fail_first(trained, tmp_path):
    manifest = trained[0]
    prof = toy_profile(tmp_path / "a", unet={"epochs": 1, "batch_size": 8, "augment": "spatial_intensity",
                                             "loss": "dice_ce_slice"})
    m = seg.train_phase(manifest, prof, "AP", progress=False)
    assert m["unet"]["augment"] == "spatial_intensity" and m["unet"]["loss"] == "dice_ce_slice"
    assert np.isfinite(pd.read_csv(prof.outputs / "segmentation" / "AP" / "history.csv")["train_loss"]).all()
    for key, bad in (("augment", "elastic"), ("loss", "focal"), ("tta", "mirror"), ("postprocess", "biggest")):
        p = toy_profile(tmp_path / key, unet={key: bad})
        with pytest.raises(ValueError, match=f"unet.{key}"):
            seg.train_phase(manifest, p, "AP", progress=False)
        assert not (p.outputs / "segmentation" / "AP").exists()  # refused before any work


def test_end_to_end_train_select_predict(trained):
    manifest, prof, metrics, dsc = trained
    d = prof.outputs / "segmentation" / "AP"
    assert (d / "model.pth").exists()
    hist = pd.read_csv(d / "history.csv")
    assert len(hist) == 2 and {"train_loss", "valid_loss", "dice", "seconds"} <= set(hist.columns)
    assert metrics["best_epoch"] == int(hist["dice"].idxmax())
    assert metrics["best_valid_dice"] == pytest.approx(hist["dice"].max())
    assert not set(metrics["train_patients"]) & set(metrics["valid_patients"])
    assert set(metrics["train_patients"]) | set(metrics["valid_patients"]) == {"T000", "T001", "T002"}
    m = json.loads((d / "metrics.json").read_text())
    assert m["inference"]["n_slices"] == 5 * SHAPE[0]
    # predicted masks on the image grid
    assert len(dsc) == 5 and dsc["dsc"].between(0, 1).all()
    assert set(dsc["group"]) == {"train", "held-out annotated", "other development", "validation"}
    pred = sitk.ReadImage(str(d / "pred_masks" / "T004.nii.gz"))
    ref = sitk.ReadImage(str(manifest.parent / "images" / "T004_AP.nii.gz"))
    assert pred.GetSize() == ref.GetSize() and np.allclose(pred.GetSpacing(), ref.GetSpacing())
    assert np.allclose(pred.GetOrigin(), ref.GetOrigin())
    assert set(np.unique(sitk.GetArrayFromImage(pred))) <= {0, 1}


def test_same_seed_same_weights_on_cpu(trained, tmp_path):
    manifest, prof, metrics, _ = trained
    prof2 = toy_profile(tmp_path, unet={"epochs": 2, "batch_size": 8})
    seg.train_phase(manifest, prof2, "AP", progress=False)
    a = torch.load(prof.outputs / "segmentation" / "AP" / "model.pth", weights_only=True)
    b = torch.load(prof2.outputs / "segmentation" / "AP" / "model.pth", weights_only=True)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    h1 = pd.read_csv(prof.outputs / "segmentation" / "AP" / "history.csv")
    h2 = pd.read_csv(prof2.outputs / "segmentation" / "AP" / "history.csv")
    np.testing.assert_array_equal(h1["train_loss"], h2["train_loss"])


def test_mirrored_inference_averages_both_views(tmp_path):
    torch.manual_seed(0)
    m = seg.ClassicUNet(1, 2, base_width=4, depth=2).eval()
    img = np.random.default_rng(0).normal(size=(3, 32, 32)).astype(np.float32)
    one = seg.predict_volume(m, img, 2)
    mirrored = seg.predict_volume(m, np.ascontiguousarray(img[:, :, ::-1]), 2)[:, :, ::-1]
    assert np.abs(one - mirrored).max() > 1e-3  # a random network is not mirror-symmetric: the views differ
    np.testing.assert_allclose(seg.predict_volume(m, img, 2, tta="flip"), (one + mirrored) / 2, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(seg.predict_volume(m, img, 2, tta="none"), one)
    with pytest.raises(ValueError, match="unet.tta"):
        seg.predict_volume(m, img, 2, tta="rot90")
    with pytest.raises(ValueError, match="unet.tta"):
        seg.tta_mode(toy_profile(tmp_path, unet={"tta": "mirror"}))
    assert seg.tta_mode(toy_profile(tmp_path, unet={"tta": "none"})) == "none"
