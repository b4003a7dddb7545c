"""Survival statistics: Kaplan-Meier median, log-rank, Cox tables (Efron ties), Harrell's C and cumulative/dynamic
time-dependent AUC with influence-function standard errors.

``km_median`` follows R ``survfit`` (log CI), ``logrank`` and ``cox_table`` use statsmodels, ``harrell_c`` and
``time_dependent_auc`` are own code as R ``concordance`` and riskRegression ``Score``; why, and how close to R, in
``book/method.md`` ("The statistics library").
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from ._validate import as_event, as_float, as_time, same_length

__all__ = ["KMMedian", "LogRankResult", "CIndexResult", "TdAUCResult", "kaplan_meier", "km_median", "logrank",
           "cox_design", "cox_fit", "cox_fit_table", "cox_table", "harrell_c", "time_dependent_auc", "td_auc_influence"]


@dataclass(frozen=True)
class KMMedian:
    """Kaplan-Meier median with R's default (log) confidence interval; NaN when not reached."""
    median: float
    lower: float
    upper: float
    level: float
    n: int
    events: int


@dataclass(frozen=True)
class LogRankResult:
    chisq: float
    p: float
    df: int


@dataclass(frozen=True)
class CIndexResult:
    """Harrell's concordance index with its standard error (as R ``concordance``)."""
    c: float
    se: float
    lower: float
    upper: float
    concordant: float
    discordant: float
    tied_risk: float
    comparable: float


@dataclass(frozen=True)
class TdAUCResult:
    """Cumulative/dynamic time-dependent AUC at ``t`` with influence-function standard error."""
    auc: float
    se: float
    lower: float
    upper: float
    t: float
    n_cases: int
    n_controls: int


def _surv_inputs(time, event):
    t = as_time(time)
    e = as_event(event)
    same_length(time=t, event=e)
    return t, e


def kaplan_meier(time, event, level: float = 0.95) -> pd.DataFrame:
    """Kaplan-Meier table at every distinct time, as R ``survfit`` (Greenwood SE, log CI).

    Parameters
    ----------
    time, event : array-like
        Follow-up and event indicator.
    level : float
        Confidence level.

    Returns
    -------
    DataFrame
        columns time, n_risk, n_event, n_censor, surv, std_err (of the cumulative hazard, as R), lower, upper.
    """
    t, e = _surv_inputs(time, event)
    ut, inv = np.unique(t, return_inverse=True)
    d = np.bincount(inv, weights=e, minlength=len(ut))
    c = np.bincount(inv, weights=1 - e, minlength=len(ut))
    tot = d + c
    n_risk = len(t) - np.concatenate([[0], np.cumsum(tot)[:-1]])
    s = np.cumprod(1 - d / n_risk)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.cumsum(np.where(d > 0, d / (n_risk * (n_risk - d)), 0.0))
        se = np.sqrt(g)
        z = sps.norm.ppf(0.5 + level / 2)
        lower = np.where(s > 0, np.exp(np.log(s) - z * se), np.nan)
        upper = np.where(s > 0, np.minimum(1.0, np.exp(np.log(s) + z * se)), np.nan)
    lower = np.where(np.isfinite(se), lower, np.nan)
    upper = np.where(np.isfinite(se), upper, np.nan)
    return pd.DataFrame({"time": ut, "n_risk": n_risk, "n_event": d.astype(int), "n_censor": c.astype(int),
                         "surv": s, "std_err": se, "lower": lower, "upper": upper})


def _findq(x, y, p, tol=np.sqrt(np.finfo(float).eps)):
    """R survival:::findq for a single probability ``p`` (x: times with 0 first, y: 1 - S with 0 first)."""
    ok = ~np.isnan(y)
    x, y = x[ok], y[ok]
    xmax = x[-1]
    if y.max() < p:
        return float("nan")
    _, first = np.unique(y, return_index=True)  # duplicated() keeps the first occurrence
    keep = np.sort(first)
    x, y = x[keep], y[keep]
    n = len(y)

    def idx(shift):
        cand = np.flatnonzero(y + shift >= p)
        if len(cand) == 0 or p < (y[0] + shift):
            return None if len(cand) == 0 else cand[0]
        return cand[0]

    i1, i2 = idx(tol), idx(-tol)
    if p == 0:
        return float(x[0])
    if abs(p - y[n - 1]) < tol and i1 is not None:
        return float((x[i1] + xmax) / 2)
    if i1 is None or i2 is None:
        return float("nan")
    return float((x[i1] + x[i2]) / 2)


def km_median(time, event, level: float = 0.95) -> KMMedian:
    """Median survival with R ``survfit``'s default (``conf.type="log"``) confidence interval.

    Parameters
    ----------
    time : array-like of float
        Follow-up times (>= 0).
    event : array-like of 0/1 or bool
        1 = event, 0 = censored.
    level : float
        Confidence level.

    Returns
    -------
    KMMedian
        ``.median``, ``.lower``, ``.upper`` (NaN where the curve or band does not reach 0.5, R's NA).
    """
    km = kaplan_meier(time, event, level)
    x = np.concatenate([[0.0], km["time"].to_numpy()])
    med = _findq(x, np.concatenate([[0.0], 1 - km["surv"].to_numpy()]), 0.5)
    # the lower band of S reaches 0.5 first: it gives the lower limit of the median (R doquant)
    lo = _findq(x, np.concatenate([[0.0], 1 - km["lower"].to_numpy()]), 0.5)
    hi = _findq(x, np.concatenate([[0.0], 1 - km["upper"].to_numpy()]), 0.5)
    return KMMedian(median=med, lower=lo, upper=hi, level=level, n=int(km["n_risk"].iloc[0]),
                    events=int(km["n_event"].sum()))


def logrank(time, event, group) -> LogRankResult:
    """Log-rank test across the levels of ``group`` (statsmodels ``survdiff``, as R ``survdiff``).

    Parameters
    ----------
    time, event : array-like
        Follow-up and event indicator.
    group : array-like
        Group of each subject (two or more levels).

    Returns
    -------
    LogRankResult
        ``.chisq``, ``.p``, ``.df`` (= number of groups - 1).
    """
    from statsmodels.duration.survfunc import survdiff

    t, e = _surv_inputs(time, event)
    g = pd.Series(np.asarray(group, dtype=object))
    same_length(time=t, group=g)
    if g.isna().any():
        raise ValueError(f"group: {int(g.isna().sum())} missing value(s)")
    levels = pd.unique(g)
    if len(levels) < 2:
        raise ValueError("group: needs at least two groups")
    codes = pd.Categorical(g, categories=sorted(levels, key=str)).codes
    chisq, p = survdiff(t, e, codes)
    return LogRankResult(chisq=float(chisq), p=float(p), df=len(levels) - 1)


# ----------------------------------------------------------------------------------------------------------- Cox
def cox_design(df: pd.DataFrame, covariates, reference: dict | None = None) -> pd.DataFrame:
    """Numeric design matrix for Cox models.

    Numeric and boolean columns pass through (booleans as 0/1); string/categorical columns become treatment dummies
    named ``var[level]`` with the first level (category order, else sorted) or ``reference[var]`` as reference.

    Parameters
    ----------
    df : DataFrame
        Data holding the covariates.
    covariates : list of str
        Columns of the design.
    reference : dict, optional
        Reference level per categorical covariate.

    Returns
    -------
    DataFrame
        One float column per numeric covariate and per non-reference level.

    Raises
    ------
    ValueError
        On a missing column, missing values (naming the rows), or a constant column.
    """
    reference = reference or {}
    out = {}
    for v in covariates:
        if v not in df.columns:
            raise ValueError(f"column {v!r} not found (columns: {list(df.columns)[:20]})")
        col = df[v]
        if col.isna().any():
            rows = list(df.index[col.isna()][:5])
            raise ValueError(f"column {v!r}: {int(col.isna().sum())} missing value(s) (rows {rows}); "
                             "drop or impute them first")
        if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
            x = col.astype(float)
            if x.nunique() < 2:
                raise ValueError(f"column {v!r} is constant")
            out[v] = x
        else:
            cats = list(col.cat.categories) if isinstance(col.dtype, pd.CategoricalDtype) else sorted(col.unique(), key=str)
            cats = [c for c in cats if (col == c).any()]
            ref = reference.get(v, cats[0])
            if ref not in cats:
                raise ValueError(f"column {v!r}: reference level {ref!r} not among {cats}")
            if len(cats) < 2:
                raise ValueError(f"column {v!r} has a single level {cats}")
            for c in cats:
                if c != ref:
                    out[f"{v}[{c}]"] = (col == c).astype(float)
    return pd.DataFrame(out, index=df.index)


def cox_fit(df: pd.DataFrame, duration_col: str, event_col: str, covariates, reference: dict | None = None):
    """Fit a Cox model with Efron ties (statsmodels ``PHReg``).

    Parameters
    ----------
    df : DataFrame
        Data with the duration, event and covariate columns.
    duration_col, event_col : str
        Follow-up and event columns.
    covariates : list of str
        Covariates (see :func:`cox_design`).
    reference : dict, optional
        Reference level per categorical covariate.

    Returns
    -------
    (fit, X) : statsmodels PHRegResults and the design matrix used.
    """
    from statsmodels.duration.hazard_regression import PHReg

    for c in (duration_col, event_col):
        if c not in df.columns:
            raise ValueError(f"column {c!r} not found")
    t = as_time(df[duration_col].rename(duration_col))
    e = as_event(df[event_col].rename(event_col))
    X = cox_design(df, list(covariates), reference)
    model = PHReg(t, X.to_numpy(), status=e, ties="efron")
    import warnings

    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        fit = model.fit(method="newton", maxiter=200, tol=1e-12)
    if not np.all(np.isfinite(fit.bse)):
        raise ValueError("Cox fit did not converge (perfect separation or a covariate without variation among events?)")
    coef, se = np.asarray(fit.params), np.asarray(fit.bse)
    bad = (np.abs(coef) * X.std().to_numpy() > 15) | (se * X.std().to_numpy() > 100)
    if bad.any():
        raise ValueError(f"Cox fit: coefficient(s) of {list(X.columns[bad])} diverge (monotone likelihood: perfect "
                         "separation of events by these covariates, as R's 'coefficient may be infinite'); "
                         "remove or merge them")
    for w in caught:  # not diverging: pass statsmodels' warnings on
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return fit, X


def cox_table(df: pd.DataFrame, duration_col: str, event_col: str, covariates, level: float = 0.95,
              reference: dict | None = None) -> pd.DataFrame:
    """Multivariable Cox proportional-hazards table with Efron ties (as R ``coxph``).

    Parameters
    ----------
    df : DataFrame
    duration_col, event_col : str
    covariates : list of str
        Numeric/boolean columns enter as is; string/categorical columns become dummies ``var[level]``.
    level : float
        Confidence level of the hazard-ratio interval (Wald).
    reference : dict, optional
        Reference level per categorical covariate.

    Returns
    -------
    DataFrame
        index = design column, columns ``coef, se, hr, hr_lower, hr_upper, z, p``.
    """
    fit, X = cox_fit(df, duration_col, event_col, covariates, reference)
    return cox_fit_table(fit, X, df[event_col], level)


def cox_fit_table(fit, X: pd.DataFrame, event, level: float = 0.95) -> pd.DataFrame:
    """The :func:`cox_table` of a fit returned by :func:`cox_fit`.

    Parameters
    ----------
    fit : statsmodels PHRegResults
    X : DataFrame
        The design matrix of the fit.
    event : array-like
        Event indicators of the fitted rows.
    level : float
        Confidence level of the Wald interval.

    Returns
    -------
    DataFrame
        As :func:`cox_table`.
    """
    z = sps.norm.ppf(0.5 + level / 2)
    coef, se = np.asarray(fit.params), np.asarray(fit.bse)
    tab = pd.DataFrame({"coef": coef, "se": se, "hr": np.exp(coef), "hr_lower": np.exp(coef - z * se),
                        "hr_upper": np.exp(coef + z * se), "z": coef / se,
                        "p": 2 * sps.norm.sf(np.abs(coef / se))}, index=pd.Index(X.columns, name="covariate"))
    tab.attrs.update(n=len(X), events=int(np.asarray(event).astype(int).sum()), loglik=float(fit.llf))
    return tab


# -------------------------------------------------------------------------------------------------- concordance
def _concordance_parts(t, e, r):
    """Per-subject counts of concordant / discordant / tied-risk comparable pairs (each pair credited to both
    members, as R's influence matrix) and the totals.  O(n^2) memory in blocks."""
    n = len(t)
    conc = np.zeros(n)
    disc = np.zeros(n)
    tied = np.zeros(n)
    ev = np.flatnonzero(e == 1)
    block = max(1, int(2e6 // n))
    for s in range(0, len(ev), block):
        i = ev[s:s + block]
        ti, ri = t[i][:, None], r[i][:, None]
        # j outlives i: T_j > T_i, or T_j == T_i and j censored
        comp = (t[None, :] > ti) | ((t[None, :] == ti) & (e[None, :] == 0))
        c = comp & (ri > r[None, :])
        d = comp & (ri < r[None, :])
        x = comp & (ri == r[None, :])
        conc[i] += c.sum(1)
        disc[i] += d.sum(1)
        tied[i] += x.sum(1)
        conc += c.sum(0)
        disc += d.sum(0)
        tied += x.sum(0)
    C, D, T = conc.sum() / 2, disc.sum() / 2, tied.sum() / 2
    return conc, disc, tied, C, D, T


def harrell_c(time, event, risk, level: float = 0.95) -> CIndexResult:
    """Harrell's C (higher ``risk`` = earlier event) with the standard error of R ``survival::concordance``.

    Parameters
    ----------
    time, event : array-like
    risk : array-like of float
        Higher values predict earlier events (e.g. a Cox linear predictor).

    Returns
    -------
    CIndexResult
        ``.c``, ``.se`` (infinitesimal jackknife, as ``sqrt(concordance(...)$var)``), ``.lower``, ``.upper`` (Wald).

    Notes
    -----
    Pairs with tied event times are not comparable; tied risks count 1/2.  R additionally merges times that differ
    by rounding error only (``aeqSurv``); exact times are used here.
    """
    t, e = _surv_inputs(time, event)
    r = as_float(risk, "risk")
    same_length(time=t, risk=r)
    conc, disc, tied, C, D, T = _concordance_parts(t, e, r)
    npair = C + D + T
    if npair == 0:
        raise ValueError("no comparable pairs")
    somer = (C - D) / npair
    dfbeta = (conc - disc) / npair - (somer / npair) * (conc + disc + tied)
    se = float(np.sqrt(np.sum(dfbeta ** 2) / 4))
    c = (somer + 1) / 2
    z = sps.norm.ppf(0.5 + level / 2)
    return CIndexResult(c=float(c), se=se, lower=float(c - z * se), upper=float(c + z * se), concordant=float(C),
                        discordant=float(D), tied_risk=float(T), comparable=float(npair))


def harrell_c_influence(time, event, risk) -> tuple[float, np.ndarray]:
    """C-index and its per-subject influence values (``sum(infl**2)`` = variance, as R ``concordance``).

    Parameters
    ----------
    time, event : array-like
        Follow-up and event indicator.
    risk : array-like
        Risk score (higher = earlier event).

    Returns
    -------
    c : float
        Harrell's C.
    infl : ndarray
        Influence value per subject.
    """
    t, e = _surv_inputs(time, event)
    r = as_float(risk, "risk")
    same_length(time=t, risk=r)
    conc, disc, tied, C, D, T = _concordance_parts(t, e, r)
    npair = C + D + T
    somer = (C - D) / npair
    dfbeta = (conc - disc) / npair - (somer / npair) * (conc + disc + tied)
    return float((somer + 1) / 2), dfbeta / 2


# ------------------------------------------------------------------------------------------ time-dependent AUC
def _censoring_km(t, e):
    """Reverse Kaplan-Meier (censoring distribution), events leaving the risk set before censorings at tied times
    (as prodlim ``reverse=TRUE``): distinct times, G(u) just after u, dLambda_C(u), and the censoring risk set
    Y_C(u) = #{T > u} + #{censored at u}."""
    ut, inv = np.unique(t, return_inverse=True)
    c = np.bincount(inv, weights=1 - e, minlength=len(ut))
    d = np.bincount(inv, weights=e, minlength=len(ut))
    tot = np.bincount(inv, minlength=len(ut))
    y = len(t) - np.concatenate([[0], np.cumsum(tot)[:-1]]) - d
    with np.errstate(divide="ignore", invalid="ignore"):
        dl = np.where(c > 0, c / np.maximum(y, 1), 0.0)
    G = np.cumprod(1 - dl)
    return ut, G, dl, np.maximum(y, 1)


def td_auc_influence(time, event, marker, t: float):
    """Cumulative/dynamic AUC(t) and its influence function (one value per subject).

    Parameters
    ----------
    time, event : array-like
        Follow-up and event indicator.
    marker : array-like
        Marker (higher = earlier event).
    t : float
        Time point.

    Returns
    -------
    auc : float
    infl : ndarray
        Influence values; ``se = std(infl, ddof=1) / sqrt(n)`` (as riskRegression: ``sd(IF)/sqrt(n)``).
    n_cases, n_controls : int
    """
    T, E = _surv_inputs(time, event)
    M = as_float(marker, "marker")
    same_length(time=T, marker=M)
    n = len(T)
    ut, G, dl, Y = _censoring_km(T, E)

    def G_at(s, left):  # G(s-) if left else G(s)
        k = np.searchsorted(ut, s, side="left" if left else "right")
        return np.where(k == 0, 1.0, G[np.maximum(k - 1, 0)])

    case = (T <= t) & (E == 1)
    ctrl = T > t
    if case.sum() == 0:
        raise ValueError(f"no cases (events at or before t={t})")
    if ctrl.sum() == 0:
        raise ValueError(f"no controls (nobody followed beyond t={t})")
    wi = np.where(case, 1.0 / G_at(T, left=True), 0.0)
    Gt = float(G_at(np.array([t]), left=False)[0])
    wj = np.where(ctrl, 1.0 / Gt, 0.0)
    ci, cj = np.flatnonzero(case), np.flatnonzero(ctrl)
    cmp = (M[ci][:, None] > M[cj][None, :]) + 0.5 * (M[ci][:, None] == M[cj][None, :])
    K = wi[ci][:, None] * wj[cj][None, :] * cmp
    num = K.sum() / n ** 2
    a = wi.sum() / n
    b = wj.sum() / n
    auc = num / (a * b)
    # direct (G known) terms
    row = np.zeros(n)
    row[ci] += K.sum(1) / n
    row[cj] += K.sum(0) / n
    if_num = row - 2 * num  # U-statistic of order 2 (symmetrised kernel)
    if_a = wi - a
    if_b = wj - b
    # censoring-estimation terms: d(1/G(s))/G-perturbation = (1/G(s)) * f_k(s),
    # f_k(s) = 1{T_k <= s, censored}/ybar(T_k) - sum_{u <= min(T_k, s)} dLambda_C(u)/ybar(u), ybar = Y/n
    ybar = Y / n
    cum = np.cumsum(dl / ybar)  # at distinct times

    def f_matrix(s_vals, left):
        """f_k(s) for every subject k (rows) and each s in s_vals (cols); s- when left."""
        # index of last distinct time <= s (or < s when left)
        ks = np.searchsorted(ut, s_vals, side="left" if left else "right") - 1
        kk = np.searchsorted(ut, T, side="left")  # position of T_k
        lim = np.minimum(kk[:, None], ks[None, :])
        comp = np.where(lim >= 0, cum[np.maximum(lim, 0)], 0.0)
        jump = ((E == 0)[:, None] & (kk[:, None] <= ks[None, :])) / ybar[kk][:, None]
        return jump - comp

    Fi = f_matrix(T[ci], left=True)  # n x ncases, f_k(T_i-)
    Ft = f_matrix(np.array([t]), left=False)[:, 0]  # f_k(t)
    ki = K.sum(1)  # per case
    g_num = (Fi @ ki) / n ** 2 + Ft * num
    g_a = (Fi @ wi[ci]) / n
    g_b = Ft * b
    infl = (if_num + g_num) / (a * b) - auc * ((if_a + g_a) / a + (if_b + g_b) / b)
    return float(auc), infl, int(case.sum()), int(ctrl.sum())


def time_dependent_auc(time, event, marker, t: float, level: float = 0.95) -> TdAUCResult:
    """Cumulative/dynamic time-dependent AUC at time ``t`` with IPCW Kaplan-Meier censoring weights.

    Cases: ``T <= t`` with an event (weight 1/G(T-)); controls: ``T > t`` (weight 1/G(t)); tied markers count 1/2.
    This is riskRegression ``Score(..., metrics="auc", cens.model="km")`` and scikit-survival's
    ``cumulative_dynamic_auc``; timeROC counts cases as ``T < t`` (differs only when an event falls exactly on t).

    Parameters
    ----------
    time, event : array-like
    marker : array-like of float
        Higher values predict earlier events.
    t : float
        Horizon.
    level : float

    Returns
    -------
    TdAUCResult
        ``.auc``, ``.se`` (influence function with the censoring term, as riskRegression's iid decomposition),
        ``.lower``, ``.upper`` (Wald).
    """
    if not np.isfinite(t) or t <= 0:
        raise ValueError(f"t must be a positive finite time, got {t}")
    auc, infl, nca, nco = td_auc_influence(time, event, marker, t)
    n = len(infl)
    se = float(np.std(infl, ddof=1) / np.sqrt(n))
    z = sps.norm.ppf(0.5 + level / 2)
    return TdAUCResult(auc=auc, se=se, lower=float(auc - z * se), upper=float(auc + z * se), t=float(t), n_cases=nca,
                       n_controls=nco)
