"""Preprocessing: windowing, resizing, the slice cache and its invalidation."""
from __future__ import annotations

import os

import numpy as np
import pytest

from hcc_utils import preprocess as pp
from toy_cohort import SHAPE, make_cohort, toy_profile


@pytest.fixture()
def cohort(tmp_path):
    return make_cohort(tmp_path / "cohort", n_dev=2, n_val=1, n_annotated=2)


def test_window_normalise_hand_values():
    hu = np.array([-1000.0, -5.0, 70.0, 145.0, 3000.0])
    x = pp.window_normalise(hu, level=70, width=150)  # window [-5, 145]
    scaled = np.array([0.0, 0.0, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(x, (scaled - pp.NORM_MEAN) / pp.NORM_STD, atol=1e-6)
    with pytest.raises(ValueError):
        pp.window_normalise(hu, 70, 0)


def test_resize_mask_nearest_stays_binary():
    m = np.zeros((2, 40, 48), np.uint8)
    m[0, 10:20, 12:30] = 1
    r = pp.resize_slices(m, 64, is_mask=True)
    assert r.shape == (2, 64, 64) and set(np.unique(r)) <= {0, 1} and r[0].sum() > 0 and r[1].sum() == 0
    x = pp.resize_slices(np.ones((3, 40, 48), np.float32) * 2.0, 32)
    np.testing.assert_allclose(x, 2.0, atol=1e-5)


def test_cache_built_reused_and_invalidated(cohort, tmp_path):
    prof = toy_profile(tmp_path)
    cases = pp.prepare_cohort(cohort, prof, "AP", progress=False)
    assert len(cases) == 3
    c = cases["T000"]
    assert c.image.shape == (SHAPE[0], 64, 64) and c.image.dtype == np.float16
    assert c.mask.shape == (SHAPE[0], 64, 64)
    assert c.meta["shape_zyx"] == list(SHAPE) and c.tumour_slices
    assert all(c.mask[z].any() for z in c.tumour_slices)
    mtime = (c.path / "meta.json").stat().st_mtime_ns
    first = np.array(c.image)
    # same inputs and settings: reused, not rebuilt
    again = pp.prepare_cohort(cohort, prof, "AP", progress=False)["T000"]
    assert again.path == c.path and (again.path / "meta.json").stat().st_mtime_ns == mtime
    # settings change (window) -> new key, stale entry removed
    prof2 = toy_profile(tmp_path, windows={"AP": {"level": 60, "width": 150}, "PP": {"level": 100, "width": 200}})
    c2 = pp.prepare_cohort(cohort, prof2, "AP", progress=False)["T000"]
    assert c2.path != c.path and not c.path.exists()
    assert not np.array_equal(np.asarray(c2.image), first)
    # size change -> new key too
    c3 = pp.prepare_case(pp.load_manifest(cohort).iloc[0], "AP", toy_profile(tmp_path, preprocess={"size": 32}))
    assert c3.image.shape[1:] == (32, 32) and c3.path != c2.path
    # a touched file (same content) keeps its key; new content with the old timestamp gets a new one
    img = cohort.parent / "images" / "T001_AP.nii.gz"
    old = pp.prepare_cohort(cohort, prof2, "AP", progress=False)["T001"].path
    st = img.stat()
    os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert pp.prepare_cohort(cohort, prof2, "AP", progress=False)["T001"].path == old
    img.write_bytes((cohort.parent / "images" / "T002_AP.nii.gz").read_bytes())
    os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns))
    new = pp.prepare_cohort(cohort, prof2, "AP", progress=False)["T001"].path
    assert new != old and not old.exists()


def test_training_slices_add_context(cohort, tmp_path):
    c = pp.prepare_cohort(cohort, toy_profile(tmp_path), "PP", progress=False)["T001"]
    tz = c.tumour_slices
    sl = pp.training_slices(c, 1)
    assert set(tz) < set(sl) or (min(tz) == 0 and max(tz) == c.n_slices - 1)
    assert min(sl) == max(0, min(tz) - 1) and max(sl) == min(c.n_slices - 1, max(tz) + 1)
    assert pp.training_slices(c, 0) == tz


def test_bad_image_names_patient_and_column(cohort, tmp_path):
    df = pp.load_manifest(cohort)
    row = df.iloc[0].copy()
    row["ct_pp"] = str(tmp_path / "nope.nii.gz")
    with pytest.raises(ValueError, match=r"T000.*ct_pp"):
        pp.prepare_case(row, "PP", toy_profile(tmp_path))
