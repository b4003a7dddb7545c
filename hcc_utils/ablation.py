"""What each design choice of the DSFR model gives: an ablation on the trained networks of a run.

The feature stage (:func:`hcc_utils.features.extract_phase`) stores, beside the feature table, every feature layer of
the network pooled in the tumour region, in a ring around it and in the manual mask
(``features/<PHASE>_ablation.parquet``). The paper's nested cross-validated logistic model (the one of Table 2,
:func:`hcc_utils.classifiers.fit_nested`) is fitted on each variant and phase. Writes
``outputs/<profile>/models/ablation.csv``, which the ablation chapter shows; ``make ablation PROFILE=demo`` refits it
from the stored tables.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from hcc_utils import features as fe
from hcc_utils import classifiers, models
from hcc_utils.config import load_profile
from hcc_utils.files import file_sha256, write_json
from hcc_utils.manifest import is_external, load_patient_table

PHASES = ("AP", "PP", "DP")
COLUMNS = ["factor", "variant", "default", "phase", "n_features", "development", "validation"]


def load_tables(profile, phase: str) -> dict[tuple[str, str], pd.DataFrame]:
    """Every (layer, region) feature table of one phase (patients x channels, index ``patient_id``).

    Read from ``features/<PHASE>_ablation.parquet``, which must come from the phase's current network.

    Parameters
    ----------
    profile : Profile
    phase : {'AP', 'PP'}

    Returns
    -------
    dict
        ``(layer, region) -> DataFrame`` in the network's layer order, columns ``<PHASE>_<layer>_<region>_c<k>``;
        the ``manual`` region only when every patient has a manual mask.
    """
    table, info = fe.read_ablation_table(profile, phase)
    out = {}
    for region in info["ablation_regions"]:  # the layout extract_phase writes and records
        for layer in info["ablation_layers"]:
            t = table[[c for c in table.columns if c.startswith(f"{layer}_{region}_c")]]
            if t.isna().any().any():
                continue  # the manual mask of some patient is missing
            out[(layer, region)] = t.add_prefix(f"{phase}_")
    return out


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
        A profile whose run has extracted its features (chapter 3).
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
    tables = {ph: load_tables(profile, ph) for ph in ("AP", "PP")}
    patients = load_patient_table(manifest)
    patients.index = patients.index.astype(str)
    dev = patients[patients["cohort"] == "development"]
    val = patients[is_external(patients["cohort"])]  # every external cohort, pooled
    y = dev["er"].astype(int)
    grid, folds = profile["models"]["grid"], int(profile["models"]["cv_folds"])
    n_jobs = int(profile["models"].get("n_jobs", 1))
    all_layers = list(dict.fromkeys(layer for layer, _ in tables["PP"]))
    rows = []
    from tqdm.auto import tqdm

    todo = [(v, ph) for v in variants(list(profile["features"]["layers"]), all_layers) for ph in PHASES]
    done: dict = {}  # a recipe listed under two factors (the default layer) is fitted once
    for (factor, label, default, recipe), ph in tqdm(todo, desc="ablation fits", disable=not progress):
        X = _design(tables, ["AP", "PP"] if ph == "DP" else [ph], recipe)
        if X is None:
            continue
        key = (tuple(recipe), ph)
        if key not in done:
            fit = classifiers.fit_nested(f"{label} {ph}", X.loc[dev.index], y, X.loc[val.index], grid, folds, seed,
                                         n_jobs=n_jobs)
            done[key] = (models._auc(y, fit.cv_prob),
                         models._auc(val["er"].astype(int), fit.val_prob) if len(val) else np.nan)
        rows.append({"factor": factor, "variant": label, "default": default, "phase": ph,
                     "n_features": X.shape[1], "development": done[key][0], "validation": done[key][1]})
    table = pd.DataFrame(rows, columns=COLUMNS)
    out = profile.out("models", "ablation.csv")
    table.to_csv(out, index=False)
    write_json({"seconds": time.perf_counter() - t0, "ring_px": fe.RING_PX,
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
