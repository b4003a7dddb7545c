"""Deep semantic features: tumour-pooled feature maps of the trained U-Net (stage 5).

Forward hooks on named blocks of the segmentation network (:func:`hcc_utils.segmentation.feature_modules`) collect
their output maps. For each slice that contains tumour, each channel is averaged over the tumour region (the paper's
"semantic features"); a patient's vector is the mean over its tumour slices ("the average value of the features from
the same case").

Default layers
--------------
``profile["features"]["layers"]``; the default is the bottleneck plus every decoder level except the last,
full-resolution one (``[bottleneck, dec1, dec2, dec3]`` for depth 4; ``dec1`` is the lowest-resolution decoder block).
The DSFR framework (Huang et al., IEEE JBHI 2020) uses *hierarchical* features: the bottleneck carries the most
abstract, context-wide description of the tumour, and successive decoder levels add progressively finer texture and
margin information once the skip connections have re-injected encoder detail. The last decoder block is left out by
default because at full resolution it is almost a restatement of the output mask (it feeds a 1x1 conv head), and its
channels are the cheapest to add if wanted.

Pooling (mask -> map resolution)
--------------------------------
The tumour mask (network size, S x S) is reduced to the map's resolution h x w by **area interpolation**, giving each
map cell the fraction of it covered by tumour; cells with fraction >= 0.5 form the region (the nearest-neighbour
equivalent that does not depend on the phase of the sampling grid). When a small tumour covers no cell by half (the
bottleneck is S/16 wide), the channel mean is the **area-weighted** mean over all partly covered cells instead, so a
tumour slice never yields an empty region. See :func:`pool_feature_map`.

Which mask
----------
``mask="predicted"`` (default, fully automatic): the network's own prediction (argmax at network size) after the
profile's ``unet.postprocess`` (for single HCC the largest 3D component, as in the stored predicted masks) and with
its ``unet.tta`` (test-time mirroring, as in the stored masks); a first forward pass finds it, a second pools the maps
on its tumour slices. ``mask="manual"``: the manifest's ground-truth mask. A case whose prediction contains no
tumour on any slice triggers a :class:`UserWarning` and the **fallback**: the slice with the largest predicted tumour
probability, region = the connected component of pixels with probability >= half its maximum that holds the most
probable pixel (:func:`fallback_region`). The case is flagged in the
``mask_source`` column (``predicted``, ``fallback_max_prob`` or ``manual``) of ``features/<PHASE>_qc.csv`` and of the
per-slice table, never filled with zeros.

When the inference of notebook 02 (:func:`hcc_utils.segmentation.predict_cohort`) has stored
``slice_predictions.parquet`` for the same checkpoint (SHA-256 checked), the predicted-mask extraction runs the network
only on the slices with predicted tumour (or, for a case without any, on its most probable slice): the same features
for a fraction of the forward passes.

Outputs (``outputs/<profile>/features/``)
-----------------------------------------
``<PHASE>.parquet``: index ``patient_id``, columns ``<layer>_c<k>`` (float32). ``DP.parquet``: AP and PP joined by
patient, columns ``AP_<layer>_c<k>`` and ``PP_<layer>_c<k>``. ``<PHASE>_slices.parquet``: per tumour slice
(``patient_id``, ``z``, ``mask_source``, ``area_px``, features). ``<PHASE>_qc.csv``: per patient, mask source, number
of tumour slices, tumour area. ``<PHASE>_ablation.parquet``: per patient, the same means for **every** layer of the
network in five regions (columns ``<layer>_<region>_c<k>``): ``tumour`` (the region above), ``ring`` (the pixels
within :data:`RING_PX` of it that are not tumour), ``manual`` (the manifest's mask; blank for a patient without
one), ``eroded`` and ``dilated`` (the region eroded or dilated by one pixel in plane, the rules of
:func:`case_regions`). They come from the same forward passes as the feature table (the manual mask's slices outside
the tumour region need a few more), so ``<PHASE>.parquet`` is the same with or without them; the ablation chapter
(:mod:`hcc_utils.ablation`) fits its models on them, and the robustness study of chapter 8
(:func:`hcc_utils.radiomics_study.deep_tables`) reads its mask conditions from them.
"""
from __future__ import annotations

import json
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from hcc_utils import preprocess as pp
from hcc_utils import segmentation as seg
from hcc_utils.files import file_sha256

AREA_THRESHOLD = 0.5
#: Width (pixels at network size) of the peritumoral ring of the ablation tables.
RING_PX = 3
#: Regions of the ablation tables.
ABLATION_REGIONS = ("tumour", "ring", "manual", "eroded", "dilated")
#: The ablation regions that perturb the feature region: region -> ``perturb`` of :func:`case_regions`.
PERTURBED_REGIONS = {"eroded": "erode", "dilated": "dilate"}


def region_weights(mask: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Pooling weights (B x h x w) of tumour masks (B x S x S) at a map resolution ``hw``.

    Area interpolation gives the tumour fraction of each cell; cells >= ``AREA_THRESHOLD`` get weight 1, others 0.
    Where no cell of a slice reaches the threshold, the fractions themselves are the weights (area-weighted mean).
    """
    m = mask.float()[:, None]
    frac = F.interpolate(m, size=tuple(hw), mode="area")[:, 0] if tuple(m.shape[-2:]) != tuple(hw) else m[:, 0]
    hard = (frac >= AREA_THRESHOLD).float()
    empty = hard.flatten(1).sum(1) == 0
    return torch.where(empty[:, None, None], frac, hard)


def pool_feature_map(fmap: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Channel means of feature maps inside tumour masks.

    Parameters
    ----------
    fmap : Tensor
        B x C x h x w (or C x h x w) feature maps.
    mask : Tensor
        B x S x S (or S x S) binary tumour masks at network resolution.

    Returns
    -------
    Tensor
        B x C (or C) pooled features; NaN for a slice whose mask is empty.
    """
    single = fmap.dim() == 3
    if single:
        fmap, mask = fmap[None], mask[None]
    w = region_weights(mask, fmap.shape[-2:]).to(fmap.dtype)
    den = w.flatten(1).sum(1)
    num = (fmap * w[:, None]).flatten(2).sum(2)
    out = num / den[:, None]
    return out[0] if single else out


class Hooks:
    """Forward hooks that keep the latest output of named modules (``with Hooks(model, names) as h: ...``)."""

    def __init__(self, model, names):
        mods = seg.feature_modules(model)
        missing = [n for n in names if n not in mods]
        if missing:
            raise ValueError(f"unknown feature layer(s) {missing}; this network has {list(mods)}")
        self.names = list(names)
        self.out: dict[str, torch.Tensor] = {}
        self._h = [mods[n].register_forward_hook(self._make(n)) for n in self.names]

    def _make(self, name):
        def hook(_m, _i, o):
            self.out[name] = o

        return hook

    def remove(self):
        for h in self._h:
            h.remove()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.remove()


def fallback_region(prob: torch.Tensor) -> torch.Tensor:
    """Fallback tumour region of a slice without predicted tumour (S x S probabilities -> S x S bool).

    The connected component (8-connectivity) of ``prob >= max(prob) / 2`` that contains the most probable pixel.
    """
    from scipy import ndimage

    p = prob.detach().float().cpu().numpy()
    lab, _ = ndimage.label(p >= 0.5 * p.max(), structure=np.ones((3, 3)))
    peak = np.unravel_index(int(np.argmax(p)), p.shape)
    return torch.from_numpy(lab == lab[peak]).to(prob.device)


def feature_names(model, layers, size: int) -> list[str]:
    """Column names ``<layer>_c<k>`` in layer order (one dummy forward pass at input ``size``)."""
    return [f"{layer}_c{k}" for layer, c in layer_channels(model, layers, size) for k in range(c)]


def layer_channels(model, layers, size: int) -> list[tuple[str, int]]:
    """(layer, number of channels) of the named layers."""
    p = next(model.parameters())
    with Hooks(model, layers) as h, torch.inference_mode():
        was = model.training
        model.eval()
        model(torch.zeros(1, 1, size, size, device=p.device, dtype=p.dtype))
        model.train(was)
        return [(n, int(h.out[n].shape[1])) for n in layers]


def case_regions(model, case: pp.CaseCache, conditions, batch_size: int = 32, slices: list[int] | None = None,
                 postprocess: str = "none",
                 tta: str = "none") -> dict[tuple[str, str | None], tuple[list[int], np.ndarray, str]]:
    """The pooling region of each ``(mask, perturb)`` condition of one case (the rules of :func:`case_features`).

    The predicted mask needs a forward pass; it is computed once for all the predicted conditions.

    Returns
    -------
    dict
        ``(mask, perturb) -> (slices, masks, source)``: z indices (ascending), the boolean masks on them
        (n x S x S) and ``predicted``, ``fallback_max_prob`` or ``manual``.
    """
    base: dict[str, tuple[list[int], np.ndarray, str]] = {}
    out = {}
    for mask, perturb in conditions:
        if mask not in base:
            base[mask] = _base_region(model, case, mask, batch_size, slices, postprocess, tta)
        keep, m, source = base[mask]
        if perturb is not None:
            from hcc_utils.handcrafted import perturb_mask

            pm = perturb_mask(np.asarray(m), perturb).astype(bool)
            nz = pm.reshape(len(keep), -1).any(1)
            if nz.any():
                keep, m = [z for z, k in zip(keep, nz) if k], pm[nz]
            else:
                warnings.warn(f"patient {case.patient_id} {case.phase}: the '{perturb}' perturbation empties the "
                              "tumour mask; the unperturbed mask is used", UserWarning, stacklevel=2)
        out[(mask, perturb)] = (keep, m, source)
    return out


def ring_region(mask: np.ndarray, width: int = RING_PX) -> np.ndarray:
    """Per slice, the pixels within ``width`` of the tumour (8-connected dilation) that are not tumour."""
    from scipy import ndimage

    return np.stack([ndimage.binary_dilation(s, np.ones((3, 3)), iterations=width) & ~s for s in mask.astype(bool)])


def pool_ablation(model, case: pp.CaseCache, keep: list[int], m: np.ndarray, layers, batch_size: int = 32,
                  extra: dict | None = None) -> dict:
    """Per-slice pooled features of ``layers`` in the feature region, its ring and the manual mask of one case.

    The region (``keep``, ``m``) and its ring are pooled in one pass over ``keep``, as are the manual mask's slices
    among them and the ``extra`` regions (``name -> (slices, masks)``, their slices among ``keep``, e.g. the region
    eroded or dilated), so the region's features are exactly those of :func:`pool_regions` on it alone; the manual
    mask's other slices take a second pass.

    Returns
    -------
    dict
        ``region -> ndarray (n_slices x n_features)``; ``manual`` only when the case has a non-empty manual mask.
    """
    regions = {"tumour": (keep, m), "ring": (keep, ring_region(m))}
    for name, (zs, mz) in (extra or {}).items():
        if not set(zs) <= set(keep):
            raise ValueError(f"patient {case.patient_id} {case.phase}: region {name!r} has slices outside the "
                             "feature region; it would change the pass")
        regions[name] = (zs, mz)
    rest = {}
    gt = case.mask
    if gt is not None and case.tumour_slices:
        inside = set(keep)
        zs = [z for z in range(case.n_slices) if np.asarray(gt[z]).any()]
        for target, part in ((regions, [z for z in zs if z in inside]), (rest, [z for z in zs if z not in inside])):
            if part:
                target["manual"] = (part, np.asarray(gt[part], dtype=bool))
    out = pool_regions(model, case.image, regions, layers, batch_size)
    if rest:
        extra = pool_regions(model, case.image, rest, layers, batch_size)["manual"]
        out["manual"] = np.vstack([out["manual"], extra]) if "manual" in out else extra
    return out


def _region_mean(v: np.ndarray) -> np.ndarray:
    """Patient mean of per-slice features, skipping slices whose region is empty (zeros when all are)."""
    ok = np.isfinite(v).all(1)
    return v[ok].mean(0) if ok.any() else np.zeros(v.shape[1], np.float32)


def _base_region(model, case: pp.CaseCache, mask: str, batch_size: int, slices, postprocess: str, tta: str):
    img = case.image
    if mask == "manual":
        gt = case.mask
        if gt is None or not case.tumour_slices:
            raise ValueError(f"patient {case.patient_id} {case.phase}: mask='manual' but the manifest has no "
                             f"(non-empty) mask_{case.phase.lower()}")
        keep = [z for z in range(case.n_slices) if np.asarray(gt[z]).any()]
        return keep, np.asarray(gt[keep], dtype=bool), "manual"
    # first pass: the predicted mask; the second pass pools only on its tumour slices (memory stays small)
    zs = sorted(range(case.n_slices) if slices is None else {int(z) for z in slices})
    prob = (seg.predict_tumour(model, img[zs], batch_size, postprocess=postprocess, tta=tta) if zs
            else np.zeros((0,) + img.shape[1:], np.float32))
    m = prob >= 0.5
    keep = [z for z, mz in zip(zs, m) if mz.any()]
    m = m[[i for i, mz in enumerate(m) if mz.any()]]
    if keep:
        return keep, m, "predicted"
    i = int(np.argmax(prob.reshape(len(zs), -1).max(1)))
    warnings.warn(f"patient {case.patient_id} {case.phase}: the network predicts no tumour on any slice; "
                  f"falling back to slice {zs[i]} (largest predicted probability {prob[i].max():.3f}), "
                  "region = connected pixels with probability >= half that maximum", UserWarning, stacklevel=3)
    return [zs[i]], fallback_region(torch.from_numpy(prob[i])).numpy()[None], "fallback_max_prob"


@torch.inference_mode()
def pool_regions(model, img, regions: dict, layers, batch_size: int = 32) -> dict:
    """Per-slice pooled features of every region, from one forward pass over the union of their slices.

    Parameters
    ----------
    model : torch.nn.Module
    img : array (n_slices x S x S)
        The case's preprocessed slices.
    regions : dict
        ``key -> (slices, masks, ...)`` as :func:`case_regions` returns.
    layers : list of str
    batch_size : int

    Returns
    -------
    dict
        ``key -> ndarray (len(slices) x n_features)``, float32. With one region the batches are those of a plain
        pass over its slices, so the result is the same as pooling it alone.
    """
    dev = next(model.parameters()).device
    union = sorted(set().union(*(r[0] for r in regions.values())))
    rows = {k: {z: i for i, z in enumerate(r[0])} for k, r in regions.items()}
    out = {k: [None] * len(r[0]) for k, r in regions.items()}
    with Hooks(model, layers) as h:
        for s in range(0, len(union), batch_size):
            zs = union[s:s + batch_size]
            x = torch.from_numpy(np.asarray(img[zs], dtype=np.float32))[:, None].to(dev)
            with seg._autocast(dev):
                model(x.contiguous(memory_format=torch.channels_last))
            for k, (_, m, *_) in regions.items():
                at = [i for i, z in enumerate(zs) if z in rows[k]]
                if not at:
                    continue
                mb = torch.from_numpy(np.stack([m[rows[k][zs[i]]] for i in at]).astype(np.float32)).to(dev)
                f = torch.cat([pool_feature_map(h.out[n][at].float(), mb) for n in layers], 1).cpu().numpy()
                for i, v in zip(at, f):
                    out[k][rows[k][zs[i]]] = v
    return {k: np.stack(v).astype(np.float32) for k, v in out.items()}


@torch.inference_mode()
def case_features(model, case: pp.CaseCache, layers, mask: str = "predicted", batch_size: int = 32,
                  device="auto", slices: list[int] | None = None, postprocess: str = "none",
                  perturb: str | None = None, tta: str = "none") -> tuple[np.ndarray, list[int], list[float], str]:
    """Per-slice pooled features of one cached case.

    ``slices`` restricts the forward passes (``mask="predicted"``) to these z indices (default: all slices); the
    fallback then looks among them. ``postprocess`` and ``tta`` make the predicted mask of those slices the way
    the stored predicted masks are made (:func:`hcc_utils.segmentation.predict_tumour`; the pooling pass is a plain
    one, so the features are those of the unmirrored slices). ``perturb``
    (``'erode'`` or ``'dilate'``) pools in the mask eroded or dilated by one pixel at network size
    (:func:`hcc_utils.handcrafted.perturb_mask`); slices that erosion empties are dropped, and a case it would
    empty entirely keeps its unperturbed mask (with a warning).

    Returns
    -------
    feats : ndarray (n_tumour_slices x n_features)
    slices : list of int (z indices)
    areas : list of float (tumour pixels per slice at network size)
    source : str
        ``predicted``, ``fallback_max_prob`` or ``manual``.
    """
    regions = case_regions(model, case, [(mask, perturb)], batch_size, slices, postprocess, tta)
    keep, m, source = regions[(mask, perturb)]
    feats = pool_regions(model, case.image, regions, layers, batch_size)[(mask, perturb)]
    return feats, keep, region_areas(m), source


def region_areas(m: np.ndarray) -> list[float]:
    """Region pixels per slice (n x S x S masks, at network size)."""
    return m.reshape(len(m), -1).sum(1).astype(float).tolist()


def extract_phase(manifest, profile, phase: str, mask: str | None = None, device="auto", progress: bool = True,
                  layers=None, perturb: str | None = None, write: bool = True) -> pd.DataFrame:
    """Extract the tumour-pooled features of every patient for one phase and write the tables.

    Parameters
    ----------
    manifest : path or DataFrame
    profile : Profile
    phase : {'AP', 'PP'}
    mask : {'predicted', 'manual'}, optional
        Default ``profile["features"]["mask"]``.
    layers : list of str, optional
        Default ``profile["features"]["layers"]``.
    perturb : {None, 'erode', 'dilate'}
        Pool in the mask eroded or dilated by one pixel (:func:`case_features`).
    write : bool
        Write the tables under ``features/`` (False: only return the patient table, e.g. for a robustness study).
        Without ``perturb`` the written tables include ``<PHASE>_ablation.parquet``.

    Returns
    -------
    DataFrame
        Patients x features (index ``patient_id``), as written to ``features/<PHASE>.parquet``.
    """
    mask = mask or profile["features"].get("mask", "predicted")
    if mask not in ("predicted", "manual"):
        raise ValueError(f"features.mask must be 'predicted' or 'manual', got {mask!r}")
    model, layers, names, bs, post, tta = _phase_network(profile, phase, device, layers)
    df = pp.load_manifest(manifest)
    visit = _slices_to_visit(profile, phase) if mask == "predicted" else None
    abl_layers = list(seg.feature_modules(model)) if write and perturb is None else None
    if abl_layers:
        abl_names = feature_names(model, abl_layers, int(profile["preprocess"]["size"]))
        main = [abl_names.index(n) for n in names]
        abl_rows = []
    vecs, qc, slice_frames = [], [], []
    tracemalloc.start()
    t0 = time.perf_counter()
    rows = [r for _, r in df.iterrows()]
    key = (mask, perturb)
    keys = [key] + ([(mask, p) for p in PERTURBED_REGIONS.values()] if abl_layers else [])
    for row in pp._progress(rows, progress, f"features {phase}"):
        case = pp.prepare_case(row, phase, profile)
        with warnings.catch_warnings():
            # an erosion that empties a region keeps the unperturbed one (case_regions); no warning per patient here
            warnings.filterwarnings("ignore", message=".*perturbation empties the tumour mask", category=UserWarning)
            regions = case_regions(model, case, keys, bs, None if visit is None else visit.get(case.patient_id),
                                   post, tta)
        zs, m, source = regions[key]
        if abl_layers:
            extra = {r: regions[(mask, p)][:2] for r, p in PERTURBED_REGIONS.items()}
            pooled = pool_ablation(model, case, zs, m, abl_layers, bs, extra=extra)
            f = np.ascontiguousarray(pooled["tumour"][:, main])  # contiguous: its mean sums as the plain pass does
            abl_rows.append(np.concatenate([_region_mean(pooled[r]) if r in pooled
                                            else np.full(len(abl_names), np.nan, np.float32)
                                            for r in ABLATION_REGIONS]))
        else:
            f = pool_regions(model, case.image, regions, layers, bs)[key]
        areas = region_areas(m)
        vecs.append(f.mean(0))
        qc.append({"patient_id": case.patient_id, "mask_source": source, "n_tumour_slices": len(zs),
                   "tumour_area_px": float(np.sum(areas))})
        sf = pd.DataFrame(f, columns=names)
        sf.insert(0, "area_px", np.asarray(areas, dtype=np.float32))
        sf.insert(0, "mask_source", source)
        sf.insert(0, "z", zs)
        sf.insert(0, "patient_id", case.patient_id)
        slice_frames.append(sf)
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    ids = [q["patient_id"] for q in qc]
    table = _patient_table(vecs, ids, names, phase)
    if not write:
        return table
    out = profile.outputs / "features"
    out.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out / f"{phase}.parquet")
    pd.concat(slice_frames, ignore_index=True).to_parquet(out / f"{phase}_slices.parquet", index=False)
    qcdf = pd.DataFrame(qc)
    qcdf.to_csv(out / f"{phase}_qc.csv", index=False)
    if abl_layers:
        cols = [f"{n.rsplit('_c', 1)[0]}_{r}_c{n.rsplit('_c', 1)[1]}" for r in ABLATION_REGIONS for n in abl_names]
        pd.DataFrame(np.vstack(abl_rows).astype(np.float32), index=pd.Index(ids, name="patient_id"),
                     columns=cols).to_parquet(out / f"{phase}_ablation.parquet")
    info = {"phase": phase, "mask": mask, "layers": layers, "slices_from_inference": visit is not None,
            "model_sha256": file_sha256(profile.outputs / "segmentation" / phase / "model.pth"),
            "ablation_layers": abl_layers, "ablation_regions": list(ABLATION_REGIONS) if abl_layers else None,
            "ring_px": RING_PX,
            "n_slices_visited": int(sum(len(v) for v in visit.values())) if visit else None,
            "n_patients": len(table), "n_features": table.shape[1],
            "n_fallback": int((qcdf["mask_source"] == "fallback_max_prob").sum()), "seconds": seconds,
            "peak_python_heap_mb": peak / 2**20, "peak_rss_mb": _peak_rss_mb()}
    (out / f"{phase}_info.json").write_text(json.dumps(info, indent=1))
    return table


def extract_conditions(manifest, profile, phase: str, conditions, device="auto", progress: bool = True,
                       layers=None) -> dict[tuple[str, str | None], pd.DataFrame]:
    """Patient tables of several ``(mask, perturb)`` conditions of one phase, one forward pass per case for all.

    The feature maps do not depend on the mask, so every condition is pooled from the same pass over the union of
    the conditions' slices (the predicted mask itself is found once). The tables are those of
    :func:`extract_phase` (``write=False``) run once per condition, to float rounding: the slices are batched
    together, which can change the last bits of a convolution.

    Parameters
    ----------
    manifest : path or DataFrame
    profile : Profile
    phase : {'AP', 'PP'}
    conditions : list of (mask, perturb)
        ``mask`` ``'predicted'`` or ``'manual'``; ``perturb`` None, ``'erode'`` or ``'dilate'``. Manual conditions
        cover the patients whose manifest row has a manual mask.
    layers : list of str, optional
        Default ``profile["features"]["layers"]``.

    Returns
    -------
    dict
        ``(mask, perturb) -> DataFrame`` (index ``patient_id`` in manifest order, columns ``<layer>_c<k>``).
    """
    conditions = [(m, p) for m, p in conditions]
    for m, _ in conditions:
        if m not in ("predicted", "manual"):
            raise ValueError(f"mask must be 'predicted' or 'manual', got {m!r}")
    model, layers, names, bs, post, tta = _phase_network(profile, phase, device, layers)
    visit = _slices_to_visit(profile, phase) if any(m == "predicted" for m, _ in conditions) else None
    vecs: dict = {c: [] for c in conditions}
    ids: dict = {c: [] for c in conditions}
    rows = [r for _, r in pp.load_manifest(manifest).iterrows()]
    for row in pp._progress(rows, progress, f"features {phase}, {len(conditions)} masks"):
        case = pp.prepare_case(row, phase, profile)
        todo = [c for c in conditions if c[0] == "predicted" or case.mask is not None]
        if not todo:
            continue
        regions = case_regions(model, case, todo, bs, None if visit is None else visit.get(case.patient_id), post,
                               tta)
        for c, f in pool_regions(model, case.image, regions, layers, bs).items():
            vecs[c].append(f.mean(0))
            ids[c].append(case.patient_id)
    return {c: _patient_table(vecs[c], ids[c], names, f"{phase} {c}") for c in conditions}


def _phase_network(profile, phase: str, device, layers):
    """The phase's trained network on ``device`` and what pooling needs: layers, feature names, batch, postprocess,
    test-time augmentation."""
    layers = list(layers or profile["features"]["layers"])
    dev = seg.resolve_device(device)
    seg.set_threads()
    model = seg.load_model(profile, phase, dev)
    names = feature_names(model, layers, int(profile["preprocess"]["size"]))
    return (model, layers, names, seg.inference_batch_size(profile), seg.postprocess_mode(profile),
            seg.tta_mode(profile))


def _patient_table(vecs, ids, names, what: str) -> pd.DataFrame:
    """Patients x features (float32), or an error naming the patients with non-finite features."""
    table = pd.DataFrame(np.vstack(vecs).astype(np.float32) if len(vecs) else np.zeros((0, len(names)), np.float32),
                         index=pd.Index(ids, name="patient_id"), columns=names)
    if not np.isfinite(table.to_numpy()).all():
        bad = table.index[~np.isfinite(table.to_numpy()).all(1)].tolist()
        raise RuntimeError(f"{what}: non-finite features for patients {bad}")
    return table


def _slices_to_visit(profile, phase: str) -> dict[str, list[int]] | None:
    """Slices worth a forward pass per patient, from the inference run of the same checkpoint and test-time
    augmentation (else None = all).

    A patient's slices with predicted tumour pixels; for a patient without any, its slice of largest probability
    (where the fallback will look).
    """
    d = profile.outputs / "segmentation" / phase
    f, m = d / "slice_predictions.parquet", d / "metrics.json"
    if not (f.exists() and m.exists()):
        return None
    inf = json.loads(m.read_text()).get("inference", {})
    sha = inf.get("model_sha256")
    if sha is None or sha != file_sha256(d / "model.pth") or inf.get("tta", "none") != seg.tta_mode(profile):
        return None
    sp = pd.read_parquet(f)
    out = {}
    for pid, g in sp.groupby("patient_id", sort=False):
        z = g.loc[g["pred_px"] > 0, "z"].tolist()
        out[str(pid)] = z or [int(g.loc[g["max_prob"].idxmax(), "z"])]
    return out


def _peak_rss_mb() -> float:
    import resource
    import sys

    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 2**20 if sys.platform == "darwin" else r / 1024


def join_dp(ap: pd.DataFrame, pp_: pd.DataFrame) -> pd.DataFrame:
    """DP table: AP and PP features joined by patient (inner join), columns prefixed ``AP_`` / ``PP_``."""
    missing = sorted(set(ap.index) ^ set(pp_.index))
    if missing:
        warnings.warn(f"DP: patients present in only one phase are dropped: {missing[:10]}", UserWarning,
                      stacklevel=2)
    return ap.add_prefix("AP_").join(pp_.add_prefix("PP_"), how="inner")


def write_dp(profile) -> pd.DataFrame:
    """Read ``features/AP.parquet`` and ``features/PP.parquet`` and write ``features/DP.parquet``."""
    out = profile.outputs / "features"
    tabs = {}
    for ph in ("AP", "PP"):
        f = out / f"{ph}.parquet"
        if not f.exists():
            raise FileNotFoundError(f"{f}: extract the {ph} features first (notebook 03 with phase={ph!r})")
        tabs[ph] = pd.read_parquet(f)
    dp = join_dp(tabs["AP"], tabs["PP"])
    dp.to_parquet(out / "DP.parquet")
    return dp


def read_ablation_table(profile, phase: str) -> tuple[pd.DataFrame, dict]:
    """``features/<PHASE>_ablation.parquet`` and its ``<PHASE>_info.json``, checked against the phase's network.

    Returns
    -------
    table : DataFrame
        Index ``patient_id`` (str), columns ``<layer>_<region>_c<k>``.
    info : dict
        With ``ablation_layers`` and ``ablation_regions`` (tables written before the eroded and dilated regions
        existed list no regions: the first three of :data:`ABLATION_REGIONS`).

    Raises
    ------
    FileNotFoundError
        No ablation table (chapter 3 has not run for the phase).
    RuntimeError
        The table comes from another network than ``segmentation/<PHASE>/model.pth``.
    """
    d = profile.outputs / "features"
    f, info_f = d / f"{phase}_ablation.parquet", d / f"{phase}_info.json"
    model = profile.outputs / "segmentation" / phase / "model.pth"
    if not (f.exists() and info_f.exists()):
        raise FileNotFoundError(f"{f}: no ablation table for {phase}; extract the features of this run first "
                                f"(chapter 3, notebook 03 with phase={phase!r})")
    info = json.loads(info_f.read_text())
    if not model.exists() or info.get("model_sha256") != file_sha256(model):
        raise RuntimeError(f"{f}: extracted with another {phase} network than {model}; extract the features again "
                           "(chapter 3)")
    info["ablation_regions"] = info.get("ablation_regions") or list(ABLATION_REGIONS[:3])
    table = pd.read_parquet(f)
    table.index = table.index.astype(str)
    return table, info


def stored_region(profile, phase: str, region: str | None, layers, stored=None) -> pd.DataFrame | None:
    """The patient table of ``layers`` pooled in one ablation region, as :func:`extract_phase` writes it.

    Columns ``<layer>_c<k>`` (the feature table's names); patients without the region (no manual mask) are left out.
    None when chapter 3's table of the phase's current network does not hold the region or the layers. ``stored``:
    what :func:`read_ablation_table` returned for the phase, to read several regions from one read.
    """
    if stored is None:
        try:
            stored = read_ablation_table(profile, phase)
        except (FileNotFoundError, RuntimeError):
            return None
    table, info = stored
    if region not in info["ablation_regions"] or not set(layers) <= set(info["ablation_layers"] or []):
        return None
    cols = [c for layer in layers for c in table.columns if c.startswith(f"{layer}_{region}_c")]
    out = table[cols].rename(columns=lambda c: c.replace(f"_{region}_c", "_c"))
    return out[out.notna().all(axis=1)]


def load_features(profile, phase: str) -> pd.DataFrame:
    """A stored feature table (``AP``, ``PP`` or ``DP``)."""
    f = Path(profile.outputs) / "features" / f"{phase}.parquet"
    if not f.exists():
        raise FileNotFoundError(f"{f}: not extracted yet (notebook 03)")
    return pd.read_parquet(f)


def plot_feature_heatmap(table: pd.DataFrame, per_layer: int = 6, path: Path | None = None, title: str = ""):
    """Heatmap of a few features per layer (z-scored across patients; patients sorted by the first feature)."""
    import matplotlib.pyplot as plt

    layers = list(dict.fromkeys(c.rsplit("_c", 1)[0] for c in table.columns))
    cols = [c for layer in layers for c in [c for c in table.columns if c.rsplit("_c", 1)[0] == layer][:per_layer]]
    sub = table[cols]
    z = (sub - sub.mean()) / sub.std(ddof=0).replace(0, 1)
    z = z.sort_values(cols[0])
    fig, ax = plt.subplots(figsize=(max(5, 0.28 * len(cols)), 4))
    im = ax.imshow(z.to_numpy().T, aspect="auto", cmap="RdBu_r", vmin=-3, vmax=3, interpolation="nearest")
    ax.set_yticks(range(len(cols)))
    ax.set_yticklabels(cols, fontsize=6)
    ax.set_xlabel(f"patients (n = {len(z)}, sorted by {cols[0]})")
    fig.colorbar(im, ax=ax, label="z-score")
    ax.set_title(title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=150)
    return fig
