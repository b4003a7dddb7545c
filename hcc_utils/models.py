"""The model comparison of chapter 4: DSFR per phase, DSFR-C, the visual model and, given handcrafted radiomics
tables, the Radiomics and Radiomics-C comparators; the choice of phase, Table 2 and the stored results.

The classifiers themselves (the paper's logistic model, its grid search and the nested cross-validation that gives
honest development estimates) are in :mod:`hcc_utils.classifiers`. The phase (AP, PP or DP) with the best development
cross-validated AUC gives the DSFR model; the Youden threshold of the development predictions is applied unchanged to
validation. The method page describes the whole procedure.

Validation is every external cohort (``validation`` or several ``validation:<name>``, :mod:`hcc_utils.manifest`):
the final models predict them all, and Table 2 has a block per cohort.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hcc_utils.classifiers import ModelFit, clinical_design, fit_nested, radiomics_design, visual_design
from hcc_utils.manifest import cohort_label, cohort_order, is_cohort, is_external, report_cohorts
from hcc_utils.stats import format_p

DSFR_PHASES = ("AP", "PP", "DP")
MODEL_ORDER = ("DSFR-AP", "DSFR-PP", "DSFR-DP", "DSFR-C", "Visual")
#: The handcrafted comparators, fitted only when :func:`run_comparison` is given radiomics tables.
RADIOMICS_ORDER = ("Radiomics", "Radiomics-C")


# ----------------------------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------------------------
def load_features(features_dir: Path, phases: tuple[str, ...] = DSFR_PHASES) -> dict[str, pd.DataFrame]:
    """Read ``features/<PHASE>.parquet`` tables (index patient_id).

    ``DP.parquet`` is read when present; when it is absent but AP and PP are present it is built here as their
    concatenation with ``AP_``/``PP_`` column prefixes (the features stage's convention).

    Raises
    ------
    FileNotFoundError
        When no phase table exists, naming the folder and the notebook that writes them.
    """
    features_dir = Path(features_dir)
    out = {}
    for ph in phases:
        p = features_dir / f"{ph}.parquet"
        if p.exists():
            df = pd.read_parquet(p)
            if df.index.name != "patient_id":
                if "patient_id" in df.columns:
                    df = df.set_index("patient_id")
                else:
                    raise ValueError(f"{p}: no patient_id index or column")
            df.index = df.index.astype(str)
            if df.index.duplicated().any():
                raise ValueError(f"{p}: duplicated patient_id {df.index[df.index.duplicated()][0]!r}")
            out[ph] = df
    if "DP" in phases and "DP" not in out and "AP" in out and "PP" in out:
        out["DP"] = pd.concat([out["AP"].add_prefix("AP_"), out["PP"].add_prefix("PP_")], axis=1, join="inner")
    if not out:
        raise FileNotFoundError(f"no feature tables ({', '.join(p + '.parquet' for p in phases)}) in {features_dir}: "
                                "run notebooks/03_feature_extraction.ipynb for each phase first")
    return out


def _align(X: pd.DataFrame, patients: pd.DataFrame, what: str) -> pd.DataFrame:
    missing = patients.index.difference(X.index)
    if len(missing):
        raise ValueError(f"{what}: no features for patient(s) {missing.tolist()[:5]}"
                         f"{' ...' if len(missing) > 5 else ''} ({len(missing)} of {len(patients)})")
    return X.loc[patients.index]


# ----------------------------------------------------------------------------------------------------------------
# The comparison (Table 2)
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class Comparison:
    """All fitted models and the derived tables.

    Attributes
    ----------
    fits : dict of str -> ModelFit
    dsfr : str
        Name of the chosen DSFR model (``DSFR-AP``, ``DSFR-PP`` or ``DSFR-DP``).
    phase : str
        The chosen phase.
    patients : DataFrame
        Patient table (index patient_id) with ``cohort`` and ``er``.
    table2 : DataFrame
    predictions : DataFrame
    """

    fits: dict[str, ModelFit]
    dsfr: str
    phase: str
    patients: pd.DataFrame
    table2: pd.DataFrame = None
    predictions: pd.DataFrame = None

    def signature(self) -> pd.DataFrame:
        """DSFR signature: CV probability for development, final-model probability for validation."""
        f = self.fits[self.dsfr]
        s = pd.concat([f.cv_prob, f.val_prob])
        df = pd.DataFrame({"patient_id": s.index, "cohort": self.patients.loc[s.index, "cohort"].to_numpy(),
                           "dsfr_signature": s.to_numpy()})
        return df.reset_index(drop=True)


def run_comparison(patients: pd.DataFrame, features: dict[str, pd.DataFrame], grid: dict[str, list],
                   n_folds: int, seed: int, progress: bool = True, n_jobs: int = 1,
                   radiomics: dict[str, pd.DataFrame] | None = None,
                   clinical_screen_p: float | None = None) -> Comparison:
    """Fit DSFR-AP/PP/DP, choose the DSFR phase, fit DSFR-C and Visual, and build Table 2.

    With ``radiomics`` the handcrafted comparators are added: Radiomics (the phase among AP/PP/DP with the best
    development nested-CV AUC, chosen exactly as the DSFR phase) and Radiomics-C (that phase's features with the
    clinical variables, as DSFR-C). Without it the result is the same as before, row for row.

    Parameters
    ----------
    patients : DataFrame
        :func:`hcc_utils.manifest.load_patient_table` output (index patient_id; ``cohort``, ``er``, clinical and
        ``vis_*`` columns).
    features : dict
        Phase -> feature table (from :func:`load_features`).
    grid, n_folds, seed
        ``profile["models"]["grid"]``, ``profile["models"]["cv_folds"]``, the seed.
    progress : bool
        Show a progress bar over models.
    n_jobs : int
        Parallel grid fits (``profile["models"]["n_jobs"]`` when set); results do not depend on it.
    radiomics : dict, optional
        Phase (``AP``, ``PP``, ``DP``) -> handcrafted feature table (:func:`hcc_utils.handcrafted.load_radiomics`).
        Columns with a non-finite value for any patient are dropped (:func:`radiomics_design`).
    clinical_screen_p : float, optional
        ``profile["models"]["clinical_screen_p"]``: DSFR-C (and Radiomics-C) keep every image feature and only the
        clinical variables with univariable score-test p below it, screened again in every training set
        (:func:`hcc_utils.classifiers.fit_nested`'s ``screen``). None: all clinical variables enter.

    Returns
    -------
    Comparison
    """
    from tqdm.auto import tqdm

    for col in ("cohort", "er"):
        if col not in patients.columns:
            raise ValueError(f"patient table has no {col!r} column")
    bad = ~patients["cohort"].map(is_cohort).astype(bool)
    if bad.any():
        raise ValueError(f"unknown cohort {patients['cohort'][bad].iloc[0]!r} for patient {patients.index[bad][0]}")
    patients = patients.copy()
    patients.index = patients.index.astype(str)
    dev = patients[patients["cohort"] == "development"]
    val = patients[is_external(patients["cohort"])]  # all external cohorts, predicted by the same final models
    y_dev = dev["er"].astype(int)
    phases = [p for p in DSFR_PHASES if p in features]
    fits: dict[str, ModelFit] = {}
    names = [f"DSFR-{p}" for p in phases] + ["DSFR-C", "Visual"]
    bar = tqdm(names, desc="models", disable=not progress)
    X_best = None
    for name in bar:
        bar.set_postfix_str(name)
        if name.startswith("DSFR-") and name != "DSFR-C":
            ph = name.split("-", 1)[1]
            Xd = _align(features[ph], dev, f"features/{ph}.parquet (development)")
            Xv = _align(features[ph], val, f"features/{ph}.parquet (validation)")
        elif name == "DSFR-C":
            dsfr = max((f"DSFR-{p}" for p in phases), key=lambda n: (_auc(y_dev, fits[n].cv_prob), -names.index(n)))
            ph = dsfr.split("-", 1)[1]
            X_best = features[ph]
            clin = clinical_design(patients)
            overlap = set(clin.columns) & set(X_best.columns)
            if overlap:
                raise ValueError(f"feature names clash with clinical columns: {sorted(overlap)}")
            Xall = pd.concat([_align(X_best, patients, f"features/{ph}.parquet"), clin], axis=1)
            Xd, Xv = Xall.loc[dev.index], Xall.loc[val.index]
        else:
            Xall = visual_design(patients)
            Xd, Xv = Xall.loc[dev.index], Xall.loc[val.index]
        fits[name] = fit_nested(name, Xd, y_dev, Xv, grid, n_folds, seed, allow_missing=name == "DSFR-C",
                                n_jobs=n_jobs, screen=_screen(clin, clinical_screen_p) if name == "DSFR-C" else None)
        fits[name].extra["n_missing"] = int(Xd.isna().sum().sum() + Xv.isna().sum().sum())
    if radiomics:
        fits.update(_fit_radiomics(patients, radiomics, grid, n_folds, seed, n_jobs, progress, clinical_screen_p))
    from hcc_utils import stats

    for f in fits.values():
        f.threshold = float(stats.youden_threshold(y_dev.to_numpy(), f.cv_prob.to_numpy()))
    comp = Comparison(fits=fits, dsfr=dsfr, phase=dsfr.split("-", 1)[1], patients=patients)
    comp.predictions = predictions_table(comp)
    comp.table2 = table2(comp)
    return comp


def _screen(clin: pd.DataFrame, alpha: float | None) -> tuple[list[str], float] | None:
    """``fit_nested``'s screen of the clinical columns at ``alpha`` (None: no screen)."""
    return None if alpha is None else (list(clin.columns), alpha)


def _without_features(X: pd.DataFrame) -> pd.Series:
    """Patients missing every feature of at least one phase (flag per row)."""
    blocks = X.isna().T.groupby(X.columns.str.split("_").str[0]).all().T
    return blocks.any(axis=1)


def _fit_radiomics(patients: pd.DataFrame, radiomics: dict[str, pd.DataFrame], grid, n_folds: int, seed: int,
                   n_jobs: int, progress: bool, clinical_screen_p: float | None = None) -> dict[str, ModelFit]:
    """Radiomics (best phase by development nested-CV AUC) and Radiomics-C, fitted as the DSFR models."""
    from tqdm.auto import tqdm

    dev = patients[patients["cohort"] == "development"]
    val = patients[is_external(patients["cohort"])]
    y_dev = dev["er"].astype(int)
    phases = [p for p in DSFR_PHASES if p in radiomics]
    if not phases:
        raise ValueError(f"radiomics: no table for any of the phases {DSFR_PHASES}")
    tables = {p: radiomics_design(radiomics[p]) for p in phases}
    per_phase: dict[str, ModelFit] = {}
    bar = tqdm(phases + ["Radiomics-C"], desc="radiomics models", disable=not progress)
    for ph in bar:
        bar.set_postfix_str(ph)
        if ph != "Radiomics-C":
            Xd = _align(tables[ph], dev, f"radiomics/{ph} (development)")
            Xv = _align(tables[ph], val, f"radiomics/{ph} (validation)")
            per_phase[ph] = fit_nested(f"Radiomics-{ph}", Xd, y_dev, Xv, grid, n_folds, seed,
                                       allow_missing=True, n_jobs=n_jobs)
    cv_auc = {ph: _auc(y_dev, f.cv_prob) for ph, f in per_phase.items()}
    best = max(phases, key=lambda ph: (cv_auc[ph], -phases.index(ph)))  # ties: the earlier phase, as DSFR
    clin = clinical_design(patients)
    overlap = set(clin.columns) & set(tables[best].columns)
    if overlap:
        raise ValueError(f"radiomics feature names clash with clinical columns: {sorted(overlap)}")
    Xall = pd.concat([_align(tables[best], patients, f"radiomics/{best}"), clin], axis=1)
    rc = fit_nested("Radiomics-C", Xall.loc[dev.index], y_dev, Xall.loc[val.index], grid, n_folds, seed,
                    allow_missing=True, n_jobs=n_jobs,
                    screen=_screen(clin, clinical_screen_p))
    rc.extra["n_missing"] = int(Xall.isna().sum().sum())
    rad = per_phase[best]
    rad.name = "Radiomics"
    info = {"phase": best, "phase_cv_auc": cv_auc,
            "n_dropped_non_finite": {ph: int(radiomics[ph].shape[1] - tables[ph].shape[1]) for ph in phases},
            "n_without_features": int(_without_features(tables[best]).sum())}
    rad.extra.update(info, n_missing=int(tables[best].loc[patients.index].isna().sum().sum()))
    rc.extra.update(phase=best)
    return {"Radiomics": rad, "Radiomics-C": rc}


def _auc(y, p) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(np.asarray(y), np.asarray(p)))


def predictions_table(comp: Comparison) -> pd.DataFrame:
    """Long table: patient_id, cohort, model, prob, er (development = outer-CV predictions; external patients keep
    their own cohort)."""
    rows = []
    for name, f in comp.fits.items():
        for cohort, s in (("development", f.cv_prob), (None, f.val_prob)):
            coh = cohort or comp.patients.loc[s.index, "cohort"].to_numpy()
            rows.append(pd.DataFrame({"patient_id": s.index, "cohort": coh, "model": name,
                                      "prob": s.to_numpy(),
                                      "er": comp.patients.loc[s.index, "er"].astype(int).to_numpy()}))
    return pd.concat(rows, ignore_index=True)


def table2(comp: Comparison) -> pd.DataFrame:
    """Table 2: per model and cohort AUC (95% DeLong CI), ACC, SEN, SPEC at the development threshold, DeLong p.

    The DeLong test is paired (same patients) against the chosen DSFR model; its own row has p = NaN. Development
    comes first, then a block per external cohort (:func:`hcc_utils.manifest.cohort_order`).
    """
    from hcc_utils import stats

    pred = comp.predictions
    rows = []
    for cohort in cohort_order(pred.cohort):
        ref = pred[(pred.model == comp.dsfr) & (pred.cohort == cohort)].set_index("patient_id")
        for name in [m for m in MODEL_ORDER + RADIOMICS_ORDER if m in comp.fits]:
            f = comp.fits[name]
            d = pred[(pred.model == name) & (pred.cohort == cohort)].set_index("patient_id")
            if d.empty:
                continue
            y, p = d["er"].to_numpy(), d["prob"].to_numpy()
            n_pos = int(y.sum())
            row = {"model": name, "cohort": cohort, "n": len(y), "n_er": n_pos, "dsfr": name == comp.dsfr,
                   "threshold": f.threshold}
            if 0 < n_pos < len(y):
                ci = stats.roc_auc_ci(y, p)
                row.update(auc=ci.auc, auc_lower=ci.lower, auc_upper=ci.upper)
            else:
                row.update(auc=np.nan, auc_lower=np.nan, auc_upper=np.nan)
            m = stats.classification_metrics(y, p, f.threshold)
            row.update(accuracy=m.accuracy, sensitivity=m.sensitivity, specificity=m.specificity)
            if name != comp.dsfr and 0 < n_pos < len(y):
                r = ref.loc[d.index]
                dl = stats.delong_test(y, r["prob"].to_numpy(), p)
                row["delong_p"] = dl.p
            else:
                row["delong_p"] = np.nan
            rows.append(row)
    return pd.DataFrame(rows)


def format_table2(t2: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """Table 2 for display: ``AUC (95% CI)``, ACC, SEN, SPEC, DeLong p versus DSFR ("ref" on the DSFR row)."""
    def pfmt(p, is_ref):
        return "ref" if is_ref else format_p(p)

    out = pd.DataFrame({
        "Cohort": t2["cohort"].map(cohort_label),
        "Model": [m + (" (DSFR)" if d else "") for m, d in zip(t2["model"], t2["dsfr"])],
        "AUC (95% CI)": [f"{a:.{digits}f} ({lo:.{digits}f}-{hi:.{digits}f})" if np.isfinite(a) else ""
                         for a, lo, hi in zip(t2["auc"], t2["auc_lower"], t2["auc_upper"])],
        "ACC": t2["accuracy"].map(lambda v: f"{v:.{digits}f}"),
        "SEN": t2["sensitivity"].map(lambda v: f"{v:.{digits}f}"),
        "SPEC": t2["specificity"].map(lambda v: f"{v:.{digits}f}"),
        "p (DeLong vs DSFR)": [pfmt(p, d) for p, d in zip(t2["delong_p"], t2["dsfr"])],
    })
    return out


# ----------------------------------------------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------------------------------------------
def results_dict(comp: Comparison, seed: int, grid: dict[str, list]) -> dict[str, Any]:
    """Everything a later notebook or the book quotes, as plain JSON types."""
    t2 = comp.table2
    dev = comp.patients[comp.patients.cohort == "development"]
    cohorts = report_cohorts(comp.patients.cohort)
    models = {}
    for name, f in comp.fits.items():
        r = t2[t2.model == name].set_index("cohort")
        models[name] = {
            "n_features": len(f.features),
            "best_params": f.best_params,
            "fold_params": f.fold_params,
            "inner_cv_auc": f.cv_auc,
            "threshold": f.threshold,
            "folds": {"outer": f.n_folds[0], "inner": f.n_folds[1]},
            "auc": {c: _num(r.loc[c, "auc"]) for c in r.index},
            "auc_ci": {c: [_num(r.loc[c, "auc_lower"]), _num(r.loc[c, "auc_upper"])] for c in r.index},
            "delong_p_vs_dsfr": {c: _num(r.loc[c, "delong_p"]) for c in r.index},
            **({"screen": f.extra["screen"]} if "screen" in f.extra else {}),
        }
    return {
        "seed": seed,
        "grid": grid,
        "nested_cv": True,
        "chosen_phase": comp.phase,
        "dsfr_model": comp.dsfr,
        "phase_cv_auc": {n.split("-", 1)[1]: _auc(dev["er"], comp.fits[n].cv_prob)
                         for n in comp.fits if n.startswith("DSFR-") and n != "DSFR-C"},
        "n": {c: int((comp.patients.cohort == c).sum()) for c in cohorts},
        "n_er": {c: int(comp.patients.loc[comp.patients.cohort == c, "er"].sum()) for c in cohorts},
        "models": models,
        **({"radiomics_phase": comp.fits["Radiomics"].extra["phase"],
            "radiomics_phase_cv_auc": comp.fits["Radiomics"].extra["phase_cv_auc"]}
           if "Radiomics" in comp.fits else {}),
    }


def _num(v) -> float | None:
    v = float(v)
    return v if np.isfinite(v) else None


def save_comparison(comp: Comparison, out_dir: Path, seed: int, grid: dict[str, list],
                    overwrite: bool = True) -> dict[str, Path]:
    """Write predictions.csv, table2.csv, dsfr_weights.csv, signature.csv, results.json and models.joblib.

    Parameters
    ----------
    comp : Comparison
    out_dir : Path
        ``outputs/<profile>/models``.
    seed, grid
        Recorded in results.json.
    overwrite : bool
        Replace the outputs of an earlier run (saying so); with False an existing results.json raises.

    Returns
    -------
    dict of name -> Path
    """
    import joblib

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "predictions": out_dir / "predictions.csv",
        "table2": out_dir / "table2.csv",
        "dsfr_weights": out_dir / "dsfr_weights.csv",
        "signature": out_dir / "signature.csv",
        "results": out_dir / "results.json",
        "models": out_dir / "models.joblib",
    }
    if paths["results"].exists():
        import datetime

        when = datetime.datetime.fromtimestamp(paths["results"].stat().st_mtime).isoformat(timespec="seconds")
        if not overwrite:
            raise FileExistsError(f"{out_dir} already holds the results of a run from {when}; pass overwrite=True")
        print(f"replacing the model outputs in {out_dir} written {when}")
    comp.predictions.to_csv(paths["predictions"], index=False)
    comp.table2.to_csv(paths["table2"], index=False)
    comp.fits[comp.dsfr].weights().to_csv(paths["dsfr_weights"], index=False)
    comp.signature().to_csv(paths["signature"], index=False)
    with open(paths["results"], "w") as fh:
        json.dump(results_dict(comp, seed, grid), fh, indent=2)
    joblib.dump({"dsfr_model": comp.dsfr,
                 "models": {n: {"estimator": f.estimator, "features": f.features, "threshold": f.threshold}
                            for n, f in comp.fits.items()}}, paths["models"])
    return paths


# ----------------------------------------------------------------------------------------------------------------
# Synthetic ground truth (only the book's ground-truth check reads truth.csv)
# ----------------------------------------------------------------------------------------------------------------
def phenotype_design(table: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """True image parameters as model columns: float, the diameter on the log scale (as the ceilings fit it)."""
    X = table[columns].astype(float)
    if "diameter_mm" in X:
        X["diameter_mm"] = np.log(X["diameter_mm"])
    return X


def ground_truth_check(truth: pd.DataFrame, patients: pd.DataFrame, signature: pd.DataFrame, grid: dict[str, list],
                       n_folds: int, seed: int, latent_col: str | None = None,
                       phenotype: list[str] | None = None,
                       clinical_screen_p: float | None = None) -> dict[str, Any]:
    """Compare the DSFR signature with the synthetic cohort's planted truth, and fit the planted ceilings.

    Parameters
    ----------
    truth : DataFrame
        ``truth.csv`` of the synthetic cohort (patient_id, the latent value, the true image parameters).
    patients : DataFrame
        Patient table (index patient_id).
    signature : DataFrame
        ``signature.csv`` (patient_id, cohort, dsfr_signature).
    grid, n_folds, seed
        The book's nested procedure (:func:`fit_nested`), so that ceilings and models are fitted alike.
    latent_col : str, optional
        Column of ``truth`` holding the latent; by default the first column whose name contains ``latent``.
    phenotype : list of str, optional
        Columns of the true image phenotype (default :data:`hcc_utils.synthetic.IMAGE_PHENOTYPE`, those present).
    clinical_screen_p : float, optional
        The clinical screen of DSFR-C (:func:`run_comparison`), applied alike to the "+ clinical" ceilings.

    Returns
    -------
    dict
        ``spearman``: signature vs latent per cohort; ``ceilings``: AUC per cohort (development nested CV, each
        external cohort from the refit) of the same procedure on the latent, the image phenotype (what a perfect
        reader of the images knows) and the image phenotype + clinical variables; ``ceiling_auc``: that of latent +
        clinical.
    """
    from scipy.stats import spearmanr

    from hcc_utils.synthetic import IMAGE_PHENOTYPE

    truth = truth.copy()
    if "patient_id" in truth.columns:
        truth = truth.set_index("patient_id")
    truth.index = truth.index.astype(str)
    if latent_col is None:
        cands = [c for c in truth.columns if "latent" in c.lower()]
        if not cands:
            raise ValueError(f"truth table has no latent column (columns: {list(truth.columns)})")
        latent_col = cands[0]
    phenotype = [c for c in (phenotype or IMAGE_PHENOTYPE) if c in truth.columns]
    sig = signature.set_index(signature["patient_id"].astype(str))
    out: dict[str, Any] = {"latent_column": latent_col, "phenotype_columns": phenotype, "spearman": {},
                           "ceilings": {}}
    for c in cohort_order(sig["cohort"]):
        ids = sig.index[sig["cohort"] == c]
        if len(ids) > 2:
            r = spearmanr(sig.loc[ids, "dsfr_signature"], truth.loc[ids, latent_col])
            out["spearman"][c] = {"rho": float(r.statistic), "p": float(r.pvalue), "n": int(len(ids))}
    t = truth.loc[patients.index.astype(str)].set_axis(patients.index)
    clin = clinical_design(patients)
    sets = {"latent": t[[latent_col]], "latent + clinical": pd.concat([t[[latent_col]], clin], axis=1)}
    if phenotype:
        sets["image phenotype"] = phenotype_design(t, phenotype)
        sets["image phenotype + clinical"] = pd.concat([sets["image phenotype"], clin], axis=1)
    dev = patients.cohort == "development"
    y = patients.loc[dev, "er"].astype(int)
    yv = patients.loc[~dev, "er"].astype(int)
    coh = patients.loc[~dev, "cohort"]
    for name, X in sets.items():
        f = fit_nested(f"ceiling ({name})", X[dev], y, X[~dev], grid, n_folds, seed, allow_missing=True,
                       screen=_screen(clin, clinical_screen_p) if "clinical" in name else None)
        out["ceilings"][name] = {"development": _auc(patients.loc[dev, "er"], f.cv_prob)}
        for c in report_cohorts(patients.cohort)[1:]:  # each external cohort
            yc = yv[coh == c]
            out["ceilings"][name][c] = _auc(yc, f.val_prob.loc[yc.index]) if yc.nunique() == 2 else None
    out["ceiling_auc"] = out["ceilings"]["latent + clinical"]
    return out
