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

from .analysis import SurvivalResult

COLORS = {"high": "#c0392b", "low": "#2471a3", "Nomogram": "#c0392b", "Signature": "#2471a3",
          "treat_all": "#7f8c8d", "treat_none": "#000000"}



def plot_km(res: SurvivalResult):
    """Figure 3: KM curves of high/low risk per cohort (development, then one panel per external cohort) with
    log-rank p and numbers at risk.

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
    fig, axes = plt.subplots(1, len(cohorts), figsize=(5.5 * len(cohorts), 4.8), squeeze=False)
    axes = axes[0]
    tmax = float(d["time"].max())
    step = 12.0 if tmax > 36 else 6.0
    ticks = np.arange(0, tmax + 1e-9, step)
    for ax, coh in zip(axes, cohorts):
        sub = d[d["cohort"] == coh]
        fitters = []
        for g in ("high", "low"):
            s = sub[sub["risk_group"] == g]
            if len(s) == 0:
                continue
            km = KaplanMeierFitter(label=f"{g} risk").fit(s["time"], s["event"])
            km.plot_survival_function(ax=ax, ci_show=False, color=COLORS[g], show_censors=True,
                                      censor_styles={"ms": 4, "marker": "|"})
            fitters.append(km)
        ax.set_xticks(ticks)
        ax.set_xlim(0, ticks[-1] if len(ticks) > 1 else tmax)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("Months after resection")
        ax.set_ylabel("Recurrence-free survival")
        row = res.km.loc[coh]
        txt = f"log-rank {stats.format_p(row['logrank_p'], prefix=True)}" if "logrank_p" in row and pd.notna(row["logrank_p"]) else ""
        if "hr" in row and pd.notna(row.get("hr")):
            txt += f"\nHR {row['hr']:.2f} ({row['hr_lower']:.2f}-{row['hr_upper']:.2f})"
        ax.text(0.97, 0.95, txt, transform=ax.transAxes, ha="right", va="top", fontsize=9)
        ax.set_title(f"{cohort_label(coh)} cohort (n = {len(sub)})")
        ax.legend(loc="lower left", fontsize=9)
        add_at_risk_counts(*fitters, ax=ax, rows_to_show=["At risk"], xticks=ticks)
    fig.tight_layout()
    return fig


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
    sc = spec["scale"]
    vars_ = spec["variables"]
    nrow = len(vars_) + 4
    fig, ax = plt.subplots(figsize=(10, 0.55 * nrow + 1))
    ax.set_xlim(-32, 105)
    ax.set_ylim(-nrow + 1.5, 1)
    ax.axis("off")

    def axis_line(y, label, pos, labels, fmt=None):
        ax.text(-3, y, label, ha="right", va="center", fontsize=9)
        pos = np.asarray(pos, float)
        ax.plot([pos.min(), pos.max()], [y, y], color="k", lw=0.8)
        for p, lb in zip(pos, labels):
            ax.plot([p, p], [y, y + 0.12], color="k", lw=0.8)
            ax.text(p, y + 0.18, lb, ha="center", va="bottom", fontsize=7)

    axis_line(0, "Points", np.arange(0, 101, 10), [str(i) for i in range(0, 101, 10)])
    y = -1
    for v in vars_:
        if v["type"] == "continuous":
            vals = _nice_ticks(v["min"], v["max"])
            pos = [(v["beta"] * x / v["per"] - v["lp_min"]) * sc for x in vals]
            axis_line(y, v.get("axis_label", v["label"]), pos, [f"{x:.4g}" for x in vals])
        else:
            pos = [(lp - v["lp_min"]) * sc for lp in v["lp"]]
            axis_line(y, v.get("axis_label", v["label"]), pos, v["levels"])
        y -= 1
    tmax = sum((v["lp_max"] - v["lp_min"]) * sc for v in vars_)
    tt = _nice_ticks(0, tmax, extend=True)
    tscale = 100.0 / max(tt[-1], 1e-9)
    axis_line(y, "Total points", [t * tscale for t in tt], [f"{t:g}" for t in tt])
    y -= 1
    # predicted RFS axis on the total-points scale
    probs = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]
    pos, labs = [], []
    s0, cen, off = spec["baseline_survival"], spec["centre"], spec["lp_offset"]
    for p in probs:
        lp = math.log(math.log(p) / math.log(s0)) + cen
        tp = (lp - off) * sc
        if 0 <= tp <= tt[-1]:
            pos.append(tp * tscale)
            labs.append(f"{p:g}")
    if pos:
        axis_line(y, f"{spec['landmark']:g}-month RFS", pos, labs)
    ax.set_title(spec.get("title", "Nomogram"), fontsize=11)
    fig.tight_layout()
    return fig


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
    for ax, coh in zip(axes, cohorts):
        for model in ("Nomogram", "Signature"):
            c = t[(t["cohort"] == coh) & (t["model"] == model)]
            ax.plot(c["time"], c["tdauc"], marker="o", ms=3, color=COLORS[model], label=model)
        ax.axhline(0.5, color="grey", ls=":", lw=1)
        ax.axvline(res.landmark, color="grey", ls="--", lw=0.8)
        ax.set_ylim(0.3, 1.0)
        ax.set_xlabel("Months after resection")
        ax.set_title(f"{cohort_label(coh)} cohort")
    axes[0].set_ylabel("Time-dependent AUC")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------------------------------
