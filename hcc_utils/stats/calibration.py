"""Calibration of a Cox model at a time point, with bootstrap optimism correction as R
``rms::calibrate(fit, cmethod="KM", u=t, m=m, B=B)``.

Own code following rms' algorithm (grouping, Kaplan-Meier per group, optimism from seeded bootstrap refits; the
steps are in ``book/method.md``, "The statistics library"): identical results for any ``n_jobs``; R's bootstrap draws
differ, so corrected values agree with R only in distribution. For logistic models see
:func:`hcc_utils.stats.roc.logistic_calibration_curve`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ._validate import as_event, as_time
from .bootstrap import seeded_bootstrap
from .decision import _km_surv_at
from .nomogram import cox_baseline_survival
from .survival import cox_design, kaplan_meier

__all__ = ["CalibrationResult", "calibration_at_time", "calibration_from_predictions"]


@dataclass
class CalibrationResult:
    """Grouped calibration at ``t``: ``table`` columns group, n, mean_predicted, km, km_lower, km_upper, std_err,
    optimism, km_corrected; ``predicted`` per patient (apparent model)."""
    table: pd.DataFrame
    t: float
    cuts: np.ndarray
    n_boot: int
    n_failed: int
    predicted: pd.Series = field(repr=False)


def _fit_predict(X, T, E, t, idx_fit, X_eval):
    from statsmodels.duration.hazard_regression import PHReg

    Xf = X[idx_fit]
    if (Xf.std(0) == 0).any():
        raise ValueError("constant design column in resample")
    Tf, Ef = T[idx_fit], E[idx_fit]
    if Ef.sum() < 5:
        raise ValueError("fewer than 5 events in resample")  # rms: sum(e) < 5 -> fail
    fit = PHReg(Tf, Xf, status=Ef, ties="efron").fit(method="newton", maxiter=200, tol=1e-12)
    b = np.asarray(fit.params)
    if not np.all(np.isfinite(b)):
        raise ValueError("no convergence")
    centre = float(Xf.mean(0) @ b)
    s0 = cox_baseline_survival(Tf, Ef, Xf @ b - centre, t)
    return s0 ** np.exp(X_eval @ b - centre), s0 ** np.exp(Xf @ b - centre)


def _km_at(T, E, t):
    if len(T) == 0 or E.sum() == 0 and T.max() < t:
        return np.nan, np.nan, np.nan, np.nan
    if E.sum() == 0:
        return 1.0, np.nan, np.nan, 0.0
    km = kaplan_meier(T, E)
    if t > km["time"].max():
        return np.nan, np.nan, np.nan, np.nan
    k = np.searchsorted(km["time"].to_numpy(), t, side="right") - 1
    if k < 0:
        return 1.0, 1.0, 1.0, 0.0
    r = km.iloc[k]
    return float(r["surv"]), float(r["lower"]), float(r["upper"]), float(r["std_err"])


def _group(pred, cuts):
    """Hmisc ``cut2(x, cuts)``: intervals [c_i, c_{i+1}), the last one closed."""
    g = np.searchsorted(cuts, pred, side="right") - 1
    return np.clip(g, 0, len(cuts) - 2)


def _index(pred, T, E, t, cuts):
    g = _group(pred, cuts)
    out = np.full(len(cuts) - 1, np.nan)
    for k in range(len(cuts) - 1):
        sel = g == k
        if sel.any():
            Ts = T[sel]
            out[k] = (_km_surv_at(Ts, E[sel], t) if t <= Ts.max() else np.nan) - pred[sel].mean()
    return out


class _CalStat:
    def __init__(self, X, T, E, t, cuts):
        self.X, self.T, self.E, self.t, self.cuts = X, T, E, t, cuts

    def __call__(self, idx):
        p_orig, p_boot = _fit_predict(self.X, self.T, self.E, self.t, idx, self.X)
        train = _index(p_boot, self.T[idx], self.E[idx], self.t, self.cuts)
        test = _index(p_orig, self.T, self.E, self.t, self.cuts)
        return train - test


def calibration_at_time(df: pd.DataFrame, duration_col: str, event_col: str, covariates, t: float,
                        m: int | None = None, n_groups: int | None = None, n_boot: int = 200, seed: int = 0,
                        n_jobs: int = 1, reference: dict | None = None, progress: bool = False) -> CalibrationResult:
    """Kaplan-Meier observed vs Cox-predicted survival at ``t`` by risk group, with bootstrap optimism correction
    (rms ``calibrate(cmethod="KM", u=t, m=m, B=n_boot)``).

    Parameters
    ----------
    df : DataFrame
        Complete cases of the model variables.
    covariates : list of str
    t : float
        Horizon (e.g. 24 months).
    m : int, optional
        Patients per group (rms default 150); ``n_groups`` instead fixes the number of groups.
    n_boot : int
        Bootstrap replicates (rms ``B``; its default is 40).
    seed, n_jobs : int
        Seeded per replicate; identical results for any ``n_jobs``.

    Returns
    -------
    CalibrationResult
    """
    T = as_time(df[duration_col].rename(duration_col))
    E = as_event(df[event_col].rename(event_col))
    Xdf = cox_design(df, list(covariates), reference)
    X = Xdf.to_numpy(float)
    n = len(T)
    if n_groups is None:
        n_groups = max(1, n // (m or 150))
    p_app, _ = _fit_predict(X, T, E, t, np.arange(n), X)
    cuts = np.unique(np.quantile(np.concatenate([[0.0, 1.0], p_app]), np.linspace(0, 1, n_groups + 1)))
    g = _group(p_app, cuts)
    rows = []
    for k in range(len(cuts) - 1):
        sel = g == k
        km, lo, hi, se = _km_at(T[sel], E[sel], t) if sel.any() else (np.nan,) * 4
        rows.append({"group": k + 1, "n": int(sel.sum()), "events": int(E[sel].sum()),
                     "mean_predicted": float(p_app[sel].mean()) if sel.any() else np.nan,
                     "km": km, "km_lower": lo, "km_upper": hi, "std_err": se})
    table = pd.DataFrame(rows)
    reps = seeded_bootstrap(_CalStat(X, T, E, t, cuts), n, n_boot, seed, n_jobs, progress=progress,
                            desc="calibration bootstrap")
    ok = [r for r in reps if r is not None]
    opt = np.nanmean(np.vstack(ok), axis=0) if ok else np.full(len(table), np.nan)
    table["optimism"] = opt
    table["km_corrected"] = table["km"] - table["optimism"]
    table = table[table["n"] > 0].reset_index(drop=True)
    return CalibrationResult(table=table, t=float(t), cuts=cuts, n_boot=n_boot, n_failed=n_boot - len(ok),
                             predicted=pd.Series(p_app, index=df.index, name=f"S({t:g})"))


def calibration_from_predictions(time, event, predicted_survival, t: float, n_groups: int = 4) -> pd.DataFrame:
    """Observed (Kaplan-Meier) vs predicted survival at ``t`` by groups of predicted survival, for predictions
    made elsewhere (e.g. a development-cohort model applied to the validation cohort; no optimism correction).

    Groups: quantiles of ``c(0, 1, predicted)`` as rms (``n_groups`` groups).

    Parameters
    ----------
    time, event : array-like
        Follow-up and event indicator.
    predicted_survival : array-like
        Predicted S(t) of each subject.
    t : float
        Time point (units of ``time``).
    n_groups : int
        Number of groups of predicted survival.

    Returns
    -------
    DataFrame
        group, n, events, mean_predicted, km, km_lower, km_upper, std_err.
    """
    from ._validate import as_float, same_length

    T = as_time(time)
    E = as_event(event)
    p = as_float(predicted_survival, "predicted_survival")
    same_length(time=T, event=E, predicted_survival=p)
    if ((p < 0) | (p > 1)).any():
        raise ValueError("predicted_survival must lie in [0, 1]")
    cuts = np.unique(np.quantile(np.concatenate([[0.0, 1.0], p]), np.linspace(0, 1, n_groups + 1)))
    g = _group(p, cuts)
    rows = []
    for k in range(len(cuts) - 1):
        sel = g == k
        if not sel.any():
            continue
        km, lo, hi, se = _km_at(T[sel], E[sel], t)
        rows.append({"group": k + 1, "n": int(sel.sum()), "events": int(E[sel].sum()),
                     "mean_predicted": float(p[sel].mean()), "km": km, "km_lower": lo, "km_upper": hi,
                     "std_err": se})
    return pd.DataFrame(rows)
