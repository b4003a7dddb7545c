"""The embedded default cohort: a synthetic, deterministic cohort shaped like the paper's (stage 2).

The paper's data (Wang et al., BME Frontiers 2022) are private, so the book runs by default on a cohort generated here
from a seed, with no download. ``make cohort`` (``python -m hcc_utils.synthetic --profile demo``) writes it; ``make
book`` does so when it is missing. Everything is synthetic: no patient exists behind any row.

Layout (under the profile's ``cohort.root``, e.g. ``data/synthetic``)::

    images/<pid>_AP.nii.gz, images/<pid>_PP.nii.gz   arterial / portal CT in HU (int16, real spacing/origin/direction)
    masks/<pid>_AP.nii.gz,  masks/<pid>_PP.nii.gz    ground-truth tumour mask on the same grid (uint8 0/1)
    clinical.csv       patient_id + hcc_utils.manifest.CLINICAL_VARIABLES
    visual_reads.csv   patient_id + the 8 vis_* features (two readers' consensus, 0/1)
    visual_reads_by_reader.csv   patient_id, reader (1, 2), the 8 vis_* reads of each reader
    outcome.csv        patient_id, rfs_months, recurrence
    truth.csv          latent aggressiveness, true linear predictor, true image parameters (tests and the
                       book's ground-truth check only; no model may read it)
    stamp.json         settings, seed and code hash the cohort was made with (a complete cohort with the same stamp
                       is not regenerated)

and the manifest (``hcc_utils.manifest.MANIFEST_COLUMNS``, paths relative to the manifest's folder) at the profile's
``cohort.manifest`` (the committed ``data_manifest.csv`` at the repository root for ``demo`` and ``paper``).

Cohort
------
``n_development`` patients from centre 1 and ``n_validation`` from centre 2 (demo/paper: 180 + 28, ci: 16 + 8);
``n_annotated`` development patients, drawn at random, have ``seg_train = 1`` (their masks may train the U-Net).
Every patient has masks, so segmentation can be scored everywhere. Centre 2 is another scanner: 2.8 mm pixels and 4 mm
slices instead of 3.0 mm and 5 mm, more noise (15 vs 11 HU), 10 % less arterial enhancement, a softer kernel.

More external centres, on request: ``n_external`` in the profile's ``cohort`` settings (``n_external: {centre3:
20}``; default none) or ``--external centre3=20`` on the command line adds 20 patients of centre 3, a third scanner
(3.2 mm pixels, 4.5 mm slices, noise 18 HU, 5 % more arterial enhancement, a sharper kernel and HU read 12 too high),
named ``C3_001``... with cohort ``validation:centre3``; centre 2's patients are then labelled ``validation:centre2``,
so that the book reports each external cohort apart. A key is ``centre<k>`` for a centre ``k >= 3`` of
:data:`hcc_utils.phantom.CENTRES`. The extra centre is drawn from its own streams (its tables from a generator seeded
with ``(seed, k)``, its images with ``(seed, 100000 k + j)``), so that centres 1 and 2, their files included, are the
same with or without it; without ``n_external`` the cohort is exactly the two-centre one.

Targeted marginals (Table 1 of the paper; :func:`simulate_tables`, checked by ``tests/test_synthetic.py``)
------------------------------------------------------------------------------------------------------------------
=============  =======================================================  ===================
variable       generator                                                test tolerance
=============  =======================================================  ===================
sex            M with p = 0.85                                          +-0.03 (n = 3000)
age            normal(52, 11), clipped to 18-85, integer years          mean +-1, sd +-1
hbsag          1 with p = 0.85                                          +-0.03
hbv_dna        1 (>= 10^4 IU/mL) with p = 0.55 if HBsAg+, 0.20 if not   overall 0.50 +-0.04
afp_ge400      1 with p = 0.35                                          +-0.03
child_pugh     A with p = 0.95                                          +-0.02
tb             lognormal, median 13 umol/L, log-sd 0.40 (0.1 units)     median +-1
alb            normal(41, 4) g/L (0.1 units)                            mean +-0.5, sd +-0.5
alt            lognormal, median 35 U/L, log-sd 0.60 (integer)          median +-3
ggt            lognormal, median 50 U/L, log-sd 0.80 (long right tail)  median +-5, mean > 1.2 x median
tumour size    lognormal diameter, median 47 mm, IQR 32-68, 15-140 mm   median +-3, quartiles +-4
=============  =======================================================  ===================

Outcome
-------
Recurrence-free survival from a proportional-hazards model (Weibull baseline, shape :data:`WEIBULL_SHAPE`)::

    log h(t) = log h0(t) + log(3.65) hbsag + log(2.36) afp_ge400 + log(1.006) ggt + BETA_LATENT * z

where ``z ~ N(0, 1)`` is the latent tumour aggressiveness (:data:`TRUE_LOG_HR`). Recurrence is observed up to 24
months; no recurrence by 24 months is censored at 24 months (``rfs_months <= 24``); independent loss to follow-up
censors about 6 % earlier. Times are floored to 0.01 month (coarser rounding creates ties that attenuate Cox
estimates), so an event always has ``rfs_months < 24`` (early recurrence = recurrence).

How z shows in the images (:data:`LATENT_LOADINGS`): mostly in continuous degrees that a binary read does not
capture, arterial enhancement (HU above the liver) and, in the 90 % of tumours that wash out, portal washout (HU below
the liver, 14-70 HU; the others only 4-10 HU); less in margin irregularity (lobulation of several
millimetres), heterogeneity and necrosis, peritumoral arterial enhancement and capsule completeness; slightly in
size. The arterial phase is harder: a fixed arterial delay catches 20 % of patients early (enhancement x 0.35-0.7,
``ap_timing``), peritumoral enhancement and a wider boundary blur hide the margin, and centre 2 enhances 10 % less.

Population targets (:func:`population_targets`: in-sample logistic ER AUC on 20,000 simulated patients; checked by
``tests/test_synthetic.py`` within +-0.02)
=============================  ======  ====================================================
predictor set                  target  paper (development AUC)
=============================  ======  ====================================================
latent z alone                 0.78
image phenotype (all true      0.76    DSFR 0.740 (what a perfect reader of the images knows)
image parameters)
the eight visual reads         0.66    visual-features model 0.657
clinical (hbsag, afp, ggt)     0.69    what Table 3's hazard ratios imply beside the latent
image phenotype + clinical     0.83    DSFR-C 0.782
early recurrence rate          0.63
=============================  ======  ====================================================

Visual reads: two simulated radiologists read each of the 8 features from the true image parameters with reader noise;
the consensus is their common read, or a third read when they disagree.

Determinism: tables come from one generator seeded with ``cohort.seed``; each patient's images from a generator seeded
with ``(seed, patient index)``, so files are byte-identical whatever the number of worker processes. NIfTI files are
written by SimpleITK/zlib, whose gzip header holds no timestamp (checked by the tests).
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import multiprocessing as mp
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hcc_utils.manifest import CLINICAL_VARIABLES, MANIFEST_COLUMNS, VISUAL_FEATURES, early_recurrence
from hcc_utils.phantom import CENTRES, patient_job

# --- the planted model ----------------------------------------------------------------------------------------------

#: True log hazard ratios of the planted proportional-hazards model (per unit of each covariate; ggt per U/L).
TRUE_HR = {"hbsag": 3.65, "afp_ge400": 2.36, "ggt": 1.006}
#: Log hazard ratio of the latent aggressiveness z (per SD).
BETA_LATENT = 1.0
#: How strongly z shows in each image parameter (logit or HU per SD of z; see :func:`simulate_tables`).
LATENT_LOADINGS = {"irregularity": 0.5, "heterogeneity": 0.45, "peritumoral": 0.7, "capsule": 0.55,
                   "ap_enhancement": 6.0, "pp_washout_hu": 12.0}
TRUE_LOG_HR = {**{k: math.log(v) for k, v in TRUE_HR.items()}, "latent": BETA_LATENT}
#: Weibull baseline: h0(t) = WEIBULL_SHAPE / WEIBULL_SCALE * (t / WEIBULL_SCALE) ** (WEIBULL_SHAPE - 1) (months),
#: scale calibrated so that about 63 % recur within 24 months.
WEIBULL_SHAPE = 0.9
WEIBULL_SCALE = 154.0
#: Monthly rate of (independent, exponential) loss to follow-up before 24 months.
LOSS_RATE = 0.004
LANDMARK = 24.0

VIS_NAMES = [v.name for v in VISUAL_FEATURES]
CLIN_NAMES = [v.name for v in CLINICAL_VARIABLES]

CENTRE_NAMES = {1: "development", 2: "validation"}
#: Image-seed offset of an extra centre's patients (patient j of centre k: ``IMAGE_INDEX_STRIDE * k + j``).
IMAGE_INDEX_STRIDE = 100_000


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# --- tables -----------------------------------------------------------------------------------------------------------

def simulate_tables(n: int, seed: int, centre: np.ndarray | None = None, stream: int = 0) -> pd.DataFrame:
    """Simulate the tables of ``n`` patients (no images): clinical, latent truth, image parameters, reads, outcome.

    Parameters
    ----------
    n : int
        Number of patients.
    seed : int
        Master seed; the same ``(n, seed, centre)`` always gives the same table.
    centre : array of int, optional
        Centre (1, 2, ...) of each patient (default: all 1). Only the readers' view of the images depends on it.
    stream : int
        0: the cohort's stream; another value (an extra centre's number) gives an independent generator.

    Returns
    -------
    pandas.DataFrame
        One row per patient (index 0..n-1) with the clinical variables (:data:`CLINICAL_VARIABLES` names), ``latent``
        (z), ``lp`` (true linear predictor), the true image parameters (``diameter_mm``, ``irregularity``,
        ``heterogeneity``, ``peritumoral``, ``rim``, ``artery``, ``capsule``, ``washout``, ``ap_enhancement``,
        ``pp_washout_hu``), the readers' reads (``<vis>_r1``, ``<vis>_r2``), the consensus ``vis_*``, the true event
        and censoring times (``t_event``, ``t_censor``) and the observed ``rfs_months`` and ``recurrence``.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xC11] + ([int(stream)] if stream else [])))
    centre = np.ones(n, dtype=int) if centre is None else np.asarray(centre, dtype=int)
    if centre.shape != (n,):
        raise ValueError(f"centre must have {n} entries, got {centre.shape}")
    df = pd.DataFrame(index=pd.RangeIndex(n))
    # clinical (Table 1)
    df["sex"] = np.where(rng.random(n) < 0.85, "M", "F")
    df["age"] = np.clip(np.round(rng.normal(52.0, 11.0, n)), 18, 85).astype(int)
    hbsag = (rng.random(n) < 0.85).astype(int)
    df["hbsag"] = hbsag
    df["hbv_dna"] = (rng.random(n) < np.where(hbsag == 1, 0.55, 0.20)).astype(int)
    df["afp_ge400"] = (rng.random(n) < 0.35).astype(int)
    df["child_pugh"] = np.where(rng.random(n) < 0.95, "A", "B")
    df["tb"] = np.round(np.clip(13.0 * np.exp(rng.normal(0, 0.40, n)), 3.0, 120.0), 1)
    df["alb"] = np.round(np.clip(rng.normal(41.0, 4.0, n), 25.0, 55.0), 1)
    df["alt"] = np.round(np.clip(35.0 * np.exp(rng.normal(0, 0.60, n)), 5.0, 1000.0)).astype(int)
    df["ggt"] = np.round(np.clip(50.0 * np.exp(rng.normal(0, 0.80, n)), 8.0, 1200.0)).astype(int)
    # latent aggressiveness and the tumour it shows in the images
    z = rng.normal(0.0, 1.0, n)
    df["latent"] = z
    e = rng.normal(0.0, 1.0, n)
    logd = math.log(47.0) + 0.559 * (0.3 * z + math.sqrt(1 - 0.09) * e)
    df["diameter_mm"] = np.round(np.clip(np.exp(logd), 15.0, 140.0), 1)
    L = LATENT_LOADINGS
    df["irregularity"] = _sigmoid(L["irregularity"] * z - 0.3 + rng.normal(0, 0.7, n))
    df["heterogeneity"] = _sigmoid(L["heterogeneity"] * z + 0.8 * (logd - math.log(47.0)) + rng.normal(0, 0.7, n))
    df["peritumoral"] = (rng.random(n) < _sigmoid(-1.0 + L["peritumoral"] * z)).astype(int)
    df["rim"] = (rng.random(n) < _sigmoid(-1.6 + 0.4 * z)).astype(int)
    df["artery"] = (rng.random(n) < _sigmoid(-0.6 + 1.5 * (logd - math.log(47.0)) + 0.3 * z)).astype(int)
    cap = _sigmoid(1.4 - L["capsule"] * z + rng.normal(0, 0.8, n))
    cap = np.where(cap < 0.12, 0.0, cap)  # absent capsule
    df["capsule"] = np.round(cap, 3)
    # continuous degrees that a binary read does not capture: arterial enhancement (HU above the liver) and, in the
    # tumours that wash out, the washout (HU below the liver), both stronger in aggressive tumours
    df["ap_enhancement"] = np.round(np.clip(32.0 + L["ap_enhancement"] * z + rng.normal(0, 8.0, n), 8.0, 80.0), 1)
    df["washout"] = (rng.random(n) < 0.90).astype(int)
    # (a tumour without washout is only 4-10 HU darker than the liver in PP)
    wo = np.clip(34.0 + L["pp_washout_hu"] * z + rng.normal(0, 5.0, n), 14.0, 70.0)
    df["pp_washout_hu"] = np.round(np.where(df["washout"] == 1, wo, rng.uniform(4.0, 10.0, n)), 1)
    # arterial timing: a fixed delay catches some patients early, with weaker arterial enhancement (not the tumour's
    # property: it blurs what the AP images say about z)
    df["ap_timing"] = np.round(np.where(rng.random(n) < 0.2, rng.uniform(0.35, 0.7, n), 1.0), 3)
    # readers
    noisier = np.where(centre >= 2, 1.2, 1.0)  # images of the external scanners are read less surely
    reads = {}
    for r in (1, 2, 3):
        size_seen = df["diameter_mm"].to_numpy() * np.exp(rng.normal(0, 0.08, n))
        reads[r] = {
            "vis_size_gt5cm": (size_seen > 50.0).astype(int),
            "vis_nonsmooth_margin": (df["irregularity"].to_numpy() + rng.normal(0, 0.27, n) * noisier > 0.5),
            "vis_peritumoral_enhancement": _flip(df["peritumoral"].to_numpy(), 0.22 * noisier, rng),
            "vis_rim_enhancement": _flip(df["rim"].to_numpy(), 0.15 * noisier, rng),
            "vis_intratumoral_artery": _flip(df["artery"].to_numpy(), 0.15 * noisier, rng),
            "vis_incomplete_capsule": (df["capsule"].to_numpy() + rng.normal(0, 0.27, n) * noisier < 0.6),
            "vis_washout": _flip(df["washout"].to_numpy(), 0.10 * noisier, rng),
            "vis_heterogeneity": (df["heterogeneity"].to_numpy() + rng.normal(0, 0.27, n) * noisier > 0.55),
        }
    for v in VIS_NAMES:
        r1, r2, r3 = (np.asarray(reads[r][v], dtype=int) for r in (1, 2, 3))
        df[f"{v}_r1"], df[f"{v}_r2"] = r1, r2
        df[v] = np.where(r1 == r2, r1, r3)
    # outcome: Weibull proportional hazards, administrative censoring at 24 months, loss to follow-up
    lp = (TRUE_LOG_HR["hbsag"] * df["hbsag"] + TRUE_LOG_HR["afp_ge400"] * df["afp_ge400"]
          + TRUE_LOG_HR["ggt"] * df["ggt"] + BETA_LATENT * z).to_numpy()
    df["lp"] = lp
    u = rng.random(n)
    t_event = WEIBULL_SCALE * (-np.log(u) / np.exp(lp)) ** (1.0 / WEIBULL_SHAPE)
    t_censor = np.minimum(rng.exponential(1.0 / LOSS_RATE, n), LANDMARK)
    df["t_event"], df["t_censor"] = t_event, t_censor
    event = t_event < t_censor
    t = np.where(event, t_event, t_censor)
    rfs = np.floor(t * 100.0) / 100.0  # 0.01 month: coarser rounding makes ties that bias Cox (Efron) fits
    rfs = np.where(t_censor >= LANDMARK, np.where(event, rfs, LANDMARK), rfs)
    df["rfs_months"] = np.maximum(rfs, 0.01)
    df["recurrence"] = event.astype(int)
    return df


def _flip(x: np.ndarray, p, rng) -> np.ndarray:
    return np.where(rng.random(len(x)) < p, 1 - x, x).astype(int)


#: The true image parameters: what a perfect reader of both phases could know about a tumour.
IMAGE_PHENOTYPE = ["diameter_mm", "irregularity", "heterogeneity", "peritumoral", "rim", "artery", "capsule",
                   "washout", "ap_enhancement", "pp_washout_hu", "ap_timing"]
#: The clinical variables of the planted hazard model.
PLANTED_CLINICAL = ["hbsag", "afp_ge400", "ggt"]
#: Predictor sets of :func:`population_targets` and the paper's development AUCs where it has the comparison.
TARGET_SETS = {
    "latent": (["latent"], None),
    "image phenotype": (IMAGE_PHENOTYPE, 0.740),  # the best any image model can do; paper DSFR
    "visual reads": (VIS_NAMES, 0.657),
    "clinical": (PLANTED_CLINICAL, None),
    "image phenotype + clinical": (IMAGE_PHENOTYPE + PLANTED_CLINICAL, 0.782),  # paper DSFR-C
}


def population_targets(n: int = 20_000, seed: int = 2022) -> pd.DataFrame:
    """What each predictor set can reach in the population: in-sample logistic ER AUC on ``n`` simulated patients.

    With ``n`` this large, in-sample and out-of-sample AUC agree to about 0.002, so these are the ceilings that the
    book's models, fitted on 180 patients, are compared with. Diameter enters on the log scale.

    Returns
    -------
    pandas.DataFrame
        Index: predictor set (:data:`TARGET_SETS`) and ``early recurrence rate``; columns ``value`` and ``paper``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    d = simulate_tables(n, seed)
    d["diameter_mm"] = np.log(d["diameter_mm"])
    er = np.asarray(early_recurrence(d["rfs_months"], d["recurrence"], LANDMARK), dtype=int)
    rows = {}
    for name, (cols, paper) in TARGET_SETS.items():
        X = StandardScaler().fit_transform(d[cols].to_numpy(float))
        p = LogisticRegression(C=1e6, max_iter=5000).fit(X, er).predict_proba(X)[:, 1]
        rows[name] = {"value": roc_auc_score(er, p), "paper": paper}
    rows["early recurrence rate"] = {"value": float(er.mean()), "paper": None}
    return pd.DataFrame.from_dict(rows, orient="index")


# --- the cohort's tables ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CohortSpec:
    """What a cohort is made of (the stamp compares it)."""

    n_development: int
    n_validation: int
    n_annotated: int
    seed: int
    #: Extra external centres: ``(("centre3", 20),)``; empty for the two-centre cohort.
    n_external: tuple[tuple[str, int], ...] = ()

    @property
    def n(self) -> int:
        return self.n_development + self.n_validation + sum(n for _, n in self.n_external)

    @property
    def extra_centres(self) -> list[tuple[int, str, int]]:
        """``(centre number, name, n patients)`` of each extra centre."""
        return [(int(name[len("centre"):]), name, n) for name, n in self.n_external]

    def stamp(self) -> dict[str, Any]:
        """The spec as the stamp records it (``n_external`` only when there is one)."""
        d = dict(self.__dict__)
        if not self.n_external:
            d.pop("n_external")
        else:
            d["n_external"] = dict(self.n_external)
        return d


def external_spec(n_external) -> tuple[tuple[str, int], ...]:
    """Checked ``n_external`` setting (name -> patients) as a spec field.

    Raises
    ------
    ValueError
        For a name that is not ``centre<k>`` with ``k >= 3`` a centre of :data:`hcc_utils.phantom.CENTRES`, or a
        count below 1.
    """
    out = []
    for name, n in dict(n_external or {}).items():
        name = str(name)
        k = name[len("centre"):]
        if not (name.startswith("centre") and k.isdigit() and int(k) >= 3 and int(k) in CENTRES):
            extra = ", ".join(f"centre{c}" for c in CENTRES if c >= 3)
            raise ValueError(f"n_external: unknown centre {name!r}; the phantom has the extra centre(s) {extra}")
        if int(n) < 1:
            raise ValueError(f"n_external: {name} needs at least 1 patient, got {n}")
        out.append((name, int(n)))
    return tuple(sorted(out, key=lambda t: int(t[0][len("centre"):])))


def patient_ids(spec: CohortSpec) -> list[str]:
    """``DEV001``.. then ``VAL001``.. (3 digits, more when needed), then ``C3_001``.. for an extra centre 3."""
    w = max(3, len(str(max(spec.n_development, spec.n_validation))))
    return ([f"DEV{i + 1:0{w}d}" for i in range(spec.n_development)]
            + [f"VAL{i + 1:0{w}d}" for i in range(spec.n_validation)]
            + [f"C{k}_{i + 1:0{max(3, len(str(n)))}d}" for k, _, n in spec.extra_centres for i in range(n)])


def image_indices(spec: CohortSpec) -> list[int]:
    """The index each patient's images are seeded with: its position for centres 1 and 2, its own stream
    (:data:`IMAGE_INDEX_STRIDE` x centre + j) for an extra centre."""
    return (list(range(spec.n_development + spec.n_validation))
            + [IMAGE_INDEX_STRIDE * k + i for k, _, n in spec.extra_centres for i in range(n)])


def cohort_tables(spec: CohortSpec) -> pd.DataFrame:
    """The full table of a cohort (no images): ids, cohort, centre, seg_train and everything of :func:`simulate_tables`.

    Parameters
    ----------
    spec : CohortSpec

    Returns
    -------
    pandas.DataFrame
        Indexed by ``patient_id``.
    """
    if spec.n_annotated > spec.n_development:
        raise ValueError(f"n_annotated ({spec.n_annotated}) exceeds n_development ({spec.n_development})")
    centre = np.r_[np.ones(spec.n_development, int), np.full(spec.n_validation, 2)]
    n12 = spec.n_development + spec.n_validation
    df = simulate_tables(n12, spec.seed, centre)
    names = dict(CENTRE_NAMES)
    if spec.extra_centres:  # each external cohort by its centre's name; each extra centre from its own stream
        names[2] = "validation:centre2"
        parts = [df]
        for k, name, n in spec.extra_centres:
            names[k] = f"validation:{name}"
            parts.append(simulate_tables(n, spec.seed, np.full(n, k), stream=k))
            centre = np.r_[centre, np.full(n, k)]
        df = pd.concat(parts, ignore_index=True)
    df.insert(0, "patient_id", patient_ids(spec))
    df.insert(1, "cohort", [names[c] for c in centre])
    df.insert(2, "centre", centre)
    rng = np.random.default_rng(np.random.SeedSequence([int(spec.seed), 0x5E6]))
    ann = np.zeros(spec.n, dtype=int)
    ann[rng.choice(spec.n_development, size=spec.n_annotated, replace=False)] = 1
    df.insert(3, "seg_train", ann)
    return df.set_index("patient_id")


# --- cohort on disk ----------------------------------------------------------------------------------------------------

def code_hash() -> str:
    """SHA-256 (first 16 hex digits) of the generator's and the phantom's sources: a code change makes a new cohort."""
    from hcc_utils import phantom

    return hashlib.sha256(Path(__file__).read_bytes() + Path(phantom.__file__).read_bytes()).hexdigest()[:16]


def cohort_spec(profile, n_development: int | None = None, n_validation: int | None = None,
                n_annotated: int | None = None, n_external: dict | None = None) -> tuple[CohortSpec, Path, Path]:
    """Spec, root folder and manifest path of a profile's cohort, with optional size overrides.

    When the sizes (or the extra centres, ``n_external``: name -> patients, see the module's docstring) differ from
    the profile's, the cohort goes to ``<root>-<n_dev>-<n_val>-<n_ann>`` (plus ``-<centre>_<n>`` per extra centre)
    with its manifest inside (so the committed manifest and the profile's cohort are never overwritten).
    """
    c = profile["cohort"]
    nd = int(c["n_development"] if n_development is None else n_development)
    nv = int(c["n_validation"] if n_validation is None else n_validation)
    na = int(c["n_annotated"] if n_annotated is None else n_annotated)
    na = min(na, nd)
    ext = external_spec(c.get("n_external") if n_external is None else n_external)
    spec = CohortSpec(nd, nv, na, int(c.get("seed", profile.seed)), ext)
    root = profile.root / c["root"]
    manifest = profile.root / c["manifest"]
    if ((nd, nv, na) != (int(c["n_development"]), int(c["n_validation"]), min(int(c["n_annotated"]), nd))
            or ext != external_spec(c.get("n_external"))):
        root = root.with_name(f"{root.name}-{nd}-{nv}-{na}" + "".join(f"-{k}_{n}" for k, n in ext))
        manifest = root / "data_manifest.csv"
    return spec, root, manifest


def manifest_frame(spec: CohortSpec, root: Path, manifest: Path) -> pd.DataFrame:
    """The manifest of a cohort (:data:`MANIFEST_COLUMNS`, paths relative to the manifest's folder)."""
    tab = cohort_tables(spec)
    rel = Path(os.path.relpath(Path(root).resolve(), Path(manifest).resolve().parent))
    rows = []
    for pid, r in tab.iterrows():
        rows.append({
            "patient_id": pid, "cohort": r["cohort"], "centre": int(r["centre"]),
            "ct_ap": (rel / "images" / f"{pid}_AP.nii.gz").as_posix(),
            "ct_pp": (rel / "images" / f"{pid}_PP.nii.gz").as_posix(),
            "series_uid_ap": "", "series_uid_pp": "",
            "mask_ap": (rel / "masks" / f"{pid}_AP.nii.gz").as_posix(),
            "mask_pp": (rel / "masks" / f"{pid}_PP.nii.gz").as_posix(),
            "seg_train": int(r["seg_train"]),
            "clinical_file": (rel / "clinical.csv").as_posix(),
            "visual_file": (rel / "visual_reads.csv").as_posix(),
            "outcome_file": (rel / "outcome.csv").as_posix(),
        })
    return pd.DataFrame(rows, columns=MANIFEST_COLUMNS)


def manifest_text(profile, **sizes) -> str:
    """The manifest CSV text the generator writes for ``profile`` (no images are made)."""
    spec, root, manifest = cohort_spec(profile, **sizes)
    return _csv(manifest_frame(spec, root, manifest))


def _csv(df: pd.DataFrame) -> str:
    return df.to_csv(index=False, lineterminator="\n", float_format="%.6g")


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


TRUTH_COLUMNS = ["cohort", "centre", "latent", "lp", "t_event", "t_censor", "diameter_mm", "irregularity",
                 "heterogeneity", "peritumoral", "rim", "artery", "capsule", "washout", "ap_enhancement",
                 "pp_washout_hu", "ap_timing"]


def _stamp(spec: CohortSpec, manifest: Path, root: Path) -> dict[str, Any]:
    rel = os.path.relpath(Path(manifest).resolve(), Path(root).resolve())
    used = {1, 2} | {k for k, _, _ in spec.extra_centres}
    return {"generator": "hcc_utils.synthetic", "code": code_hash(), "spec": spec.stamp(), "manifest": rel,
            "centres": {str(k): {kk: list(vv) if isinstance(vv, tuple) else vv for kk, vv in v.items()}
                        for k, v in CENTRES.items() if k in used}}


def is_complete(spec: CohortSpec, root: Path, manifest: Path) -> bool:
    """True when ``root`` holds a complete cohort made with the same spec and code (its stamp matches)."""
    stamp = Path(root) / "stamp.json"
    if not stamp.exists() or not Path(manifest).exists():
        return False
    try:
        if json.loads(stamp.read_text()) != _stamp(spec, manifest, root):
            return False
    except (ValueError, OSError):
        return False
    if Path(manifest).read_text() != _csv(manifest_frame(spec, root, manifest)):
        return False
    names = ["clinical.csv", "visual_reads.csv", "visual_reads_by_reader.csv", "outcome.csv", "truth.csv"]
    for pid in patient_ids(spec):
        names += [f"images/{pid}_AP.nii.gz", f"images/{pid}_PP.nii.gz", f"masks/{pid}_AP.nii.gz",
                  f"masks/{pid}_PP.nii.gz"]
    return all((Path(root) / n).exists() for n in names)


def generate_cohort(profile, force: bool = False, *, n_development: int | None = None,
                    n_validation: int | None = None, n_annotated: int | None = None, n_external: dict | None = None,
                    root: str | Path | None = None, manifest: str | Path | None = None, workers: int = 2,
                    progress: bool = True) -> Path:
    """Generate (or find) a profile's synthetic cohort and return the path of its manifest.

    Parameters
    ----------
    profile : hcc_utils.config.Profile
        Its ``cohort`` settings give sizes, seed, root and manifest path.
    force : bool
        Regenerate even when a complete cohort with the same stamp exists.
    n_development, n_validation, n_annotated : int, optional
        Size overrides; when they differ from the profile's the cohort is written to a separate root
        (see :func:`cohort_spec`).
    n_external : dict, optional
        Extra external centres, name -> patients (``{"centre3": 20}``; default: the profile's ``n_external``, none
        unless set); ``{}`` asks for none.
    root, manifest : path, optional
        Write somewhere else (tests); ``manifest`` defaults to ``<root>/data_manifest.csv``.
    workers : int
        Processes rendering images (files do not depend on it).
    progress : bool
        Show a progress bar.

    Returns
    -------
    Path
        The manifest.
    """
    spec, root_, manifest_ = cohort_spec(profile, n_development, n_validation, n_annotated, n_external)
    if root is not None:
        root_ = Path(root)
        manifest_ = Path(manifest) if manifest is not None else root_ / "data_manifest.csv"
    elif manifest is not None:
        manifest_ = Path(manifest)
    root_, manifest_ = Path(root_).resolve(), Path(manifest_).resolve()
    if not force and is_complete(spec, root_, manifest_):
        return manifest_
    if getattr(mp.current_process(), "_inheriting", False):
        # a worker started by spawn re-runs the caller's script; it would wait on the lock below for ever
        raise RuntimeError("generate_cohort() was called while a worker process was starting: the script that calls "
                           "it re-runs in each worker. Call it under `if __name__ == \"__main__\":`.")
    root_.mkdir(parents=True, exist_ok=True)
    with _lock(root_ / ".generating.lock"):  # another process (a parallel test run) may be generating it
        if not force and is_complete(spec, root_, manifest_):
            return manifest_
        _generate(spec, root_, manifest_, workers, progress)
    return manifest_


@contextlib.contextmanager
def _lock(path: Path):
    import fcntl

    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _generate(spec: CohortSpec, root_: Path, manifest_: Path, workers: int, progress: bool) -> None:
    t0 = time.time()
    stamp = root_ / "stamp.json"
    stamp.unlink(missing_ok=True)  # an interrupted run must not look complete
    tab = cohort_tables(spec)
    jobs = []
    for i, (pid, r) in zip(image_indices(spec), tab.iterrows()):
        params = {k: (v.item() if hasattr(v, "item") else v) for k, v in r[TRUTH_COLUMNS].items()}
        jobs.append((pid, params, int(r["centre"]), spec.seed, i, str(root_)))
    geos: dict[str, dict] = {}
    bar = _progress(len(jobs), f"synthetic cohort ({spec.n} patients) -> {root_}", progress)
    if workers > 1 and len(jobs) > 1:
        from concurrent.futures import ProcessPoolExecutor, as_completed
        from concurrent.futures.process import BrokenProcessPool

        # fork is fast; after torch has started its thread pools a forked child can hang, so spawn then. A worker that
        # dies stops the run with BrokenProcessPool (multiprocessing.Pool would wait for ever).
        method = "fork" if sys.platform.startswith("linux") and "torch" not in sys.modules else "spawn"
        try:
            with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=mp.get_context(method)) as ex:
                for fut in as_completed([ex.submit(patient_job, job) for job in jobs]):
                    pid, geo = fut.result()
                    geos[pid] = geo
                    bar.update(1)
        except BrokenProcessPool as e:
            raise RuntimeError(f"a worker process generating the synthetic cohort in {root_} stopped (its error is "
                               "printed above; workers=1 generates in this process)") from e
    else:
        for job in jobs:
            pid, geo = patient_job(job)
            geos[pid] = geo
            bar.update(1)
    bar.close()
    geo_df = pd.DataFrame.from_dict(geos, orient="index")[
        ["tumour_voxels", "tumour_slices", "tumour_volume_ml", "tumour_cx", "tumour_cy", "tumour_cz"]]
    out = tab.reset_index()
    _write_text(root_ / "clinical.csv", _csv(out[["patient_id"] + CLIN_NAMES]))
    _write_text(root_ / "visual_reads.csv", _csv(out[["patient_id"] + VIS_NAMES]))
    by_reader = pd.concat([
        out[["patient_id"] + [f"{v}_r{r}" for v in VIS_NAMES]].set_axis(["patient_id"] + VIS_NAMES, axis=1)
        .assign(reader=r) for r in (1, 2)]).sort_values(["patient_id", "reader"], kind="stable")
    _write_text(root_ / "visual_reads_by_reader.csv", _csv(by_reader[["patient_id", "reader"] + VIS_NAMES]))
    _write_text(root_ / "outcome.csv", _csv(out[["patient_id", "rfs_months", "recurrence"]]))
    truth = tab[TRUTH_COLUMNS].join(geo_df)
    truth["seg_train"] = tab["seg_train"]
    _write_text(root_ / "truth.csv", _csv(truth.reset_index()))
    _write_text(manifest_, _csv(manifest_frame(spec, root_, manifest_)))
    _write_text(stamp, json.dumps(_stamp(spec, manifest_, root_), indent=1, sort_keys=True) + "\n")
    if progress:
        print(f"synthetic cohort: {spec.n} patients in {time.time() - t0:.1f} s -> {manifest_}", file=sys.stderr)


def _progress(total: int, desc: str, show: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not show, unit="patient")


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m hcc_utils.synthetic --profile demo [--force] [--n-development N ...]
    [--external centre3=20]``."""
    from hcc_utils.config import load_profile

    ap = argparse.ArgumentParser(prog="python -m hcc_utils.synthetic", description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="demo")
    ap.add_argument("--force", action="store_true", help="regenerate even if a complete cohort exists")
    ap.add_argument("--n-development", type=int)
    ap.add_argument("--n-validation", type=int)
    ap.add_argument("--n-annotated", type=int)
    ap.add_argument("--external", action="append", metavar="CENTRE=N",
                    help="an extra external centre and its patients, e.g. centre3=20 (repeatable)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    prof = load_profile(a.profile)
    ext = None
    if a.external:
        try:
            ext = {k.strip(): int(v) for k, v in (e.split("=", 1) for e in a.external)}
        except ValueError:
            ap.error(f"--external takes CENTRE=N (e.g. centre3=20), got {a.external}")
    path = generate_cohort(prof, force=a.force, n_development=a.n_development, n_validation=a.n_validation,
                           n_annotated=a.n_annotated, n_external=ext, workers=a.workers, progress=not a.no_progress)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
