"""ROC analysis for binary outcomes: DeLong AUC CI and paired test, Youden threshold, metrics, bootstrap CI,
logistic calibration curve.

The AUC and its DeLong variance are own code (Sun & Xu 2014 midrank algorithm, as pROC ``ci.auc`` / ``roc.test``;
a higher score means a case); the Youden threshold reproduces pROC ``coords(x="best")`` (midpoints between scores).
Why, in ``book/method.md`` ("The statistics library").
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from ._validate import as_binary, as_float, same_length

__all__ = ["AUCResult", "DeLongResult", "ClassificationMetrics", "roc_auc_ci", "delong_test", "youden_threshold",
           "classification_metrics", "bootstrap_auc_ci", "logistic_calibration_curve", "delong_placements"]


@dataclass(frozen=True)
class AUCResult:
    """AUC with a confidence interval (``lower``/``upper`` clipped to [0, 1] as pROC does)."""
    auc: float
    lower: float
    upper: float
    se: float
    level: float
    n_cases: int
    n_controls: int
    method: str = "DeLong"


@dataclass(frozen=True)
class DeLongResult:
    """Paired DeLong test of two correlated AUCs; ``z > 0`` when ``auc_a > auc_b``."""
    auc_a: float
    auc_b: float
    z: float
    p: float
    diff: float
    se_diff: float


@dataclass(frozen=True)
class ClassificationMetrics:
    """Confusion-matrix summaries at a threshold (a case is called positive when ``score >= threshold``)."""
    threshold: float
    accuracy: float
    sensitivity: float
    specificity: float
    ppv: float
    npv: float
    tp: int
    fp: int
    tn: int
    fn: int


def _check(y, scores, positive):
    yy = as_binary(y, "y", positive=positive)
    out = [as_float(s, f"score{'_' + str(i) if len(scores) > 1 else ''}") for i, s in enumerate(scores)]
    same_length(y=yy, **{f"score{i}": s for i, s in enumerate(out)})
    return yy, out


def _placements(z: np.ndarray, is_pos: np.ndarray) -> np.ndarray:
    """Per-subject DeLong placement values from a single sort (Sun & Xu 2014, midrank formulation).

    For a case: the fraction of controls with a lower score (ties 1/2) = (midrank among all - midrank among cases)/n.
    For a control: the fraction of cases with a higher score (ties 1/2).  Returned in the original order.
    """
    n_all = len(z)
    m = int(is_pos.sum())
    n = n_all - m
    order = np.argsort(z)  # stability is not needed: only tie-group counts are used
    zs = z[order]
    ps = is_pos[order]
    new = np.empty(n_all, dtype=bool)
    new[0] = True
    np.not_equal(zs[1:], zs[:-1], out=new[1:])
    starts = np.flatnonzero(new)
    sizes = np.diff(np.append(starts, n_all))
    cpos = np.empty(n_all + 1, dtype=np.int64)
    cpos[0] = 0
    np.cumsum(ps, out=cpos[1:])
    pos_before = cpos[starts]
    pos_in = cpos[starts + sizes] - pos_before
    neg_before = starts - pos_before
    neg_in = sizes - pos_in
    g_case = (neg_before + 0.5 * neg_in) / n
    g_ctrl = (m - pos_before - 0.5 * pos_in) / m
    if len(starts) < n_all:
        g_case = np.repeat(g_case, sizes)
        g_ctrl = np.repeat(g_ctrl, sizes)
    out = np.empty(n_all)
    out[order] = np.where(ps, g_case, g_ctrl)
    return out


def delong_placements(y, score):
    """Structural components (placement values) of DeLong et al. (1988) by the Sun & Xu (2014) algorithm.

    Parameters
    ----------
    y : array-like of 0/1
    score : array-like of float

    Returns
    -------
    auc : float
    v10 : ndarray, one value per case (fraction of controls it outranks, ties 1/2)
    v01 : ndarray, one value per control (fraction of cases outranking it, ties 1/2)
    """
    pos = np.asarray(y) == 1
    pl = _placements(np.asarray(score, dtype=float), pos)
    v10 = pl[pos]
    v01 = pl[~pos]
    return float(v10.mean()), v10, v01


def roc_auc_ci(y, score, level: float = 0.95, positive=None) -> AUCResult:
    """AUC with DeLong confidence interval, as pROC ``ci.auc(roc(y, score, direction="<"))``.

    Parameters
    ----------
    y : array-like
        Outcome: 0/1, booleans, or two levels with ``positive`` given.
    score : array-like
        Marker; higher values indicate a case.  The direction is never flipped.
    level : float
        Confidence level.
    positive : object, optional
        The case level of a two-level label outcome.

    Returns
    -------
    AUCResult
        ``.auc``, ``.lower``, ``.upper`` (normal interval with DeLong variance, clipped to [0, 1]), ``.se``.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    yy, (s,) = _check(y, [score], positive)
    auc, v10, v01 = delong_placements(yy, s)
    m, n = len(v10), len(v01)
    if m < 2 or n < 2:
        raise ValueError(f"DeLong variance needs at least 2 cases and 2 controls (got {m} and {n})")
    var = np.var(v10, ddof=1) / m + np.var(v01, ddof=1) / n
    se = float(np.sqrt(var))
    zq = sps.norm.ppf(0.5 + level / 2)
    lo, hi = auc - zq * se, auc + zq * se
    return AUCResult(auc=auc, lower=float(min(max(lo, 0.0), 1.0)), upper=float(min(max(hi, 0.0), 1.0)), se=se,
                     level=level, n_cases=m, n_controls=n)


def delong_test(y, score_a, score_b, positive=None) -> DeLongResult:
    """Paired two-sided DeLong test of two AUCs on the same subjects, as pROC ``roc.test(method="delong")``.

    Parameters
    ----------
    y : array-like
        Outcome (0/1, booleans, or two levels with ``positive``).
    score_a, score_b : array-like
        Two markers measured on the same subjects (higher = case).

    Returns
    -------
    DeLongResult
        ``.auc_a``, ``.auc_b``, ``.z`` (positive when a > b), ``.p`` (two-sided), ``.diff``, ``.se_diff``.

    Notes
    -----
    O(n log n) (one sort per score, Sun & Xu 2014).  When the two scores give identical placements the variance of the
    difference is zero: pROC then reports z = NaN; here z = 0 and p = 1 when the AUCs are equal.
    """
    yy, (a, b) = _check(y, [score_a, score_b], positive)
    auc_a, v10a, v01a = delong_placements(yy, a)
    auc_b, v10b, v01b = delong_placements(yy, b)
    m, n = len(v10a), len(v01a)
    if m < 2 or n < 2:
        raise ValueError(f"DeLong test needs at least 2 cases and 2 controls (got {m} and {n})")
    s10 = np.cov(np.vstack([v10a, v10b]), ddof=1)
    s01 = np.cov(np.vstack([v01a, v01b]), ddof=1)
    s = s10 / m + s01 / n
    var = s[0, 0] + s[1, 1] - 2 * s[0, 1]
    diff = auc_a - auc_b
    if var <= 1e-300:
        if abs(diff) < 1e-15:
            z, p = 0.0, 1.0
        else:
            z, p = float(np.sign(diff) * np.inf), 0.0
    else:
        z = diff / np.sqrt(var)
        p = float(2 * sps.norm.sf(abs(z)))
    return DeLongResult(auc_a=auc_a, auc_b=auc_b, z=float(z), p=p, diff=float(diff), se_diff=float(np.sqrt(max(var, 0))))


def _roc_table(yy, s):
    """pROC thresholds (midpoints of distinct scores, with -Inf and +Inf) and sens/spec at each (score >= thr)."""
    u = np.unique(s)
    thr = (np.concatenate([[-np.inf], u]) + np.concatenate([u, [np.inf]])) / 2
    thr2 = np.concatenate([[-np.inf], u]) / 2 + np.concatenate([u, [np.inf]]) / 2
    thr = np.where(np.abs(thr) > 1e100, thr2, thr)
    # pROC's near-tie fix for direction "<": a midpoint equal to the lower score takes the upper score
    low = np.concatenate([[-np.inf], u])
    up = np.concatenate([u, [np.inf]])
    thr = np.where(thr == low, up, thr)
    pos = yy == 1
    sp = np.sort(s[pos])
    sn = np.sort(s[~pos])
    sens = 1 - np.searchsorted(sp, thr, side="left") / len(sp)
    spec = np.searchsorted(sn, thr, side="left") / len(sn)
    return thr, sens, spec


def youden_threshold(y, score, positive=None) -> float:
    """Threshold maximising Youden's J = sensitivity + specificity - 1, as pROC ``coords(roc, "best")``.

    Candidate thresholds are the midpoints between consecutive distinct observed scores (and -Inf/+Inf); a subject
    is called positive when ``score >= threshold``.  When several thresholds reach the same maximal J (pROC returns
    all of them) the lowest is returned.

    Parameters
    ----------
    y : array-like
        Binary outcome (see ``positive``).
    score : array-like
        Score, higher meaning a case.
    positive : object, optional
        The outcome level counted as a case (needed for non-numeric labels).

    Returns
    -------
    float
    """
    yy, (s,) = _check(y, [score], positive)
    thr, sens, spec = _roc_table(yy, s)
    j = sens + spec
    best = np.flatnonzero(j >= j.max() - 1e-12)
    return float(thr[best[0]])


def classification_metrics(y, score, threshold: float, positive=None) -> ClassificationMetrics:
    """Accuracy, sensitivity, specificity, PPV and NPV with ``score >= threshold`` called positive.

    Parameters
    ----------
    y : array-like
        Binary outcome.
    score : array-like
        Score.
    threshold : float
        Subjects with ``score >= threshold`` are called positive.
    positive : object, optional
        The outcome level counted as a case.

    Returns
    -------
    ClassificationMetrics
        PPV/NPV are NaN when nobody is called positive/negative.
    """
    yy, (s,) = _check(y, [score], positive)
    if not np.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold}")
    pred = s >= threshold
    pos = yy == 1
    tp = int((pred & pos).sum())
    fp = int((pred & ~pos).sum())
    tn = int((~pred & ~pos).sum())
    fn = int((~pred & pos).sum())
    return ClassificationMetrics(
        threshold=float(threshold), accuracy=(tp + tn) / len(yy), sensitivity=tp / (tp + fn),
        specificity=tn / (tn + fp), ppv=tp / (tp + fp) if tp + fp else float("nan"),
        npv=tn / (tn + fn) if tn + fn else float("nan"), tp=tp, fp=fp, tn=tn, fn=fn)


def _auc_fast(yy, s):
    return delong_placements(yy, s)[0]


class _AUCStat:
    """Picklable bootstrap statistic: AUC on resampled indices."""

    def __init__(self, yy, s):
        self.yy, self.s = yy, s

    def __call__(self, idx):
        y = self.yy[idx]
        if y.min() == y.max():
            raise ValueError("single class in resample")
        return _auc_fast(y, self.s[idx])


def bootstrap_auc_ci(y, score, n_boot: int = 2000, level: float = 0.95, seed: int = 0, n_jobs: int = 1,
                     stratified: bool = True, positive=None, progress: bool = False) -> AUCResult:
    """Percentile bootstrap CI of the AUC (stratified by default, as pROC ``ci.auc(method="bootstrap")``).

    Seeded through :func:`hcc_utils.stats.bootstrap.seeded_bootstrap`: identical result for any ``n_jobs``.

    Parameters
    ----------
    y : array-like
        Binary outcome.
    score : array-like
        Score, higher meaning a case.
    n_boot : int
        Bootstrap replicates.
    level : float
        Confidence level.
    seed : int
        Seed of the replicates.
    n_jobs : int
        Worker processes (results do not depend on it).
    stratified : bool
        Resample cases and controls separately (pROC's default).
    positive : object, optional
        The outcome level counted as a case.
    progress : bool
        Show a progress bar.

    Returns
    -------
    AUCResult
        ``method="bootstrap"``; ``se`` is the SD of the replicates.
    """
    from .bootstrap import seeded_bootstrap

    yy, (s,) = _check(y, [score], positive)
    reps = seeded_bootstrap(_AUCStat(yy, s), len(yy), n_boot, seed, n_jobs, strata=yy if stratified else None,
                            progress=progress, desc="AUC bootstrap")
    reps = np.array([r for r in reps if r is not None], dtype=float)
    lo, hi = np.quantile(reps, [(1 - level) / 2, (1 + level) / 2])
    return AUCResult(auc=_auc_fast(yy, s), lower=float(lo), upper=float(hi), se=float(np.std(reps, ddof=1)),
                     level=level, n_cases=int(yy.sum()), n_controls=int((1 - yy).sum()), method="bootstrap")


def logistic_calibration_curve(y, prob, n_groups: int = 10, strategy: str = "quantile", positive=None) -> dict:
    """Calibration of predicted probabilities: grouped observed vs predicted, a lowess curve, and the
    calibration intercept and slope (logistic recalibration, statsmodels GLM).

    Parameters
    ----------
    y : array-like
        Binary outcome.
    prob : array-like
        Predicted probabilities in (0, 1).
    n_groups : int
        Number of groups for the grouped points.
    strategy : {"quantile", "uniform"}
        Group by quantiles of ``prob`` or equal-width bins.

    Returns
    -------
    dict
        ``groups`` (DataFrame: group, n, predicted, observed, lower, upper (Wilson 95%)), ``smooth`` (DataFrame
        predicted, observed from lowess), ``intercept`` and ``slope`` of the recalibration model
        ``logit P(y) = a + b * logit(p)`` (rms ``val.prob`` "Intercept"/"Slope"), ``citl`` (calibration-in-the-large:
        ``a`` with ``b`` fixed at 1, offset model), ``brier``.  Verified against rms ``val.prob``.
    """
    import statsmodels.api as sm
    from statsmodels.nonparametric.smoothers_lowess import lowess
    from statsmodels.stats.proportion import proportion_confint

    yy, (p,) = _check(y, [prob], positive)
    if (p <= 0).any() or (p >= 1).any():
        raise ValueError("prob: predicted probabilities must lie strictly between 0 and 1")
    if strategy == "quantile":
        g = pd.qcut(p, n_groups, labels=False, duplicates="drop")
    elif strategy == "uniform":
        g = np.minimum((p * n_groups).astype(int), n_groups - 1)
    else:
        raise ValueError(f"strategy must be 'quantile' or 'uniform', got {strategy!r}")
    df = pd.DataFrame({"g": g, "y": yy, "p": p})
    grp = df.groupby("g").agg(n=("y", "size"), predicted=("p", "mean"), events=("y", "sum")).reset_index()
    grp["observed"] = grp["events"] / grp["n"]
    lo, hi = proportion_confint(grp["events"], grp["n"], method="wilson")
    grp["lower"], grp["upper"] = lo, hi
    grp = grp.rename(columns={"g": "group"})
    sm_ = lowess(yy, p, frac=2 / 3, it=0, return_sorted=True)
    lp = np.log(p / (1 - p))
    slope_fit = sm.GLM(yy, sm.add_constant(lp), family=sm.families.Binomial()).fit()
    int_fit = sm.GLM(yy, np.ones((len(yy), 1)), family=sm.families.Binomial(), offset=lp).fit()
    return {"groups": grp, "smooth": pd.DataFrame({"predicted": sm_[:, 0], "observed": sm_[:, 1]}),
            "intercept": float(slope_fit.params[0]), "slope": float(slope_fit.params[1]),
            "citl": float(int_fit.params[0]),
            "brier": float(np.mean((p - yy) ** 2))}
