"""Handcrafted radiomics features, feature robustness (ICC) and ComBat harmonisation, on tiny images made here."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from hcc_utils import handcrafted as hc
from hcc_utils.harmonisation import fit_combat
from hcc_utils.robustness import icc, icc_by_family, icc_values, select_by_icc, summarise_icc

ROOT = Path(__file__).resolve().parents[1]
WINDOWS = {"windows": {"AP": {"level": 70, "width": 150}, "PP": {"level": 100, "width": 200}}}


def _image(arr, spacing=(1.0, 1.0, 1.0)):
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    return img


def _sphere(radius_mm, hu, spacing=1.0, pad=3):
    n = int(2 * math.ceil(radius_mm / spacing) + 2 * pad + 1)
    c = (n - 1) / 2
    z, y, x = np.mgrid[:n, :n, :n] * spacing
    m = (((z - c * spacing) ** 2 + (y - c * spacing) ** 2 + (x - c * spacing) ** 2) <= radius_mm ** 2)
    img = _image(np.where(m, hu, 0).astype(np.int16), (spacing,) * 3)
    mask = _image(m.astype(np.uint8), (spacing,) * 3)
    return img, mask, int(m.sum())


# ----------------------------------------------------------------------------------------------------------------------
# extraction
# ----------------------------------------------------------------------------------------------------------------------
def test_uniform_sphere_matches_its_analytic_shape_and_intensity():
    r, hu = 10.0, 100
    img, mask, n = _sphere(r, hu)
    s = hc.radiomics_settings(WINDOWS, "AP", pixel_mm=None)
    f = hc.case_features(img, mask, s)
    assert f["shape_MeshVolume"] == pytest.approx(4 / 3 * math.pi * r ** 3, rel=0.03)
    assert f["shape_VoxelVolume"] == n
    # the mesh of a voxelised sphere is a staircase: its area is about 9 % above the sphere's at 10 voxels radius
    assert f["shape_SurfaceArea"] == pytest.approx(4 * math.pi * r ** 2, rel=0.12)
    assert 0.88 < f["shape_Sphericity"] <= 1.0
    assert f["shape_Maximum3DDiameter"] == pytest.approx(2 * r, rel=0.05)
    assert f["firstorder_Mean"] == pytest.approx(hu)
    assert f["firstorder_Variance"] == pytest.approx(0.0, abs=1e-9)
    assert f["firstorder_Energy"] == pytest.approx(n * hu ** 2)  # no shift: IBSI energy, sum of squares
    assert f["firstorder_TotalEnergy"] == pytest.approx(n * hu ** 2)  # 1 mm^3 voxels


def test_intensities_are_clipped_to_the_phase_window():
    img, mask, _ = _sphere(6.0, 400)
    f = hc.case_features(img, mask, hc.radiomics_settings(WINDOWS, "AP", pixel_mm=None))
    assert f["firstorder_Maximum"] == pytest.approx(70 + 150 / 2)


def _textured_case(rng, coarse: bool, elongated: bool):
    shape = (8, 40, 40)
    z, y, x = np.mgrid[:shape[0], :shape[1], :shape[2]]
    ry, rx = (6, 16) if elongated else (10, 10)
    m = ((y - 20) / ry) ** 2 + ((x - 20) / rx) ** 2 <= 1
    m &= (z >= 2) & (z <= 5)
    base = 80 + rng.normal(0, 4, shape)
    if coarse:  # checkerboard of 2-pixel blocks: strong local contrast
        base += 30 * (((y // 2) + (x // 2)) % 2 - 0.5)
    img = _image(base.astype(np.float32), (3.0, 3.0, 5.0))
    return img, _image(m.astype(np.uint8), (3.0, 3.0, 5.0))


def test_a_planted_texture_and_shape_difference_is_found():
    rng = np.random.default_rng(0)
    s = hc.radiomics_settings(WINDOWS, "AP")
    rows = []
    for coarse in (False, True):
        for elongated in (False, True):
            for _ in range(2):
                f = hc.case_features(*_textured_case(rng, coarse, elongated), s)
                rows.append({"coarse": coarse, "elongated": elongated, **f})
    t = pd.DataFrame(rows)
    smooth, rough = t[~t.coarse], t[t.coarse]
    assert smooth["glcm_Contrast"].max() < rough["glcm_Contrast"].min()
    assert smooth["glrlm_ShortRunEmphasis"].max() < rough["glrlm_ShortRunEmphasis"].min()
    assert smooth["glszm_ZonePercentage"].max() < rough["glszm_ZonePercentage"].min()
    assert t.loc[~t.elongated, "shape_Elongation"].min() > t.loc[t.elongated, "shape_Elongation"].max()
    # shape does not see the texture, texture is not the mask's
    assert t.loc[~t.elongated, "shape_MeshVolume"].std() < 1e-6


def test_empty_and_off_grid_masks_name_the_case():
    img, mask, _ = _sphere(5.0, 80)
    s = hc.radiomics_settings(WINDOWS, "AP", pixel_mm=None)
    empty = _image(np.zeros(sitk.GetArrayFromImage(mask).shape, np.uint8))
    with pytest.raises(ValueError, match="P7 .*mask is empty"):
        hc.case_features(img, empty, s, "P7 AP (mask m.nii.gz)")
    moved = sitk.Image(mask)
    moved.SetOrigin((5.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="P8.*not on the image's grid.*origin"):
        hc.case_features(img, moved, s, "P8 AP")
    one_px = np.zeros((5, 9, 9), np.uint8)
    one_px[2, 4, 4] = 1
    with pytest.raises(ValueError, match="empty after the 'erode'"):
        hc.case_features(_image(np.full((5, 9, 9), 80, np.int16)), _image(one_px),
                         hc.radiomics_settings(WINDOWS, "AP", pixel_mm=None, perturb="erode"), "P9")


def test_erosion_and_dilation_are_one_pixel_in_plane():
    m = np.zeros((3, 9, 9), np.uint8)
    m[1, 2:7, 2:7] = 1  # 5 x 5 square on one slice
    assert hc.erode_mask(m).sum() == 9 and hc.erode_mask(m)[1, 3:6, 3:6].all()
    d = hc.dilate_mask(m)
    assert d.sum() == 25 + 4 * 5 and d[0].sum() == 0 and d[2].sum() == 0
    img = _image(m, (3.0, 3.0, 5.0))
    out = hc.perturb_mask(img, "dilate")
    assert isinstance(out, sitk.Image) and out.GetSpacing() == img.GetSpacing()
    with pytest.raises(ValueError, match="perturbation"):
        hc.perturb_mask(m, "shrink")


def _tiny_cohort(tmp_path, n=3):
    rng = np.random.default_rng(1)
    rows = []
    for i in range(n):
        pid = f"P{i}"
        img, mask = _textured_case(rng, coarse=i % 2 == 1, elongated=False)
        for ph in ("AP", "PP"):
            sitk.WriteImage(img, str(tmp_path / f"{pid}_{ph}.nii.gz"))
            sitk.WriteImage(mask, str(tmp_path / f"{pid}_{ph}_mask.nii.gz"))
        rows.append({"patient_id": pid, "ct_ap": str(tmp_path / f"{pid}_AP.nii.gz"),
                     "ct_pp": str(tmp_path / f"{pid}_PP.nii.gz"),
                     "mask_ap": str(tmp_path / f"{pid}_AP_mask.nii.gz") if i else None,
                     "mask_pp": str(tmp_path / f"{pid}_PP_mask.nii.gz")})
        pred = tmp_path / "pred" / f"{pid}.nii.gz"
        pred.parent.mkdir(exist_ok=True)
        sitk.WriteImage(mask, str(pred))
    from hcc_utils.config import load_profile

    prof = load_profile("ci", overrides={"outputs": str(tmp_path / "out"), "cache": str(tmp_path / "cache")})
    return pd.DataFrame(rows), prof


def test_extract_phase_writes_prefixed_table_and_reuses_the_cache(tmp_path, monkeypatch):
    df, prof = _tiny_cohort(tmp_path)
    tab = hc.extract_phase(df, prof, "AP", mask_dir=tmp_path / "pred", progress=False)
    assert list(tab.index) == ["P0", "P1", "P2"] and all(c.startswith("AP_") for c in tab.columns)
    assert {"AP_shape_Sphericity", "AP_firstorder_Mean", "AP_glcm_Contrast", "AP_glrlm_RunEntropy",
            "AP_glszm_ZoneEntropy"} <= set(tab.columns)
    stored = pd.read_parquet(prof.outputs / "radiomics" / "AP.parquet")
    pd.testing.assert_frame_equal(stored, tab)
    calls = []
    real = hc.case_features
    monkeypatch.setattr(hc, "case_features", lambda *a, **k: calls.append(a) or real(*a, **k))
    again = hc.extract_phase(df, prof, "AP", mask_dir=tmp_path / "pred", progress=False)
    assert calls == [] and again.equals(tab)
    hc.extract_phase(df, prof, "AP", mask_dir=tmp_path / "pred", progress=False, bin_width=10.0)
    assert len(calls) == 3  # a setting changed: every patient again, stale entries removed
    assert len(list((tmp_path / "cache" / "radiomics" / "AP").glob("P0-*.json"))) == 1
    with pytest.warns(UserWarning, match="1 patient.*without a manual mask"):
        man = hc.extract_phase(df, prof, "AP", mask="manual", perturb="erode", progress=False)
    assert list(man.index) == ["P1", "P2"] and (prof.outputs / "radiomics" / "AP_manual_erode.parquet").exists()


def test_missing_predicted_mask_is_named(tmp_path):
    df, prof = _tiny_cohort(tmp_path, n=2)
    (tmp_path / "pred" / "P1.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match="patient P1 AP: predicted mask .*P1.nii.gz does not exist"):
        hc.extract_phase(df, prof, "AP", mask_dir=tmp_path / "pred", progress=False)


def test_worker_processes_give_the_same_table(tmp_path):
    df, prof = _tiny_cohort(tmp_path, n=2)
    one = hc.extract_phase(df, prof, "PP", mask_dir=tmp_path / "pred", progress=False, write=False,
                           cache_root=tmp_path / "c1")
    two = hc.extract_phase(df, prof, "PP", mask_dir=tmp_path / "pred", progress=False, write=False,
                           cache_root=tmp_path / "c2", workers=2)
    pd.testing.assert_frame_equal(one, two)


# ----------------------------------------------------------------------------------------------------------------------
# ICC
# ----------------------------------------------------------------------------------------------------------------------
R_ICC = json.loads((ROOT / "tests" / "r" / "icc_references.json").read_text())


@pytest.mark.parametrize("case", ["shrout_fleiss", "simulated"])
@pytest.mark.parametrize("kind", ["ICC2", "ICC3"])
def test_icc_matches_r_psych(case, kind):
    data = np.asarray(R_ICC[case]["data"], dtype=float)
    assert icc_values(data, kind) == pytest.approx(R_ICC[case][kind], abs=1e-12)


def test_icc_by_hand_and_on_tables():
    # 3 targets, 2 conditions; the second = first + 1: perfect consistency, not perfect agreement
    a = pd.DataFrame({"f": [1.0, 2.0, 3.0], "g": [5.0, 5.0, 5.0]}, index=["p1", "p2", "p3"])
    b = a + 1.0
    s3, s2 = icc(a, b), icc(a, b, kind="ICC2")
    assert s3["f"] == pytest.approx(1.0) and np.isnan(s3["g"])
    # MSR = 2, MSC = 1.5, MSE = 0: ICC2 = 2 / (2 + 2 * 1.5 / 3) = 2/3
    assert s2["f"] == pytest.approx(2 / 3)
    assert icc(a.iloc[::-1], b).equals(s3)  # aligned by patient
    assert s3.attrs["n_patients"] == 3


def test_icc_by_family_and_selection():
    rng = np.random.default_rng(3)
    truth = pd.DataFrame(rng.normal(size=(40, 4)), columns=[f"x{i}" for i in range(4)])
    noisy = [0.05, 0.3, 1.0, 3.0]

    def cond():
        return truth + rng.normal(size=truth.shape) * noisy

    fam = {"deep": {"manual": cond(), "predicted": cond(), "eroded": cond(), "dilated": cond()},
           "handcrafted": {"manual": cond(), "predicted": cond()}}
    long = icc_by_family(fam)
    assert set(long["comparison"]) == {"all", "predicted vs manual", "eroded vs manual", "dilated vs manual"}
    deep_all = long[(long.family == "deep") & (long.comparison == "all")].set_index("feature")["icc"]
    assert list(deep_all.sort_values(ascending=False).index) == ["x0", "x1", "x2", "x3"]
    summ = summarise_icc(long)
    assert {"median", "q1", "q3", "share_ge_0.75", "share_ge_0.9"} <= set(summ.columns)
    kept = select_by_icc(truth, deep_all, 0.75)
    assert list(kept.columns) == ["x0", "x1"]
    assert select_by_icc(truth, deep_all, None) is truth
    with pytest.raises(KeyError, match="no ICC"):
        select_by_icc(truth.assign(extra=1.0), deep_all, 0.5)


# ----------------------------------------------------------------------------------------------------------------------
# ComBat
# ----------------------------------------------------------------------------------------------------------------------
COMBAT = json.loads((ROOT / "tests" / "reference" / "combat_inmoose.json").read_text())


def test_combat_matches_inmoose():
    y = pd.DataFrame(COMBAT["data"])
    b = np.asarray(COMBAT["batch"])
    x = pd.DataFrame({"x": COMBAT["covariate"]})
    got = fit_combat(y, b, x).apply(y, b, x)
    np.testing.assert_allclose(got.to_numpy(), COMBAT["combat_covariate"], atol=1e-10)
    # reference-batch ComBat = a fit on batch 1 alone, batches 2 and 3 unseen and estimated from their own rows
    ref = fit_combat(y[b == 1], b[b == 1]).apply(y, b)
    np.testing.assert_allclose(ref.to_numpy(), COMBAT["combat_ref1"], atol=1e-10)


def _centres(rng, n_dev=120, n_val=60, shift=25.0, scale=2.0, p=12):
    beta = np.linspace(1.0, 3.0, p)
    x_dev, x_val = rng.normal(size=n_dev), rng.normal(size=n_val) + 0.5  # validation: more aggressive tumours
    dev = pd.DataFrame(np.outer(x_dev, beta) + rng.normal(size=(n_dev, p)) + 50,
                       index=[f"D{i}" for i in range(n_dev)], columns=[f"f{j}" for j in range(p)])
    val = pd.DataFrame(np.outer(x_val, beta) + scale * rng.normal(size=(n_val, p)) + 50 + shift,
                       index=[f"V{i}" for i in range(n_val)], columns=dev.columns)
    return dev, val, pd.DataFrame({"z": x_dev}, index=dev.index), pd.DataFrame({"z": x_val}, index=val.index), beta


def test_combat_removes_a_planted_centre_shift_and_keeps_the_covariate():
    rng = np.random.default_rng(7)
    dev, val, cdev, cval, beta = _centres(rng)
    model = fit_combat(dev, ["c1"] * len(dev), cdev)
    pd.testing.assert_frame_equal(model.apply(dev, ["c1"] * len(dev), cdev), dev)  # one centre: its own reference
    with pytest.raises(ValueError, match="not in the development data"):
        model.apply(val, ["c2"] * len(val), cval, new_batches="error")
    h = model.apply(val, ["c2"] * len(val), cval)
    resid_dev = dev - np.outer(cdev["z"], beta)
    resid_val_before = val - np.outer(cval["z"], beta)
    resid_val = h - np.outer(cval["z"], beta)
    assert (resid_val_before.mean() - resid_dev.mean()).abs().min() > 20  # the planted shift (25)
    assert (resid_val.mean() - resid_dev.mean()).abs().max() < 0.5  # removed
    assert (resid_val.std() / resid_dev.std()).between(0.8, 1.25).all()  # scale 2 -> about 1
    slopes = [np.polyfit(cval["z"], h[c], 1)[0] for c in h.columns]
    np.testing.assert_allclose(slopes, beta, rtol=0.15)  # the biological covariate is kept


def test_combat_uses_the_development_rows_only():
    rng = np.random.default_rng(8)
    dev, val, cdev, cval, _ = _centres(rng)
    bdev = np.where(np.arange(len(dev)) % 2, "c1", "c3")
    dev.loc[bdev == "c3"] *= 1.3
    model = fit_combat(dev, bdev, cdev)
    params = {k: tuple(a.copy() for a in v) for k, v in model.batches.items()}
    h1 = model.apply(pd.concat([dev, val]), list(bdev) + ["c2"] * len(val), pd.concat([cdev, cval]))
    val2 = val * 1.5 + 3  # other validation data
    h2 = model.apply(pd.concat([dev, val2]), list(bdev) + ["c2"] * len(val), pd.concat([cdev, cval]))
    pd.testing.assert_frame_equal(h1.loc[dev.index], h2.loc[dev.index])
    pd.testing.assert_frame_equal(h1.loc[dev.index], model.apply(dev, bdev, cdev))
    for k, (g, d) in params.items():
        np.testing.assert_array_equal(model.batches[k][0], g)
        np.testing.assert_array_equal(model.batches[k][1], d)
    assert set(model.batches) == {"c1", "c3"}
    with pytest.raises(ValueError, match="covariates"):
        model.apply(val, ["c2"] * len(val))
