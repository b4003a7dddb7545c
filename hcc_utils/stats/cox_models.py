"""Cox model building for the survival notebook: univariable screen, multivariable model on the screened
variables, and stepwise AIC selection in both directions as R's ``step``.

All fits: statsmodels ``PHReg(ties="efron")`` through :func:`hcc_utils.stats.survival.cox_fit` (matches R
``coxph``).  A *variable* may span several design columns (a categorical covariate with k levels gives k-1 dummies
``var[level]``); screening p values for such variables come from the likelihood-ratio test.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats as sps

from ._validate import as_event, as_time
from .survival import cox_fit, cox_fit_table, cox_table

__all__ = ["cox_null_loglik", "cox_univariable_screen", "cox_multivariable", "stepwise_aic", "StepwiseResult",
           "term_columns", "term_frame", "CoxModel", "cox_model"]


# ------------------------------------------------------------------------------------------- models of term specs
def term_columns(term: dict) -> list[str]:
    """Design columns of one term spec: ``name``, or ``name[level]`` per non-reference level of a categorical term.

    Parameters
    ----------
    term : dict
        ``name``, ``type`` (continuous, binary or categorical) and, when categorical, ``levels`` (reference first).

    Returns
    -------
    list of str
    """
    if term["type"] == "categorical":
        return [f"{term['name']}[{lv}]" for lv in term["levels"][1:]]
    return [term["name"]]


def term_frame(data: pd.DataFrame, terms, duration_col: str = "time", event_col: str = "event"
               ) -> tuple[pd.DataFrame, dict]:
    """The complete cases of ``terms`` as a model frame for :func:`cox_fit` / :func:`stepwise_aic`.

    Parameters
    ----------
    data : DataFrame
        One column per term ``name`` plus the duration and event columns.
    terms : list of dict
        Term specs: ``name``, ``type``; ``per`` (continuous: the model uses ``value / per``); ``levels`` and
        ``reference`` (categorical; binary terms are coded 0/1 already).
    duration_col, event_col : str

    Returns
    -------
    frame : DataFrame
        Duration, event and one column per term (continuous scaled, binary float, categorical ``Categorical``).
    reference : dict
        Reference level per categorical term.
    """
    names = [t["name"] for t in terms]
    sub = data[[duration_col, event_col] + names].dropna()
    frame = sub[[duration_col, event_col]].copy()
    reference = {}
    for t in terms:
        x = sub[t["name"]]
        if t["type"] == "continuous":
            frame[t["name"]] = x.astype(float) / t["per"]
        elif t["type"] == "binary":
            frame[t["name"]] = x.astype(float)
        else:
            frame[t["name"]] = pd.Categorical(x, categories=t["levels"])
            reference[t["name"]] = t["reference"]
    return frame, reference


@dataclass
class CoxModel:
    """A Cox model of term specs (Efron ties, as R ``coxph``) on the complete cases of its terms.

    Attributes
    ----------
    terms : list of dict
        The term specs.
    table : DataFrame
        :func:`cox_table` of the fit (index = design column).
    X : DataFrame
        Design matrix of the complete cases (index = patient id).
    time, event : ndarray
    loglik : float
        Log partial likelihood.
    """

    terms: list
    table: pd.DataFrame
    X: pd.DataFrame
    time: np.ndarray
    event: np.ndarray
    loglik: float

    @property
    def params(self) -> pd.Series:
        """Coefficients by design column."""
        return self.table["coef"]

    @property
    def n(self) -> int:
        """Patients in the fit."""
        return len(self.X)

    @property
    def events(self) -> int:
        """Events in the fit."""
        return int(self.event.sum())

    @property
    def centre(self) -> float:
        """sum(mean(design) * beta): the linear predictor is centred at the covariate means (R ``coxph``/rms)."""
        return float(self.X.mean().to_numpy() @ self.params.to_numpy())

    def lp(self, X: pd.DataFrame | None = None) -> np.ndarray:
        """Centred linear predictor.

        Parameters
        ----------
        X : DataFrame, optional
            A design matrix with the model's columns (default: the fitted patients).

        Returns
        -------
        ndarray
        """
        X = self.X if X is None else X[self.X.columns]
        return X.to_numpy(float) @ self.params.to_numpy() - self.centre

    def baseline_survival(self, t: float) -> float:
        """S0(t) at the covariate means (:func:`cox_baseline_survival`, as R ``survfit.coxph``).

        Parameters
        ----------
        t : float

        Returns
        -------
        float
        """
        from .nomogram import cox_baseline_survival

        return float(cox_baseline_survival(self.time, self.event, self.lp(), float(t)))


def cox_model(data: pd.DataFrame, terms, duration_col: str = "time", event_col: str = "event",
              level: float = 0.95) -> CoxModel:
    """Fit a Cox model of term specs on their complete cases (:func:`term_frame`, :func:`cox_fit`).

    Hazard ratios are per ``per`` units of a continuous term and per level against the reference.

    Parameters
    ----------
    data : DataFrame
    terms : list of dict
        Term specs (:func:`term_frame`).
    duration_col, event_col : str
    level : float
        Confidence level of the hazard-ratio intervals.

    Returns
    -------
    CoxModel

    Raises
    ------
    ValueError
        When a design column is constant among the complete cases or the fit does not converge.
    """
    frame, reference = term_frame(data, terms, duration_col, event_col)
    const = []
    for t in terms:
        x = frame[t["name"]]
        if t["type"] == "categorical":
            const += [c for c, lv in zip(term_columns(t), t["levels"][1:]) if (x == lv).nunique() < 2]
        elif x.nunique() < 2:
            const.append(t["name"])
    if const:
        raise ValueError(f"Cox model: column(s) {const} are constant in the {len(frame)} complete cases")
    fit, X = cox_fit(frame, duration_col, event_col, [t["name"] for t in terms], reference)
    tab = cox_fit_table(fit, X, frame[event_col], level)
    return CoxModel(terms=list(terms), table=tab, X=X, time=frame[duration_col].to_numpy(float),
                    event=frame[event_col].to_numpy(int), loglik=float(tab.attrs["loglik"]))


def cox_null_loglik(time, event) -> float:
    """Efron partial log-likelihood at beta = 0 (R ``coxph(...)$loglik[1]``).

    Parameters
    ----------
    time, event : array-like
        Follow-up and event indicator.

    Returns
    -------
    float
        The log partial likelihood of the null model.
    """
    from statsmodels.duration.hazard_regression import PHReg

    t = as_time(time)
    e = as_event(event)
    return float(PHReg(t, np.zeros((len(t), 1)), status=e, ties="efron").loglike(np.zeros(1)))


def _complete(df, cols):
    miss = df[cols].isna().any(axis=1)
    if miss.any():
        raise ValueError(f"{int(miss.sum())} row(s) with missing values in {cols} (rows {list(df.index[miss][:5])}); "
                         "select complete cases first so that all models use the same patients")
    return df


def cox_univariable_screen(df: pd.DataFrame, duration_col: str, event_col: str, candidates, level: float = 0.95,
                           reference: dict | None = None) -> pd.DataFrame:
    """One Cox model per candidate variable.

    Parameters
    ----------
    df : DataFrame
        Data with the duration, event and candidate columns.
    duration_col, event_col : str
        Follow-up and event columns.
    candidates : list of str or term specs
        Variables screened one at a time (see :func:`term_columns`).
    level : float
        Confidence level of the hazard-ratio intervals.
    reference : dict, optional
        Reference level per categorical variable.

    Returns
    -------
    DataFrame
        One row per design column: ``variable, term, coef, se, hr, hr_lower, hr_upper, p`` (Wald) and ``p_variable``
        (Wald for one column, likelihood-ratio for a multi-level categorical variable), ``n``, ``events``.
    """
    candidates = list(candidates)
    _complete(df, [duration_col, event_col, *candidates])
    ll0 = cox_null_loglik(df[duration_col], df[event_col])
    rows = []
    for v in candidates:
        tab = cox_table(df, duration_col, event_col, [v], level=level, reference=reference)
        if len(tab) == 1:
            pv = float(tab["p"].iloc[0])
        else:
            lr = 2 * (tab.attrs["loglik"] - ll0)
            pv = float(sps.chi2.sf(lr, len(tab)))
        t = tab.reset_index().rename(columns={"covariate": "term"})
        t.insert(0, "variable", v)
        t["p_variable"] = pv
        t["n"] = tab.attrs["n"]
        t["events"] = tab.attrs["events"]
        rows.append(t)
    return pd.concat(rows, ignore_index=True)


def cox_multivariable(df: pd.DataFrame, duration_col: str, event_col: str, candidates, p_threshold: float = 0.05,
                      level: float = 0.95, reference: dict | None = None):
    """Multivariable Cox model on the candidates with univariable ``p_variable < p_threshold``.

    Parameters
    ----------
    df : DataFrame
        Data with the duration, event and candidate columns.
    duration_col, event_col : str
        Follow-up and event columns.
    candidates : list of str or term specs
        Variables screened univariably.
    p_threshold : float
        Variables with ``p_variable`` below it enter the multivariable model.
    level : float
        Confidence level.
    reference : dict, optional
        Reference level per categorical variable.

    Returns
    -------
    (table, screen, selected) : the multivariable :func:`cox_table` (None when nothing passes), the univariable
    screen, and the list of selected variables.
    """
    screen = cox_univariable_screen(df, duration_col, event_col, candidates, level=level, reference=reference)
    pv = screen.drop_duplicates("variable").set_index("variable")["p_variable"]
    selected = [v for v in candidates if pv[v] < p_threshold]
    table = cox_table(df, duration_col, event_col, selected, level=level, reference=reference) if selected else None
    return table, screen, selected


@dataclass
class StepwiseResult:
    """Outcome of :func:`stepwise_aic`: selected variables, final AIC, the path of moves, and the final table."""
    selected: list
    aic: float
    path: pd.DataFrame
    table: pd.DataFrame | None = field(repr=False, default=None)


def _aic(df, duration_col, event_col, terms, reference, ll0, k):
    if not terms:
        return -2 * ll0
    fit, X = cox_fit(df, duration_col, event_col, terms, reference)
    return -2 * float(fit.llf) + k * X.shape[1]


def stepwise_aic(df: pd.DataFrame, duration_col: str, event_col: str, candidates, start=None,
                 direction: str = "both", k: float = 2.0, reference: dict | None = None,
                 max_steps: int = 100, keep=()) -> StepwiseResult:
    """Stepwise Cox model selection by AIC, as R ``step(coxph(...), direction=...)``.

    Parameters
    ----------
    candidates : list of str
        The scope (upper model); the lower model is empty.
    start : list of str, optional
        Starting variables; default all candidates for "both"/"backward" (R ``step(full_fit)``), none for
        "forward".
    direction : {"both", "backward", "forward"}
    k : float
        Penalty per parameter (2 = AIC; log(events) gives a BIC-like criterion).
    keep : list of str
        Lower scope: variables always in the model (R ``step(scope=list(lower=~...))``); they are added to the start.

    Returns
    -------
    StepwiseResult
        ``AIC = -2 loglik + k * (number of coefficients)`` (R ``extractAIC``); ``path`` lists each accepted move.
    """
    if direction not in ("both", "backward", "forward"):
        raise ValueError(f"direction must be 'both', 'backward' or 'forward', got {direction!r}")
    candidates = list(candidates)
    keep = list(keep)
    extra = [v for v in keep if v not in candidates]
    if extra:
        raise ValueError(f"keep: {extra} not among the candidates")
    _complete(df, [duration_col, event_col, *candidates])
    cur = list(candidates if start is None and direction != "forward" else (start or []))
    cur += [v for v in keep if v not in cur]
    ll0 = cox_null_loglik(df[duration_col], df[event_col])
    cur_aic = _aic(df, duration_col, event_col, cur, reference, ll0, k)
    path = [{"step": 0, "move": "start", "variable": "", "aic": cur_aic, "model": " + ".join(cur)}]
    for step in range(1, max_steps + 1):
        moves = []
        if direction in ("both", "backward"):
            for v in cur:
                if v in keep:
                    continue
                terms = [u for u in cur if u != v]
                moves.append(("-", v, terms, _aic(df, duration_col, event_col, terms, reference, ll0, k)))
        if direction in ("both", "forward"):
            for v in candidates:
                if v not in cur:
                    terms = cur + [v]
                    moves.append(("+", v, terms, _aic(df, duration_col, event_col, terms, reference, ll0, k)))
        if not moves:
            break
        best = min(moves, key=lambda m: m[3])
        if best[3] >= cur_aic - 1e-10:
            break
        cur, cur_aic = best[2], best[3]
        path.append({"step": step, "move": best[0], "variable": best[1], "aic": cur_aic, "model": " + ".join(cur)})
    table = cox_table(df, duration_col, event_col, cur, reference=reference) if cur else None
    return StepwiseResult(selected=cur, aic=float(cur_aic), path=pd.DataFrame(path), table=table)
