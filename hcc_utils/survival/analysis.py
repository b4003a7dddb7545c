"""Survival stage, the analysis: risk groups, Kaplan-Meier, univariable / multivariable / stepwise Cox models, the
nomogram and its evaluation, run in the order of the paper by :func:`run_survival`. Models are
:func:`hcc_utils.stats.cox_model` fits of the mapping's term specs; the steps are described in ``book/method.md``.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import chi2

from hcc_utils import stats
from hcc_utils.manifest import report_cohorts

from .evaluation import calibration, decision_curve, discrimination_table, tdauc_over_time
from .table import Prepared, _safe_name


# ----------------------------------------------------------------------------------------------------------------
# Cox models
# ----------------------------------------------------------------------------------------------------------------
def _cox_rows(fit: stats.CoxModel, variables: list[dict], prefix: str = "") -> list[dict]:
    s = fit.table
    rows = []
    for v in variables:
        for c in stats.term_columns(v):
            lv = c[len(v["name"]) + 1:-1] if v["type"] == "categorical" else (
                v["levels"][1] if v["type"] == "binary" and v.get("levels") else "")
            rows.append({"variable": v["name"], "label": v["label"], "level": lv, "column": c,
                         f"{prefix}coef": s.loc[c, "coef"], f"{prefix}hr": s.loc[c, "hr"],
                         f"{prefix}hr_lower": s.loc[c, "hr_lower"], f"{prefix}hr_upper": s.loc[c, "hr_upper"],
                         f"{prefix}p": s.loc[c, "p"]})
    return rows


def _lr_p(data: pd.DataFrame, var: dict, others: list[dict]) -> float:
    """Likelihood-ratio p of one term given ``others`` (same complete cases)."""
    cols = ["time", "event"] + [v["name"] for v in others + [var]]
    sub = data[cols].dropna()
    full = stats.cox_model(sub, others + [var])
    ll0 = (stats.cox_model(sub, others).loglik if others
           else float(stats.cox_null_loglik(sub["time"].to_numpy(float), sub["event"].to_numpy(int))))
    return float(chi2.sf(2 * (full.loglik - ll0), len(stats.term_columns(var))))


def univariable_cox(dev: pd.DataFrame, variables: list[dict]) -> pd.DataFrame:
    """Univariable Cox model of each variable on the development cohort (Table S1).

    Each variable uses its own complete cases.

    Parameters
    ----------
    dev : DataFrame
        Development patients of the analysis table.
    variables : list of dict
        Term specs.

    Returns
    -------
    DataFrame
        One row per design column: ``variable, label, level, column, coef, hr, hr_lower, hr_upper, p, n, events``
        and ``p_term``, the likelihood-ratio p of the whole term (the screening p of a categorical variable).
    """
    rows = []
    for v in variables:
        fit = stats.cox_model(dev, [v])
        r = _cox_rows(fit, [v])
        p_term = _lr_p(dev, v, []) if v["type"] == "categorical" else r[0]["p"]
        for x in r:
            x["n"] = fit.n
            x["events"] = fit.events
            x["p_term"] = p_term
        rows += r
    return pd.DataFrame(rows)


def multivariable_cox(dev: pd.DataFrame, variables: list[dict]) -> tuple[stats.CoxModel, pd.DataFrame]:
    """Multivariable Cox model of ``variables`` on their complete cases.

    Parameters
    ----------
    dev : DataFrame
    variables : list of dict
        Term specs.

    Returns
    -------
    (CoxModel, DataFrame)
        The fit and its rows as in :func:`univariable_cox` (with ``n``).
    """
    fit = stats.cox_model(dev, variables)
    tab = pd.DataFrame(_cox_rows(fit, variables))
    tab["n"] = fit.n
    return fit, tab


def select_terms(dev: pd.DataFrame, variables: list[dict], keep: tuple[str, ...] = ("signature",)
                 ) -> tuple[list[dict], pd.DataFrame]:
    """Stepwise AIC selection of term specs (:func:`hcc_utils.stats.stepwise_aic`, both directions from the full
    model, as R ``step(fit, scope=list(lower=~keep, upper=~all))``) on the complete cases of all ``variables``.

    Parameters
    ----------
    dev : DataFrame
    variables : list of dict
        Term specs; a categorical variable is one term.
    keep : tuple of str
        Terms always in the model.

    Returns
    -------
    selected : list of dict
        Terms of the final model in mapping order.
    trace : DataFrame
        step, action (start/add/drop), term, aic, model, n.
    """
    names = [v["name"] for v in variables]
    frame, reference = stats.term_frame(dev, variables)
    res = stats.stepwise_aic(frame, "time", "event", names, direction="both", reference=reference,
                             keep=[k for k in keep if k in names])
    trace = res.path.rename(columns={"move": "action", "variable": "term"})
    trace["action"] = trace["action"].map({"start": "start", "+": "add", "-": "drop"}).fillna(trace["action"])
    trace["n"] = len(frame)
    by = {v["name"]: v for v in variables}
    return [by[n] for n in names if n in res.selected], trace


# ----------------------------------------------------------------------------------------------------------------
# risk groups
# ----------------------------------------------------------------------------------------------------------------
def _youden(y, score) -> float:
    """Youden threshold as pROC ``coords(x="best")`` (high score = positive)."""
    return float(stats.youden_threshold(np.asarray(y, int), np.asarray(score, float)))


def risk_groups(prep: Prepared, landmark: float, method: str = "youden") -> dict:
    """High/low risk groups of the signature; the cutoff is chosen on the development cohort only.

    Continuous signature: ``youden`` = Youden threshold for early recurrence (event before ``landmark``) among
    development patients whose status at the landmark is known (patients censored before it are left out of the
    choice), or ``median`` = development median. Binary signature: its two levels. Adds ``risk_group`` (high/low).
    """
    d = prep.data
    sig = prep.mapping["signature"]
    x = d[sig["name"]]
    if sig["type"] == "binary":
        d["risk_group"] = np.where(x == 1, "high", "low")
        return {"method": f"signature levels ({sig['levels'][1]!r} = high)", "cutoff": None}
    if sig["type"] == "categorical":
        raise ValueError("a categorical signature needs a binary recode (two levels) to form risk groups")
    dev = d[d["cohort"] == "development"]
    if method == "median":
        cut = float(np.median(dev[sig["name"]]))
    elif method == "youden":
        known = (dev["er"] == 1) | (dev["time"] >= landmark)
        if dev.loc[known, "er"].nunique() < 2:
            raise ValueError("Youden cutoff needs development patients with and without early recurrence")
        cut = _youden(dev.loc[known, "er"], dev.loc[known, sig["name"]])
    else:
        raise ValueError(f"cutoff method {method!r}: use 'youden' or 'median'")
    d["risk_group"] = np.where(x >= cut, "high", "low")
    return {"method": method, "cutoff": cut}


def km_table(data: pd.DataFrame, group_col: str = "risk_group") -> pd.DataFrame:
    """Per cohort: patients and events per group, median RFS (95% CI, R ``survfit``), HR of high vs low (Cox, Efron)
    and the log-rank chi-square and p (all from :mod:`hcc_utils.stats`)."""
    rows = []
    for coh, d in data.groupby("cohort", sort=True):
        hi, lo = d[d[group_col] == "high"], d[d[group_col] == "low"]
        row = {"cohort": coh, "n": len(d), "events": int(d["event"].sum()),
               "n_high": len(hi), "events_high": int(hi["event"].sum()),
               "n_low": len(lo), "events_low": int(lo["event"].sum())}
        for g, sub in (("high", hi), ("low", lo)):
            if len(sub) and sub["event"].sum() > 0:
                m = stats.km_median(sub["time"].to_numpy(float), sub["event"].to_numpy(int))
                row[f"median_rfs_{g}"] = float(m.median)
                row[f"median_rfs_{g}_lower"] = float(m.lower)
                row[f"median_rfs_{g}_upper"] = float(m.upper)
        if len(hi) and len(lo):
            lr = stats.logrank(d["time"].to_numpy(float), d["event"].to_numpy(int), d[group_col].to_numpy())
            row["logrank_chisq"] = float(lr.chisq)
            row["logrank_p"] = float(lr.p)
            x = d[["time", "event"]].assign(high=(d[group_col] == "high").astype(float))
            try:
                c = stats.cox_table(x, "time", "event", ["high"]).loc["high"]
                row.update(hr=float(c["hr"]), hr_lower=float(c["hr_lower"]), hr_upper=float(c["hr_upper"]),
                           hr_p=float(c["p"]))
            except ValueError as err:  # e.g. no event in one group: the HR is not estimable (monotone likelihood)
                row.update(hr=np.nan, hr_lower=np.nan, hr_upper=np.nan, hr_p=np.nan)
                warnings.warn(f"{coh}: hazard ratio of the high-risk group is not estimable ({err}); reported as NaN")
        rows.append(row)
    return pd.DataFrame(rows).set_index("cohort")


# ----------------------------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------------------------
# the pipeline
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class SurvivalResult:
    """Everything notebook 05 shows and saves."""

    prep: Prepared
    landmark: float
    cutoff: dict
    km: pd.DataFrame
    univariable: pd.DataFrame
    multivariable: pd.DataFrame
    screened: list
    final_terms: list
    stepwise_trace: pd.DataFrame
    final: pd.DataFrame
    table3: pd.DataFrame
    nomogram: stats.NomogramCalculator
    predictions: pd.DataFrame
    table4: pd.DataFrame
    calibration: pd.DataFrame
    decision: pd.DataFrame
    tdauc_time: pd.DataFrame
    results: dict


def _usable_terms(dev: pd.DataFrame, variables: list[dict]) -> tuple[list[dict], dict]:
    """Terms that can be modelled in development; the others with the reason (one value, or a diverging fit)."""
    usable, skipped = [], {}
    for v in variables:
        x = dev[v["name"]].dropna()
        if x.nunique() < 2:
            skipped[v["name"]] = "one value in development"
            continue
        try:  # a term whose univariable Cox fit diverges (perfect separation) cannot enter any model
            stats.cox_model(dev, [v])
        except ValueError as err:
            skipped[v["name"]] = f"not estimable in development: {err}"
            continue
        usable.append(v)
    return usable, skipped


def _multivariable(dev, screened, sig_name, pterm, skipped):
    """The multivariable fit of the screened terms; a fit that diverges drops its weakest covariate (largest p)."""
    while True:
        try:
            fit, tab = multivariable_cox(dev, screened)
            return screened, fit, tab
        except ValueError as err:
            others = [v for v in screened if v["name"] != sig_name]
            if not others:
                raise
            worst = max(others, key=lambda v: pterm[v["name"]])
            skipped[worst["name"]] = f"dropped from the multivariable model (not estimable jointly): {err}"
            screened = [v for v in screened if v is not worst]


def _table3(uni, multi, final, screened) -> pd.DataFrame:
    """Univariable, multivariable and final HRs side by side."""
    t3 = uni[["variable", "label", "level", "column", "hr", "hr_lower", "hr_upper", "p"]].rename(
        columns={"hr": "uni_hr", "hr_lower": "uni_hr_lower", "hr_upper": "uni_hr_upper", "p": "uni_p"})
    mm = multi[["column", "hr", "hr_lower", "hr_upper", "p"]].rename(
        columns={"hr": "multi_hr", "hr_lower": "multi_hr_lower", "hr_upper": "multi_hr_upper", "p": "multi_p"})
    ff = final[["column", "hr", "hr_lower", "hr_upper", "p"]].rename(
        columns={"hr": "final_hr", "hr_lower": "final_hr_lower", "hr_upper": "final_hr_upper", "p": "final_p"})
    table3 = t3.merge(mm, on="column", how="left").merge(ff, on="column", how="left")
    return table3[table3["variable"].isin([v["name"] for v in screened])].reset_index(drop=True)


def _nomogram_and_predictions(d, dev, final_fit, sig_fit, landmark):
    """The nomogram (risk threshold: Youden on development) and every patient's predictions."""
    title = f"Nomogram for {landmark:g}-month RFS"
    sig_nomo = stats.NomogramCalculator.from_cox(sig_fit, landmark, title="Signature alone")
    nomo0 = stats.NomogramCalculator.from_cox(final_fit, landmark, title=title)
    pred = nomo0.predict_frame(d).rename(columns=lambda c: f"nomogram_{c}")
    pred["signature_er_prob"] = sig_nomo.predict_frame(d)["er_prob"]
    pred["signature_lp"] = sig_nomo.predict_frame(d)["lp"]
    # nomogram risk groups: Youden on development predicted ER probability (known status at the landmark)
    dv = pred.loc[dev.index].join(dev[["er", "time"]]).dropna(subset=["nomogram_er_prob"])
    known = (dv["er"] == 1) | (dv["time"] >= landmark)
    thr = _youden(dv.loc[known, "er"], dv.loc[known, "nomogram_er_prob"])
    nomo = stats.NomogramCalculator.from_cox(
        final_fit, landmark, risk_threshold=thr, title=title,
        threshold_rule="Youden threshold of the predicted early-recurrence probability in the development cohort "
                       "(pROC 'best')")
    pred["nomogram_risk_group"] = np.where(pred["nomogram_er_prob"] >= thr, "high", "low")
    return nomo, pred.join(d[["cohort", "time", "event", "er", "risk_group"]])


def _tdauc_times(pred: pd.DataFrame, landmark: float) -> list[float]:
    """Every 6 months while at least 10 patients of each cohort are still followed, and the landmark."""
    def followed(c):
        x = np.sort(pred.loc[pred["cohort"] == c, "time"].to_numpy())
        return x[-max(2, min(10, len(x) // 4))]

    tmax = min(followed(c) for c in report_cohorts(pred["cohort"]))
    times = [float(t) for t in np.arange(6.0, tmax, 6.0)]
    if landmark <= tmax and float(landmark) not in times:  # follow-up ending at the landmark (see eval_time)
        times = sorted(times + [float(landmark)])
    return times


def run_survival(prep: Prepared, landmark: float = 24.0, n_bootstrap: int = 200, seed: int = 2022,
                 screen_p: float = 0.2, cutoff_method: str = "youden", progress: bool = True) -> SurvivalResult:
    """Run the whole survival analysis of notebook 05 on a prepared, split table.

    Risk groups (cutoff on development), KM/log-rank, univariable Cox (Table S1), multivariable Cox of the terms
    with p < ``screen_p`` (the signature always enters), stepwise AIC (signature kept), the final model (Table 3),
    the nomogram, C-index and tdAUC against the signature alone (Table 4), calibration, decision curves and tdAUC
    over time. Selection runs on the development patients complete for all screened terms; the final model is then
    refitted on all development patients complete for its own terms.

    Parameters
    ----------
    prep : Prepared
        A table after :func:`~hcc_utils.survival.table.split_cohorts`.
    landmark : float
        Months.
    n_bootstrap : int
        Bootstrap replicates of the calibration optimism.
    seed : int
    screen_p : float
        Univariable p below which a covariate enters the multivariable model.
    cutoff_method : {'youden', 'median'}
        Cutoff of a continuous signature.
    progress : bool

    Returns
    -------
    SurvivalResult
    """
    if "cohort" not in prep.data.columns:
        raise ValueError("split the table first (split_cohorts)")
    d = prep.data
    sig = prep.mapping["signature"]
    cutoff = risk_groups(prep, landmark, cutoff_method)
    km = km_table(d)
    dev = d[d["cohort"] == "development"]
    usable, skipped = _usable_terms(dev, prep.variables)
    if sig["name"] in skipped:
        raise ValueError(f"{prep.source}: the signature cannot be modelled in the development cohort: "
                         f"{skipped[sig['name']]}")
    uni = univariable_cox(dev, usable)
    pterm = uni.groupby("variable", sort=False)["p_term"].first()
    screened = [v for v in usable if v["name"] == sig["name"] or pterm[v["name"]] < screen_p]
    screened, _, multi = _multivariable(dev, screened, sig["name"], pterm, skipped)
    final_terms, trace = select_terms(dev, screened, keep=(sig["name"],))
    final_fit, final = multivariable_cox(dev, final_terms)
    table3 = _table3(uni, multi, final, screened)
    sig_fit = stats.cox_model(dev, [sig])  # signature alone, for its predictions
    nomo, pred = _nomogram_and_predictions(d, dev, final_fit, sig_fit, landmark)
    risks = {"Nomogram": "nomogram_lp", "Signature": "signature_lp"}
    table4 = discrimination_table(pred, risks, landmark)
    calib = calibration(d, final_fit, pred["nomogram_rfs"], landmark, n_bootstrap, seed, progress=progress)
    sig_cal = calibration(d, sig_fit, 1 - pred["signature_er_prob"], landmark, 0, seed)
    calib = pd.concat([calib.assign(model="Nomogram"), sig_cal.assign(model="Signature")], ignore_index=True)
    dca = decision_curve(pred, {"Nomogram": "nomogram_er_prob", "Signature": "signature_er_prob"}, landmark)
    tdt = tdauc_over_time(pred, risks, _tdauc_times(pred, landmark))
    results = _results_dict(prep, landmark, cutoff, km, uni, screened, final_terms, final, table4, nomo, skipped,
                            screen_p, n_bootstrap, seed, calib)
    return SurvivalResult(prep=prep, landmark=landmark, cutoff=cutoff, km=km, univariable=uni, multivariable=multi,
                          screened=[v["name"] for v in screened], final_terms=[v["name"] for v in final_terms],
                          stepwise_trace=trace, final=final, table3=table3, nomogram=nomo, predictions=pred,
                          table4=table4, calibration=calib, decision=dca, tdauc_time=tdt, results=results)


def _f(x):
    return None if x is None or (isinstance(x, float) and not np.isfinite(x)) else float(x)


def _results_dict(prep, landmark, cutoff, km, uni, screened, final_terms, final, table4, nomo, skipped, screen_p,
                  n_bootstrap, seed, calib) -> dict:
    d = prep.data
    sig = prep.mapping["signature"]["name"]
    res: dict[str, Any] = {
        "table": prep.mapping.get("name"), "source": Path(prep.source).name if prep.source else None,
        "n_raw": prep.n_raw, "n": len(d), "events": int(d["event"].sum()), "landmark_months": landmark,
        "split": prep.mapping.get("split"), "n_bootstrap": n_bootstrap, "seed": seed, "screen_p": screen_p,
        "er_rate": float(d["er"].mean()), "n_er": int(d["er"].sum()),
        "n_censored_before_landmark": int(((d["event"] == 0) & (d["time"] < landmark)).sum()),
        "cutoff": cutoff, "skipped_covariates": skipped,
        "screened_terms": [v["name"] for v in screened], "final_terms": [v["name"] for v in final_terms],
        "cohorts": {},
    }
    for coh, dd in d.groupby("cohort"):
        c = {"n": len(dd), "events": int(dd["event"].sum()), "n_er": int(dd["er"].sum()),
             "er_rate": float(dd["er"].mean())}
        for k, v in km.loc[coh].items():
            c[k] = int(v) if (k == "n" or k.startswith(("n_", "events"))) and pd.notna(v) else _f(v)
        for _, r in table4[table4["cohort"] == coh].iterrows():
            key = _safe_name(r["model"])
            for m in ("c_index", "c_index_lower", "c_index_upper", "tdauc", "tdauc_lower", "tdauc_upper",
                      "c_index_p", "tdauc_p"):
                if m in r and pd.notna(r[m]):
                    c[f"{key}_{m}"] = float(r[m])
        res["cohorts"][coh] = c
    u = uni[uni["variable"] == sig].iloc[0]
    res["signature_hr_uni"] = {"hr": float(u["hr"]), "lower": float(u["hr_lower"]), "upper": float(u["hr_upper"]),
                               "p": float(u["p"]), "n": int(u["n"])}
    f = final[final["variable"] == sig].iloc[0]
    res["signature_hr_final"] = {"hr": float(f["hr"]), "lower": float(f["hr_lower"]), "upper": float(f["hr_upper"]),
                                 "p": float(f["p"]), "n": int(f["n"])}
    res["nomogram_risk_threshold"] = nomo.spec["risk_threshold"]
    return res


# ----------------------------------------------------------------------------------------------------------------
