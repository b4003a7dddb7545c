"""A real liver-tumour CT (one LiTS case) through the book's own segmentation and feature code.

The data
--------
PyPI's ``liver-ct-segmentation-package==1.6.0`` ships one cropped CT of the LiTS challenge (case 117) with its
reference labels: ``data/img_117.mrc`` (128^3 float32, Hounsfield units kept) and ``data/lab_117.mrc`` (0 background,
1 liver, 2 tumour). :func:`fetch` takes the wheel with ``pip download --no-deps`` (its declared dependencies pin
torch 1.7: the package is **never installed**), extracts only the two files into a cache folder (``data/lits/``,
never committed: the LiTS licence allows non-commercial research use, not redistribution) and checks them against
the SHA-256 digests that the wheel's own ``RECORD`` lists.

Geometry and what is assumed
----------------------------
The MRC files store no voxel size (``voxel_size`` is 0). Array axis 2 is axial; an axial slice is
``data[:, :, k]`` with rows anterior -> posterior and the liver on the image's left (radiological display), so the
volume is transposed to (z, y, x) = (axis 2, axis 0, axis 1). The crop spans the whole liver in 128 voxels along
every axis, so it was resampled from the original scan; its true spacing is unknown (plausibly 1.2-1.6 mm). We
assume :data:`ASSUMED_SPACING_MM` = 1 mm isotropic. Nothing reported here depends on it: Dice is unit-free and
volumes are given in voxels.

The experiment
--------------
The reference tumour label (2) is the mask; the CT is treated as a portal-venous (PP) scan (LiTS scans are mostly
portal-venous; liver parenchyma here is about 120 HU and the tumours hypodense at about 70 HU), so it goes through
the PP window (profile ``windows.PP``: level 100, width 200 HU) and the same preprocessing, cache, U-Net, fastai
training loop, inference and feature extraction as the main book. To reuse those public functions unchanged the
one volume is cut along z into **slabs** of ``slab_size`` axial slices, each written as its own NIfTI "pseudo-case"
(one manifest row):

* every ``holdout_every``-th slab (starting at ``holdout_offset``) is **held out**: cohort ``validation``,
  ``seg_train = 0``; it is never seen in training or checkpoint selection;
* the other slabs are training pseudo-cases (cohort ``development``, ``seg_train = 1``), split patient-level by
  :func:`hcc_utils.segmentation.train_phase` into training and checkpoint-selection slabs as usual;
* ``gap`` slices of a training slab next to a held-out slab are dropped (belong to neither), so the held-out slabs'
  edge slices do not have a near-copy in the training set.

The held-out result is the Dice of the tumour over all held-out voxels together (predictions stitched back on the
128^3 grid), plus Dice per held-out slab and per slice. Adjacent slices of one patient are strongly correlated and
the tumours are the same lesions, so this measures whether windowing, preprocessing and training work on real HU
data; it is not an estimate of performance on new patients.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PACKAGE = "liver-ct-segmentation-package"
VERSION = "1.6.0"
CASE = "117"
#: name in the cache folder -> (path inside the wheel, SHA-256 listed in the wheel's RECORD, urlsafe base64)
FILES = {
    "image": ("liver_ct_segmentation_package/data/img_117.mrc", "ZRlUiES-jJKm833_IpYYAOxLqtcqTvu59wYf_SZeF4A"),
    "label": ("liver_ct_segmentation_package/data/lab_117.mrc", "D0lQr9shiuGoeQwjZ6Pxv_49aM8YYjnN-uiX5NT5kkA"),
}
SHAPE = (128, 128, 128)
LABELS = {0: "background", 1: "liver", 2: "tumour"}
ASSUMED_SPACING_MM = (1.0, 1.0, 1.0)
PHASE = "PP"
PREFIX = f"lits{CASE}"


class LitsUnavailable(RuntimeError):
    """The LiTS files could not be had (no pip, no registry access, a changed package...)."""


# ----------------------------------------------------------------------------------------------------------------------
# fetching
# ----------------------------------------------------------------------------------------------------------------------
def default_cache_dir() -> Path:
    """``data/lits/`` under the repository root (git-ignored)."""
    from hcc_utils.config import repo_root

    return repo_root() / "data" / "lits"


def _record_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return base64.urlsafe_b64encode(h.digest()).decode().rstrip("=")


def _cached(cache: Path) -> dict[str, Path] | None:
    out = {k: cache / Path(inner).name for k, (inner, _) in FILES.items()}
    if all(p.is_file() for p in out.values()) and all(_record_digest(out[k]) == FILES[k][1] for k in FILES):
        return out
    return None


def fetch(cache_dir: str | Path | None = None, timeout: int = 120) -> dict[str, Path]:
    """Return the paths of the LiTS CT and label files, downloading them once.

    Parameters
    ----------
    cache_dir : path, optional
        Folder for ``img_117.mrc`` and ``lab_117.mrc`` (default :func:`default_cache_dir`).
    timeout : int
        Seconds allowed for ``pip download``.

    Returns
    -------
    dict
        ``{"image": Path, "label": Path}``.

    Raises
    ------
    LitsUnavailable
        pip is missing, the registry cannot be reached, or the files in the wheel are not the expected ones.
    """
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    hit = _cached(cache)
    if hit:
        return hit
    cache.mkdir(parents=True, exist_ok=True)
    spec = f"{PACKAGE}=={VERSION}"
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
               "--no-input", "--timeout", "20", "--retries", "1", "-d", tmp, spec]
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=timeout,
                                 env={**os.environ, "PIP_NO_INPUT": "1"})
        except FileNotFoundError as exc:
            raise LitsUnavailable(f"cannot run pip ({exc})") from exc
        except subprocess.TimeoutExpired as exc:
            raise LitsUnavailable(f"`pip download {spec}` did not finish within {timeout} s") from exc
        if res.returncode != 0:
            tail = (res.stderr or res.stdout).strip().splitlines()[-3:]
            raise LitsUnavailable(f"`pip download --no-deps {spec}` failed (exit {res.returncode}): "
                                  + " | ".join(tail))
        wheels = sorted(Path(tmp).glob("*.whl"))
        if not wheels:
            raise LitsUnavailable(f"`pip download {spec}` produced no wheel in {tmp}")
        with zipfile.ZipFile(wheels[0]) as zf:
            names = set(zf.namelist())
            for key, (inner, digest) in FILES.items():
                if inner not in names:
                    raise LitsUnavailable(f"{wheels[0].name} has no {inner}")
                part = Path(tmp) / Path(inner).name
                with zf.open(inner) as src, open(part, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                if _record_digest(part) != digest:
                    raise LitsUnavailable(f"{inner} in {wheels[0].name} does not match its expected SHA-256")
                os.replace(part, cache / Path(inner).name)
    hit = _cached(cache)
    if not hit:  # pragma: no cover - the files were just checked
        raise LitsUnavailable(f"the LiTS files in {cache} failed their checksum after download")
    return hit


def available(cache_dir: str | Path | None = None) -> tuple[bool, str]:
    """Whether the LiTS case can be used here, and if not, why.

    Fetches the files when they are not cached yet (a 4.5 MB wheel), because whether the registry answers is the
    question. ``mrcfile`` must be importable too.

    Returns
    -------
    (bool, str)
        ``(True, "")`` or ``(False, reason)``.
    """
    try:
        import mrcfile  # noqa: F401
    except ImportError as exc:
        return False, f"the mrcfile package is not installed ({exc})"
    try:
        fetch(cache_dir)
    except LitsUnavailable as exc:
        return False, f"the LiTS case ({PACKAGE}=={VERSION} on PyPI) could not be fetched: {exc}"
    return True, ""


# ----------------------------------------------------------------------------------------------------------------------
# reading and converting
# ----------------------------------------------------------------------------------------------------------------------
def load_case(paths: dict[str, Path] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The CT (HU, float32) and the label volume (uint8 0/1/2), both (z, y, x) with z axial.

    Parameters
    ----------
    paths : dict, optional
        From :func:`fetch` (fetched when omitted).
    """
    import mrcfile

    paths = paths or fetch()
    vols = {}
    for key in ("image", "label"):
        with mrcfile.open(paths[key], permissive=False) as m:
            data = np.array(m.data)
        if data.shape != SHAPE:
            raise ValueError(f"LiTS {key} file {paths[key]}: shape {data.shape}, expected {SHAPE}")
        vols[key] = np.ascontiguousarray(np.transpose(data, (2, 0, 1)))  # axis 2 (axial) first
    hu = vols["image"].astype(np.float32)
    lab = vols["label"]
    bad = set(np.unique(lab).tolist()) - set(LABELS)
    if bad:
        raise ValueError(f"LiTS label file {paths['label']}: unexpected label values {sorted(bad)}")
    return hu, lab.astype(np.uint8)


def to_image(arr_zyx: np.ndarray, spacing=ASSUMED_SPACING_MM, z0: int = 0):
    """SimpleITK image of a (z, y, x) array with the assumed spacing; ``z0`` shifts the origin (slab position)."""
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(arr_zyx)
    img.SetSpacing(tuple(float(s) for s in spacing))
    img.SetOrigin((0.0, 0.0, float(z0) * float(spacing[2])))
    return img


def settings(profile) -> dict[str, Any]:
    """The ``lits`` block of a profile with its defaults filled in."""
    cfg = {"slab_size": 16, "holdout_every": 3, "holdout_offset": 1, "gap": 2, "size": None, "unet": {}}
    cfg.update(profile.get("lits", {}) or {})
    return cfg


def slab_plan(label: np.ndarray, slab_size: int = 16, holdout_every: int = 3, holdout_offset: int = 1,
              gap: int = 2) -> pd.DataFrame:
    """Cut the z axis into slabs and say which are held out.

    Returns
    -------
    DataFrame
        One row per slab: ``patient_id`` (``lits117_s<k>``), ``slab``, ``z0``, ``z1`` (half-open range actually
        used), ``role`` (``train`` | ``held-out``), ``n_slices``, ``tumour_slices``, ``tumour_voxels``.
    """
    nz = label.shape[0]
    if slab_size < 2 or holdout_every < 2 or not 0 <= holdout_offset < holdout_every or gap < 0:
        raise ValueError(f"bad slab settings: slab_size={slab_size}, holdout_every={holdout_every}, "
                         f"holdout_offset={holdout_offset}, gap={gap}")
    n = int(np.ceil(nz / slab_size))
    held = [k % holdout_every == holdout_offset for k in range(n)]
    rows = []
    for k in range(n):
        z0, z1 = k * slab_size, min(nz, (k + 1) * slab_size)
        if not held[k]:
            if k > 0 and held[k - 1]:
                z0 += gap
            if k + 1 < n and held[k + 1]:
                z1 -= gap
        if z1 <= z0:
            continue
        t = (label[z0:z1] == 2).reshape(z1 - z0, -1).sum(1)
        rows.append({"patient_id": f"{PREFIX}_s{k:02d}", "slab": k, "z0": z0, "z1": z1,
                     "role": "held-out" if held[k] else "train", "n_slices": z1 - z0,
                     "tumour_slices": int((t > 0).sum()), "tumour_voxels": int(t.sum())})
    plan = pd.DataFrame(rows)
    for role in ("train", "held-out"):
        if plan.loc[plan.role == role, "tumour_voxels"].sum() == 0:
            raise ValueError(f"slab plan has no tumour in its {role} slabs; change slab_size/holdout_every")
    return plan


def write_pseudo_cases(hu: np.ndarray, label: np.ndarray, plan: pd.DataFrame, out_dir: Path,
                       spacing=ASSUMED_SPACING_MM) -> pd.DataFrame:
    """Write each slab as NIfTI (CT in HU, tumour mask = label 2) and return its manifest rows.

    Files are rewritten only when their content differs, so the slice cache (keyed on file size and mtime) stays
    valid across runs.

    Returns
    -------
    DataFrame
        Manifest rows (schema of :mod:`hcc_utils.manifest`, absolute paths): held-out slabs are cohort
        ``validation`` with ``seg_train = 0``; training slabs ``development`` with ``seg_train = 1``. The LiTS case
        has one phase: it fills ``ct_pp``/``mask_pp`` (``ct_ap`` is left empty).
    """
    from hcc_utils.imaging import write_image

    out_dir = Path(out_dir)
    rows = []
    for r in plan.itertuples():
        ct_path = out_dir / "images" / f"{r.patient_id}_{PHASE}.nii.gz"
        m_path = out_dir / "masks" / f"{r.patient_id}_{PHASE}.nii.gz"
        for arr, path in ((hu[r.z0:r.z1].astype(np.float32), ct_path),
                          ((label[r.z0:r.z1] == 2).astype(np.uint8), m_path)):
            digest = hashlib.sha256(arr.tobytes() + repr((arr.shape, tuple(spacing), r.z0)).encode()).hexdigest()
            stamp = path.with_suffix(".sha256")
            if not (path.exists() and stamp.exists() and stamp.read_text() == digest):
                write_image(to_image(arr, spacing, r.z0), path)
                stamp.write_text(digest)
        held = r.role == "held-out"
        rows.append({"patient_id": r.patient_id, "cohort": "validation" if held else "development", "centre": "LiTS",
                     "ct_ap": np.nan, "ct_pp": str(ct_path), "series_uid_ap": np.nan, "series_uid_pp": np.nan,
                     "mask_ap": np.nan, "mask_pp": str(m_path), "seg_train": 0 if held else 1,
                     "clinical_file": np.nan, "visual_file": np.nan, "outcome_file": np.nan})
    df = pd.DataFrame(rows)
    df.to_csv(out_dir / "lits_manifest.csv", index=False)
    return df


def lits_profile(profile_name: str = "demo", overrides: dict | None = None):
    """The book profile with this chapter's settings (``profiles.yaml`` ``lits`` block) applied.

    ``lits.unet`` overrides ``unet`` (e.g. more epochs: one case gives few training slices), ``lits.size`` overrides
    ``preprocess.size``; ``overrides`` (nested dict) is applied last, e.g. ``{"lits": {"unet": {"epochs": 3}}}``.
    Outputs go to ``outputs/<profile>/lits/`` and the slice cache to ``.cache/<profile>/lits/``, so the chapter
    calls the book's functions unchanged without touching the main cohort's models, features or cache.
    """
    from hcc_utils.config import _merge, load_profile

    base = load_profile(profile_name, overrides=overrides)
    cfg = settings(base)
    extra: dict[str, Any] = {"unet": dict(cfg.get("unet") or {}),
                             "outputs": base.settings["outputs"].rstrip("/") + "/lits",
                             "cache": base.settings["cache"].rstrip("/") + "/lits",
                             "lits_chapter": True}
    if cfg.get("size"):
        extra["preprocess"] = {"size": int(cfg["size"])}
    return load_profile(profile_name, overrides=_merge(overrides or {}, extra))


def _check_profile(profile) -> None:
    if not profile.get("lits_chapter"):
        raise ValueError(f"profile {profile.name!r} is the main book's; pass hcc_utils.lits.lits_profile("
                         f"{profile.name!r}) so that the LiTS run writes under outputs/{profile.name}/lits/")


# ----------------------------------------------------------------------------------------------------------------------
# the experiment
# ----------------------------------------------------------------------------------------------------------------------
def output_dir(profile) -> Path:
    """``outputs/<profile>/lits/`` (the outputs folder of :func:`lits_profile`)."""
    _check_profile(profile)
    d = profile.outputs
    d.mkdir(parents=True, exist_ok=True)
    return d


def prepare(profile, cache_dir: str | Path | None = None) -> dict[str, Any]:
    """Fetch the case, cut it into slabs and write the pseudo-cases.

    Returns
    -------
    dict
        ``hu``, ``label`` (z, y, x arrays), ``plan`` (:func:`slab_plan`), ``manifest`` (DataFrame), ``paths``.
    """
    cfg = settings(profile)
    paths = fetch(cache_dir)
    hu, lab = load_case(paths)
    plan = slab_plan(lab, int(cfg["slab_size"]), int(cfg["holdout_every"]), int(cfg["holdout_offset"]),
                     int(cfg["gap"]))
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    df = write_pseudo_cases(hu, lab, plan, cache / "nifti")
    return {"hu": hu, "label": lab, "plan": plan, "manifest": df, "paths": paths}


def stitch(plan: pd.DataFrame, pred_dir: Path, shape: tuple[int, int, int]) -> np.ndarray:
    """Predicted masks of the slabs (``pred_masks/<pid>.nii.gz``) put back on the full grid; -1 where no slab."""
    import SimpleITK as sitk

    from hcc_utils.imaging import read_image

    out = np.full(shape, -1, dtype=np.int8)
    for r in plan.itertuples():
        f = Path(pred_dir) / f"{r.patient_id}.nii.gz"
        if not f.exists():
            raise FileNotFoundError(f"{f}: no predicted mask for slab {r.patient_id}")
        out[r.z0:r.z1] = sitk.GetArrayFromImage(read_image(f)).astype(np.int8)
    return out


def run_segmentation(profile, cache_dir: str | Path | None = None, seed: int | None = None, device="auto",
                     progress: bool = True) -> dict[str, Any]:
    """Train the book's U-Net on the training slabs, segment every slab and score the held-out ones.

    Uses :func:`hcc_utils.segmentation.train_phase` and :func:`~hcc_utils.segmentation.predict_cohort` unchanged
    (phase PP), writing to ``outputs/<profile>/lits/segmentation/PP/``.

    Returns
    -------
    dict
        Also written to ``outputs/<profile>/lits/results.json``: settings, slab plan, training metrics,
        ``heldout_dice`` (tumour Dice over all held-out voxels), ``heldout_dice_by_slab``, ``train_dice`` (the same on
        the training slabs, for comparison), per-slice Dice in ``slices.csv``.
    """
    from hcc_utils import segmentation as seg

    seed = profile.seed if seed is None else int(seed)
    data = prepare(profile, cache_dir)
    plan, lab, df = data["plan"], data["label"], data["manifest"]
    out = output_dir(profile)
    seg_dir = seg.phase_dir(profile, PHASE)
    metrics = seg.train_phase(df, profile, PHASE, seed=seed, device=device, progress=progress)
    dsc = seg.predict_cohort(df, profile, PHASE, device=device, progress=progress)
    pred = stitch(plan, seg_dir / "pred_masks", lab.shape)
    truth = lab == 2
    role = np.full(lab.shape[0], "gap", dtype=object)
    for r in plan.itertuples():
        role[r.z0:r.z1] = r.role
    held, train = role == "held-out", role == "train"
    slices = pd.DataFrame({
        "z": np.arange(lab.shape[0]), "role": role,
        "tumour_voxels": truth.reshape(len(role), -1).sum(1),
        "pred_voxels": np.where(role == "gap", 0, (pred == 1).reshape(len(role), -1).sum(1)),
        "dice": [seg.dice_score(pred[z] == 1, truth[z]) if role[z] != "gap" else np.nan for z in range(len(role))],
    })
    slices.to_csv(out / "slices.csv", index=False)
    by_slab = dsc.merge(plan[["patient_id", "slab", "z0", "z1", "role", "tumour_voxels"]], on="patient_id")
    by_slab.to_csv(out / "slabs.csv", index=False)
    write_full = {"pred": np.where(pred < 0, 0, pred).astype(np.uint8)}
    from hcc_utils.imaging import write_image

    write_image(to_image(write_full["pred"]), out / f"{PREFIX}_pred_{PHASE}.nii.gz")
    res = {
        "case": f"LiTS {CASE} ({PACKAGE}=={VERSION})", "profile": profile.name, "seed": seed, "phase": PHASE,
        "window": dict(profile["windows"][PHASE]), "assumed_spacing_mm": list(ASSUMED_SPACING_MM),
        "size": int(profile["preprocess"]["size"]), "unet": dict(profile["unet"]), "lits": settings(profile),
        "n_slices": {k: int((role == k).sum()) for k in ("train", "held-out", "gap")},
        "plan": plan.to_dict(orient="records"),
        "heldout_dice": seg.dice_score(pred[held] == 1, truth[held]),
        "train_dice": seg.dice_score(pred[train] == 1, truth[train]),
        "heldout_dice_by_slab": {r.patient_id: float(r.dsc) for r in by_slab.itertuples() if r.role == "held-out"},
        "heldout_tumour_voxels": int(truth[held].sum()), "heldout_pred_voxels": int((pred[held] == 1).sum()),
        "training": {k: metrics[k] for k in ("best_epoch", "best_valid_dice", "epochs", "n_train_slices",
                                             "n_valid_slices", "seconds_total", "train_patients", "valid_patients")},
    }
    (out / "results.json").write_text(json.dumps(res, indent=1, default=float))
    res["slices"] = slices
    res["slabs"] = by_slab
    res["pred"] = pred
    res["hu"] = data["hu"]
    res["label"] = lab
    res["manifest"] = df
    return res


def run_features(profile, manifest: pd.DataFrame | None = None, device="auto", progress: bool = True) -> dict[str, Any]:
    """Deep-feature extraction on the slabs with the trained LiTS network (:func:`hcc_utils.features.extract_phase`).

    The book's default, the network's own predicted mask, writes ``outputs/<profile>/lits/features/PP*.parquet``.
    As a check that only real annotations allow, the same features are also pooled over the **reference** tumour
    mask (in memory, :func:`hcc_utils.features.case_features` with ``mask="manual"``) and compared per slab.

    Returns
    -------
    dict
        ``table`` (slabs x features, predicted mask), ``reference`` (the same pooled over the reference mask),
        ``qc``, ``agreement`` (per slab: Pearson r and median relative difference between the two feature
        vectors), ``summary`` (also merged into ``results.json``; ``median_feature_r_across_slabs`` is the median
        over features of the correlation, across slabs, between predicted-mask and reference-mask values).
    """
    from hcc_utils import features as feat
    from hcc_utils import preprocess as pp
    from hcc_utils import segmentation as seg

    out = output_dir(profile)
    if manifest is None:
        manifest = pd.read_csv(default_cache_dir() / "nifti" / "lits_manifest.csv")
    table = feat.extract_phase(manifest, profile, PHASE, mask="predicted", device=device, progress=progress)
    qc = pd.read_csv(out / "features" / f"{PHASE}_qc.csv")
    layers = list(profile["features"]["layers"])
    model = seg.load_model(profile, PHASE, seg.resolve_device(device))
    manual = {}
    for _, row in pp.load_manifest(manifest).iterrows():
        case = pp.prepare_case(row, PHASE, profile)
        f, _, _, _ = feat.case_features(model, case, layers, "manual")
        manual[case.patient_id] = f.mean(0)
    ref = pd.DataFrame(manual).T.loc[table.index]
    ref.columns = table.columns
    agree = []
    for pid in table.index:
        a, b = table.loc[pid].to_numpy(float), ref.loc[pid].to_numpy(float)
        agree.append({"patient_id": pid, "pearson_r": float(np.corrcoef(a, b)[0, 1]),
                      "median_rel_diff": float(np.median(np.abs(a - b) / (np.abs(b) + 1e-6)))})
    # per feature: do predicted-mask values rank the slabs as the reference-mask values do?
    per_feature = pd.Series({c: np.corrcoef(table[c], ref[c])[0, 1] for c in table.columns
                             if table[c].std() > 0 and ref[c].std() > 0}, dtype=float)
    agreement = pd.DataFrame(agree).merge(qc, on="patient_id")
    agreement.to_csv(out / "features_agreement.csv", index=False)
    summary = {"layers": layers, "n_features": int(table.shape[1]), "n_slabs": int(table.shape[0]),
               "mask_sources": qc["mask_source"].value_counts().to_dict(),
               "median_slab_pearson_r_pred_vs_ref": float(agreement["pearson_r"].median()),
               "median_rel_diff_pred_vs_ref": float(agreement["median_rel_diff"].median()),
               "median_feature_r_across_slabs": float(per_feature.median()),
               "n_features_compared": int(per_feature.size)}
    res_file = out / "results.json"
    if res_file.exists():
        res = json.loads(res_file.read_text())
        res["features"] = summary
        res_file.write_text(json.dumps(res, indent=1, default=float))
    return {"table": table, "reference": ref, "qc": qc, "agreement": agreement, "summary": summary}


# ----------------------------------------------------------------------------------------------------------------------
# figures
# ----------------------------------------------------------------------------------------------------------------------
def overlay_figure(res: dict[str, Any], n: int = 6, window: tuple[float, float] | None = None):
    """Held-out axial slices: CT in the PP window, reference tumour (solid white) and prediction (dashed
    orange) contours with a legend.

    Picks ``n`` held-out slices spread over the held-out range among those with tumour.
    """
    import matplotlib.pyplot as plt

    from hcc_utils import style

    sl = res["slices"]
    cand = sl[(sl.role == "held-out") & (sl.tumour_voxels > 0)]["z"].to_numpy()
    if len(cand) == 0:
        raise ValueError("no held-out slice has tumour")
    zs = cand[np.linspace(0, len(cand) - 1, min(n, len(cand))).round().astype(int)]
    level, width = window or (res["window"]["level"], res["window"]["width"])
    cols = min(3, len(zs))
    rows = int(np.ceil(len(zs) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.5 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, z in zip(axes.ravel(), zs):
        ax.imshow(res["hu"][z], cmap="gray", vmin=level - width / 2, vmax=level + width / 2)
        ax.contour(res["label"][z] == 2, levels=[0.5], linewidths=1.2, **style.CONTOUR_REFERENCE)
        if (res["pred"][z] == 1).any():
            ax.contour(res["pred"][z] == 1, levels=[0.5], linewidths=1.2, **style.CONTOUR_PREDICTION)
        d = sl.loc[sl.z == z, "dice"].iloc[0]
        ax.set_title(f"z = {z}  (Dice {d:.2f})", fontsize=9)
    fig.suptitle("Held-out slices: reference tumour (solid white), U-Net (dashed orange)", fontsize=10)
    fig.tight_layout()
    style.contour_legend(fig, "reference tumour", "U-Net", loc="lower center", ncol=2, bbox_to_anchor=(0.5, -0.02))
    return fig


def dice_profile_figure(res: dict[str, Any]):
    """Per-slice tumour Dice along z, coloured by role, with the reference tumour area."""
    import matplotlib.pyplot as plt

    sl = res["slices"]
    fig, ax = plt.subplots(figsize=(8, 3))
    for role, c in (("train", "tab:blue"), ("held-out", "tab:red")):
        s = sl[sl.role == role]
        ax.scatter(s.z, s.dice, s=10, c=c, label=f"{role} slices")
    ax.set_xlabel("axial slice z")
    ax.set_ylabel("tumour Dice")
    ax.set_ylim(-0.02, 1.02)
    ax2 = ax.twinx()
    ax2.plot(sl.z, sl.tumour_voxels, color="0.6", lw=1)
    ax2.set_ylabel("reference tumour voxels", color="0.4")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig
