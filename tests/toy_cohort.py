"""Throwaway NIfTI cohorts for the segmentation/feature tests (independent of hcc_utils.synthetic).

Each patient: a dark body (-80 HU), an ellipsoidal "liver" (60 HU) and a bright ellipsoidal "tumour" (AP 160 HU,
PP 140 HU) at a random position and size, plus its 0/1 mask on the same grid. Non-square slices (40 x 48) so the
resizing and the resampling back to the image grid are exercised.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

SHAPE = (10, 40, 48)  # z, y, x
SPACING = (0.9, 0.8, 3.0)  # x, y, z (mm)


def make_volume(rng: np.random.Generator, tumour_hu: float):
    z, y, x = np.meshgrid(*[np.arange(n, dtype=float) for n in SHAPE], indexing="ij")
    vol = np.full(SHAPE, -80.0)
    liver = ((y - 20) / 16) ** 2 + ((x - 24) / 20) ** 2 < 1
    vol[liver] = 60.0
    cz, cy, cx = rng.uniform(3.5, 6.5), rng.uniform(15, 25), rng.uniform(18, 30)
    rz, ry, rx = rng.uniform(1.6, 2.6), rng.uniform(4, 7), rng.uniform(4, 7)
    tum = ((z - cz) / rz) ** 2 + ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 < 1
    vol[tum] = tumour_hu
    vol += rng.normal(0, 8, SHAPE)
    return vol.astype(np.int16), tum.astype(np.uint8)


def _write(arr, path: Path):
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(SPACING)
    img.SetOrigin((-10.0, 5.0, 100.0))
    sitk.WriteImage(img, str(path), useCompression=True)


def make_cohort(root: Path, n_dev: int = 4, n_val: int = 1, n_annotated: int = 3, seed: int = 0) -> Path:
    """Write a toy cohort under ``root`` and return the manifest path (paths relative to it)."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_dev + n_val):
        pid = f"T{i:03d}"
        for ph, hu in (("AP", 160.0), ("PP", 140.0)):
            vol, mask = make_volume(rng, hu)
            _write(vol, root / "images" / f"{pid}_{ph}.nii.gz")
            _write(mask, root / "masks" / f"{pid}_{ph}.nii.gz")
        rows.append({"patient_id": pid, "cohort": "development" if i < n_dev else "validation", "centre": 1,
                     "ct_ap": f"images/{pid}_AP.nii.gz", "ct_pp": f"images/{pid}_PP.nii.gz",
                     "series_uid_ap": "", "series_uid_pp": "",
                     "mask_ap": f"masks/{pid}_AP.nii.gz", "mask_pp": f"masks/{pid}_PP.nii.gz",
                     "seg_train": int(i < n_annotated), "clinical_file": "clinical.csv", "visual_file": "",
                     "outcome_file": "outcome.csv"})
    ids = [r["patient_id"] for r in rows]
    pd.DataFrame({"patient_id": ids, "sex": "M", "age": 60, "hbsag": 1, "hbv_dna": 0, "afp_ge400": 0,
                  "child_pugh": "A", "tb": 12.0, "alb": 40.0, "alt": 30.0, "ggt": 40.0}).to_csv(
        root / "clinical.csv", index=False)
    pd.DataFrame({"patient_id": ids, "rfs_months": 30.0, "recurrence": 0}).to_csv(root / "outcome.csv", index=False)
    path = root / "data_manifest.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def toy_profile(root: Path, **overrides):
    """The ci profile with outputs and cache under ``root`` (and optional nested overrides)."""
    from hcc_utils.config import load_profile

    ov = {"outputs": str(Path(root) / "outputs"), "cache": str(Path(root) / "cache"),
          "preprocess": {"size": 64, "context_slices": 1}}
    for k, v in overrides.items():
        ov[k] = {**ov.get(k, {}), **v} if isinstance(v, dict) else v
    return load_profile("ci", overrides=ov)
