"""Chapter 08: the handcrafted radiomics comparator, feature robustness across masks, and ComBat across centres.

The pieces are in :mod:`hcc_utils.handcrafted` (extraction), :mod:`hcc_utils.robustness` (ICC),
:mod:`hcc_utils.harmonisation` (ComBat) and :func:`hcc_utils.models.run_comparison` (the models); this module runs
them on a profile's stored outputs, in the four mask conditions (``manual``, ``predicted``, and the profile's mask
``eroded`` / ``dilated`` by one pixel), and writes ``outputs/<profile>/radiomics_study/``.

Settings: ``profile["radiomics"]`` (``bin_width``, ``mask``, ``workers``, ``icc_min``, ``harmonise``; see
``profiles.yaml``). Every choice made from data here uses features only, never outcomes; the ICC that filters model
features is computed on development patients only.
"""
from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from hcc_utils import features as fe
from hcc_utils import handcrafted as hc
from hcc_utils import models
from hcc_utils import robustness as rb
from hcc_utils.harmonisation import fit_combat
from hcc_utils.manifest import external_cohorts, is_external

#: Mask conditions: name -> (mask, perturbation); ``None`` mask = the profile's own.
CONDITIONS = {"manual": ("manual", None), "predicted": ("predicted", None), "eroded": (None, "erode"),
              "dilated": (None, "dilate")}
HANDCRAFTED_FAMILIES = {"shape": ("shape",), "first-order": ("firstorder",),
                        "texture": ("glcm", "glrlm", "glszm", "gldm", "ngtdm")}


def settings(profile) -> dict:
    """``profile["radiomics"]`` with its defaults filled in (``mask`` None -> ``features.mask``)."""
    r = dict(profile.get("radiomics") or {})
    mask = r.get("mask") or profile["features"].get("mask", "predicted")
    return {"enabled": bool(r.get("enabled", True)), "bin_width": float(r.get("bin_width", hc.DEFAULTS["bin_width"])),
            "mask": mask, "workers": int(r.get("workers", 1)), "icc_min": r.get("icc_min"),
            "harmonise": bool(r.get("harmonise", False))}


def _condition(profile, name: str) -> tuple[str, str | None]:
    mask, perturb = CONDITIONS[name]
    return (mask or settings(profile)["mask"]), perturb


def _with_manual_masks(manifest: pd.DataFrame, phase: str) -> pd.DataFrame:
    col = hc.PHASE_COLUMNS[phase][2]
    if col not in manifest.columns:
        return manifest.iloc[:0]
    v = manifest[col]
    return manifest[v.notna() & (v.astype(str).str.strip() != "")]


def empty_masks(rows: pd.DataFrame, profile, phase: str, mask: str, perturb: str | None) -> list[str]:
    """Patients whose mask (after the perturbation) holds no tumour voxel: the network found no tumour, or erosion
    removed a thin one. (:func:`handcrafted_tables` also leaves out masks PyRadiomics rejects, e.g. a line of
    voxels.)"""
    import SimpleITK as sitk

    out = []
    for _, row in rows.iterrows():
        f = hc.mask_file(row, profile, phase, mask)
        if f is None or not Path(f).exists():
            continue  # extract_phase reports it
        m = sitk.GetArrayFromImage(sitk.ReadImage(str(f)))
        if not hc.perturb_mask(m, perturb).any():
            out.append(str(row["patient_id"]))
    return out


def handcrafted_tables(manifest, profile, phases=("AP", "PP"), conditions=tuple(CONDITIONS),
                       progress: bool = False) -> tuple[dict, pd.DataFrame]:
    """Handcrafted features of every phase in every mask condition (cached per patient).

    A patient whose mask is empty in a condition (:func:`empty_masks`) has no row in that table (the models impute
    it, :func:`hcc_utils.classifiers.radiomics_design`); ``cost`` counts them.

    Returns
    -------
    tables : dict
        Condition -> phase -> patients x ``<PHASE>_<class>_<feature>``.
    cost : DataFrame
        Per condition and phase: patients, empty masks, extracted (not from cache), seconds, seconds per extracted
        patient.
    """
    from hcc_utils.preprocess import load_manifest

    s = settings(profile)
    df = load_manifest(manifest)
    tables, cost = {}, []
    for cond in conditions:
        mask, perturb = _condition(profile, cond)
        tables[cond] = {}
        for ph in phases:
            rows = _with_manual_masks(df, ph) if mask == "manual" else df
            empty = empty_masks(rows, profile, ph, mask, perturb)
            rows = rows[~rows["patient_id"].astype(str).isin(empty)]
            if rows.empty:
                continue
            t0 = time.perf_counter()
            kw = {"mask": mask, "perturb": perturb, "workers": s["workers"], "bin_width": s["bin_width"]}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                try:
                    t = hc.extract_phase(rows, profile, ph, progress=progress, **kw)
                except ValueError:  # a degenerate mask (a line of voxels): find it patient by patient
                    bad = []
                    for i in range(len(rows)):
                        try:
                            hc.extract_phase(rows.iloc[[i]], profile, ph, progress=False, write=False, **kw)
                        except ValueError:
                            bad.append(str(rows.iloc[i]["patient_id"]))
                    empty += bad
                    rows = rows[~rows["patient_id"].astype(str).isin(bad)]
                    t = hc.extract_phase(rows, profile, ph, progress=False, **kw)
            sec = time.perf_counter() - t0
            stem = hc.output_name(ph, mask, perturb, profile["features"].get("mask", "predicted"))
            info = pd.read_json(Path(profile.outputs) / "radiomics" / f"{stem}_info.json", typ="series")
            tables[cond][ph] = t
            cost.append({"condition": cond, "phase": ph, "n_patients": len(t), "n_empty_mask": len(empty),
                         "empty_mask": ", ".join(empty), "n_features": t.shape[1],
                         "n_extracted": int(info["n_extracted"]), "seconds": sec,
                         "seconds_per_patient_extraction": info["seconds_per_patient_extraction"]})
    return tables, pd.DataFrame(cost)


def deep_tables(manifest, profile, phases=("AP", "PP"), conditions=tuple(CONDITIONS), out_dir=None,
                progress: bool = False) -> tuple[dict, pd.DataFrame]:
    """Deep features (the trained networks, the profile's layers) of every phase in every mask condition.

    The profile's own condition is read from ``features/<PHASE>.parquet`` (chapter 3), and so are the manual mask
    and the profile's mask eroded or dilated, which chapter 3 pools in the same forward passes
    (``features/<PHASE>_ablation.parquet``, :func:`hcc_utils.features.stored_region`). A condition chapter 3 does
    not hold (the predicted mask when the profile pools in the manual one, or a table of an older run) is pooled
    anew, one forward pass per case for all of them (:func:`hcc_utils.features.extract_conditions`). Every table
    is stored under ``out_dir`` (``deep_<PHASE>_<condition>.parquet``).

    Returns
    -------
    tables : dict
        Condition -> phase -> patients x ``<layer>_c<k>``.
    cost : DataFrame
        Per phase: the conditions pooled anew, patients and seconds.
    """
    from hcc_utils.preprocess import load_manifest

    default = profile["features"].get("mask", "predicted")
    layers = list(profile["features"]["layers"])
    df = load_manifest(manifest)
    out_dir = Path(out_dir) if out_dir is not None else None
    tables, cost = {c: {} for c in conditions}, []
    for ph in phases:
        t0 = time.perf_counter()
        manual_rows = _with_manual_masks(df, ph)
        anew, stored = {}, []
        try:  # chapter 3's table, read once for every condition of the phase
            ablation_table = fe.read_ablation_table(profile, ph)
        except (FileNotFoundError, RuntimeError):
            ablation_table = None
        for cond in conditions:
            mask, perturb = _condition(profile, cond)
            if mask == default and perturb is None:
                t = fe.load_features(profile, ph)
                t.index = t.index.astype(str)
                tables[cond][ph] = t
                continue
            if mask != "predicted" and manual_rows.empty:
                continue
            t = (fe.stored_region(profile, ph, _stored_region_name(mask, perturb, default), layers, ablation_table)
                 if ablation_table is not None else None)
            if t is not None and mask == "manual":
                t = t[t.index.isin(manual_rows["patient_id"].astype(str))]
            if t is None or t.empty:
                anew[cond] = (mask, perturb)
            else:
                tables[cond][ph] = t
                stored.append(cond)
        if anew:
            rows = df if any(m == "predicted" for m, _ in anew.values()) else manual_rows
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                got = fe.extract_conditions(rows, profile, ph, list(dict.fromkeys(anew.values())), progress=progress)
            for cond, mp in anew.items():
                t = got[mp]
                t.index = t.index.astype(str)
                tables[cond][ph] = t
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            for cond in [*stored, *anew]:
                tables[cond][ph].to_parquet(out_dir / f"deep_{ph}_{cond}.parquet")
        cost.append({"phase": ph, "conditions_pooled": ", ".join(anew), "conditions_from_chapter_3": ", ".join(stored),
                     "n_patients": len(df), "seconds": time.perf_counter() - t0})
    return tables, pd.DataFrame(cost)


def _stored_region_name(mask: str, perturb: str | None, default: str) -> str | None:
    """The region of chapter 3's ablation table that holds a ``(mask, perturb)`` condition, or None."""
    if mask == "manual" and perturb is None:
        return "manual"
    if mask == default:
        return {p: r for r, p in fe.PERTURBED_REGIONS.items()}.get(perturb)
    return None


def with_dp(tables: dict, prefix: bool) -> dict:
    """Phase tables plus ``DP`` (AP and PP joined; deep columns get ``AP_``/``PP_`` prefixes, handcrafted ones
    carry their phase already)."""
    out = dict(tables)
    if "AP" in tables and "PP" in tables:
        ap, pp_ = tables["AP"], tables["PP"]
        out["DP"] = ap.add_prefix("AP_").join(pp_.add_prefix("PP_"), how="inner") if prefix else \
            ap.join(pp_, how="inner")
    return out


def _both_phases(tables: dict, prefix: bool) -> pd.DataFrame:
    full = with_dp(tables, prefix)
    if "DP" in full:
        return full["DP"]
    ph, t = next(iter(tables.items()))
    return t.add_prefix(f"{ph}_") if prefix else t


def family_of(column: str) -> str:
    """Handcrafted family (shape, first-order, texture) of a ``<PHASE>_<class>_<feature>`` column."""
    cls = column.split("_")[1]
    return next(f for f, classes in HANDCRAFTED_FAMILIES.items() if cls in classes)


def icc_families(deep: dict, handcrafted: dict, patients=None) -> pd.DataFrame:
    """ICC(3,1) per feature between the mask conditions, families deep, shape, first-order and texture (both phases
    together), as :func:`hcc_utils.robustness.icc_by_family` (reference: the manual mask).

    Parameters
    ----------
    deep, handcrafted : dict
        Condition -> phase -> table (:func:`deep_tables`, :func:`handcrafted_tables`).
    patients : iterable of str, optional
        Restrict to these patients (e.g. the development cohort).
    """
    fams: dict[str, dict] = {"deep": {}}
    for cond, tabs in deep.items():
        if tabs:
            fams["deep"][cond] = _both_phases(tabs, prefix=True)
    for cond, tabs in handcrafted.items():
        if not tabs:
            continue
        t = _both_phases(tabs, prefix=False)
        for fam in HANDCRAFTED_FAMILIES:
            fams.setdefault(fam, {})[cond] = t[[c for c in t.columns if family_of(c) == fam]]
    if patients is not None:
        keep = pd.Index([str(p) for p in patients])
        fams = {f: {c: t.loc[t.index.intersection(keep)] for c, t in conds.items()} for f, conds in fams.items()}
    fams = {f: c for f, c in fams.items() if len(c) >= 2}
    return rb.icc_by_family(fams, reference="manual")


def icc_per_column(long: pd.DataFrame, comparison: str = "all") -> pd.Series:
    """Feature -> ICC of one comparison of an :func:`icc_families` table (deep columns keep their phase prefix)."""
    sub = long[long["comparison"] == comparison]
    return pd.Series(sub["icc"].to_numpy(), index=sub["feature"].to_numpy())


def filter_tables(tables: dict, icc: pd.Series, icc_min: float | None, deep: bool) -> dict:
    """Phase tables (AP, PP, DP) keeping the features with ICC >= ``icc_min``; a phase left with none is dropped."""
    full = with_dp(tables, prefix=deep)
    if icc_min is None:
        return full
    out = {}
    for ph, t in full.items():
        names = [(f"{ph}_{c}" if deep and ph != "DP" else c) for c in t.columns]
        keep = [c for c, n in zip(t.columns, names) if icc.get(n, np.nan) >= icc_min]
        if keep:
            out[ph] = t[keep]
    return out


# ----------------------------------------------------------------------------------------------------------------------
# harmonisation
# ----------------------------------------------------------------------------------------------------------------------
def harmonise_table(table: pd.DataFrame, patients: pd.DataFrame, batch: str = "centre") -> pd.DataFrame:
    """ComBat (centre as batch) fitted on the development rows of ``table`` and applied to all rows.

    Columns that are non-finite anywhere or constant within the development centres are left as they are (ComBat
    cannot scale them). Validation centres unseen in development get their shift and scale from their own
    features (:meth:`hcc_utils.harmonisation.ComBat.apply`).

    Raises
    ------
    ValueError
        A centre with fewer than 2 patients (development or validation): ComBat cannot estimate it.
    """
    pt = patients.loc[table.index]
    dev = (pt["cohort"] == "development").to_numpy()
    x = table.astype(float)
    finite = np.isfinite(x.to_numpy()).all(0)
    b = pt[batch].astype(str).to_numpy()
    dx = x.loc[dev, finite]
    resid = dx - dx.groupby(b[dev]).transform("mean")
    cols = dx.columns[(resid ** 2).sum(0).to_numpy() > 1e-12 * np.maximum(1.0, (dx ** 2).sum(0).to_numpy())]
    if len(cols) == 0:
        raise ValueError("no feature varies within the development centres")
    model = fit_combat(x.loc[dev, cols], b[dev])
    out = x.copy()
    out.loc[:, cols] = model.apply(x[cols], b, new_batches="estimate").to_numpy()
    return out


def harmonise_tables(tables: dict, patients: pd.DataFrame) -> dict:
    """:func:`harmonise_table` for every table of a dict (phase -> table)."""
    return {k: harmonise_table(t, patients) for k, t in tables.items()}


def pca_coordinates(before: pd.DataFrame, after: pd.DataFrame, patients: pd.DataFrame) -> pd.DataFrame:
    """First two principal components of each patient before and after harmonisation (the data of
    :func:`pca_by_centre`): PCA fitted on the development rows, features standardised on them.

    Returns
    -------
    DataFrame
        ``patient_id, cohort, centre, harmonisation`` (``before ComBat`` / ``after ComBat``), ``pc1, pc2``.
    """
    from sklearn.decomposition import PCA

    pt = patients.loc[before.index]
    dev = (pt["cohort"] == "development").to_numpy()
    rows = []
    for t, lab in ((before, "before ComBat"), (after, "after ComBat")):
        x = t.astype(float)
        x = x.loc[:, np.isfinite(x.to_numpy()).all(0)]
        mu, sd = x[dev].mean(), x[dev].std(ddof=0).replace(0, 1.0)
        z = ((x - mu) / sd).to_numpy()
        pc = PCA(n_components=2, random_state=0).fit(z[dev]).transform(z)
        rows.append(pd.DataFrame({"patient_id": before.index.astype(str), "cohort": pt["cohort"].to_numpy(),
                                  "centre": pt["centre"].astype(str).to_numpy(), "harmonisation": lab,
                                  "pc1": pc[:, 0], "pc2": pc[:, 1]}))
    return pd.concat(rows, ignore_index=True)


def pca_by_centre(before: pd.DataFrame, after: pd.DataFrame, patients: pd.DataFrame, title: str = "", axes=None):
    """First two principal components (fitted on the development rows, features standardised on them) before and
    after harmonisation, coloured by centre; ``axes``: two matplotlib axes (else a new figure)."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(8.4, 3.8))
    coords = pca_coordinates(before, after, patients)
    for ax, lab in zip(axes, ("before ComBat", "after ComBat")):
        d = coords[coords["harmonisation"] == lab]
        for c in sorted(d["centre"].unique()):
            m = d[d["centre"] == c]
            ax.scatter(m["pc1"], m["pc2"], s=18, alpha=0.8, label=f"centre {c} (n = {len(m)})")
        ax.set_xlabel("PC1")
        ax.set_ylabel("PC2")
        ax.set_title(f"{title}: {lab}", fontsize=9)
        ax.legend(fontsize=7)
    return axes


def centre_separation(table: pd.DataFrame, patients: pd.DataFrame) -> float:
    """Distance between the centres' mean vectors in development-standardised units, averaged over features
    (root-mean-square): 0 when the centres have the same mean."""
    pt = patients.loc[table.index]
    x = table.astype(float)
    x = x.loc[:, np.isfinite(x.to_numpy()).all(0)]
    dev = (pt["cohort"] == "development").to_numpy()
    z = (x - x[dev].mean()) / x[dev].std(ddof=0).replace(0, 1.0)
    means = z.groupby(pt["centre"].astype(str).to_numpy()).mean()
    if len(means) < 2:
        return float("nan")
    return float(np.sqrt(((means.iloc[0] - means.iloc[1:]) ** 2).mean(axis=1).mean()))


def _pooled_auc(pred: pd.DataFrame, model: str) -> float:
    """AUC of one model over every external cohort together (NaN without both outcome classes)."""
    d = pred[(pred.model == model) & is_external(pred.cohort)]
    return models._auc(d["er"], d["prob"]) if d["er"].nunique() == 2 else np.nan


def auc_rows(comp: models.Comparison, label: str, model_names=None) -> pd.DataFrame:
    """AUC per cohort of some models of a comparison, one row per model (``setting`` = ``label``).

    ``auc_validation`` is Table 2's AUC of the external cohort, or of all external cohorts pooled when there are
    several.
    """
    t2 = comp.table2
    ext = external_cohorts(t2.cohort)
    pred = comp.predictions
    names = model_names or [comp.dsfr, "DSFR-C", "Radiomics", "Radiomics-C"]
    rows = []
    for m in names:
        if m not in comp.fits:
            continue
        r = t2[t2.model == m].set_index("cohort")
        rows.append({"setting": label, "model": "DSFR" if m == comp.dsfr else m,
                     "phase": comp.phase if m in (comp.dsfr, "DSFR-C") else comp.fits[m].extra.get("phase", ""),
                     "n_features": len(comp.fits[m].features),
                     "auc_development": r.loc["development", "auc"] if "development" in r.index else np.nan,
                     "auc_validation": r.loc[ext[0], "auc"] if len(ext) == 1 else _pooled_auc(pred, m)})
    return pd.DataFrame(rows)
