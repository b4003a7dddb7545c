"""Grad-CAM for deep semantic features (stage 5b; the paper's Figure 2).

For a deep feature ``<layer>_c<k>`` (optionally prefixed ``AP_``/``PP_``), the Grad-CAM *target* is that feature's
own value on a slice: the channel-``k`` mean of ``<layer>``'s output inside the tumour region, pooled exactly as
:func:`hcc_utils.features.pool_feature_map` does. The gradient of the target is taken with respect to the activations
``A`` of the first conv unit *inside* the same block (:func:`hcc_utils.segmentation.gradcam_source`): the block's
output itself would give a trivial map (the target is linear in it: the gradient is just the mask), whereas one conv
unit earlier the gradient carries which channels drive the feature. As in Selvaraju et al. (2017), channel weights are
the spatial means of the gradient, ``alpha_c = mean_xy dTarget/dA_c``, and the map is ``ReLU(sum_c alpha_c A_c)``;
by default the element-wise variant ``|sum_c dTarget/dA_c(x,y) A_c(x,y)|`` (HiResCAM) is used instead (see
:func:`gradcam` for why). Maps are up-sampled bilinearly to the network input and scaled to [0, 1].

Where a feature looks is measured, not described: the heatmap's mass (sum of its values) is split into the tumour
(ground-truth mask where the manifest has one on that slice, else the region the feature was pooled over), a
peritumoral ring (the tumour dilated by
``ring_mm`` millimetres, converted to network pixels, minus the tumour) and elsewhere. Label rule
(:func:`location_label`): ``elsewhere`` when tumour + ring hold less than a third of the mass; ``both`` when tumour
and ring each hold at least ``both_min`` (default 0.25); otherwise whichever of tumour and ring holds more.
"""
from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from hcc_utils import features as fe
from hcc_utils import preprocess as pp
from hcc_utils import segmentation as seg
from hcc_utils.style import HEATMAP_CMAP

FEATURE_RE = re.compile(r"^(?:(AP|PP)_)?((?:enc\d+|bottleneck|dec\d+))_c(\d+)$")


def parse_feature(name: str) -> tuple[str | None, str, int]:
    """``'PP_dec2_c13'`` -> ``('PP', 'dec2', 13)``; ``'bottleneck_c4'`` -> ``(None, 'bottleneck', 4)``."""
    m = FEATURE_RE.match(str(name))
    if not m:
        raise ValueError(f"{name!r} is not a deep feature name (<layer>_c<k>, optionally prefixed AP_/PP_)")
    return m.group(1), m.group(2), int(m.group(3))


def top_features(weights, n: int = 6, default_phase: str | None = None) -> pd.DataFrame:
    """The ``n`` deep features with the largest absolute weight in the DSFR classifier.

    Parameters
    ----------
    weights : path or DataFrame
        ``models/dsfr_weights.csv`` with columns ``feature, weight``; non-deep rows (clinical variables) are ignored.
    default_phase : {'AP', 'PP'}, optional
        Phase of unprefixed feature names (a single-phase DSFR model).

    Returns
    -------
    DataFrame
        feature, weight, phase, layer, channel (sorted by decreasing absolute weight).
    """
    w = pd.read_csv(weights) if not isinstance(weights, pd.DataFrame) else weights
    for c in ("feature", "weight"):
        if c not in w:
            raise ValueError(f"{weights}: missing column {c!r} (expected feature, weight)")
    rows = []
    for f, wt in zip(w["feature"], w["weight"]):
        if not FEATURE_RE.match(str(f)) or not np.isfinite(wt) or wt == 0:
            continue
        ph, layer, k = parse_feature(f)
        ph = ph or default_phase
        if ph is None:
            raise ValueError(f"feature {f!r} has no AP_/PP_ prefix: pass default_phase (the DSFR model's phase)")
        rows.append({"feature": f, "weight": float(wt), "phase": ph, "layer": layer, "channel": k})
    out = pd.DataFrame(rows, columns=["feature", "weight", "phase", "layer", "channel"])
    if out.empty:
        raise ValueError(f"{weights}: no deep feature with a non-zero weight")
    return out.reindex(out["weight"].abs().sort_values(ascending=False).index).head(n).reset_index(drop=True)


def gradcam(model, image: np.ndarray, mask: np.ndarray, layer: str, channel: int,
            method: str = "hires") -> tuple[np.ndarray, float]:
    """Grad-CAM heatmap of one deep feature on one slice.

    ``method="gradcam"``: classic Grad-CAM, ``ReLU(sum_c mean_xy(g_c) A_c)``. ``method="hires"`` (default):
    the element-wise variant (HiResCAM, Draelos & Carin 2020), ``|sum_c g_c(x, y) A_c(x, y)|``, which only lights
    up where the target's gradient is non-zero. Why the default: the target is a mean inside a (often small)
    tumour, so classic Grad-CAM's spatially averaged weights paint those channels' patterns over the whole slice,
    and its ReLU blanks features that decrease with their inputs (on the demo run, 5 of the 6 top features gave an
    all-zero classic map). The absolute value keeps features of either sign, since the question is *where* a
    feature looks.

    Parameters
    ----------
    model : torch.nn.Module
        The trained segmentation network (eval mode is set here).
    image : ndarray (S x S)
        Preprocessed slice (as in the cache).
    mask : ndarray (S x S)
        Tumour region the feature is pooled over.
    layer, channel : str, int

    Returns
    -------
    cam : ndarray (S x S), float32 in [0, 1] (all zeros when the gradient vanishes)
    target : float
        The pooled feature value (equals the per-slice feature of :mod:`hcc_utils.features` for the same mask).
    """
    model.eval()
    dev = next(model.parameters()).device
    store = {}
    h1 = seg.gradcam_source(model, layer).register_forward_hook(lambda m, i, o: store.__setitem__("A", o))
    h2 = seg.feature_modules(model)[layer].register_forward_hook(lambda m, i, o: store.__setitem__("F", o))
    try:
        x = torch.from_numpy(np.asarray(image, dtype=np.float32))[None, None].to(dev)
        m = torch.from_numpy(np.asarray(mask, dtype=np.float32))[None].to(dev)
        with torch.enable_grad():
            model(x)
            a, fmap = store["A"], store["F"]
            if not 0 <= channel < fmap.shape[1]:
                raise ValueError(f"{layer} has {fmap.shape[1]} channels; channel {channel} does not exist")
            target = fe.pool_feature_map(fmap[:, channel:channel + 1].float(), m)[0, 0]
            (grad,) = torch.autograd.grad(target, a)
    finally:
        h1.remove()
        h2.remove()
    g, act = grad[0].float(), a[0].detach().float()
    if method == "gradcam":
        cam = F.relu((g.mean((1, 2))[:, None, None] * act).sum(0))
    elif method == "hires":
        cam = (g * act).sum(0).abs()
    else:
        raise ValueError(f"method must be 'hires' or 'gradcam', got {method!r}")
    cam = F.interpolate(cam[None, None], size=tuple(image.shape[-2:]), mode="bilinear", align_corners=False)[0, 0]
    cam = cam.clamp_min(0)
    mx = float(cam.max())
    cam = cam / mx if mx > 0 else cam
    return cam.cpu().numpy().astype(np.float32), float(target.detach())


def ring_mask(mask: np.ndarray, ring_px: int) -> np.ndarray:
    """Peritumoral ring: ``mask`` dilated by ``ring_px`` pixels (disk) minus the mask."""
    from scipy import ndimage

    yy, xx = np.mgrid[-ring_px:ring_px + 1, -ring_px:ring_px + 1]
    disk = yy**2 + xx**2 <= ring_px**2
    m = mask.astype(bool)
    return ndimage.binary_dilation(m, structure=disk) & ~m


def location_label(tumour: float, ring: float, both_min: float = 0.25) -> str:
    """``elsewhere`` / ``both`` / ``tumour`` / ``ring`` from heatmap mass fractions (see module docstring)."""
    if tumour + ring < 1 / 3:
        return "elsewhere"
    if tumour >= both_min and ring >= both_min:
        return "both"
    return "tumour" if tumour >= ring else "ring"


def location_fractions(cam: np.ndarray, mask: np.ndarray, ring_px: int, both_min: float = 0.25) -> dict:
    """Fractions of heatmap mass in tumour, ring and elsewhere, the area fractions, and the label."""
    m = mask.astype(bool)
    r = ring_mask(m, ring_px)
    tot = float(cam.sum())
    if tot <= 0:
        t = rg = 0.0
        e = 1.0
    else:
        t, rg = float(cam[m].sum() / tot), float(cam[r].sum() / tot)
        e = max(0.0, 1.0 - t - rg)
    return {"tumour_frac": t, "ring_frac": rg, "elsewhere_frac": e, "tumour_area_frac": float(m.mean()),
            "ring_area_frac": float(r.mean()), "location": location_label(t, rg, both_min) if tot > 0 else "none"}


def ring_pixels(meta: dict, size: int, ring_mm: float) -> int:
    """``ring_mm`` in network pixels for a case (in-plane spacing scaled by the resize), at least 1."""
    sx, sy = meta["spacing"][0], meta["spacing"][1]
    _, h, w = meta["shape_zyx"]
    px_mm = 0.5 * (sx * w / size + sy * h / size)
    return max(1, int(round(ring_mm / px_mm)))


def default_phase(profile) -> str | None:
    """Phase of the chosen single-phase DSFR model, from ``models/results.json`` when it says so."""
    f = profile.outputs / "models" / "results.json"
    if f.exists():
        res = json.loads(f.read_text())
        for key in ("chosen_phase", "dsfr_phase", "best_phase", "phase"):
            v = res.get(key) if isinstance(res, dict) else None
            if v in ("AP", "PP", "DP"):
                return None if v == "DP" else v
    return None


def select_cases(profile, phase: str, n: int) -> list[str]:
    """Patients to show: held-out annotated first, then validation, then other development; within a group the
    largest predicted tumours first (readable figures), ties by patient id."""
    f = profile.outputs / "segmentation" / phase / "dsc_per_patient.csv"
    if not f.exists():
        raise FileNotFoundError(f"{f}: run the {phase} segmentation (notebook 02) first")
    d = pd.read_csv(f, dtype={"patient_id": str})
    order = {"held-out annotated": 0, "validation": 1, "other development": 2, "train": 3}
    d = d.assign(_o=d["group"].map(order).fillna(9), _v=-d["pred_voxels"]).sort_values(["_o", "_v", "patient_id"])
    return d["patient_id"].head(n).tolist()


def run_gradcam(profile, manifest, weights=None, n_features: int | None = None, n_patients: int | None = None,
                phase: str | None = None, device="auto") -> tuple[pd.DataFrame, list[dict]]:
    """Grad-CAM of the top DSFR features on a few patients; writes ``gradcam/locations.csv`` and ``summary.csv``.

    For each feature and patient the slice is the patient's tumour slice with the largest tumour area in the stored
    per-slice features (``features/<PHASE>_slices.parquet``), and the target mask is the one features were pooled
    over (prediction by default), so the Grad-CAM target equals the stored per-slice feature (column
    ``stored_feature``; checked).

    Returns
    -------
    table : DataFrame
        One row per feature and patient (fractions, label, target, stored feature).
    panels : list of dict
        image, cam, outline mask, titles for :func:`plot_gradcam`.
    """
    cfg = profile.get("gradcam", {}) or {}
    n_features = int(n_features or cfg.get("n_features", 6))
    n_patients = int(n_patients or cfg.get("n_patients", 3))
    ring_mm = float(cfg.get("ring_mm", 5.0))
    method = str(cfg.get("method", "hires"))
    both_min = float(cfg.get("both_min", 0.25))
    weights = weights or profile.outputs / "models" / "dsfr_weights.csv"
    if isinstance(weights, (str, Path)) and not Path(weights).exists():
        raise FileNotFoundError(f"{weights}: the DSFR weights are written by notebook 04 (models)")
    top = top_features(weights, n_features, phase or default_phase(profile))
    size = int(profile["preprocess"]["size"])
    mask_mode, tta = profile["features"].get("mask", "predicted"), seg.tta_mode(profile)
    df = pp.load_manifest(manifest).set_index("patient_id", drop=False)
    df.index = df.index.astype(str)
    dev = seg.resolve_device(device)
    rows, panels, models, slices = [], [], {}, {}
    for ph in sorted(top["phase"].unique()):
        models[ph] = seg.load_model(profile, ph, dev)
        f = profile.outputs / "features" / f"{ph}_slices.parquet"
        if not f.exists():
            raise FileNotFoundError(f"{f}: run feature extraction (notebook 03) for {ph}")
        slices[ph] = pd.read_parquet(f)
    for _, ft in top.iterrows():
        ph, model, sl = ft["phase"], models[ft["phase"]], slices[ft["phase"]]
        for pid in select_cases(profile, ph, n_patients):
            case = pp.prepare_case(df.loc[pid], ph, profile)
            ps = sl[sl["patient_id"].astype(str) == pid]
            z = int(ps.loc[ps["area_px"].idxmax(), "z"])
            img = np.asarray(case.image[z], dtype=np.float32)
            region = _feature_mask(model, img, case, z, mask_mode, tta)
            cam, target = gradcam(model, img, region, ft["layer"], int(ft["channel"]), method)
            truth = np.asarray(case.mask[z]) if case.mask is not None else None
            if truth is None or not truth.any():  # no manual mask (or none on this slice): the pooled region
                truth = region
            col = f"{ft['layer']}_c{int(ft['channel'])}"
            stored = float(ps.loc[ps["z"] == z, col].iloc[0])
            loc = location_fractions(cam, truth, ring_pixels(case.meta, size, ring_mm), both_min)
            rows.append({"feature": ft["feature"], "weight": ft["weight"], "phase": ph, "patient_id": pid, "z": z,
                         "target": target, "stored_feature": stored, **loc})
            panels.append({"feature": ft["feature"], "weight": ft["weight"], "patient_id": pid, "z": z,
                           "image": img, "cam": cam, "outline": truth, "location": loc["location"]})
    table = pd.DataFrame(rows)
    out = profile.outputs / "gradcam"
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "locations.csv", index=False)
    summarise(table, both_min).to_csv(out / "summary.csv")
    return table, panels


def _feature_mask(model, img: np.ndarray, case, z: int, mask_mode: str, tta: str = "none") -> np.ndarray:
    """The region features were pooled over on slice ``z`` (the rules of :func:`features.case_features` on one slice:
    the single-tumour post-processing, which needs the whole volume, is not applied here)."""
    if mask_mode == "manual":
        return np.asarray(case.mask[z], dtype=np.float32)
    prob = seg.predict_volume(model, img[None], 1, tta=tta)[0]
    m = prob >= 0.5
    if not m.any():  # the fallback slice of a case without predicted tumour
        m = fe.fallback_region(torch.from_numpy(prob)).numpy()
    return m.astype(np.float32)


def summarise(table: pd.DataFrame, both_min: float = 0.25) -> pd.DataFrame:
    """Per feature: mean mass fractions over the patients shown and the label of those means.

    ``n_blank`` counts patients whose map is all zero (the feature is zero and flat there: a dead channel on that
    slice); a feature blank for every patient shown is labelled ``none``.
    """
    g = table.groupby("feature", sort=False)
    s = g[["weight", "tumour_frac", "ring_frac", "elsewhere_frac", "tumour_area_frac", "ring_area_frac"]].mean()
    s["n_patients"] = g.size()
    s["n_blank"] = g["location"].apply(lambda x: int((x == "none").sum()))
    s["location"] = [location_label(t, r, both_min) if n < k else "none"
                     for t, r, n, k in zip(s["tumour_frac"], s["ring_frac"], s["n_blank"], s["n_patients"])]
    return s


def plot_gradcam(panels: list[dict], path: Path | None = None, crop: bool = True):
    """Figure 2: rows = patients, columns = features; CT slice, heatmap overlay (viridis, colour bar), tumour outline."""
    import matplotlib.pyplot as plt

    feats = list(dict.fromkeys(p["feature"] for p in panels))
    pids = list(dict.fromkeys(p["patient_id"] for p in panels))
    fig, axes = plt.subplots(len(pids), len(feats), figsize=(2.2 * len(feats), 2.3 * len(pids)), squeeze=False)
    for p in panels:
        ax = axes[pids.index(p["patient_id"]), feats.index(p["feature"])]
        img, cam, ol = p["image"], p["cam"], p["outline"]
        if crop and ol.any():
            ys, xs = np.nonzero(ol)
            half = max(12, int(1.2 * max(np.ptp(ys), np.ptp(xs))))
            cy, cx = int(ys.mean()), int(xs.mean())
            y0, x0 = max(0, cy - half), max(0, cx - half)
            sl = (slice(y0, min(img.shape[0], cy + half)), slice(x0, min(img.shape[1], cx + half)))
            img, cam, ol = img[sl], cam[sl], ol[sl]
        ax.imshow(img, cmap="gray")
        mappable = ax.imshow(cam, cmap=HEATMAP_CMAP, alpha=0.5, vmin=0, vmax=1)
        ax.contour(ol, levels=[0.5], colors="white", linewidths=1.0)
        if not np.any(cam > 0):  # a channel that is zero on this slice: say so rather than show a bare CT
            ax.text(0.5, 0.5, "blank map", transform=ax.transAxes, ha="center", va="center", color="white",
                    fontsize=9, bbox={"facecolor": "black", "alpha": 0.6, "edgecolor": "none"})
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{p['feature']}\n{p['location']}", fontsize=9)
        if feats.index(p["feature"]) == 0:
            ax.set_ylabel(f"{p['patient_id']} z={p['z']}", fontsize=9)
    fig.tight_layout()
    if panels:
        cbar = fig.colorbar(mappable, ax=axes.ravel().tolist(), shrink=0.8, pad=0.01)
        cbar.set_label("Grad-CAM (normalised)", fontsize=9)
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=200, bbox_inches="tight")
    return fig


def check_targets(table: pd.DataFrame, rtol: float = 1e-3, atol: float = 1e-4) -> None:
    """Warn when a Grad-CAM target differs from its stored per-slice feature (a mask or model mismatch)."""
    bad = ~np.isclose(table["target"], table["stored_feature"], rtol=rtol, atol=atol)
    if bad.any():
        warnings.warn(f"Grad-CAM targets differ from stored features for {int(bad.sum())} rows: "
                      f"{table.loc[bad, ['feature', 'patient_id']].values.tolist()[:5]}", UserWarning, stacklevel=2)
