"""Survival stage, how well the models do: Harrell's C and tdAUC (Table 4), calibration, decision curves, tdAUC over
time. Every number comes from :mod:`hcc_utils.stats` (checked against R there); this module picks the patients and
the times."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from hcc_utils import stats

def _tdauc(time, event, risk, t) -> float:
    """tdAUC(t) (:func:`hcc_utils.stats.time_dependent_auc`), NaN when there are no cases or no controls at t."""
    try:
        return float(stats.time_dependent_auc(np.asarray(time, float), np.asarray(event, int),
                                              np.asarray(risk, float), float(t)).auc)
    except ValueError:
        return float("nan")


ADMIN_EPS = 1e-6


def eval_time(time, t: float) -> float:
    """Time at which tdAUC is evaluated for horizon ``t``.

    Cases are ``T <= t`` with an event and controls ``T > t``. When follow-up ends at the horizon (administrative
    censoring at the landmark, as in the synthetic cohort: nobody has ``T > t`` but patients are censored at ``t``),
    there would be no controls; the AUC is then evaluated at ``t - 1e-6`` months, so that patients event-free at the
    landmark are the controls and recurrences before it the cases (the early-recurrence classification).
    """
    time = np.asarray(time, float)
    if not (time > t).any() and (time >= t).any():
        return float(t) - ADMIN_EPS
    return float(t)


def discrimination_table(data: pd.DataFrame, risks: dict[str, str], landmark: float,
                         level: float = 0.95) -> pd.DataFrame:
    """Harrell's C and tdAUC(landmark) with CIs per cohort and model, and p for the difference (Table 4).

    All from :mod:`hcc_utils.stats` (checked against R there): :func:`~hcc_utils.stats.harrell_c` (R
    ``concordance``, infinitesimal-jackknife SE, Wald CI); :func:`~hcc_utils.stats.time_dependent_auc` (IPCW KM
    weights, influence-function SE as riskRegression ``Score``); the first model is compared with each other one on
    the same patients by :func:`~hcc_utils.stats.compare_c_index` (as ``concordance(fit1, fit2)``) and
    :func:`~hcc_utils.stats.compare_td_auc` (as ``Score`` contrasts). Patients missing a risk value are left out of
    every model in that cohort (paired comparison).

    Parameters
    ----------
    data : DataFrame
        Needs ``time``, ``event``, ``cohort`` and the risk columns named in ``risks``.
    risks : dict
        Display name -> column (higher = higher risk). The first entry is compared with each other one.
    """
    rows = []
    names = list(risks)
    for coh, d in data.groupby("cohort", sort=True):
        d = d.dropna(subset=list(risks.values()))
        t, e = d["time"].to_numpy(float), d["event"].to_numpy(int)
        R = {k: d[c].to_numpy(float) for k, c in risks.items()}
        for k in names:
            c = stats.harrell_c(t, e, R[k], level=level)
            row = {"cohort": coh, "model": k, "n": len(d), "events": int(e.sum()), "tdauc_time": eval_time(t, landmark),
                   "c_index": c.c, "c_index_se": c.se, "c_index_lower": c.lower, "c_index_upper": c.upper}
            te = eval_time(t, landmark)
            try:
                a = stats.time_dependent_auc(t, e, R[k], te, level=level)
                row.update(tdauc=a.auc, tdauc_se=a.se, tdauc_lower=a.lower, tdauc_upper=a.upper)
            except ValueError:  # no cases or no controls at the landmark
                row.update(tdauc=np.nan, tdauc_se=np.nan, tdauc_lower=np.nan, tdauc_upper=np.nan)
            if k != names[0]:
                cc = stats.compare_c_index(t, e, R[names[0]], R[k], level=level)
                row.update(c_index_diff=cc.diff, c_index_p=cc.p if cc.se_diff > 0 else np.nan)
                try:
                    ca = stats.compare_td_auc(t, e, R[names[0]], R[k], te, level=level)
                    row.update(tdauc_diff=ca.diff, tdauc_p=ca.p if ca.se_diff > 0 else np.nan)
                except ValueError:
                    row.update(tdauc_diff=np.nan, tdauc_p=np.nan)
            rows.append(row)
    return pd.DataFrame(rows)


def _km_at(time, event, t) -> tuple[float, float, float]:
    """Kaplan-Meier survival at ``t`` with R ``survfit``'s log CI (:func:`hcc_utils.stats.kaplan_meier`);
    NaN when nobody is followed to ``t``."""
    time, event = np.asarray(time, float), np.asarray(event, int)
    if len(time) == 0 or time.max() < t:
        return np.nan, np.nan, np.nan
    if event.sum() == 0:
        return 1.0, np.nan, np.nan
    km = stats.kaplan_meier(time, event)
    k = np.searchsorted(km["time"].to_numpy(), t, side="right") - 1
    if k < 0:
        return 1.0, 1.0, 1.0
    r = km.iloc[k]
    return float(r["surv"]), float(r["lower"]), float(r["upper"])


def _n_groups(n: int) -> int:
    """Calibration groups: about 20 patients or more per group, 2 to 5 groups."""
    return max(2, min(5, n // 20))


def _apparent_calibration(time, event, pred, landmark, n_groups) -> pd.DataFrame:
    """KM observed vs mean predicted RFS by group; cut points at quantiles of ``c(0, 1, pred)`` (as rms/stats)."""
    cuts = np.unique(np.quantile(np.concatenate([[0.0, 1.0], pred]), np.linspace(0, 1, n_groups + 1)))
    g = np.clip(np.searchsorted(cuts, pred, side="right") - 1, 0, len(cuts) - 2)
    rows = []
    for k in range(len(cuts) - 1):
        m = g == k
        if not m.any():
            continue
        obs, lo, hi = _km_at(time[m], event[m], landmark)
        rows.append({"group": k + 1, "n": int(m.sum()), "events": int(event[m].sum()),
                     "predicted": float(pred[m].mean()), "observed": obs, "observed_lower": lo,
                     "observed_upper": hi})
    return pd.DataFrame(rows)


def calibration(data: pd.DataFrame, fit: stats.CoxModel, pred_rfs: pd.Series, landmark: float, n_bootstrap: int,
                seed: int, progress: bool = False) -> pd.DataFrame:
    """Calibration of predicted RFS at the landmark: KM observed vs mean predicted by group of predicted risk.

    Development: :func:`hcc_utils.stats.calibration_at_time` on the model's design (apparent values and the
    bootstrap optimism correction of rms ``calibrate(cmethod="KM", u=landmark)``, ``n_bootstrap`` replicates,
    seeded). Validation: apparent (external) calibration of the development model with the same grouping rule.

    Parameters
    ----------
    data : DataFrame
        Analysis table with ``cohort``.
    fit : CoxModel
        The development model (its design columns define the bootstrap refits).
    pred_rfs : Series
        Predicted RFS at the landmark of ``fit`` for every patient (index = patient id; NaN when a value is missing).
    """
    out = []
    for coh, d in data.groupby("cohort", sort=True):
        pr = pred_rfs.reindex(d.index)
        d = d[pr.notna()]
        pr = pr[pr.notna()].to_numpy(float)
        g = _n_groups(len(d))
        if coh == "development" and n_bootstrap > 0:
            df = pd.concat([fit.X, pd.DataFrame({"time": fit.time, "event": fit.event}, index=fit.X.index)], axis=1)
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                # resamples where the fit fails are counted in n_bootstrap_failed (rms does the same)
                warnings.simplefilter("ignore", RuntimeWarning)
                warnings.filterwarnings("ignore", message=".*failed to converge.*")
                cal = stats.calibration_at_time(df, "time", "event", list(fit.X.columns), float(landmark),
                                                n_groups=g, n_boot=int(n_bootstrap), seed=int(seed),
                                                progress=progress)
            t = cal.table.rename(columns={"mean_predicted": "predicted", "km": "observed", "km_lower": "observed_lower",
                                          "km_upper": "observed_upper", "km_corrected": "observed_corrected"})
            t = t.drop(columns=["std_err"], errors="ignore")
            t["n_bootstrap"] = cal.n_boot
            t["n_bootstrap_failed"] = cal.n_failed
        else:
            t = _apparent_calibration(d["time"].to_numpy(float), d["event"].to_numpy(int), pr, landmark, g)
            t["optimism"] = np.nan
            t["observed_corrected"] = np.nan
        t.insert(0, "cohort", coh)
        out.append(t)
    return pd.concat(out, ignore_index=True)


def decision_curve(data: pd.DataFrame, risks: dict[str, str], landmark: float,
                   thresholds=None) -> pd.DataFrame:
    """Survival decision curve at the landmark (Vickers, Cronin, Elkin, Gonen 2008), per cohort.

    :func:`hcc_utils.stats.survival_net_benefit`: net benefit of treating patients whose predicted probability of
    recurrence by the landmark is >= pt, with the Kaplan-Meier risk among them; treat all uses everyone.
    Returns columns cohort, threshold, treat_all, treat_none and one column per model.
    """
    if thresholds is None:
        thresholds = np.round(np.arange(0.01, 1.0, 0.01), 2)
    out = []
    for coh, d in data.groupby("cohort", sort=True):
        frame = None
        for k, c in risks.items():
            dd = d.dropna(subset=[c])
            nb = stats.survival_net_benefit(dd["time"].to_numpy(float), dd["event"].to_numpy(int),
                                            dd[c].to_numpy(float), float(landmark), thresholds)
            if frame is None:
                frame = nb[["threshold", "treat_all", "treat_none"]].copy()
            frame[k] = nb["model"].to_numpy()
        frame.insert(0, "cohort", coh)
        out.append(frame)
    return pd.concat(out, ignore_index=True)


def tdauc_over_time(data: pd.DataFrame, risks: dict[str, str], times) -> pd.DataFrame:
    """tdAUC of each risk column at each time, per cohort (Figure S1), on the patients with every risk value
    (the same patients as Table 4)."""
    rows: list[dict] = []
    for coh, d in data.groupby("cohort", sort=True):
        dd = d.dropna(subset=list(risks.values()))
        for t in times:
            te = eval_time(dd["time"], float(t))
            for k, c in risks.items():
                rows.append({"cohort": coh, "time": float(t), "eval_time": te, "model": k, "n": len(dd),
                             "n_cases": int(((dd["time"] <= te) & (dd["event"] == 1)).sum()),
                             "n_controls": int((dd["time"] > te).sum()),
                             "tdauc": _tdauc(dd["time"], dd["event"], dd[c], te)})
    return pd.DataFrame(rows, columns=["cohort", "time", "eval_time", "model", "n", "n_cases", "n_controls", "tdauc"])


# ----------------------------------------------------------------------------------------------------------------
# the pipeline
