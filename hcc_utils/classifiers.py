"""The early-recurrence classifiers: the paper's logistic model, its grid search and nested cross-validation.

Every model is a pipeline of a standard scaler and a logistic regression whose ``C``, ``max_iter`` and ``tol`` are
chosen by a stratified grid search scored by ROC AUC (:class:`ConvergedGridSearch` gives GridSearchCV's answer while
skipping fits that cannot change it). :func:`fit_nested` predicts each development patient by a model whose scaling,
coefficients and hyper-parameters never saw that patient (outer folds), refits on all development patients and
predicts validation; :func:`clinical_design`, :func:`visual_design` and :func:`radiomics_design` build the inputs of
DSFR-C, the visual model and the radiomics comparator. A model that combines image features with clinical variables
can screen the clinical ones (:func:`score_test_p`, :func:`screen_columns`) inside every training set, as a clinical
study screens candidate variables before its multivariable model.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from hcc_utils.manifest import CLINICAL_VARIABLES, VISUAL_FEATURES

GRID_KEYS = ("C", "max_iter", "tol")


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
    * **The candidates' fits call scikit-learn's lbfgs objective directly** (:func:`lbfgs_logistic`): the same
      loss, start, options and iterates as ``LogisticRegression.fit``, without its per-fit input checks, and are
      scored by :func:`roc_auc`, ``roc_auc_score``'s arithmetic without its checks.

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


def lbfgs_logistic(Z: np.ndarray, y: np.ndarray, C: float, tol: float,
                   max_iter: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Binary L2 logistic regression by lbfgs, exactly as ``LogisticRegression(C=C, tol=tol, max_iter=max_iter)``.

    The same objective (scikit-learn's ``LinearModelLoss`` of a ``HalfBinomialLoss``, penalty ``1 / (C n)``), zero
    start and ``scipy.optimize.minimize`` options as ``LogisticRegression.fit`` (scikit-learn 1.9, no sample
    weights), so the coefficients, intercept and iteration count are bit-identical
    (``tests/test_models.py::test_direct_lbfgs_equals_logistic_regression``); the estimator's input validation,
    about half the cost of a fit on these small problems, is skipped.

    Parameters
    ----------
    Z : ndarray (n_samples x n_features)
        Scaled training features.
    y : ndarray
        Labels of two classes; the larger is the positive one.
    C, tol, max_iter
        As ``LogisticRegression``.

    Returns
    -------
    coef : ndarray (1 x n_features)
    intercept : ndarray (1,)
    n_iter : int
        ``LogisticRegression.n_iter_``.
    """
    from scipy import optimize
    from sklearn._loss.loss import HalfBinomialLoss
    from sklearn.linear_model._linear_loss import LinearModelLoss

    Z = np.ascontiguousarray(Z, dtype=np.float64)
    y = np.asarray(y)
    classes = np.unique(y)
    if len(classes) != 2:
        raise ValueError(f"lbfgs_logistic needs two classes, got {classes.tolist()}")
    target = np.where(y == classes[1], 1.0, 0.0).astype(Z.dtype)
    loss = LinearModelLoss(base_loss=HalfBinomialLoss(), fit_intercept=True)
    res = optimize.minimize(loss.loss_gradient, np.zeros(Z.shape[1] + 1, dtype=Z.dtype), method="L-BFGS-B",
                            jac=True, args=(Z, target, None, 1.0 / (C * Z.shape[0]), 1),
                            options={"maxiter": int(max_iter), "maxls": 50, "gtol": tol,
                                     "ftol": 64 * np.finfo(float).eps})
    w = res.x.copy()
    return w[:-1][None, :], w[-1:], int(min(res.nit, max_iter))


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC of 0/1 labels, bit-identical to ``sklearn.metrics.roc_auc_score`` (scikit-learn 1.9, no weights).

    The same steps in the same floating-point order: the curve's points at each distinct score, the collinear points
    dropped, rates divided by the totals and ``scipy.integrate.trapezoid``; the input checks, which cost about half
    as much as a grid candidate's fit, are left out (``tests/test_models.py::test_fold_auc_equals_roc_auc_score``).
    """
    from scipy.integrate import trapezoid

    y = np.asarray(y)
    score = np.asarray(score, dtype=np.float64).reshape(-1)
    if y.shape != score.shape or not np.isin(y, (0, 1)).all() or len(np.unique(y)) != 2:
        raise ValueError("roc_auc needs 0/1 labels of both classes, one score per label")
    order = np.argsort(score, kind="stable")[::-1]
    s, t = score[order], (y[order] == 1).astype(np.float64)
    idx = np.r_[np.nonzero(np.diff(s))[0], t.size - 1]
    tps = np.cumsum(t)[idx]
    fps = 1 + idx.astype(np.float64) - tps
    if fps.shape[0] > 2:
        keep = np.nonzero(np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True])[0]
        fps, tps = fps[keep], tps[keep]
    tps, fps = np.r_[0.0, tps], np.r_[0.0, fps]
    return float(trapezoid(tps / tps[-1], fps / fps[-1]))


def _score_fold(X_tr, y_tr, X_te, y_te, cands: list[dict], seed: int) -> tuple[list[float], int]:
    """ROC AUC of every grid candidate on one fold (decision function, as the ``roc_auc`` scorer), sharing fits."""
    pipe = make_pipeline(seed)
    pre = Pipeline(pipe.steps[:-1]).fit(X_tr)
    Z_tr, Z_te = pre.transform(X_tr), pre.transform(X_te)
    y_te = (np.asarray(y_te) == np.unique(y_tr)[-1]).astype(int)  # the fit's positive class
    done: dict[tuple, list[tuple[int, float]]] = {}  # (C, tol) -> [(max_iter run, n_iter, score)]
    scores, n_fits = [], 0
    with threadpool_limits(limits=1):
        for p in cands:
            key = (p["clf__C"], p["clf__tol"])
            m = int(p["clf__max_iter"])
            hit = next((s for (m_run, k, s) in done.get(key, []) if m == m_run or (k < m_run and m >= k)), None)
            if hit is None:
                coef, b, k = lbfgs_logistic(Z_tr, y_tr, p["clf__C"], p["clf__tol"], m)
                n_fits += 1
                hit = roc_auc(y_te, (Z_te @ coef.T + b).reshape(-1))
                done.setdefault(key, []).append((m, k, hit))
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


def score_test_p(X: pd.DataFrame, y) -> pd.Series:
    """p of the score (Rao) test of each column in a univariable logistic regression of the 0/1 outcome ``y``.

    For one covariate with an intercept the score statistic is ``n r^2``, ``r`` the Pearson correlation of the column
    with ``y``, referred to chi-square with 1 df (R: ``anova(glm(y ~ x, family = binomial), test = "Rao")``). Blank
    values take the column's median first, as the models' imputer does; a constant column gets p = 1.

    Parameters
    ----------
    X : DataFrame
        Candidate columns (rows: patients).
    y : array-like of 0/1
        Outcome, aligned with the rows of ``X``.

    Returns
    -------
    pandas.Series
        p per column of ``X``.
    """
    from scipy.stats import chi2

    yv = np.asarray(y, dtype=float)
    n = len(yv)
    if X.shape[0] != n:
        raise ValueError(f"score test: {X.shape[0]} rows of candidates but {n} outcomes")
    out = {}
    for col in X.columns:
        x = X[col].astype(float)
        x = x.fillna(x.median()).to_numpy() if x.notna().any() else np.zeros(n)
        if np.ptp(x) == 0 or np.ptp(yv) == 0:
            out[col] = 1.0
            continue
        r = np.corrcoef(x, yv)[0, 1]
        out[col] = float(chi2.sf(n * r * r, 1))
    return pd.Series(out, dtype=float)


def screen_columns(X: pd.DataFrame, y, candidates, alpha: float) -> list[str]:
    """Columns of ``X`` a model keeps: every non-candidate, and the candidates with score-test p < ``alpha``.

    Parameters
    ----------
    X : DataFrame
    y : array-like of 0/1
    candidates : sequence of str
        The columns that are screened (for example the clinical variables); the others are always kept.
    alpha : float
        Screening threshold on :func:`score_test_p`.

    Returns
    -------
    list of str
        Kept columns, in the order of ``X``.
    """
    cand = [c for c in X.columns if c in set(candidates)]
    p = score_test_p(X[cand], y) if cand else pd.Series(dtype=float)
    keep = [c for c in X.columns if c not in p.index or p[c] < alpha]
    if not keep:
        raise ValueError(f"no column passes the screen (p < {alpha}) and none is kept unscreened")
    return keep


def fit_nested(name: str, X_dev: pd.DataFrame, y_dev: pd.Series, X_val: pd.DataFrame | None,
               grid: dict[str, list], n_folds: int, seed: int, allow_missing: bool = False,
               n_jobs: int = 1, screen: tuple[list[str], float] | None = None) -> ModelFit:
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
    screen : (list of str, float), optional
        ``(candidates, alpha)``: before each outer fold's grid search, and before the final one, keep only the
        candidate columns with univariable score-test p < ``alpha`` in that training set (:func:`screen_columns`);
        the other columns always enter. The final model's columns are ``ModelFit.features``; the screen's p values
        and the columns each outer fold kept are in ``ModelFit.extra["screen"]``.

    Returns
    -------
    ModelFit
    """
    _check_xy(X_dev, y_dev, f"{name} (development)", allow_missing)
    if X_val is not None and list(X_val.columns) != list(X_dev.columns):
        raise ValueError(f"{name}: validation columns differ from development columns")
    X = X_dev.to_numpy(dtype=float)
    y = y_dev.to_numpy().astype(int)
    cols = list(X_dev.columns)

    def kept(rows) -> list[int]:
        if screen is None:
            return list(range(len(cols)))
        keep = set(screen_columns(X_dev.iloc[rows], y[rows], screen[0], screen[1]))
        return [j for j, c in enumerate(cols) if c in keep]

    n_outer, n_inner = _fold_counts(y, n_folds, seed)
    outer = StratifiedKFold(n_splits=n_outer, shuffle=True, random_state=seed)
    search = ConvergedGridSearch(grid, n_inner, seed + 1, n_jobs)
    prob = np.full(len(y), np.nan)
    fold_params, fold_kept = [], []
    # One BLAS thread: these problems are tiny, and OpenBLAS threads spinning on a busy machine made each lbfgs fit
    # about ten times slower (measured: 200 ms vs 19 ms per fit on the 2-core build machine under load).
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        # the paper's grid includes max_iter=100 with tol=1e-5: lbfgs may stop before tol, which is the setting
        warnings.simplefilter("ignore", ConvergenceWarning)
        for train, test in outer.split(X, y):
            j = kept(train)
            fold_kept.append([cols[k] for k in j])
            s = ConvergedGridSearch(grid, n_inner, seed + 1, n_jobs).fit(X[train][:, j], y[train])
            prob[test] = s.predict_proba(X[test][:, j])[:, 1]
            fold_params.append(_plain(s.best_params_))
        j_final = kept(np.arange(len(y)))
        final = search.fit(X[:, j_final], y)
        val = None
        if X_val is not None and len(X_val):
            _check_x(X_val, f"{name} (validation)", allow_missing)
            xv = X_val.to_numpy(dtype=float)[:, j_final]
            val = final.predict_proba(xv)[:, 1]
    assert np.isfinite(prob).all()
    extra: dict[str, Any] = {}
    if screen is not None:
        cand = [c for c in cols if c in set(screen[0])]
        extra["screen"] = {"alpha": float(screen[1]), "candidates": cand,
                           "p": {c: float(v) for c, v in score_test_p(X_dev[cand], y).items()},
                           "kept": [cols[k] for k in j_final if cols[k] in cand],
                           "fold_kept": [[c for c in f if c in cand] for f in fold_kept]}
    return ModelFit(
        name=name,
        features=[cols[k] for k in j_final],
        cv_prob=pd.Series(prob, index=X_dev.index, name="prob"),
        val_prob=pd.Series(val if val is not None else [], index=X_val.index if val is not None else [],
                           name="prob", dtype=float),
        estimator=final.best_estimator_,
        best_params=_plain(final.best_params_),
        fold_params=fold_params,
        cv_auc=float(final.best_score_),
        n_folds=(n_outer, n_inner),
        extra=extra,
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


def clinical_variable(column: str):
    """The :data:`hcc_utils.manifest.CLINICAL_VARIABLES` entry behind a :func:`clinical_design` column (``ggt``,
    ``child_pugh_B``), or None for a column that is not clinical."""
    for v in CLINICAL_VARIABLES:
        if column == v.name or (v.kind == "categorical" and column in {f"{v.name}_{lv}" for lv in v.levels[1:]}):
            return v
    return None


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
