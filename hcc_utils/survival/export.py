"""Survival stage, what it writes: display tables, the narrative's numbers, the static nomogram calculator, the
planted-effects comparison of the synthetic cohort, and :func:`save_results` (every file of the chapter)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from hcc_utils import stats, synthetic
from hcc_utils.files import json_text
from hcc_utils.manifest import external_cohorts, external_text

from .analysis import SurvivalResult
from .figures import plot_calibration, plot_decision_curves, plot_km, plot_nomogram, plot_tdauc

ASSETS = Path(__file__).resolve().parents[1] / "assets"


def ground_truth_table(res: SurvivalResult) -> pd.DataFrame:
    """Synthetic cohort only: planted hazard ratios (:data:`hcc_utils.synthetic.TRUE_HR`) against the estimates.

    For each planted clinical effect: the true HR per the mapping's unit, the univariable and final-model estimates
    with 95% CI, and whether the final model kept the variable and its CI covers the truth. The latent aggressiveness
    has no column (the images carry it; the DSFR signature is its proxy), so it is listed without an estimate.

    Parameters
    ----------
    res : SurvivalResult
        :func:`~hcc_utils.survival.analysis.run_survival` output.

    Returns
    -------
    DataFrame
    """
    uni = res.univariable.set_index("column")
    fin = res.final.set_index("column")
    rows = []
    for name, hr in synthetic.TRUE_HR.items():
        try:
            v = res.prep.var(name)
        except KeyError:
            continue
        per = v.get("per", 1.0) if v["type"] == "continuous" else 1.0
        true = float(math.exp(math.log(hr) * per))
        row = {"variable": v["label"], "true_hr": true}
        if name in uni.index:
            row.update(uni_hr=uni.loc[name, "hr"], uni_lower=uni.loc[name, "hr_lower"], uni_upper=uni.loc[name, "hr_upper"])
        row["in_final_model"] = name in fin.index
        if name in fin.index:
            lo, hi = fin.loc[name, "hr_lower"], fin.loc[name, "hr_upper"]
            row.update(final_hr=fin.loc[name, "hr"], final_lower=lo, final_upper=hi, ci_covers_truth=bool(lo <= true <= hi))
        rows.append(row)
    rows.append({"variable": "latent aggressiveness (per SD; seen only through the images)",
                 "true_hr": float(math.exp(synthetic.BETA_LATENT)), "in_final_model": False})
    return pd.DataFrame(rows)


def _ci(x, lo, hi, d=2, unit=False):
    """``x (lo-hi)``; with ``unit`` the Wald limits of a C-index/AUC are truncated to [0, 1] for display (the stored
    tables keep the untruncated values)."""
    if any(pd.isna(v) for v in (x, lo, hi)):
        return ""
    if unit:
        lo, hi = max(0.0, lo), min(1.0, hi)
    return f"{x:.{d}f} ({lo:.{d}f}-{hi:.{d}f})"



def format_table3(res: SurvivalResult) -> pd.DataFrame:
    """Table 3 for display: HR (95% CI) and p, univariable / multivariable / final model.

    Parameters
    ----------
    res : SurvivalResult
        :func:`~hcc_utils.survival.analysis.run_survival` output.

    Returns
    -------
    DataFrame
    """
    t = res.table3
    out = pd.DataFrame({
        "Variable": t["label"], "Level": t["level"],
        "Univariable HR (95% CI)": [_ci(a, b, c) for a, b, c in zip(t["uni_hr"], t["uni_hr_lower"], t["uni_hr_upper"])],
        "p (uni)": t["uni_p"].map(stats.format_p),
        "Multivariable HR (95% CI)": [_ci(a, b, c) for a, b, c in
                                      zip(t["multi_hr"], t["multi_hr_lower"], t["multi_hr_upper"])],
        "p (multi)": t["multi_p"].map(stats.format_p),
        "Final model HR (95% CI)": [_ci(a, b, c) for a, b, c in
                                    zip(t["final_hr"], t["final_hr_lower"], t["final_hr_upper"])],
        "p (final)": t["final_p"].map(stats.format_p),
    })
    return out


def format_table_s1(res: SurvivalResult) -> pd.DataFrame:
    """Table S1 for display: univariable HR (95% CI), p, and the term's screening p.

    Parameters
    ----------
    res : SurvivalResult
        :func:`~hcc_utils.survival.analysis.run_survival` output.

    Returns
    -------
    DataFrame
    """
    t = res.univariable
    return pd.DataFrame({"Variable": t["label"], "Level": t["level"], "n": t["n"], "Events": t["events"],
                         "HR (95% CI)": [_ci(a, b, c) for a, b, c in zip(t["hr"], t["hr_lower"], t["hr_upper"])],
                         "p": t["p"].map(stats.format_p), "p (term)": t["p_term"].map(stats.format_p)})


def format_table4(res: SurvivalResult) -> pd.DataFrame:
    """Table 4 for display: C-index and tdAUC at the landmark with 95% CI; p versus the nomogram.

    Parameters
    ----------
    res : SurvivalResult
        :func:`~hcc_utils.survival.analysis.run_survival` output.

    Returns
    -------
    DataFrame
    """
    t = res.table4
    lm = f"{res.landmark:g}"
    return pd.DataFrame({
        "Cohort": t["cohort"], "Model": t["model"], "n": t["n"], "Events": t["events"],
        "C-index (95% CI)": [_ci(a, b, c, 3, True) for a, b, c in
                             zip(t["c_index"], t["c_index_lower"], t["c_index_upper"])],
        "p (C vs nomogram)": t.get("c_index_p", pd.Series(np.nan, index=t.index)).map(stats.format_p),
        f"tdAUC({lm}) (95% CI)": [_ci(a, b, c, 3, True) for a, b, c in
                                  zip(t["tdauc"], t["tdauc_lower"], t["tdauc_upper"])],
        "p (tdAUC vs nomogram)": t.get("tdauc_p", pd.Series(np.nan, index=t.index)).map(stats.format_p),
    })


def glue_values(res: SurvivalResult) -> dict[str, str]:
    """Formatted numbers the narrative quotes (myst-nb glue keys -> text), all read from the results.

    Parameters
    ----------
    res : SurvivalResult
        :func:`~hcc_utils.survival.analysis.run_survival` output.

    Returns
    -------
    dict
        Glue key -> text. ``dev_*`` keys hold the development cohort's numbers, ``val_*`` keys the external cohort's
        (with several external cohorts, each cohort's number followed by its name).
    """
    r = res.results
    g: dict[str, str] = {
        "n_raw": str(r["n_raw"]), "n": str(r["n"]), "events": str(r["events"]), "n_er": str(r["n_er"]),
        "er_rate": f"{100 * r['er_rate']:.1f}%", "landmark": f"{r['landmark_months']:g}",
        "n_cens_before": str(r["n_censored_before_landmark"]),
        "cutoff_rule": (r["cutoff"]["method"] if r["cutoff"]["cutoff"] is None
                        else f"{r['cutoff']['method']} (cutoff {r['cutoff']['cutoff']:.3f})"),
        "final_terms": ", ".join(res.prep.var(n)["label"] for n in r["final_terms"]),
        "screened_terms": ", ".join(res.prep.var(n)["label"] for n in r["screened_terms"]),
        "sig_hr": _ci(r["signature_hr_uni"]["hr"], r["signature_hr_uni"]["lower"], r["signature_hr_uni"]["upper"]),
        "sig_hr_p": stats.format_p(r["signature_hr_uni"]["p"]),
        "sig_hr_final": _ci(r["signature_hr_final"]["hr"], r["signature_hr_final"]["lower"],
                            r["signature_hr_final"]["upper"]),
        "sig_hr_final_p": stats.format_p(r["signature_hr_final"]["p"]),
        "nomo_threshold": "" if r["nomogram_risk_threshold"] is None else f"{100 * r['nomogram_risk_threshold']:.1f}%",
        "split_rule": json.dumps(r["split"]), "screen_p": f"{r['screen_p']:g}",
        "n_bootstrap": str(r["n_bootstrap"]),
    }
    per: dict[str, dict[str, str]] = {}
    for coh, c in r["cohorts"].items():
        v = per[coh] = {}
        v["n"], v["events"] = str(c["n"]), str(c["events"])
        v["er_rate"] = f"{100 * c['er_rate']:.1f}%"
        v["logrank_p"] = stats.format_p(c.get("logrank_p", np.nan))
        v["km_hr"] = _ci(c.get("hr", np.nan), c.get("hr_lower", np.nan), c.get("hr_upper", np.nan))
        for m in ("nomogram", "signature"):
            v[f"{m}_c"] = _ci(c.get(f"{m}_c_index", np.nan), c.get(f"{m}_c_index_lower", np.nan),
                              c.get(f"{m}_c_index_upper", np.nan), 3, True)
            v[f"{m}_tdauc"] = _ci(c.get(f"{m}_tdauc", np.nan), c.get(f"{m}_tdauc_lower", np.nan),
                                  c.get(f"{m}_tdauc_upper", np.nan), 3, True)
        v["c_p"] = stats.format_p(c.get("signature_c_index_p", np.nan))
        v["tdauc_p"] = stats.format_p(c.get("signature_tdauc_p", np.nan))
    ext = external_cohorts(per)
    for coh, v in per.items():
        if coh not in ext:
            g.update({f"{coh[:3]}_{key}": text for key, text in v.items()})
    if ext:  # val_*: the one external cohort's value, or one per external cohort, each named
        g.update({f"val_{key}": external_text({coh: per[coh][key] for coh in ext}) for key in per[ext[0]]})
    return g


# ----------------------------------------------------------------------------------------------------------------
# saving
# ----------------------------------------------------------------------------------------------------------------
def save_results(res: SurvivalResult, out_dir: str | Path, figures: bool = True) -> dict[str, Path]:
    """Write tables (CSV), figures (PNG), ``results.json``, ``nomogram.json`` and ``nomogram.html`` to ``out_dir``.

    Existing files of an earlier run are replaced (the folder belongs to this notebook and chapter).

    Parameters
    ----------
    res : SurvivalResult
    out_dir : str or Path
    figures : bool
        Also draw and save the PNG figures.

    Returns
    -------
    dict
        File name -> path.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}

    def csv(name, df, index=False):
        p = out / name
        df.to_csv(p, index=index)
        paths[name] = p

    csv("cleaning_report.csv", res.prep.report)
    csv("km_logrank.csv", res.km, index=True)
    csv("tableS1_univariable_cox.csv", res.univariable)
    csv("multivariable_cox.csv", res.multivariable)
    csv("stepwise_trace.csv", res.stepwise_trace)
    csv("table3_cox.csv", res.table3)
    csv("table4_discrimination.csv", res.table4)
    csv("calibration.csv", res.calibration)
    csv("decision_curve.csv", res.decision)
    csv("tdauc_over_time.csv", res.tdauc_time)
    pr = res.predictions.drop(columns=[], errors="ignore")
    csv("predictions.csv", pr, index=True)
    paths["nomogram.json"] = res.nomogram.to_json(out / "nomogram.json")
    (out / "nomogram.html").write_text(nomogram_html(res.nomogram.to_dict(), standalone=True))
    paths["nomogram.html"] = out / "nomogram.html"
    (out / "results.json").write_text(json_text(res.results))
    paths["results.json"] = out / "results.json"
    if figures:
        for name, fn in (("figure3_km.png", plot_km), ("figure4a_nomogram.png", plot_nomogram),
                         ("figure4bc_calibration.png", plot_calibration), ("figure4de_decision.png", plot_decision_curves),
                         ("figureS1_tdauc.png", plot_tdauc)):
            fig = fn(res)
            fig.savefig(out / name, dpi=150, bbox_inches="tight")
            plt.close(fig)
            paths[name] = out / name
    return paths


def nomogram_html(spec: dict, standalone: bool = False) -> str:
    """Self-contained HTML/JS calculator of a nomogram export (no CDN, no network).

    The JSON is inlined; ``assets/nomogram.js`` is inlined. DOM contract (stable; the browser tests rely on it):
    a container ``div.hcc-nomogram``; one input per variable with ``data-var="<name>"`` (``<input type=range>`` for
    continuous, ``<select>`` for categorical/binary, option values = level labels); per-variable points in
    ``[data-points-for="<name>"]``; ``#nomo-total`` (total points), ``#nomo-prob`` (predicted RFS at the landmark
    as a percentage; the full-precision probability in its ``data-value`` attribute), ``#nomo-er`` (1 - RFS),
    ``#nomo-group`` (risk group).

    Parameters
    ----------
    spec : dict
        :meth:`Nomogram.to_dict`.
    standalone : bool
        Wrap in a full HTML document (``assets/nomogram_template.html``); otherwise a fragment for a notebook output.

    Returns
    -------
    str
    """
    js = (ASSETS / "nomogram.js").read_text()
    payload = json.dumps(spec).replace("</", "<\\/")
    frag = (
        '<div class="hcc-nomogram" id="hcc-nomogram"></div>\n'
        f'<script type="application/json" id="hcc-nomogram-data">{payload}</script>\n'
        f"<script>\n{js}\n</script>\n"
        "<script>HCCNomogram.render(document.getElementById('hcc-nomogram'), "
        "JSON.parse(document.getElementById('hcc-nomogram-data').textContent));</script>\n"
    )
    if not standalone:
        return frag
    tpl = (ASSETS / "nomogram_template.html").read_text()
    return tpl.replace("{{TITLE}}", spec.get("title", "Nomogram")).replace("{{CALCULATOR}}", frag)
