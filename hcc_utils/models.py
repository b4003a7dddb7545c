"""Early-recurrence classifiers: DSFR per phase, DSFR-C and the visual model (paper Table 2, Figure 1).

Every model is the paper's logistic regression: a :class:`~sklearn.pipeline.Pipeline` of
:class:`~sklearn.preprocessing.StandardScaler` and :class:`~sklearn.linear_model.LogisticRegression`, its
hyper-parameters (``C``, ``max_iter``, ``tol``; ``profile["models"]["grid"]``) chosen by
:class:`~sklearn.model_selection.GridSearchCV` with stratified K-fold and ROC AUC scoring. Features are standardised
inside the pipeline, so the scaler never sees a held-out fold.

Honest development estimates (nested cross-validation)
-----------------------------------------------------
The development-cohort predictions are *outer* cross-validated: the development patients are split into
``cv_folds`` seeded stratified folds; for each outer fold the whole grid search (with its own inner seeded stratified
folds) is run on the other folds only, and the held-out fold is predicted by the model it chose. This is exactly
``cross_val_predict(GridSearchCV(...), X, y, cv=outer)`` (a test checks the equality; the search itself is
:class:`ConvergedGridSearch`, which gives GridSearchCV's answer while skipping fits that cannot change it); we loop by hand to keep the
hyper-parameters chosen in each outer fold. No development patient is ever predicted by a model whose scaling,
coefficients or hyper-parameters saw that patient. The final model of each kind is the grid search refitted on all
development patients; it predicts the validation cohort, whose patients are never used for any choice.

The best imaging phase (``AP``, ``PP`` or ``DP``, the dual-phase concatenation) is picked, as in the paper, by the
development cross-validated AUC; DSFR-C adds the clinical variables to that phase's features. The classification
threshold is the Youden threshold of the development cross-validated predictions
(:func:`hcc_utils.stats.youden_threshold`) and is applied unchanged to the validation cohort.

Given handcrafted radiomics tables, :func:`run_comparison` also fits the comparators Radiomics (best phase, chosen
the same way) and Radiomics-C (with the clinical variables); Table 2 then gains their rows, DeLong p against DSFR.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from hcc_utils.manifest import CLINICAL_VARIABLES, COHORTS, VISUAL_FEATURES
from hcc_utils.stats import format_p

DSFR_PHASES = ("AP", "PP", "DP")
MODEL_ORDER = ("DSFR-AP", "DSFR-PP", "DSFR-DP", "DSFR-C", "Visual")
#: The handcrafted comparators, fitted only when :func:`run_comparison` is given radiomics tables.
RADIOMICS_ORDER = ("Radiomics", "Radiomics-C")
GRID_KEYS = ("C", "max_iter", "tol")


# ----------------------------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------------------------
def param_grid(grid: dict[str, list]) -> dict[str, list]:
    """Translate the profile's grid (``C``, ``max_iter``, ``tol``) into pipeline parameter names.

    Parameters
    ----------
    grid : dict
        ``profile["models"]["grid"]``.

    Returns
    -------
    dict
        Keys ``clf__C``, ``clf__max_iter``, ``clf__tol``.
    """
    unknown = set(grid) - set(GRID_KEYS)
    if unknown:
        raise ValueError(f"models.grid: unknown keys {sorted(unknown)}; expected {list(GRID_KEYS)}")
    out = {}
    for k in GRID_KEYS:
        if k not in grid or len(grid[k]) == 0:
            raise ValueError(f"models.grid: key {k!r} is missing or empty")
        cast = int if k == "max_iter" else float
        out[f"clf__{k}"] = [cast(v) for v in grid[k]]
    return out


def make_pipeline(seed: int) -> Pipeline:
    """Median imputation, StandardScaler and an L2 logistic regression (lbfgs), seeded.

    The imputer only acts on blank clinical values (which :func:`hcc_utils.manifest.load_patient_table` allows with a
    warning); it is fitted inside each training fold like the scaler. Deep features and visual reads must be complete.
    """
    return Pipeline([("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                     ("scale", StandardScaler()), ("clf", LogisticRegression(random_state=seed))])


def make_search(grid: dict[str, list], n_folds: int, seed: int, n_jobs: int = 1) -> GridSearchCV:
    """Grid search over the paper's grid with seeded stratified K-fold and ROC AUC scoring.

    Parameters
    ----------
    grid : dict
        ``profile["models"]["grid"]``.
    n_folds : int
        Number of stratified folds of the (inner) search.
    seed : int
        Seeds the fold shuffling and the estimator.
    n_jobs : int
        Parallel grid fits (joblib); results do not depend on it.

    Returns
    -------
    GridSearchCV
        Refits the best parameters on all the data it is fitted on. Ties in mean AUC are broken by grid order
        (sklearn's rule), so the choice is deterministic.
    """
    cv = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return GridSearchCV(make_pipeline(seed), param_grid(grid), scoring="roc_auc", cv=cv, refit=True,
                        n_jobs=n_jobs, error_score="raise")


class ConvergedGridSearch:
    """The paper's grid search, computed without the fits that cannot change the answer.

    Gives exactly what :func:`make_search` (scikit-learn's ``GridSearchCV``) gives: the same inner folds, the same
    per-fold ROC AUC of the decision function, the same mean scores, the same best candidate (ties broken by grid
    order) and the same refitted pipeline; ``tests/test_models.py`` checks the equality. Two things make it faster:

    * **Converged fits are shared across ``max_iter``.** lbfgs follows the same iterates whatever its iteration
      limit and stops at ``min(convergence iteration, max_iter)``; a fit that converged after ``k`` iterations is
      therefore bit-identical for every ``max_iter >= k``. A candidate is fitted only when no earlier fit of the same
      ``(C, tol)`` has converged within its ``max_iter`` (with the profiles' ascending ``max_iter`` lists and the
      demo's deep features most pairs converge before 100 iterations: 1 fit instead of 5).
    * **Imputation and scaling are fitted once per fold**, not once per candidate (they do not depend on ``C``,
      ``max_iter`` or ``tol``).

    Parameters
    ----------
    grid : dict
        ``profile["models"]["grid"]``.
    n_folds : int
        Stratified inner folds.
    seed : int
        Seeds the fold shuffling and the estimator (as :func:`make_search`).
    n_jobs : int
        Folds fitted in parallel (joblib processes); results do not depend on it.

    Attributes
    ----------
    best_params_ : dict
        Pipeline parameter names (``clf__C``, ``clf__max_iter``, ``clf__tol``), as ``GridSearchCV``.
    best_score_ : float
        Mean inner-fold AUC of the best candidate.
    best_estimator_ : sklearn.pipeline.Pipeline
        Refitted on all the data with the best parameters.
    cv_results_ : dict
        ``params``, ``mean_test_score``, ``rank_test_score``, ``split<k>_test_score`` and ``n_lbfgs_fits`` (the fits
        actually run, over all folds).
    """

    def __init__(self, grid: dict[str, list], n_folds: int, seed: int, n_jobs: int = 1):
        self.grid, self.n_folds, self.seed, self.n_jobs = grid, int(n_folds), int(seed), int(n_jobs)

    def _candidates(self) -> list[dict]:
        from sklearn.model_selection import ParameterGrid

        return list(ParameterGrid(param_grid(self.grid)))

    def fit(self, X, y) -> "ConvergedGridSearch":
        from joblib import Parallel, delayed
        from scipy.stats import rankdata

        X = np.asarray(X, dtype=float)
        y = np.asarray(y)
        cands = self._candidates()
        cv = StratifiedKFold(n_splits=self.n_folds, shuffle=True, random_state=self.seed)
        splits = list(cv.split(X, y))
        jobs = (delayed(_score_fold)(X[tr], y[tr], X[te], y[te], cands, self.seed) for tr, te in splits)
        out = Parallel(n_jobs=self.n_jobs)(jobs)  # n_jobs=1 runs in this process
        scores = np.array([o[0] for o in out]).T  # (n_candidates, n_splits), as GridSearchCV stores them
        means = np.average(scores, axis=1, weights=None)
        if not np.isfinite(means).all():
            raise ValueError("grid search: a fold's AUC is not finite (a fold with one class?)")
        rank = rankdata(-means, method="min").astype(np.int32, copy=False)
        best = int(rank.argmin())
        self.cv_results_ = {"params": cands, "mean_test_score": means, "rank_test_score": rank,
                            "n_lbfgs_fits": int(sum(o[1] for o in out))}
        for k in range(scores.shape[1]):
            self.cv_results_[f"split{k}_test_score"] = scores[:, k]
        self.best_index_ = best
        self.best_params_ = dict(cands[best])
        self.best_score_ = float(means[best])
        self.best_estimator_ = make_pipeline(self.seed).set_params(**self.best_params_).fit(X, y)
        return self

    def predict_proba(self, X) -> np.ndarray:
        return self.best_estimator_.predict_proba(np.asarray(X, dtype=float))


def _score_fold(X_tr, y_tr, X_te, y_te, cands: list[dict], seed: int) -> tuple[list[float], int]:
    """ROC AUC of every grid candidate on one fold (decision function, as the ``roc_auc`` scorer), sharing fits."""
    from sklearn.metrics import roc_auc_score

    pipe = make_pipeline(seed)
    pre = Pipeline(pipe.steps[:-1]).fit(X_tr)
    Z_tr, Z_te = pre.transform(X_tr), pre.transform(X_te)
    clf0 = pipe.named_steps["clf"]
    done: dict[tuple, list[tuple[int, float]]] = {}  # (C, tol) -> [(max_iter run, n_iter, score)]
    scores, n_fits = [], 0
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore", ConvergenceWarning)
        for p in cands:
            key = (p["clf__C"], p["clf__tol"])
            m = int(p["clf__max_iter"])
            hit = next((s for (m_run, k, s) in done.get(key, []) if m == m_run or (k < m_run and m >= k)), None)
            if hit is None:
                clf = clone(clf0).set_params(C=p["clf__C"], tol=p["clf__tol"], max_iter=m).fit(Z_tr, y_tr)
                n_fits += 1
                hit = float(roc_auc_score(y_te, clf.decision_function(Z_te)))
                done.setdefault(key, []).append((m, int(clf.n_iter_.max()), hit))
            scores.append(hit)
    return scores, n_fits


def _check_x(X: pd.DataFrame, name: str, allow_missing: bool = False) -> None:
    a = X.to_numpy(dtype=float)
    ok = np.isfinite(a) | (np.isnan(a) if allow_missing else False)
    bad = X.columns[~ok.all(axis=0)]
    if len(bad):
        col = bad[0]
        pids = X.index[~ok[:, X.columns.get_loc(col)]].tolist()
        raise ValueError(f"{name}: {'infinite' if allow_missing else 'missing or infinite'} values in column {col!r} "
                         f"for patient(s) {pids[:5]}{' ...' if len(pids) > 5 else ''} ({len(bad)} column(s) affected)")


def _check_xy(X: pd.DataFrame, y: pd.Series, name: str, allow_missing: bool = False) -> None:
    if not X.index.equals(y.index):
        raise ValueError(f"{name}: feature rows and labels are not aligned on patient_id")
    _check_x(X, name, allow_missing)
    vals = set(np.unique(y.to_numpy()))
    if not vals <= {0, 1}:
        raise ValueError(f"{name}: labels must be 0/1, found {sorted(vals)}")
    if len(vals) < 2:
        raise ValueError(f"{name}: labels hold a single class ({sorted(vals)}); cannot fit a classifier")


def _fold_counts(y: np.ndarray, n_folds: int, seed: int) -> tuple[int, int]:
    """Outer and inner fold numbers that stratified K-fold can honour with these labels.

    Each class must have at least ``k`` members for ``k`` stratified folds; with tiny cohorts (ci profile) the
    requested number is lowered to what the minority class allows (and never below 2).
    """
    minority = int(min(np.sum(y == 0), np.sum(y == 1)))
    outer = min(n_folds, minority)
    if outer < 2:
        raise ValueError(f"the minority class has {minority} patient(s): at least 2 are needed for cross-validation")
    # the smallest minority count over the outer training sets bounds the inner folds
    skf = StratifiedKFold(n_splits=outer, shuffle=True, random_state=seed)
    inner_min = min(int(min(np.sum(y[tr] == 0), np.sum(y[tr] == 1))) for tr, _ in skf.split(np.zeros(len(y)), y))
    inner = min(n_folds, inner_min)
    if inner < 2:
        raise ValueError(f"an outer training set has only {inner_min} minority patient(s): nested CV impossible")
    return outer, inner


@dataclass
class ModelFit:
    """One model's nested-CV development predictions, final refit and validation predictions.

    Attributes
    ----------
    name : str
        Model name (e.g. ``DSFR-AP``).
    features : list of str
        Feature columns in model order.
    cv_prob : pandas.Series
        Outer cross-validated probability of early recurrence, one per development patient.
    val_prob : pandas.Series
        Probability from the final (all-development) model, one per validation patient.
    estimator : sklearn.pipeline.Pipeline
        The final pipeline refitted on all development patients with the best grid parameters.
    best_params : dict
        Grid parameters of the final model.
    fold_params : list of dict
        Grid parameters chosen inside each outer fold.
    cv_auc : float
        Mean inner CV AUC of the final grid search (for information; the honest estimate is the outer AUC).
    threshold : float
        Youden threshold on ``cv_prob`` (applied unchanged to validation).
    n_folds : tuple of int
        (outer, inner) fold numbers used.
    """

    name: str
    features: list[str]
    cv_prob: pd.Series
    val_prob: pd.Series
    estimator: Pipeline
    best_params: dict[str, Any]
    fold_params: list[dict[str, Any]]
    cv_auc: float
    threshold: float = float("nan")
    n_folds: tuple[int, int] = (0, 0)
    extra: dict[str, Any] = field(default_factory=dict)

    def weights(self) -> pd.DataFrame:
        """Standardised coefficients of the final model (per SD of each feature), largest magnitude first."""
        coef = self.estimator.named_steps["clf"].coef_.ravel()
        df = pd.DataFrame({"feature": self.features, "weight": coef})
        order = np.argsort(-np.abs(coef), kind="stable")
        return df.iloc[order].reset_index(drop=True)


def fit_nested(name: str, X_dev: pd.DataFrame, y_dev: pd.Series, X_val: pd.DataFrame | None,
               grid: dict[str, list], n_folds: int, seed: int, allow_missing: bool = False,
               n_jobs: int = 1) -> ModelFit:
    """Nested cross-validated development predictions, refit on all development, predict validation.

    Parameters
    ----------
    name : str
        Model name used in messages.
    X_dev, y_dev : DataFrame, Series
        Development features and 0/1 ER labels indexed by patient_id.
    X_val : DataFrame or None
        Validation features (same columns) or None.
    grid : dict
        ``profile["models"]["grid"]``.
    n_folds : int
        Requested folds for the outer and the inner loop (lowered when the minority class is too small).
    seed : int
        Seeds outer folds (``seed``), inner folds (``seed + 1``) and the estimator.
    allow_missing : bool
        Allow blank (NaN) values, imputed by the median inside each training fold (clinical variables only).
    n_jobs : int
        Parallel grid fits inside each search.

    Returns
    -------
    ModelFit
    """
    _check_xy(X_dev, y_dev, f"{name} (development)", allow_missing)
    if X_val is not None and list(X_val.columns) != list(X_dev.columns):
        raise ValueError(f"{name}: validation columns differ from development columns")
    X = X_dev.to_numpy(dtype=float)
    y = y_dev.to_numpy().astype(int)
    n_outer, n_inner = _fold_counts(y, n_folds, seed)
    outer = StratifiedKFold(n_splits=n_outer, shuffle=True, random_state=seed)
    search = ConvergedGridSearch(grid, n_inner, seed + 1, n_jobs)
    prob = np.full(len(y), np.nan)
    fold_params = []
    # One BLAS thread: these problems are tiny, and OpenBLAS threads spinning on a busy machine made each lbfgs fit
    # about ten times slower (measured: 200 ms vs 19 ms per fit on the 2-core build machine under load).
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        # the paper's grid includes max_iter=100 with tol=1e-5: lbfgs may stop before tol, which is the setting
        warnings.simplefilter("ignore", ConvergenceWarning)
        for train, test in outer.split(X, y):
            s = ConvergedGridSearch(grid, n_inner, seed + 1, n_jobs).fit(X[train], y[train])
            prob[test] = s.predict_proba(X[test])[:, 1]
            fold_params.append(_plain(s.best_params_))
        final = search.fit(X, y)
        val = None
        if X_val is not None and len(X_val):
            _check_x(X_val, f"{name} (validation)", allow_missing)
            xv = X_val.to_numpy(dtype=float)
            val = final.predict_proba(xv)[:, 1]
    assert np.isfinite(prob).all()
    return ModelFit(
        name=name,
        features=list(X_dev.columns),
        cv_prob=pd.Series(prob, index=X_dev.index, name="prob"),
        val_prob=pd.Series(val if val is not None else [], index=X_val.index if val is not None else [],
                           name="prob", dtype=float),
        estimator=final.best_estimator_,
        best_params=_plain(final.best_params_),
        fold_params=fold_params,
        cv_auc=float(final.best_score_),
        n_folds=(n_outer, n_inner),
    )


def _plain(params: dict) -> dict:
    return {k.replace("clf__", ""): (v.item() if hasattr(v, "item") else v) for k, v in params.items()}


# ----------------------------------------------------------------------------------------------------------------
# Design matrices
# ----------------------------------------------------------------------------------------------------------------
def clinical_design(patients: pd.DataFrame) -> pd.DataFrame:
    """Clinical variables as model columns: binary/continuous as they are, categoricals one-hot.

    Categorical variables (``sex``, ``child_pugh``) get one 0/1 column per non-reference level; the reference is the
    first level in :data:`hcc_utils.manifest.CLINICAL_VARIABLES` (``sex_F``, ``child_pugh_B``). Blank values stay NaN
    (imputed inside the cross-validation by the model pipeline).

    Raises
    ------
    ValueError
        Naming the patient and column of an unknown categorical level, or a missing variable.
    """
    cols = {}
    for v in CLINICAL_VARIABLES:
        if v.name not in patients.columns:
            raise ValueError(f"clinical variable {v.name!r} is missing from the patient table")
        s = patients[v.name]
        miss = s.isna()
        if v.kind == "categorical":
            bad = ~miss & ~s.astype(str).isin([str(lv) for lv in v.levels])
            if bad.any():
                pid = patients.index[bad][0]
                raise ValueError(f"clinical column {v.name!r}: patient {pid} has {s[pid]!r}, expected one of {v.levels}")
            for lv in v.levels[1:]:
                cols[f"{v.name}_{lv}"] = (s.astype(str) == str(lv)).astype(float).where(~miss)
        else:
            cols[v.name] = pd.to_numeric(s, errors="raise").astype(float)
    return pd.DataFrame(cols, index=patients.index)


def visual_design(patients: pd.DataFrame) -> pd.DataFrame:
    """The 8 radiologists' visual reads (``vis_*``, 0/1)."""
    names = [v.name for v in VISUAL_FEATURES]
    missing = [n for n in names if n not in patients.columns]
    if missing:
        raise ValueError(f"visual reads {missing} are missing from the patient table (visual_file in the manifest)")
    X = patients[names].astype(float)
    if X.isna().any().any():
        col = X.columns[X.isna().any()][0]
        raise ValueError(f"visual column {col!r} is empty for patient(s) {X.index[X[col].isna()].tolist()[:5]}")
    return X


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
                   radiomics: dict[str, pd.DataFrame] | None = None) -> Comparison:
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

    Returns
    -------
    Comparison
    """
    from tqdm.auto import tqdm

    for col in ("cohort", "er"):
        if col not in patients.columns:
            raise ValueError(f"patient table has no {col!r} column")
    bad = ~patients["cohort"].isin(COHORTS)
    if bad.any():
        raise ValueError(f"unknown cohort {patients['cohort'][bad].iloc[0]!r} for patient {patients.index[bad][0]}")
    patients = patients.copy()
    patients.index = patients.index.astype(str)
    dev = patients[patients["cohort"] == "development"]
    val = patients[patients["cohort"] == "validation"]
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
                                n_jobs=n_jobs)
        fits[name].extra["n_missing"] = int(Xd.isna().sum().sum() + Xv.isna().sum().sum())
    if radiomics:
        fits.update(_fit_radiomics(patients, radiomics, grid, n_folds, seed, n_jobs, progress))
    from hcc_utils import stats

    for f in fits.values():
        f.threshold = float(stats.youden_threshold(y_dev.to_numpy(), f.cv_prob.to_numpy()))
    comp = Comparison(fits=fits, dsfr=dsfr, phase=dsfr.split("-", 1)[1], patients=patients)
    comp.predictions = predictions_table(comp)
    comp.table2 = table2(comp)
    return comp


def radiomics_design(table: pd.DataFrame) -> pd.DataFrame:
    """A handcrafted feature table as model columns: float, without the columns that are non-finite for a patient
    who has features of that phase (e.g. a texture feature undefined in a one-voxel-thick tumour). A patient without
    any feature of a phase (an empty predicted mask: a NaN block) is kept and imputed by the training folds' median.
    Columns are grouped by phase by their prefix (``AP_``, ``PP_``). The choice uses features only, never outcomes.

    Raises
    ------
    ValueError
        No column is left.
    """
    X = table.astype(float)
    X.index = X.index.astype(str)
    keep = []
    for _, cols in X.columns.to_series().groupby(X.columns.str.split("_").str[0], sort=False):
        a = X[cols.to_list()].to_numpy()
        has = ~np.isnan(a).all(axis=1)
        keep += [c for c, ok in zip(cols, np.isfinite(a[has]).all(axis=0)) if ok]
    if not keep:
        raise ValueError("radiomics: every feature column has a non-finite value")
    return X[[c for c in X.columns if c in set(keep)]]


def _without_features(X: pd.DataFrame) -> pd.Series:
    """Patients missing every feature of at least one phase (flag per row)."""
    blocks = X.isna().T.groupby(X.columns.str.split("_").str[0]).all().T
    return blocks.any(axis=1)


def _fit_radiomics(patients: pd.DataFrame, radiomics: dict[str, pd.DataFrame], grid, n_folds: int, seed: int,
                   n_jobs: int, progress: bool) -> dict[str, ModelFit]:
    """Radiomics (best phase by development nested-CV AUC) and Radiomics-C, fitted as the DSFR models."""
    from tqdm.auto import tqdm

    dev = patients[patients["cohort"] == "development"]
    val = patients[patients["cohort"] == "validation"]
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
                    allow_missing=True, n_jobs=n_jobs)
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
    """Long table: patient_id, cohort, model, prob, er (development = outer-CV predictions)."""
    rows = []
    for name, f in comp.fits.items():
        for cohort, s in (("development", f.cv_prob), ("validation", f.val_prob)):
            rows.append(pd.DataFrame({"patient_id": s.index, "cohort": cohort, "model": name,
                                      "prob": s.to_numpy(),
                                      "er": comp.patients.loc[s.index, "er"].astype(int).to_numpy()}))
    return pd.concat(rows, ignore_index=True)


def table2(comp: Comparison) -> pd.DataFrame:
    """Table 2: per model and cohort AUC (95% DeLong CI), ACC, SEN, SPEC at the development threshold, DeLong p.

    The DeLong test is paired (same patients) against the chosen DSFR model; its own row has p = NaN.
    """
    from hcc_utils import stats

    pred = comp.predictions
    rows = []
    for cohort in COHORTS:
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
        "Cohort": t2["cohort"].str.capitalize(),
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
        }
    return {
        "seed": seed,
        "grid": grid,
        "nested_cv": True,
        "chosen_phase": comp.phase,
        "dsfr_model": comp.dsfr,
        "phase_cv_auc": {n.split("-", 1)[1]: _auc(dev["er"], comp.fits[n].cv_prob)
                         for n in comp.fits if n.startswith("DSFR-") and n != "DSFR-C"},
        "n": {c: int((comp.patients.cohort == c).sum()) for c in COHORTS},
        "n_er": {c: int(comp.patients.loc[comp.patients.cohort == c, "er"].sum()) for c in COHORTS},
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
def ground_truth_check(truth: pd.DataFrame, patients: pd.DataFrame, signature: pd.DataFrame, grid: dict[str, list],
                       n_folds: int, seed: int, latent_col: str | None = None,
                       phenotype: list[str] | None = None) -> dict[str, Any]:
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

    Returns
    -------
    dict
        ``spearman``: signature vs latent per cohort; ``ceilings``: AUC per cohort (development nested CV,
        validation refit) of the same procedure on the latent, the image phenotype (what a perfect reader of the
        images knows) and the image phenotype + clinical variables; ``ceiling_auc``: that of latent + clinical.
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
    for c in COHORTS:
        ids = sig.index[sig["cohort"] == c]
        if len(ids) > 2:
            r = spearmanr(sig.loc[ids, "dsfr_signature"], truth.loc[ids, latent_col])
            out["spearman"][c] = {"rho": float(r.statistic), "p": float(r.pvalue), "n": int(len(ids))}
    t = truth.loc[patients.index.astype(str)].set_axis(patients.index)
    if "diameter_mm" in t:
        t["diameter_mm"] = np.log(t["diameter_mm"].astype(float))
    clin = clinical_design(patients)
    sets = {"latent": t[[latent_col]], "latent + clinical": pd.concat([t[[latent_col]], clin], axis=1)}
    if phenotype:
        sets["image phenotype"] = t[phenotype].astype(float)
        sets["image phenotype + clinical"] = pd.concat([t[phenotype].astype(float), clin], axis=1)
    dev = patients.cohort == "development"
    y = patients.loc[dev, "er"].astype(int)
    yv = patients.loc[~dev, "er"].astype(int)
    for name, X in sets.items():
        f = fit_nested(f"ceiling ({name})", X[dev], y, X[~dev], grid, n_folds, seed, allow_missing=True)
        out["ceilings"][name] = {"development": _auc(patients.loc[dev, "er"], f.cv_prob),
                                 "validation": _auc(yv, f.val_prob) if yv.nunique() == 2 else None}
    out["ceiling_auc"] = out["ceilings"]["latent + clinical"]
    return out
