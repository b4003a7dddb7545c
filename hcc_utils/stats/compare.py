"""Paired comparisons of discrimination and bootstrap CIs for the C-index.

* :func:`compare_c_index`: two risk scores on the same patients.  Default ``method="ij"`` is R
  ``survival::concordance(fit1, fit2)``: the covariance of the two C-indices from their infinitesimal-jackknife
  influence values (verified against R); ``method="bootstrap"`` is a seeded paired bootstrap.  (compareC's
  U-statistic variance is not implemented.)
* :func:`compare_td_auc`: difference of two time-dependent AUCs from their influence functions, as the contrasts of
  riskRegression ``Score`` (verified against R).
* :func:`bootstrap_c_index_ci`: percentile CI, seeded and parallel.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from ._validate import as_event, as_float, as_time, same_length
from .bootstrap import seeded_bootstrap
from .survival import CIndexResult, _concordance_parts, harrell_c, harrell_c_influence, td_auc_influence

__all__ = ["PairedComparison", "compare_c_index", "compare_td_auc", "bootstrap_c_index_ci"]


@dataclass(frozen=True)
class PairedComparison:
    """Paired comparison; ``diff = a - b`` and ``z > 0`` when a is better."""
    a: float
    b: float
    diff: float
    se_diff: float
    z: float
    p: float
    lower: float
    upper: float
    method: str


def _pc(a, b, se, level, method, lo=None, hi=None):
    diff = a - b
    z = diff / se if se > 0 else (0.0 if diff == 0 else np.sign(diff) * np.inf)
    p = float(2 * sps.norm.sf(abs(z))) if np.isfinite(z) else 0.0
    q = sps.norm.ppf(0.5 + level / 2)
    return PairedComparison(a=float(a), b=float(b), diff=float(diff), se_diff=float(se), z=float(z), p=p,
                            lower=float(diff - q * se if lo is None else lo),
                            upper=float(diff + q * se if hi is None else hi), method=method)


def _surv(time, event, *markers):
    t = as_time(time)
    e = as_event(event)
    ms = [as_float(m, f"risk_{i}") for i, m in enumerate(markers)]
    same_length(time=t, event=e, **{f"risk_{i}": m for i, m in enumerate(ms)})
    return t, e, ms


def _c_only(t, e, r):
    _, _, _, C, D, T = _concordance_parts(t, e, r)
    n = C + D + T
    if n == 0:
        raise ValueError("no comparable pairs")
    return (C + T / 2) / n


class _CStat:
    def __init__(self, t, e, *rs):
        self.t, self.e, self.rs = t, e, rs

    def __call__(self, idx):
        t, e = self.t[idx], self.e[idx]
        if e.sum() == 0:
            raise ValueError("no events")
        return tuple(_c_only(t, e, r[idx]) for r in self.rs)


def compare_c_index(time, event, risk_a, risk_b, method: str = "ij", level: float = 0.95, n_boot: int = 1000,
                    seed: int = 0, n_jobs: int = 1, progress: bool = False) -> PairedComparison:
    """Compare Harrell's C of two risk scores on the same patients (higher risk = earlier event).

    Parameters
    ----------
    method : {"ij", "bootstrap"}
        "ij": z-test with the infinitesimal-jackknife covariance, as R ``concordance(fit1, fit2)``;
        "bootstrap": seeded paired bootstrap (SE of the differences; percentile interval).

    Returns
    -------
    PairedComparison
    """
    t, e, (ra, rb) = _surv(time, event, risk_a, risk_b)
    ca, ia = harrell_c_influence(t, e, ra)
    cb, ib = harrell_c_influence(t, e, rb)
    if method == "ij":
        se = float(np.sqrt(np.sum((ia - ib) ** 2)))
        return _pc(ca, cb, se, level, "infinitesimal jackknife (R concordance)")
    if method == "bootstrap":
        reps = seeded_bootstrap(_CStat(t, e, ra, rb), len(t), n_boot, seed, n_jobs, progress=progress,
                                desc="C-index bootstrap")
        d = np.array([r[0] - r[1] for r in reps if r is not None])
        lo, hi = np.quantile(d, [(1 - level) / 2, (1 + level) / 2])
        return _pc(ca, cb, float(np.std(d, ddof=1)), level, f"paired bootstrap (n_boot={n_boot}, seed={seed})",
                   lo, hi)
    raise ValueError(f"method must be 'ij' or 'bootstrap', got {method!r}")


def bootstrap_c_index_ci(time, event, risk, n_boot: int = 1000, level: float = 0.95, seed: int = 0,
                         n_jobs: int = 1, progress: bool = False) -> CIndexResult:
    """Harrell's C with a percentile bootstrap interval (seeded; identical for any ``n_jobs``).

    Parameters
    ----------
    time, event : array-like
        Follow-up and event indicator.
    risk : array-like
        Risk score (higher = earlier event).
    n_boot : int
        Bootstrap replicates.
    level : float
        Confidence level.
    seed : int
        Seed of the replicates.
    n_jobs : int
        Worker processes (results do not depend on it).
    progress : bool
        Show a progress bar.

    Returns
    -------
    CIndexResult
        ``se`` is the bootstrap SD; ``lower``/``upper`` the percentile limits.
    """
    t, e, (r,) = _surv(time, event, risk)
    base = harrell_c(t, e, r, level)
    reps = seeded_bootstrap(_CStat(t, e, r), len(t), n_boot, seed, n_jobs, progress=progress,
                            desc="C-index bootstrap")
    c = np.array([v[0] for v in reps if v is not None])
    lo, hi = np.quantile(c, [(1 - level) / 2, (1 + level) / 2])
    return CIndexResult(c=base.c, se=float(np.std(c, ddof=1)), lower=float(lo), upper=float(hi),
                        concordant=base.concordant, discordant=base.discordant, tied_risk=base.tied_risk,
                        comparable=base.comparable)


def compare_td_auc(time, event, marker_a, marker_b, t: float, level: float = 0.95) -> PairedComparison:
    """Paired comparison of two cumulative/dynamic AUC(t) via their influence functions (riskRegression ``Score``
    contrasts; ``diff = AUC_a - AUC_b``, se = sd(IF_a - IF_b)/sqrt(n)).

    Parameters
    ----------
    time, event : array-like
        Follow-up and event indicator.
    marker_a, marker_b : array-like
        The two markers (higher = earlier event), on the same subjects.
    t : float
        Time point of the AUC.
    level : float
        Confidence level.

    Returns
    -------
    PairedComparison
    """
    T, E, (ma, mb) = _surv(time, event, marker_a, marker_b)
    a, ia, _, _ = td_auc_influence(T, E, ma, t)
    b, ib, _, _ = td_auc_influence(T, E, mb, t)
    se = float(np.std(ia - ib, ddof=1) / np.sqrt(len(T)))
    return _pc(a, b, se, level, "influence function (riskRegression Score)")
