"""Handcrafted radiomics features of the tumour (PyRadiomics, IBSI-oriented), per phase, cached per patient.

Shape (3D mesh), first-order and texture features (GLCM, GLRLM, GLSZM, GLDM, NGTDM) of the original image in the
mask the DSFR model uses: the network's predicted mask (``segmentation/<PHASE>/pred_masks``) or the manifest's
manual one, optionally eroded or dilated by one pixel in plane. Intensities are clipped to the phase window, resampled
in plane to ``pixel_mm``, discretised with a fixed bin width in HU; texture matrices are in-plane and merged over the
slices (slices are thicker than pixels). The choices and their reasons are in :data:`DEFAULTS` and
:func:`radiomics_settings`. Tables: ``outputs/<profile>/radiomics/<PHASE>[_<mask>[_<perturb>]].parquet``, patients x
``<PHASE>_<class>_<feature>``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from hcc_utils.imaging import check_same_grid, read_image

log = logging.getLogger(__name__)

CACHE_VERSION = 1
FEATURE_CLASSES = ("shape", "firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")
PERTURBATIONS = (None, "erode", "dilate")
PHASE_COLUMNS = {"AP": ("ct_ap", "series_uid_ap", "mask_ap"), "PP": ("ct_pp", "series_uid_pp", "mask_pp")}

#: Fixed settings (not in the profile, so that every profile reports the same features):
#: ``bin_width`` 5 HU: the windows are 150 (AP) and 200 HU (PP) wide, so 30 and 40 bins at most, inside PyRadiomics'
#: recommended 30-130 and several bins per noise SD (11-15 HU); a fixed width in HU (not a fixed bin count) keeps a
#: bin the same tissue in every patient, as IBSI recommends for calibrated CT.
#: ``pixel_mm`` 3.0: the development centre's pixel; other centres are resampled to it (B-spline, mask nearest) so
#: that texture distances mean the same millimetres; slices are kept (texture is in-plane, ``force2D``).
DEFAULTS = {"bin_width": 5.0, "pixel_mm": 3.0}


# ----------------------------------------------------------------------------------------------------------------------
# masks
# ----------------------------------------------------------------------------------------------------------------------
def _in_plane_cross() -> np.ndarray:
    s = np.zeros((3, 3, 3), bool)
    s[1] = [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
    return s


def perturb_mask(mask, how: str | None):
    """A mask eroded or dilated by one pixel in plane (4-neighbourhood of each axial slice; slices unchanged).

    Parameters
    ----------
    mask : ndarray (z, y, x) or SimpleITK.Image
        Binary mask (anything > 0 is tumour).
    how : {None, 'erode', 'dilate'}
        ``None`` returns the mask binarised.

    Returns
    -------
    ndarray of uint8 or SimpleITK.Image
        Same type and grid as ``mask``.
    """
    from scipy import ndimage

    if how not in PERTURBATIONS:
        raise ValueError(f"perturbation must be one of {PERTURBATIONS}, got {how!r}")
    is_img = isinstance(mask, sitk.Image)
    m = (sitk.GetArrayFromImage(mask) if is_img else np.asarray(mask)) > 0
    if how == "erode":
        m = ndimage.binary_erosion(m, _in_plane_cross(), border_value=0)
    elif how == "dilate":
        m = ndimage.binary_dilation(m, _in_plane_cross())
    out = m.astype(np.uint8)
    if not is_img:
        return out
    img = sitk.GetImageFromArray(out)
    img.CopyInformation(mask)
    return img


def erode_mask(mask):
    """:func:`perturb_mask` with ``how='erode'`` (one pixel, in plane)."""
    return perturb_mask(mask, "erode")


def dilate_mask(mask):
    """:func:`perturb_mask` with ``how='dilate'`` (one pixel, in plane)."""
    return perturb_mask(mask, "dilate")


# ----------------------------------------------------------------------------------------------------------------------
# one case
# ----------------------------------------------------------------------------------------------------------------------
def radiomics_settings(profile, phase: str, bin_width: float = DEFAULTS["bin_width"],
                       pixel_mm: float | None = DEFAULTS["pixel_mm"], perturb: str | None = None) -> dict:
    """The settings that define an extraction (they enter the cache key and the info file).

    Parameters
    ----------
    profile : Profile or dict
        Anything with ``["windows"][phase]`` = ``{"level", "width"}`` in HU.
    phase : {'AP', 'PP'}
    bin_width : float
        Fixed bin width in HU (default :data:`DEFAULTS`).
    pixel_mm : float or None
        In-plane pixel the image is resampled to (default :data:`DEFAULTS`); ``None`` keeps the image's grid.
    perturb : {None, 'erode', 'dilate'}
        Mask perturbation (:func:`perturb_mask`).

    Returns
    -------
    dict
    """
    import radiomics

    if perturb not in PERTURBATIONS:
        raise ValueError(f"perturbation must be one of {PERTURBATIONS}, got {perturb!r}")
    w = profile["windows"][phase]
    return {"phase": phase, "level": float(w["level"]), "width": float(w["width"]),
            "bin_width": float(bin_width), "pixel_mm": None if pixel_mm is None else float(pixel_mm), "perturb": perturb, "classes": list(FEATURE_CLASSES), "texture": "2D in-plane, merged",
            "pyradiomics": str(radiomics.__version__), "version": CACHE_VERSION}


def _extractor(settings: dict):
    import radiomics
    from radiomics import featureextractor

    radiomics.setVerbosity(logging.ERROR)
    logging.getLogger("radiomics").setLevel(logging.ERROR)
    kw = {"binWidth": settings["bin_width"], "force2D": True, "force2Ddimension": 0, "label": 1,
          "voxelArrayShift": 0, "correctMask": False, "additionalInfo": False}
    if settings["pixel_mm"] is not None:  # 0 keeps the slice spacing
        kw.update(resampledPixelSpacing=[settings["pixel_mm"]] * 2 + [0], interpolator="sitkBSpline",
                  padDistance=5)
    ext = featureextractor.RadiomicsFeatureExtractor(**kw)
    ext.disableAllFeatures()
    ext.enableFeatureClassByName("shape")  # 3D shape on the (unwindowed) mask
    for c in FEATURE_CLASSES[1:]:
        ext.enableFeatureClassByName(c)
    return ext


def case_features(image: sitk.Image, mask: sitk.Image, settings: dict, what: str = "case") -> dict[str, float]:
    """Radiomics features of one image in one mask.

    Parameters
    ----------
    image : SimpleITK.Image
        CT in HU.
    mask : SimpleITK.Image
        Tumour mask on the image's grid (anything > 0 is tumour).
    settings : dict
        :func:`radiomics_settings`.
    what : str
        How errors name the case (patient, phase, files).

    Returns
    -------
    dict
        ``<class>_<feature>`` -> value (float).

    Raises
    ------
    ValueError
        The mask is off the image's grid, or empty (after the perturbation).
    """
    diff = check_same_grid(image, mask)
    if diff:
        raise ValueError(f"{what}: the mask is not on the image's grid: " + "; ".join(diff))
    m = perturb_mask(mask, settings["perturb"])
    n = int(sitk.GetArrayViewFromImage(m).sum())
    if n == 0:
        extra = f" after the '{settings['perturb']}' perturbation" if settings["perturb"] else ""
        raise ValueError(f"{what}: the tumour mask is empty{extra}")
    lo = settings["level"] - settings["width"] / 2.0
    img = sitk.Clamp(sitk.Cast(image, sitk.sitkFloat32), sitk.sitkFloat32, lo, lo + settings["width"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = _extractor(settings).execute(img, m)
    out = {}
    for k, v in res.items():
        if k.startswith("original_"):
            out[k[len("original_"):]] = float(np.asarray(v, dtype=float))
    return out


# ----------------------------------------------------------------------------------------------------------------------
# cohort
# ----------------------------------------------------------------------------------------------------------------------
def _value(row, name):
    v = row.get(name)
    if v is None or (isinstance(v, float) and np.isnan(v)) or (isinstance(v, str) and not v.strip()):
        return None
    return v


def _digest(path) -> str:
    """SHA-256 of a file's content (of a DICOM folder: of its files' names and contents)."""
    p = Path(path)
    h = hashlib.sha256()
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    for f in files:
        h.update(str(f.relative_to(p) if p.is_dir() else "").encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def mask_file(row, profile, phase: str, mask: str = "predicted", mask_dir=None) -> Path | None:
    """The tumour mask of a manifest row: predicted (``segmentation/<PHASE>/pred_masks/<safe_name>.nii.gz`` under
    the profile's outputs, or under ``mask_dir``) or manual (the manifest's ``mask_<phase>``; None when empty)."""
    from hcc_utils.manifest import safe_name

    if mask == "manual":
        v = _value(row, PHASE_COLUMNS[phase][2])
        return None if v is None else Path(v)
    if mask != "predicted":
        raise ValueError(f"mask must be 'predicted' or 'manual', got {mask!r}")
    root = Path(mask_dir) if mask_dir is not None else Path(profile.outputs) / "segmentation" / phase / "pred_masks"
    return root / f"{safe_name(row['patient_id'])}.nii.gz"


def _job_features(job: dict) -> tuple[dict, float]:
    t0 = time.perf_counter()
    what = f"patient {job['patient_id']} {job['phase']} (image {job['image']}, mask {job['mask']})"
    try:
        image = read_image(job["image"], job.get("series_uid"))
        mask = read_image(job["mask"])
    except Exception as exc:  # noqa: BLE001 - re-raised with the case named
        raise ValueError(f"{what}: cannot read: {exc}") from exc
    feats = case_features(image, mask, job["settings"], what)
    sec = time.perf_counter() - t0
    tmp = Path(job["cache"]).with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps({"features": feats, "seconds": sec, "inputs": job["key_inputs"]}))
    tmp.replace(job["cache"])
    return feats, sec


def _init_worker():
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)


def output_name(phase: str, mask: str, perturb: str | None, default_mask: str) -> str:
    """``<PHASE>`` for the profile's own mask, else ``<PHASE>_<mask>[_<perturb>]`` (file stem of the table)."""
    if mask == default_mask and perturb is None:
        return phase
    return f"{phase}_{mask}" + (f"_{perturb}" if perturb else "")


def extract_phase(manifest, profile, phase: str, mask: str | None = None, perturb: str | None = None,
                  workers: int = 1, patients=None, mask_dir=None, bin_width: float = DEFAULTS["bin_width"],
                  pixel_mm: float | None = DEFAULTS["pixel_mm"], cache_root=None, progress: bool = True,
                  write: bool = True) -> pd.DataFrame:
    """Radiomics features of every patient for one phase, cached per patient, and the table written.

    Parameters
    ----------
    manifest : path or DataFrame
        The data manifest (:func:`hcc_utils.preprocess.load_manifest`).
    profile : Profile
        Windows, outputs and cache folders.
    phase : {'AP', 'PP'}
    mask : {'predicted', 'manual'}, optional
        Default ``profile["features"]["mask"]`` (the DSFR model's). Patients without a manual mask are left out with
        a warning; a missing predicted mask is an error.
    perturb : {None, 'erode', 'dilate'}
        One-pixel in-plane erosion or dilation of the mask.
    workers : int
        Worker processes (1: in this process). Results and their order do not depend on it.
    patients : iterable of str, optional
        Restrict to these patient ids.
    mask_dir : path, optional
        Folder of the predicted masks (default ``outputs/<profile>/segmentation/<PHASE>/pred_masks``).
    bin_width, pixel_mm : float
        See :func:`radiomics_settings`.
    cache_root : path, optional
        Default ``<profile.cache>/radiomics``.
    write : bool
        Write ``radiomics/<name>.parquet`` and ``<name>_info.json`` (:func:`output_name`).

    Returns
    -------
    DataFrame
        Index ``patient_id`` (manifest order), columns ``<PHASE>_<class>_<feature>``.

    Raises
    ------
    ValueError
        A mask is empty, off its image's grid, or unreadable (the message names patient and files).
    FileNotFoundError
        A predicted mask is missing.
    """
    from hcc_utils.manifest import safe_name
    from hcc_utils.preprocess import _progress, glob_escape, load_manifest

    if phase not in PHASE_COLUMNS:
        raise ValueError(f"phase must be AP or PP, got {phase!r}")
    default_mask = profile["features"].get("mask", "predicted")
    mask = mask or default_mask
    settings = radiomics_settings(profile, phase, bin_width, pixel_mm, perturb)
    df = load_manifest(manifest)
    if patients is not None:
        keep = {str(p) for p in patients}
        df = df[df["patient_id"].astype(str).isin(keep)]
    root = Path(cache_root) if cache_root is not None else Path(profile.cache) / "radiomics"
    root = root / phase
    root.mkdir(parents=True, exist_ok=True)
    tag = f"{mask}-{perturb or 'none'}"
    jobs, no_mask = [], []
    for _, row in df.iterrows():
        pid = str(row["patient_id"])
        img_col, uid_col, _ = PHASE_COLUMNS[phase]
        img = _value(row, img_col)
        if img is None:
            raise ValueError(f"patient {pid}: manifest column {img_col!r} is empty")
        mpath = mask_file(row, profile, phase, mask, mask_dir)
        if mpath is None:
            no_mask.append(pid)
            continue
        if not Path(mpath).exists():
            raise FileNotFoundError(f"patient {pid} {phase}: {mask} mask {mpath} does not exist"
                                    + (" (run the segmentation inference first)" if mask == "predicted" else ""))
        inputs = {"image": _digest(img), "series_uid": _value(row, uid_col), "mask": _digest(mpath),
                  "settings": settings}
        key = hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:16]
        name = f"{safe_name(pid)}-{tag}"
        jobs.append({"patient_id": pid, "phase": phase, "image": str(img), "series_uid": _value(row, uid_col),
                     "mask": str(mpath), "settings": settings, "key_inputs": inputs,
                     "cache": str(root / f"{name}-{key}.json"), "name": name})
    if no_mask:
        warnings.warn(f"{phase}: {len(no_mask)} patient(s) without a manual mask left out: {no_mask[:10]}",
                      UserWarning, stacklevel=2)
    todo = [j for j in jobs if not Path(j["cache"]).exists()]
    for j in todo:  # stale entries of the same patient and mask: inputs or settings changed
        for stale in root.glob(f"{glob_escape(j['name'])}-*.json"):
            if stale.name.rsplit("-", 1)[0] == j["name"] and str(stale) != j["cache"]:
                stale.unlink(missing_ok=True)
    t0 = time.perf_counter()
    if workers > 1 and len(todo) > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(min(workers, len(todo)), mp_context=mp.get_context("spawn"),
                                 initializer=_init_worker) as ex:
            for _ in _progress(ex.map(_job_features, todo), progress, f"radiomics {phase}"):
                pass
    else:
        for j in _progress(todo, progress, f"radiomics {phase}"):
            _job_features(j)
    seconds = time.perf_counter() - t0
    rows, secs = [], []
    for j in jobs:
        entry = json.loads(Path(j["cache"]).read_text())
        rows.append(entry["features"])
        secs.append(entry["seconds"])
    ids = [j["patient_id"] for j in jobs]
    table = pd.DataFrame(rows, index=pd.Index(ids, name="patient_id")).add_prefix(f"{phase}_")
    if write:
        out = Path(profile.outputs) / "radiomics"
        out.mkdir(parents=True, exist_ok=True)
        stem = output_name(phase, mask, perturb, default_mask)
        table.to_parquet(out / f"{stem}.parquet")
        info = {"phase": phase, "mask": mask, "perturb": perturb, "settings": settings, "n_patients": len(table),
                "n_features": table.shape[1], "n_extracted": len(todo), "n_from_cache": len(jobs) - len(todo),
                "n_without_mask": len(no_mask), "workers": workers, "seconds": seconds,
                "seconds_per_patient_extraction": float(np.mean(secs)) if secs else None,
                "non_finite_features": sorted(table.columns[~np.isfinite(table.to_numpy(float)).all(0)])}
        (out / f"{stem}_info.json").write_text(json.dumps(info, indent=1))
    return table


def load_radiomics(profile, phase: str, mask: str | None = None, perturb: str | None = None) -> pd.DataFrame:
    """A stored radiomics table (``AP`` or ``PP``; ``DP`` joins both), as :func:`extract_phase` wrote it."""
    default_mask = profile["features"].get("mask", "predicted")
    if phase == "DP":
        return join_phases(load_radiomics(profile, "AP", mask, perturb), load_radiomics(profile, "PP", mask, perturb))
    f = Path(profile.outputs) / "radiomics" / f"{output_name(phase, mask or default_mask, perturb, default_mask)}.parquet"
    if not f.exists():
        raise FileNotFoundError(f"{f}: not extracted yet (hcc_utils.handcrafted.extract_phase)")
    return pd.read_parquet(f)


def join_phases(ap: pd.DataFrame, pp: pd.DataFrame) -> pd.DataFrame:
    """AP and PP tables joined by patient (inner join; their columns already carry the phase)."""
    missing = sorted(set(ap.index) ^ set(pp.index))
    if missing:
        warnings.warn(f"DP: patients present in only one phase are dropped: {missing[:10]}", UserWarning,
                      stacklevel=2)
    return ap.join(pp, how="inner")
