"""What each design choice of the DSFR model gives: an ablation on the trained networks of a finished run.

One pass per phase over the cohort with the run's own networks pools every feature layer in the predicted tumour,
in a ring around it and in the manual mask; the paper's nested cross-validated logistic model (the one of Table 2,
:func:`hcc_utils.classifiers.fit_nested`) is fitted on each variant and phase. Writes
``outputs/<profile>/models/ablation.csv``, which chapter 4 shows. Run it with ``make ablation PROFILE=demo``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import ndimage

from hcc_utils import features as fe
from hcc_utils import classifiers, models
from hcc_utils import preprocess as pp
from hcc_utils import segmentation as seg
from hcc_utils.config import load_profile
from hcc_utils.files import file_sha256, write_json
from hcc_utils.manifest import is_external, load_patient_table

#: Width (pixels at network size) of the peritumoral ring around the predicted tumour.
RING_PX = 3
REGIONS = ("tumour", "ring", "manual")
PHASES = ("AP", "PP", "DP")
COLUMNS = ["factor", "variant", "default", "phase", "n_features", "development", "validation"]


def _ring(mask: np.ndarray, width: int = RING_PX) -> np.ndarray:
    """Per slice, the pixels within ``width`` of the tumour (8-connected dilation) that are not tumour."""
    return np.stack([ndimage.binary_dilation(s, np.ones((3, 3)), iterations=width) & ~s for s in mask.astype(bool)])


def _pool(fmap: torch.Tensor, region: np.ndarray) -> np.ndarray:
    """Channel means of ``fmap`` (B x C x h x w) in binary regions (B x S x S); NaN where a region is empty."""
    r = torch.from_numpy(region.astype(np.float32))
    w = fe.region_weights(r, fmap.shape[-2:])
    den = w.flatten(1).sum(1)
    out = (fmap * w[:, None]).flatten(2).sum(2) / den[:, None]
    return out.numpy()


@torch.inference_mode()
def case_variants(model, case: pp.CaseCache, layers: list[str], postprocess: str,
                  batch_size: int = 32, tta: str = "none") -> dict[tuple[str, str], np.ndarray]:
    """Patient-level features of one case for every (layer, region): the mean over the region's slices.

    Parameters
    ----------
    model : torch.nn.Module
        The phase's trained network (eval mode).
    case : CaseCache
        The preprocessed case.
    layers : list of str
        Feature layers (:func:`hcc_utils.segmentation.feature_modules`).
    postprocess : str
        The profile's ``unet.postprocess`` applied to the predicted mask.
    batch_size : int
        Slices per forward pass.
    tta : str
        The profile's ``unet.tta`` for the predicted mask (:func:`hcc_utils.segmentation.predict_tumour`).

    Returns
    -------
    dict
        ``(layer, region) -> 1-D array`` of channel means; regions ``tumour`` and ``ring`` from the predicted mask
        (the fallback region when nothing is predicted), ``manual`` from the manifest's mask when it has one.
    """
    img = case.image
    prob = seg.predict_tumour(model, img, batch_size, postprocess=postprocess, tta=tta)
    pred = prob >= 0.5
    keep = [z for z in range(len(pred)) if pred[z].any()]
    if not keep:
        z = int(np.argmax(prob.reshape(len(pred), -1).max(1)))
        keep, pm = [z], fe.fallback_region(torch.from_numpy(prob[z])).numpy()[None]
    else:
        pm = pred[keep]
    masks = {"tumour": (keep, pm), "ring": (keep, _ring(pm))}
    gt = case.mask
    if gt is not None and case.tumour_slices:
        zs = [z for z in range(case.n_slices) if np.asarray(gt[z]).any()]
        masks["manual"] = (zs, np.asarray(gt[zs], dtype=bool))
    out: dict[tuple[str, str], np.ndarray] = {}
    with fe.Hooks(model, layers) as h:
        for region, (zs, m) in masks.items():
            acc: dict[str, list[np.ndarray]] = {n: [] for n in layers}
            for s in range(0, len(zs), batch_size):
                x = torch.from_numpy(np.asarray(img[zs[s:s + batch_size]], dtype=np.float32))[:, None]
                model(x.contiguous(memory_format=torch.channels_last))
                for n in layers:
                    acc[n].append(_pool(h.out[n].float(), m[s:s + batch_size]))
            for n in layers:
                v = np.concatenate(acc[n], 0)
                out[(n, region)] = np.nanmean(v, 0) if np.isfinite(v).any() else np.zeros(v.shape[1])
    return out


def extract(profile, manifest, phase: str, progress: bool = True) -> dict[tuple[str, str], pd.DataFrame]:
    """Every (layer, region) feature table of one phase (patients x channels, index ``patient_id``).

    Parameters
    ----------
    profile : Profile
    manifest : path or DataFrame
    phase : {'AP', 'PP'}
    progress : bool

    Returns
    -------
    dict
        ``(layer, region) -> DataFrame``; the ``manual`` region only when every patient has a manual mask.
    """
    seg.set_threads()
    model = seg.load_model(profile, phase, torch.device("cpu"))
    layers = list(seg.feature_modules(model))
    post, tta = seg.postprocess_mode(profile), seg.tta_mode(profile)
    df = pp.load_manifest(manifest)
    rows = {}
    for row in pp._progress([r for _, r in df.iterrows()], progress, f"ablation {phase}"):
        case = pp.prepare_case(row, phase, profile)
        rows[case.patient_id] = case_variants(model, case, layers, post, tta=tta)
    common = set.intersection(*(set(r) for r in rows.values()))
    tables = {}
    for key in (k for k in next(iter(rows.values())) if k in common):  # the network's layer order
        layer, region = key
        data = np.vstack([rows[p][key] for p in rows])
        cols = [f"{phase}_{layer}_{region}_c{k}" for k in range(data.shape[1])]
        tables[key] = pd.DataFrame(data, index=pd.Index(list(rows), name="patient_id"), columns=cols)
    return tables


def variants(default_layers: list[str], all_layers: list[str]) -> list[tuple[str, str, bool, list]]:
    """The compared designs: (factor, label, is the profile's default, recipe).

    A recipe is a list of ``(layer, region)`` tables to concatenate, or ``(layer, "contrast")`` for the tumour mean
    minus the ring mean of the same channels.
    """
    d = "+".join(default_layers)
    out = [("feature layer", f"{layer} (tumour mean)", [layer] == list(default_layers), [(layer, "tumour")])
           for layer in all_layers]
    out += [
        ("pooling region", f"{d}: tumour mean (paper)", True, [(l, "tumour") for l in default_layers]),
        ("pooling region", f"{d}: tumour and ring means", False,
         [(l, r) for l in default_layers for r in ("tumour", "ring")]),
        ("pooling region", f"{d}: tumour minus ring (contrast)", False, [(l, "contrast") for l in default_layers]),
        ("mask", f"{d}: manual mask instead of predicted", False, [(l, "manual") for l in default_layers]),
    ]
    return out


def _design(tables: dict, phase_list: list[str], recipe: list) -> pd.DataFrame | None:
    parts = []
    for ph in phase_list:
        for layer, region in recipe:
            if region == "contrast":
                a, b = tables[ph].get((layer, "tumour")), tables[ph].get((layer, "ring"))
                if a is None or b is None:
                    return None
                parts.append(pd.DataFrame(a.to_numpy() - b.to_numpy(), index=a.index,
                                          columns=[c.replace("_tumour_", "_contrast_") for c in a.columns]))
            else:
                t = tables[ph].get((layer, region))
                if t is None:
                    return None
                parts.append(t)
    return pd.concat(parts, axis=1)


def run_ablation(profile, manifest=None, seed: int | None = None, progress: bool = True) -> pd.DataFrame:
    """Fit the Table 2 model on every design variant and phase; write ``models/ablation.csv``.

    Parameters
    ----------
    profile : Profile
        A profile whose run has trained networks (notebook 02).
    manifest : path, optional
        Default: the profile's manifest.
    seed : int, optional
        Default: the profile's seed (the same folds as Table 2).
    progress : bool

    Returns
    -------
    DataFrame
        Columns :data:`COLUMNS`: development (nested cross-validated) and validation (every external cohort
        together) AUC per variant and phase.
    """
    manifest = Path(manifest) if manifest else profile.manifest
    seed = profile.seed if seed is None else int(seed)
    t0 = time.perf_counter()
    tables = {ph: extract(profile, manifest, ph, progress) for ph in ("AP", "PP")}
    patients = load_patient_table(manifest)
    patients.index = patients.index.astype(str)
    dev = patients[patients["cohort"] == "development"]
    val = patients[is_external(patients["cohort"])]  # every external cohort, pooled
    y = dev["er"].astype(int)
    grid, folds = profile["models"]["grid"], int(profile["models"]["cv_folds"])
    all_layers = list(dict.fromkeys(layer for layer, _ in tables["PP"]))
    rows = []
    from tqdm.auto import tqdm

    todo = [(v, ph) for v in variants(list(profile["features"]["layers"]), all_layers) for ph in PHASES]
    for (factor, label, default, recipe), ph in tqdm(todo, desc="ablation fits", disable=not progress):
        X = _design(tables, ["AP", "PP"] if ph == "DP" else [ph], recipe)
        if X is None:
            continue
        fit = classifiers.fit_nested(f"{label} {ph}", X.loc[dev.index], y, X.loc[val.index], grid, folds, seed)
        rows.append({"factor": factor, "variant": label, "default": default, "phase": ph,
                     "n_features": X.shape[1], "development": models._auc(y, fit.cv_prob),
                     "validation": models._auc(val["er"].astype(int), fit.val_prob) if len(val) else np.nan})
    table = pd.DataFrame(rows, columns=COLUMNS)
    out = profile.out("models", "ablation.csv")
    table.to_csv(out, index=False)
    write_json({"seconds": time.perf_counter() - t0, "ring_px": RING_PX,
                "basis": basis(profile, manifest, seed)}, out.with_suffix(".json"))
    return table


def basis(profile, manifest=None, seed: int | None = None) -> dict:
    """What an ablation's numbers depend on: the networks (SHA-256 of each phase's ``model.pth``), the manifest file,
    the seed and the feature and model settings that decide the folds, the grid and which variant is the default."""
    manifest = Path(manifest) if manifest else profile.manifest
    sha = lambda f: file_sha256(f) if f.is_file() else None  # noqa: E731
    return {"networks": {ph: sha(profile.outputs / "segmentation" / ph / "model.pth") for ph in ("AP", "PP")},
            "manifest": sha(manifest),
            "seed": profile.seed if seed is None else int(seed),
            "features": json.loads(json.dumps(profile["features"], default=str)),
            "models": {k: profile["models"][k] for k in ("cv_folds", "grid")}}


def load(profile, manifest=None, seed: int | None = None) -> tuple[pd.DataFrame | None, str]:
    """The stored ablation table of this run (``models/ablation.csv``) and, when it cannot be shown, why.

    A table is returned only when it was computed on this run's networks, manifest, seed and settings
    (:func:`basis`); one left from other networks (retrained, another cohort) or other settings gives
    ``(None, reason)`` and stays on disk until ``make ablation`` rewrites it.
    """
    f = profile.out("models", "ablation.csv", mkdir=False)
    if not f.exists():
        return None, "not run"
    meta = f.with_suffix(".json")
    stored = json.loads(meta.read_text()).get("basis") if meta.exists() else None
    now = basis(profile, manifest, seed)
    if stored is None:
        return None, "the stored table does not record the networks and settings it was computed on"
    changed = [k for k in now if stored.get(k) != now[k]]
    if changed:
        what = {"networks": "trained networks", "manifest": "manifest", "seed": "seed",
                "features": "feature settings", "models": "model settings"}
        return None, f"the stored table belongs to another run (different {', '.join(what[k] for k in changed)})"
    return pd.read_csv(f), ""


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """The ablation as a page table: one row per variant, development and validation AUC per phase."""
    wide = table.pivot_table(index=["factor", "variant"], columns="phase", values=["development", "validation"],
                             sort=False)
    wide.columns = [f"{ph} {cohort}" for cohort, ph in wide.columns]
    cols = [f"{ph} {c}" for c in ("development", "validation") for ph in PHASES if f"{ph} {c}" in wide.columns]
    return wide[cols].reset_index()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hcc_utils.ablation", description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="demo")
    ap.add_argument("--manifest", default=None)
    ap.add_argument("--seed", type=int, default=None)
    a = ap.parse_args(argv)
    prof = load_profile(a.profile)
    table = run_ablation(prof, a.manifest, a.seed)
    with pd.option_context("display.width", 200):
        print(summary(table).round(3).to_string(index=False))
    print(f"written: {prof.outputs / 'models' / 'ablation.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
