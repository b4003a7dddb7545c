"""Synthetic patient tables shared by the model and report tests (not the project's generator: small, fast, with
exactly the columns of :func:`hcc_utils.manifest.load_patient_table`)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from hcc_utils.manifest import VISUAL_FEATURES


def patient_table(n_dev: int, n_val: int, seed: int, prefix: str = "S", latent: bool = False, sex_p=None,
                  child_b: float = 0.1, age_shift: float = 0.0):
    """Patient table with clinical, visual and outcome columns.

    With ``latent`` the visual reads and ER follow a standard-normal latent (returned); otherwise visual reads are
    coin flips and the outcome is exponential RFS censored at 24 months. ``age_shift`` is added to the validation
    cohort's age. Returns ``(table, rng, latent or None)``; the generator continues where the table left it.
    """
    rng = np.random.default_rng(seed)
    n = n_dev + n_val
    lat = rng.normal(size=n) if latent else None
    pt = pd.DataFrame(index=pd.Index([f"{prefix}{i:03d}" for i in range(n)], name="patient_id"))
    pt["cohort"] = ["development"] * n_dev + ["validation"] * n_val
    pt["sex"] = rng.choice(["M", "F"], n, p=sex_p)
    pt["age"] = rng.normal(55, 10, n) + (np.r_[np.zeros(n_dev), np.full(n_val, age_shift)] if age_shift else 0)
    pt["hbsag"] = rng.integers(0, 2, n)
    pt["hbv_dna"] = rng.integers(0, 2, n)
    pt["afp_ge400"] = rng.integers(0, 2, n)
    pt["child_pugh"] = rng.choice(["A", "B"], n, p=[1 - child_b, child_b])
    for c in ["tb", "alb", "alt", "ggt"]:
        pt[c] = rng.gamma(2.0, 20.0, n)
    for v in VISUAL_FEATURES:
        pt[v.name] = (lat + rng.normal(0, 2, n) > 0).astype(int) if latent else rng.integers(0, 2, n)
    if latent:
        pt["er"] = (lat + rng.normal(0, 0.7, n) > 0).astype(int)
    else:
        t = rng.exponential(18, n)
        pt["rfs_months"] = np.minimum(t, 24.0).round(2)
        pt["recurrence"] = (t < 24).astype(int)
        pt["er"] = ((pt.recurrence == 1) & (pt.rfs_months < 24)).astype(int)
    return pt, rng, lat
