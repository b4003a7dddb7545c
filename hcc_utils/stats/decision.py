"""Decision-curve analysis (net benefit) for binary outcomes and for survival at a time point.

Own code from the definitions (Vickers & Elkin 2006; Vickers et al. 2008 for survival):
NB(pt) = TP/n - FP/n * pt / (1 - pt), a subject treated when ``prob >= pt`` (as dcurves).  Survival: the event
probability among the treated is 1 - S_KM(t) in the treated group (dcurves ``dca(Surv(...) ~ ...)`` / ``stdca``).
Outcomes are cast to 0/1 ints first (dcurves with a True/False column models P(False)).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ._validate import as_binary, as_event, as_float, as_time, same_length

__all__ = ["net_benefit", "survival_net_benefit"]


def _thresholds(thresholds):
    th = np.atleast_1d(np.asarray(thresholds, dtype=float))
    if not np.isfinite(th).all() or (th < 0).any() or (th >= 1).any():
        raise ValueError("thresholds must lie in [0, 1)")
    return th


def net_benefit(y, prob, thresholds=np.arange(0.01, 1.0, 0.01), positive=None) -> pd.DataFrame:
    """Net benefit of a model, treat-all and treat-none at each threshold probability.

    Parameters
    ----------
    y : array-like
        Binary outcome (0/1, booleans, or two levels with ``positive``).
    prob : array-like
        Predicted probabilities.
    thresholds : array-like
        Threshold probabilities in [0, 1).

    Returns
    -------
    DataFrame
        columns ``threshold, model, treat_all, treat_none, tp_rate, fp_rate``.
    """
    yy = as_binary(y, "y", positive=positive, require_both=False)
    p = as_float(prob, "prob")
    same_length(y=yy, prob=p)
    th = _thresholds(thresholds)
    n = len(yy)
    treat = p[None, :] >= th[:, None]
    tp = (treat & (yy[None, :] == 1)).sum(1) / n
    fp = (treat & (yy[None, :] == 0)).sum(1) / n
    odds = th / (1 - th)
    prev = yy.mean()
    return pd.DataFrame({"threshold": th, "model": tp - fp * odds, "treat_all": prev - (1 - prev) * odds,
                         "treat_none": np.zeros_like(th), "tp_rate": tp, "fp_rate": fp})


def _km_surv_at(t, e, horizon):
    if len(t) == 0:
        return float("nan")
    ut, inv = np.unique(t, return_inverse=True)
    d = np.bincount(inv, weights=e, minlength=len(ut))
    tot = np.bincount(inv, minlength=len(ut))
    nr = len(t) - np.concatenate([[0], np.cumsum(tot)[:-1]])
    s = np.cumprod(1 - d / nr)
    k = np.searchsorted(ut, horizon, side="right") - 1
    return 1.0 if k < 0 else float(s[k])


def survival_net_benefit(time, event, risk, t: float, thresholds=np.arange(0.01, 1.0, 0.01)) -> pd.DataFrame:
    """Net benefit at time ``t`` for a predicted risk of an event by ``t`` (dcurves/stdca definition).

    NB(pt) = (1 - S_treated(t)) * P(treated) - S_treated(t) * P(treated) * pt / (1 - pt), with S_treated the
    Kaplan-Meier survival at ``t`` among subjects with ``risk >= pt``; treat-all uses the whole-sample KM.

    Parameters
    ----------
    time, event : array-like
        Follow-up and event indicator.
    risk : array-like
        Predicted probability of an event by ``t``.
    t : float
        Time point.
    thresholds : array-like
        Threshold probabilities ``pt``.

    Returns
    -------
    DataFrame
        columns ``threshold, model, treat_all, treat_none``; ``model`` is NaN where the treated group's follow-up
        ends before ``t`` (as dcurves), 0 where nobody is treated.
    """
    T = as_time(time)
    E = as_event(event)
    r = as_float(risk, "risk")
    same_length(time=T, event=E, risk=r)
    th = _thresholds(thresholds)
    if T.max() < t:
        raise ValueError(f"t={t} is beyond the last follow-up time {T.max()}")
    s_all = _km_surv_at(T, E, t)
    model = []
    for pt in th:
        tr = r >= pt
        frac = tr.mean()
        if frac == 0:
            model.append(0.0)
            continue
        if T[tr].max() < t:  # KM undefined beyond the treated group's follow-up (NaN, as dcurves)
            model.append(float("nan"))
            continue
        s = _km_surv_at(T[tr], E[tr], t)
        model.append((1 - s) * frac - s * frac * pt / (1 - pt))
    odds = th / (1 - th)
    return pd.DataFrame({"threshold": th, "model": model, "treat_all": (1 - s_all) - s_all * odds,
                         "treat_none": np.zeros_like(th)})
