"""Survival stage, the figures: Kaplan-Meier curves (Figure 3), the nomogram (4a), calibration (4b,c), decision curves
(4d,e) and tdAUC over time (S1). Each function returns a matplotlib figure of a :class:`SurvivalResult`."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from lifelines import KaplanMeierFitter
from lifelines.plotting import add_at_risk_counts

from hcc_utils import stats
from hcc_utils.manifest import cohort_label, report_cohorts
from hcc_utils.style import PALETTE

from .analysis import SurvivalResult

#: Okabe-Ito colours (:data:`hcc_utils.style.PALETTE`): vermillion for high risk and the nomogram, blue for low risk
#: and the signature.
COLORS = {"high": PALETTE[1], "low": PALETTE[0], "Nomogram": PALETTE[1], "Signature": PALETTE[0],
          "treat_all": "#7f8c8d", "treat_none": "#000000"}
#: Line styles of the risk groups, so the curves differ without colour.
LINESTYLE = {"high": "-", "low": "--"}


def month_ticks(tmax: float) -> np.ndarray:
    """Ticks of a follow-up axis at whole months: every 6 months up to 3 years of follow-up, else every 12.

    Parameters
    ----------
    tmax : float
        Longest follow-up shown (months).

    Returns
    -------
    numpy.ndarray
        From 0 to the first tick at or after ``tmax``.
    """
    step = 12.0 if tmax > 36 else 6.0
    return np.arange(0, max(step, math.ceil(float(tmax) / step) * step) + 1e-9, step)


def _km_panel(ax, data: pd.DataFrame, ticks, title: str, stats_row: pd.Series | None = None) -> list:
    """One Kaplan-Meier panel: a curve per risk group with its 95% confidence band (shaded), censoring marks, the
    log-rank p and hazard ratio, and the numbers at risk under the axis at ``ticks``.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
    data : pandas.DataFrame
        One cohort's patients: ``time``, ``event``, ``risk_group`` (``high``/``low``).
    ticks : array-like
        Months of the x ticks, where the numbers at risk are counted.
    title : str
    stats_row : pandas.Series, optional
        ``logrank_p``, ``hr``, ``hr_lower``, ``hr_upper`` of this cohort (a row of ``SurvivalResult.km``).

    Returns
    -------
    list of lifelines.KaplanMeierFitter
        The groups' fitters, in the order drawn.
    """
    fitters = []
    for g in ("high", "low"):
        s = data[data["risk_group"] == g]
        if len(s) == 0:
            continue
        km = KaplanMeierFitter(label=f"{g.capitalize()} risk").fit(s["time"], s["event"])
        km.plot_survival_function(ax=ax, ci_show=True, ci_alpha=0.15, color=COLORS[g], ls=LINESTYLE[g],
                                  show_censors=True, censor_styles={"ms": 5, "marker": "|"})
        fitters.append(km)
    ax.set_xticks(ticks)
    ax.set_xlim(0, ticks[-1])
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("Months after resection")
    ax.set_ylabel("Recurrence-free survival")
    txt = ""
    if stats_row is not None:
        if pd.notna(stats_row.get("logrank_p")):
            txt = f"log-rank {stats.format_p(stats_row['logrank_p'], prefix=True)}"
        if pd.notna(stats_row.get("hr")):
            txt += f"\nHR {stats_row['hr']:.2f} ({stats_row['hr_lower']:.2f}-{stats_row['hr_upper']:.2f})"
    ax.text(0.97, 0.95, txt.strip(), transform=ax.transAxes, ha="right", va="top", fontsize=9)
    ax.set_title(title)
    handles, labels = ax.get_legend_handles_labels()
    keep = [(h, lb) for h, lb in zip(handles, labels) if lb.endswith("risk")]  # not the censor marks
    if keep:
        ax.legend(*zip(*keep), loc="lower left", fontsize=9, title="shaded: 95% CI", title_fontsize=8)
    if fitters:
        add_at_risk_counts(*fitters, ax=ax, rows_to_show=["At risk"], xticks=list(ticks))
    return fitters


def plot_km(res: SurvivalResult):
    """Figure 3: KM curves of high/low risk per cohort (development, then one panel per external cohort) with 95%
    confidence bands, log-rank p and numbers at risk.

    Parameters
    ----------
    res : SurvivalResult
        :func:`~hcc_utils.survival.analysis.run_survival` output.

    Returns
    -------
    matplotlib.figure.Figure
    """
    d = res.prep.data
    cohorts = report_cohorts(d["cohort"])
    fig, axes = plt.subplots(1, len(cohorts), figsize=(5.5 * len(cohorts), 5.6), squeeze=False)
    ticks = month_ticks(float(d["time"].max()))
    for ax, coh in zip(axes[0], cohorts):
        sub = d[d["cohort"] == coh]
        row = res.km.loc[coh] if coh in res.km.index else None
        _km_panel(ax, sub, ticks, f"{cohort_label(coh)} cohort (n = {len(sub)})", row)
    fig.tight_layout()
    return fig


def km_curves(res: SurvivalResult) -> pd.DataFrame:
    """The data of Figure 3: the Kaplan-Meier steps of each cohort and risk group.

    Parameters
    ----------
    res : SurvivalResult

    Returns
    -------
    pandas.DataFrame
        ``cohort, risk_group, time, survival, ci_lower, ci_upper`` (95%, log(-log)), ``at_risk``, ``events``,
        ``censored``: one row per distinct time (0 included).
    """
    d = res.prep.data
    rows = []
    for coh in report_cohorts(d["cohort"]):
        for g in ("high", "low"):
            s = d[(d["cohort"] == coh) & (d["risk_group"] == g)]
            if len(s) == 0:
                continue
            km = KaplanMeierFitter(label="s").fit(s["time"], s["event"])
            t = pd.concat([km.survival_function_, km.confidence_interval_, km.event_table], axis=1)
            t = t.reset_index().rename(columns={"timeline": "time", "event_at": "time"})
            rows.append(pd.DataFrame({
                "cohort": coh, "risk_group": g, "time": t.iloc[:, 0], "survival": t["s"],
                "ci_lower": t["s_lower_0.95"], "ci_upper": t["s_upper_0.95"], "at_risk": t["at_risk"],
                "events": t["observed"], "censored": t["censored"]}))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(
        columns=["cohort", "risk_group", "time", "survival", "ci_lower", "ci_upper", "at_risk", "events", "censored"])


def plot_nomogram(res_or_nomo):
    """Figure 4a: the nomogram (points, variable axes, total points, predicted RFS at the landmark).

    Parameters
    ----------
    res_or_nomo : SurvivalResult or NomogramCalculator

    Returns
    -------
    matplotlib.figure.Figure
    """
    nomo = res_or_nomo.nomogram if isinstance(res_or_nomo, SurvivalResult) else res_or_nomo
    spec = nomo.spec
    vars_ = spec["variables"]
    nrow = len(vars_) + 4
    fig, ax = plt.subplots(figsize=(10, 0.55 * nrow + 1))
    ax.set_xlim(-32, 105)
    ax.set_ylim(-nrow + 1.5, 1)
    ax.axis("off")

    def axis_line(y, label, pos, labels):
        ax.text(-3, y, label, ha="right", va="center", fontsize=9)
        pos = np.asarray(pos, float)
        ax.plot([pos.min(), pos.max()], [y, y], color="k", lw=0.8)
        for p, lb in zip(pos, labels):
            ax.plot([p, p], [y, y + 0.12], color="k", lw=0.8)
            ax.text(p, y + 0.18, lb, ha="center", va="bottom", fontsize=7)

    axis_line(0, "Points", np.arange(0, 101, 10), [str(i) for i in range(0, 101, 10)])
    pts = nomogram_points(nomo)
    total = pts[pts["axis"] == "Total points"]
    tscale = 100.0 / max(float(total["points"].iloc[-1]), 1e-9)  # total points drawn on the 0-100 points scale
    y = -1
    for axis, rows in pts.groupby("axis", sort=False):
        scale = 1.0 if y > -1 - len(vars_) else tscale  # the variable axes, then total points and RFS
        axis_line(y, axis, rows["points"].to_numpy(float) * scale, list(rows["value"]))
        y -= 1
    ax.set_title(spec.get("title", "Nomogram"), fontsize=11)
    fig.tight_layout()
    return fig


def nomogram_points(res_or_nomo) -> pd.DataFrame:
    """The data of Figure 4a: every tick of the nomogram's axes with its points.

    Parameters
    ----------
    res_or_nomo : SurvivalResult or NomogramCalculator

    Returns
    -------
    pandas.DataFrame
        ``axis, value, points``: one row per tick of each variable axis (points 0-100 of that variable), of the
        total-points axis and of the predicted-RFS axis (``points`` on the total-points scale, as drawn).
    """
    nomo = res_or_nomo.nomogram if isinstance(res_or_nomo, SurvivalResult) else res_or_nomo
    spec = nomo.spec
    sc = spec["scale"]
    rows = []
    for v in spec["variables"]:
        label = v.get("axis_label", v["label"])
        if v["type"] == "continuous":
            rows += [(label, f"{x:.4g}", (v["beta"] * x / v["per"] - v["lp_min"]) * sc)
                     for x in _nice_ticks(v["min"], v["max"])]
        else:
            rows += [(label, str(lv), (lp - v["lp_min"]) * sc) for lv, lp in zip(v["levels"], v["lp"])]
    s0, cen, off = spec["baseline_survival"], spec["centre"], spec["lp_offset"]
    tmax = sum((v["lp_max"] - v["lp_min"]) * sc for v in spec["variables"])
    tt = _nice_ticks(0, tmax, extend=True)
    rows += [("Total points", f"{t:g}", t) for t in tt]
    for p in (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1):
        tp = (math.log(math.log(p) / math.log(s0)) + cen - off) * sc
        if 0 <= tp <= tt[-1]:
            rows.append((f"{spec['landmark']:g}-month RFS", f"{p:g}", tp))
    return pd.DataFrame(rows, columns=["axis", "value", "points"])


def _nice_ticks(lo, hi, n=6, extend=False):
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((s * mag for s in (1, 2, 2.5, 5, 10) if s * mag >= raw), default=raw)
    if extend:
        return [float(v) for v in np.round(np.arange(0, math.ceil(hi / step) * step + step * 1e-9, step), 10)]
    start = math.ceil(lo / step) * step
    vals = list(np.round(np.arange(start, hi + step * 1e-9, step), 10))
    # the range ends are ticks too, unless a round tick is within half a step (their labels would overlap)
    if not vals or vals[0] - lo > 0.5 * step:
        vals = [lo] + vals
    elif vals[0] - lo > 1e-9:
        vals[0] = lo
    if vals[-1] < hi - 0.5 * step:
        vals.append(hi)
    elif vals[-1] < hi - 1e-9:
        vals[-1] = hi
    return [float(v) for v in vals]


def _panels(res: SurvivalResult, letter: str) -> tuple[list[str], list[str]]:
    """The cohorts of a figure with lettered panels and their tags: development ``letter``, the external cohort the
    next letter (``c``), or that letter numbered per external cohort (``c1``, ``c2``) when there are several."""
    cohorts = report_cohorts(res.prep.data["cohort"])
    nxt = chr(ord(letter) + 1)
    ext = [nxt] if len(cohorts) == 2 else [f"{nxt}{i}" for i in range(1, len(cohorts))]
    return cohorts, [letter] + ext


def plot_calibration(res: SurvivalResult):
    """Figures 4b,c: calibration at the landmark, development (apparent and bias-corrected) and validation (a panel
    per external cohort: c1, c2, ... when there are several).

    Parameters
    ----------
    res : SurvivalResult
        :func:`~hcc_utils.survival.analysis.run_survival` output.

    Returns
    -------
    matplotlib.figure.Figure
    """
    cal = res.calibration
    cohorts, tags = _panels(res, "b")
    fig, axes = plt.subplots(1, len(cohorts), figsize=(5 * len(cohorts), 4.6), squeeze=False)
    for ax, coh, tag in zip(axes[0], cohorts, tags):
        for model, mk in (("Nomogram", "o"), ("Signature", "s")):
            c = cal[(cal["cohort"] == coh) & (cal["model"] == model)].dropna(subset=["predicted"])
            if c.empty:
                continue
            yerr = [c["observed"] - c["observed_lower"], c["observed_upper"] - c["observed"]]
            ax.errorbar(c["predicted"], c["observed"], yerr=yerr, marker=mk, color=COLORS[model], capsize=3,
                        lw=1, label=f"{model} (apparent)" if coh == "development" else model)
            if coh == "development" and c["observed_corrected"].notna().any():
                ax.plot(c["predicted"], c["observed_corrected"], marker="x", ls="--", color=COLORS[model], lw=1,
                        label=f"{model} (bias-corrected)")
        ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=1, label="ideal")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel(f"Predicted {res.landmark:g}-month RFS")
        ax.set_ylabel(f"Observed {res.landmark:g}-month RFS (KM)")
        ax.set_title(f"({tag}) {cohort_label(coh)} cohort")
        ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def plot_decision_curves(res: SurvivalResult):
    """Figures 4d,e: decision curves at the landmark per cohort (e1, e2, ... for several external cohorts).

    Parameters
    ----------
    res : SurvivalResult
        :func:`~hcc_utils.survival.analysis.run_survival` output.

    Returns
    -------
    matplotlib.figure.Figure
    """
    dca = res.decision
    cohorts, tags = _panels(res, "d")
    fig, axes = plt.subplots(1, len(cohorts), figsize=(5 * len(cohorts), 4.4), squeeze=False)
    for ax, coh, tag in zip(axes[0], cohorts, tags):
        c = dca[dca["cohort"] == coh]
        for k, lab, ls in (("Nomogram", "Nomogram", "-"), ("Signature", "Signature alone", "-"),
                           ("treat_all", "Treat all", "--"), ("treat_none", "Treat none", ":")):
            ax.plot(c["threshold"], c[k], color=COLORS[k], ls=ls, lw=1.3, label=lab)
        top = float(np.nanmax(c[["Nomogram", "Signature", "treat_all"]].to_numpy()))
        ax.set_ylim(-0.05, max(0.05, top * 1.1))
        ax.set_xlim(0, 1)
        ax.set_xlabel(f"Threshold probability (recurrence by {res.landmark:g} months)")
        ax.set_ylabel("Net benefit")
        ax.set_title(f"({tag}) {cohort_label(coh)} cohort")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_tdauc(res: SurvivalResult):
    """Figure S1: tdAUC over time per cohort for nomogram and signature.

    Parameters
    ----------
    res : SurvivalResult
        :func:`~hcc_utils.survival.analysis.run_survival` output.

    Returns
    -------
    matplotlib.figure.Figure
    """
    t = res.tdauc_time
    cohorts = report_cohorts(res.prep.data["cohort"])
    fig, axes = plt.subplots(1, len(cohorts), figsize=(5 * len(cohorts), 4), sharey=True, squeeze=False)
    axes = axes[0]
    lowest = float(np.nanmin(t["tdauc"])) if len(t) and t["tdauc"].notna().any() else 0.3
    y_lo = max(0.0, min(0.3, math.floor((lowest - 0.05) * 10) / 10))  # 0.3 unless a curve goes lower
    for ax, coh in zip(axes, cohorts):
        for model in ("Nomogram", "Signature"):
            c = t[(t["cohort"] == coh) & (t["model"] == model)]
            ax.plot(c["time"], c["tdauc"], marker="o", ms=3, color=COLORS[model],
                    ls="-" if model == "Nomogram" else "--", label=model)
        ax.axhline(0.5, color="grey", ls=":", lw=1)
        ax.axvline(res.landmark, color="grey", ls="--", lw=0.8)
        xt = month_ticks(float(t["time"].max()) if len(t) else res.landmark)
        ax.set_xticks(xt)
        ax.set_xlim(0, xt[-1])
        ax.set_ylim(y_lo, 1.0)
        ax.set_xlabel("Months after resection")
        ax.set_title(f"{cohort_label(coh)} cohort")
    axes[0].set_ylabel("Time-dependent AUC")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------------------------------
