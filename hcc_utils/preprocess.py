"""Slice preprocessing and the on-disk slice cache (stage 3).

Every CT volume of a phase goes through the same steps, once:

1. **Window** with the phase's level/width (``profile["windows"]``; paper: AP 70/150 HU, PP 100/200 HU): HU values are
   clipped to ``[level - width/2, level + width/2]`` and scaled to ``[0, 1]``.
2. **Normalise** with fixed constants, ``(x - NORM_MEAN) / NORM_STD`` (0.5, 0.25), so that every case, every phase
   and every profile share one intensity scale (no per-volume statistics that a tumour's size could shift).
3. **Resize** every axial slice to ``profile["preprocess"]["size"]`` squared (bilinear with antialiasing for the CT,
   nearest neighbour for the mask). In-plane aspect ratio is not kept, as in the paper's 256 x 256 input.

Which slices
------------
The cache holds **all** axial slices of a volume, with the tumour mask when the manifest has one. Consumers choose:

* training (:func:`training_slices`) takes the slices whose ground-truth mask contains tumour plus
  ``context_slices`` slices above and below and ``negative_slices`` tumour-free slices from the rest of the volume
  (tumour-free slices teach the network to answer "no tumour", also far from the tumour);
* inference and feature extraction run on **all** slices, because neither a liver mask nor the tumour's position is
  known for an unannotated case. On a synthetic or cropped abdominal volume this costs little; the predicted masks
  written back are full volumes on the image grid.

The cache
---------
``<profile.cache>/<PHASE>/<name>-<key>/`` (``name`` = :func:`hcc_utils.manifest.safe_name` of the patient_id)
holds ``image.npy`` (float16, Z x S x S), ``mask.npy`` (uint8, or
absent), and ``meta.json`` (the original grid: size, spacing, origin, direction; tumour slice indices; the key's
inputs). ``key`` is a SHA-256 digest of the manifest row's content for this phase (image and mask paths with their
file size and mtime, series UID), the phase, and the preprocessing settings (window, size, normalisation, version).
Changing any of them gives a new key, so the stale entry is rebuilt (and the stale folder removed). Entries are read
back with ``np.load(mmap_mode="r")``: memory stays flat however large the cohort is, and cases are processed one at a
time.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from hcc_utils.files import file_sha256

log = logging.getLogger(__name__)

NORM_MEAN = 0.5
NORM_STD = 0.25
CACHE_VERSION = 1
PHASE_COLUMNS = {"AP": ("ct_ap", "series_uid_ap", "mask_ap"), "PP": ("ct_pp", "series_uid_pp", "mask_pp")}


# ----------------------------------------------------------------------------------------------------------------------
# manifest access
# ----------------------------------------------------------------------------------------------------------------------
def load_manifest(manifest) -> pd.DataFrame:
    """Manifest as a DataFrame with absolute paths (:func:`hcc_utils.manifest.read_manifest`).

    Parameters
    ----------
    manifest : str, Path or DataFrame
        A manifest CSV path, or an already-read manifest (returned unchanged).
    """
    if isinstance(manifest, pd.DataFrame):
        return manifest
    from hcc_utils.manifest import read_manifest

    return read_manifest(Path(manifest))


def _col(row: pd.Series, name: str):
    v = row.get(name) if hasattr(row, "get") else None
    if v is None or (isinstance(v, float) and np.isnan(v)) or (isinstance(v, str) and not v.strip()):
        return None
    return v


# ----------------------------------------------------------------------------------------------------------------------
# intensity and geometry
# ----------------------------------------------------------------------------------------------------------------------
def window_normalise(hu: np.ndarray, level: float, width: float) -> np.ndarray:
    """Clip HU to the window, scale to [0, 1], then normalise with ``NORM_MEAN``/``NORM_STD``.

    Parameters
    ----------
    hu : ndarray
        Hounsfield units.
    level, width : float
        Window level and width in HU.

    Returns
    -------
    ndarray of float32
    """
    if width <= 0:
        raise ValueError(f"window width must be positive, got {width}")
    lo = level - width / 2.0
    x = (np.clip(hu.astype(np.float32), lo, lo + width) - lo) / float(width)
    return ((x - NORM_MEAN) / NORM_STD).astype(np.float32)


def resize_slices(vol: np.ndarray, size: int, is_mask: bool = False) -> np.ndarray:
    """Resize each axial slice of ``vol`` (Z x H x W) to ``size`` x ``size``.

    CT: bilinear with antialiasing (no aliasing when shrinking). Mask: nearest neighbour (labels stay 0/1).
    """
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(vol, dtype=np.float32))[:, None]
    if is_mask:
        out = F.interpolate(t, size=(size, size), mode="nearest-exact")
        return out[:, 0].numpy().round().astype(np.uint8)
    out = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return out[:, 0].numpy().astype(np.float32)


def upsample_probs(prob: np.ndarray, shape_hw: tuple[int, int]) -> np.ndarray:
    """Bilinear resampling of network-size probability slices (Z x S x S) back to the image grid (Z x H x W)."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(prob, dtype=np.float32))[:, None]
    return F.interpolate(t, size=tuple(int(s) for s in shape_hw), mode="bilinear", align_corners=False)[:, 0].numpy()


# ----------------------------------------------------------------------------------------------------------------------
# cache
# ----------------------------------------------------------------------------------------------------------------------
def preprocess_settings(profile, phase: str) -> dict:
    """The settings that define a cache entry (besides the input files)."""
    w = profile["windows"][phase]
    return {
        "phase": phase,
        "level": float(w["level"]),
        "width": float(w["width"]),
        "size": int(profile["preprocess"]["size"]),
        "norm": [NORM_MEAN, NORM_STD],
        "version": CACHE_VERSION,
    }


@functools.lru_cache(maxsize=8192)
def _content_sha256(path: str, size: int, mtime_ns: int, ctime_ns: int) -> str:
    """SHA-256 of a file's content, remembered within one process per path, size, mtime and ctime (a rewrite changes
    the ctime even when the mtime is set back)."""
    return file_sha256(Path(path))


def _file_sig(path) -> dict | None:
    """What identifies an input file for the cache: its path and the SHA-256 of its content (every file of a DICOM
    folder), so a replaced image never reuses a cache entry whatever its size and timestamp."""
    if path is None:
        return None
    p = Path(path)
    if p.is_dir():  # DICOM folder: the content of its files
        files = sorted(f for f in p.rglob("*") if f.is_file())
        return {"path": str(p.resolve()),
                "files": [[str(f.relative_to(p)), _sha_of(f)] for f in files]}
    if not p.exists():
        return {"path": str(p), "missing": True}
    return {"path": str(p.resolve()), "sha256": _sha_of(p)}


def _sha_of(f: Path) -> str:
    st = f.stat()
    return _content_sha256(str(f.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def cache_key(row: pd.Series, phase: str, settings: dict) -> str:
    """SHA-256 key (16 hex digits) of a manifest row's inputs for ``phase`` and the preprocessing ``settings``."""
    img_col, uid_col, mask_col = PHASE_COLUMNS[phase]
    payload = {
        "patient_id": str(row["patient_id"]),
        "image": _file_sig(_col(row, img_col)),
        "series_uid": _col(row, uid_col),
        "mask": _file_sig(_col(row, mask_col)),
        "settings": settings,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class CaseCache:
    """One preprocessed case/phase in the cache (arrays opened memory-mapped on demand)."""

    patient_id: str
    phase: str
    path: Path
    meta: dict

    @property
    def image(self) -> np.ndarray:
        """Z x S x S float16, memory-mapped."""
        return np.load(self.path / "image.npy", mmap_mode="r")

    @property
    def mask(self) -> np.ndarray | None:
        """Z x S x S uint8 ground-truth mask at network size (memory-mapped), or None."""
        f = self.path / "mask.npy"
        return np.load(f, mmap_mode="r") if f.exists() else None

    @property
    def tumour_slices(self) -> list[int]:
        return list(self.meta["tumour_slices"])

    @property
    def n_slices(self) -> int:
        return int(self.meta["shape_zyx"][0])


def _build_entry(row: pd.Series, phase: str, settings: dict, dest: Path) -> None:
    import SimpleITK as sitk

    from hcc_utils.imaging import read_image

    pid = str(row["patient_id"])
    img_col, uid_col, mask_col = PHASE_COLUMNS[phase]
    img_path = _col(row, img_col)
    if img_path is None:
        raise ValueError(f"patient {pid}: manifest column {img_col!r} is empty")
    try:
        img = read_image(img_path, _col(row, uid_col))
    except Exception as exc:  # noqa: BLE001 - re-raised with context
        raise ValueError(f"patient {pid}: cannot read {img_col} {img_path}: {exc}") from exc
    hu = sitk.GetArrayFromImage(img)  # z, y, x
    if hu.ndim != 3:
        raise ValueError(f"patient {pid}: {img_col} {img_path} is not a 3-D volume (shape {hu.shape})")
    x = resize_slices(window_normalise(hu, settings["level"], settings["width"]), settings["size"])
    tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    np.save(tmp / "image.npy", x.astype(np.float16))
    tumour_slices: list[int] = []
    mask_path = _col(row, mask_col)
    if mask_path is not None:
        try:
            m_img = read_image(mask_path)
        except Exception as exc:  # noqa: BLE001
            raise ValueError(f"patient {pid}: cannot read {mask_col} {mask_path}: {exc}") from exc
        m = sitk.GetArrayFromImage(m_img)
        if m.shape != hu.shape:
            raise ValueError(f"patient {pid}: {mask_col} {mask_path} has shape {m.shape} (z,y,x) but the image "
                             f"{img_path} has {hu.shape}; a mask must be on its image's grid")
        m = (m > 0).astype(np.uint8)
        np.save(tmp / "mask.npy", resize_slices(m, settings["size"], is_mask=True))
        tumour_slices = [int(z) for z in np.flatnonzero(m.reshape(m.shape[0], -1).any(1))]
    meta = {
        "patient_id": pid, "phase": phase, "settings": settings,
        "shape_zyx": list(hu.shape), "spacing": list(img.GetSpacing()), "origin": list(img.GetOrigin()),
        "direction": list(img.GetDirection()), "image": str(img_path), "mask": str(mask_path) if mask_path else None,
        "tumour_slices": tumour_slices,
    }
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)


def prepare_case(row: pd.Series, phase: str, profile, cache_root: Path | None = None) -> CaseCache:
    """Return the cache entry of one manifest row and phase, building it when missing or stale."""
    settings = preprocess_settings(profile, phase)
    root = Path(cache_root or profile.cache) / phase
    from hcc_utils.manifest import safe_name

    pid = str(row["patient_id"])
    key = cache_key(row, phase, settings)
    name = safe_name(pid)  # never a path separator: the entry stays inside ``root`` whatever the id holds
    dest = root / f"{name}-{key}"
    if not (dest / "meta.json").exists():
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob(f"{glob_escape(name)}-*"):
            if stale.name.rsplit("-", 1)[0] == name and stale != dest:
                log.info("cache: %s %s inputs or settings changed; removing stale %s", pid, phase, stale.name)
                shutil.rmtree(stale, ignore_errors=True)
        _build_entry(row, phase, settings, dest)
    meta = json.loads((dest / "meta.json").read_text())
    return CaseCache(pid, phase, dest, meta)


def glob_escape(text: str) -> str:
    """``text`` with the glob wildcards ``*?[`` quoted."""
    import glob

    return glob.escape(text)


def prepare_cohort(manifest, profile, phase: str, patients: Iterable[str] | None = None,
                   cache_root: Path | None = None, progress: bool = True) -> dict[str, CaseCache]:
    """Prepare (or reuse) the cache for every row of the manifest, one case at a time, with a progress bar.

    Parameters
    ----------
    manifest : path or DataFrame
    profile : hcc_utils.config.Profile
    phase : {'AP', 'PP'}
    patients : iterable of str, optional
        Restrict to these patient ids.

    Returns
    -------
    dict
        patient_id -> :class:`CaseCache` (arrays stay on disk).
    """
    if phase not in PHASE_COLUMNS:
        raise ValueError(f"phase must be AP or PP, got {phase!r}")
    df = load_manifest(manifest)
    if patients is not None:
        keep = {str(p) for p in patients}
        df = df[df["patient_id"].astype(str).isin(keep)]
    out: dict[str, CaseCache] = {}
    rows = [r for _, r in df.iterrows()]
    for row in _progress(rows, progress, f"preprocess {phase}"):
        out[str(row["patient_id"])] = prepare_case(row, phase, profile, cache_root)
    return out


def training_slices(case: CaseCache, context: int, negatives: int = 0, seed: int = 0) -> list[int]:
    """Slice indices used for training: ground-truth tumour slices plus ``context`` slices either side, plus
    ``negatives`` tumour-free slices drawn (seeded by ``seed`` and the patient) from the rest of the volume, so that
    the network also sees the anatomy far from the tumour it will meet at inference."""
    tz = case.tumour_slices
    if not tz:
        return []
    keep: set[int] = set()
    for z in tz:
        keep.update(range(max(0, z - context), min(case.n_slices, z + context + 1)))
    rest = [z for z in range(case.n_slices) if z not in keep]
    if negatives > 0 and rest:
        import zlib

        rng = np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(case.patient_id.encode())]))
        keep.update(int(z) for z in rng.choice(rest, size=min(negatives, len(rest)), replace=False))
    return sorted(keep)


def _progress(items, show: bool, desc: str):
    if not show:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, leave=False)
