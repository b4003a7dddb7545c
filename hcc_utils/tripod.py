"""The TRIPOD+AI checklist (Collins et al., BMJ 2024) filled from a run's stored results and settings.

:func:`checklist` returns one row per checklist item (item wording abbreviated; the statement has the full text).
Items the run can answer from its own files are answered with numbers read from those files, and name the chapter
and the stored file they come from; every other item is marked "to be completed by the authors". Nothing here is
typed by hand: a number that is not in a stored file is not given.
"""
from __future__ import annotations

import html
import json
from pathlib import Path

import pandas as pd

from hcc_utils.config import Profile
from hcc_utils.manifest import external_cohorts

TO_COMPLETE = "to be completed by the authors"

#: (item, section, topic) of TRIPOD+AI, abbreviated.
ITEMS = [
    ("1", "Title", "Development and/or evaluation of a prediction model, population, outcome"),
    ("2", "Abstract", "Structured summary (TRIPOD+AI for Abstracts)"),
    ("3a", "Introduction", "Healthcare context and rationale for the model"),
    ("3b", "Introduction", "Target population and intended purpose in the care pathway"),
    ("3c", "Introduction", "Known health inequalities between groups"),
    ("4", "Introduction", "Objectives, development and/or validation"),
    ("5a", "Methods: data", "Sources of data for the development and evaluation data sets"),
    ("5b", "Methods: data", "Dates of the collected data, start and end of accrual and follow-up"),
    ("6a", "Methods: participants", "Study setting, number and location of centres"),
    ("6b", "Methods: participants", "Eligibility criteria"),
    ("6c", "Methods: participants", "Treatments received"),
    ("7", "Methods: data preparation", "Data pre-processing and quality checking, across groups"),
    ("8a", "Methods: outcome", "Outcome definition, time horizon, how assessed"),
    ("8b", "Methods: outcome", "Qualifications of outcome assessors"),
    ("8c", "Methods: outcome", "Blinding of outcome assessment"),
    ("9a", "Methods: predictors", "Choice of initial predictors and pre-selection"),
    ("9b", "Methods: predictors", "Definition of predictors, how and when measured"),
    ("9c", "Methods: predictors", "Qualifications of predictor assessors, blinding"),
    ("10", "Methods: sample size", "How the study size was arrived at"),
    ("11", "Methods: missing data", "How missing data were handled"),
    ("12a", "Methods: analysis", "How the data were used in the analysis (development, evaluation, splits)"),
    ("12b", "Methods: analysis", "How predictors were handled in the analysis"),
    ("12c", "Methods: analysis", "Type of model, building, hyper-parameter tuning, internal validation"),
    ("12d", "Methods: analysis", "Heterogeneity across clusters (centres) in parameters and performance"),
    ("12e", "Methods: analysis", "Performance measures and their rationale"),
    ("12f", "Methods: analysis", "Model updating arising from the evaluation"),
    ("12g", "Methods: analysis", "How model predictions were calculated in the evaluation"),
    ("13", "Methods: class imbalance", "Methods for class imbalance, recalibration"),
    ("14", "Methods: fairness", "Approaches to address model fairness"),
    ("15", "Methods: model output", "Model output, thresholds, risk groups"),
    ("16", "Methods: training vs evaluation", "Differences between development and evaluation data"),
    ("17", "Methods: ethics", "Ethical approval and consent"),
    ("18a", "Open science", "Funding"),
    ("18b", "Open science", "Conflicts of interest"),
    ("18c", "Open science", "Protocol"),
    ("18d", "Open science", "Registration"),
    ("18e", "Open science", "Data sharing"),
    ("18f", "Open science", "Analytical code sharing"),
    ("19", "Patient and public involvement", "Details of patient and public involvement"),
    ("20a", "Results: participants", "Flow of participants, numbers with and without the outcome"),
    ("20b", "Results: participants", "Characteristics of the participants, by data source"),
    ("20c", "Results: participants", "Comparison of the development and evaluation distributions"),
    ("21", "Results: model development", "Number of participants and outcome events in each analysis"),
    ("22", "Results: model specification", "Full model (coefficients) or access to it"),
    ("23a", "Results: model performance", "Performance estimates with confidence intervals"),
    ("23b", "Results: model performance", "Performance across groups (e.g. centres, demographic groups)"),
    ("24", "Results: model updating", "Results from any model updating"),
    ("25", "Discussion: interpretation", "Overall interpretation, fairness"),
    ("26", "Discussion: limitations", "Limitations, biases, generalisability"),
    ("27a", "Discussion: usability", "How poor-quality or unavailable input data are handled"),
    ("27b", "Discussion: usability", "User interaction and expertise needed"),
    ("27c", "Discussion: usability", "Future research"),
]

CHAPTERS = {
    "data": ("Data", "../data.html"), "method": ("Method", "../method.html"),
    "01": ("Cohort and Table 1", "01_cohort_table.html"),
    "02": ("U-Net training", "02_unet_training_AP.html"),
    "03": ("Deep feature extraction", "03_feature_extraction_AP.html"),
    "04": ("DSFR models and Table 2", "04_model_comparison.html"),
    "05": ("Survival analysis and nomogram", "05_survival_nomogram.html"),
}


def _read(path: Path):
    if not path.exists():
        return None
    return json.loads(path.read_text()) if path.suffix == ".json" else pd.read_csv(path)


def _ci(x, lo, hi, d: int = 3) -> str:
    vals = [x, lo, hi]
    if any(v is None or pd.isna(v) for v in vals):
        return "n/a" if x is None or pd.isna(x) else f"{x:.{d}f}"
    return f"{x:.{d}f} (95% CI {max(0.0, lo):.{d}f}-{min(1.0, hi):.{d}f})"


def checklist(profile: Profile) -> pd.DataFrame:
    """The TRIPOD+AI checklist of a run, answered where its stored files allow.

    Parameters
    ----------
    profile : Profile
        The run's profile; its ``outputs/<profile>/`` is read.

    Returns
    -------
    DataFrame
        ``item, section, topic, status`` (``answered`` or ``to be completed by the authors``), ``answer``,
        ``chapter`` (title), ``chapter_link`` (relative to the executed chapters), ``source`` (stored files,
        relative to ``outputs/<profile>/``).
    """
    o = profile.outputs
    cohort = _read(o / "cohort" / "summary.json")
    mres = _read(o / "models" / "results.json")
    t2 = _read(o / "models" / "table2.csv")
    sres = _read(o / "survival" / "synthetic" / "results.json")
    t4 = _read(o / "survival" / "synthetic" / "table4_discrimination.csv")
    cal = _read(o / "survival" / "synthetic" / "calibration.csv")
    clean = _read(o / "survival" / "synthetic" / "cleaning_report.csv")
    seg = {ph: _read(o / "segmentation" / ph / "metrics.json") for ph in ("AP", "PP")}
    fi = {ph: _read(o / "features" / f"{ph}_info.json") for ph in ("AP", "PP")}
    s = profile.settings
    ans: dict[str, tuple[str, str, str]] = {}  # item -> (answer, chapter key, files)

    if cohort:
        src = "the synthetic cohort of this book (generated, no real patients)" if cohort.get("synthetic") else \
            f"the cohort described by the manifest {cohort.get('manifest')}"
        ans["5a"] = (f"Imaging (arterial and portal-venous CT), clinical table and recurrence-free survival from {src}; "
                     f"{cohort['n']} patients in the cohorts " + ", ".join(
                         f"{c} (n = {v['n']})" for c, v in cohort["cohorts"].items()) + ".", "01",
                     "cohort/summary.json")
        ans["6a"] = ("Cohorts as the manifest's cohort column assigns them: " + ", ".join(
            f"{c} {v['n']} patients" for c, v in cohort["cohorts"].items())
                     + "; the validation cohort is used for no fit and no choice. Centres: "
                     + TO_COMPLETE + ".", "01", "cohort/summary.json")
        ans["20a"] = ("; ".join(f"{c}: {v['n']} patients, {v['er']} with early recurrence ({100 * v['er_rate']:.1f}%),"
                                f" {v['recurrences']} recurrences in follow-up" for c, v in cohort["cohorts"].items())
                      + ".", "01", "cohort/summary.json")
        tp = cohort.get("table1_p", {})
        ans["20b"] = (f"Table 1 gives the characteristics by cohort ({len(tp)} variables with a test p).", "01",
                      "cohort/table1.csv, cohort/summary.json")
        ans["20c"] = ("Development against validation in Table 1: "
                      + ", ".join(f"{k} p = {v:.3f}" for k, v in tp.items() if v is not None)
                      + f"; recurrence-free survival log-rank p = {cohort['logrank']['p']:.3f}.", "01",
                      "cohort/summary.json")
    lm = s["stats"]["landmark_months"]
    ans["8a"] = (f"Early recurrence: recurrence before {lm:g} months after resection (a patient censored earlier "
                 f"counts as no early recurrence); recurrence-free survival at {lm:g} months for the nomogram.",
                 "method", "profiles.yaml (stats.landmark_months)")
    if seg["AP"] and fi["AP"]:
        w = s["windows"]
        ans["7"] = ("CT windowed per phase ("
                    + ", ".join(f"{ph} level {w[ph]['level']} / width {w[ph]['width']} HU" for ph in ("AP", "PP"))
                    + f"), normalised with fixed constants, slices resized to {s['preprocess']['size']} px; "
                    f"the manifest and every image checked before the run (integrity, intensities, geometry, masks). "
                    f"Tumour masks predicted by a U-Net per phase (post-processing: {s['unet']['postprocess']}; "
                    f"test-time mirroring: {s['unet'].get('tta', 'none')}); "
                    f"validation Dice of the kept checkpoint: "
                    + ", ".join(f"{ph} {seg[ph]['best_valid_dice']:.3f}" for ph in ("AP", "PP")) + ".",
                    "02", "segmentation/AP/metrics.json, segmentation/PP/metrics.json")
        ans["9a"] = (f"Deep features: channel means of the U-Net layers {', '.join(fi['AP']['layers'])} inside the "
                     f"{fi['AP']['mask']} tumour mask ({fi['AP']['n_features']} per phase), no pre-selection; "
                     "DSFR-C adds the clinical variables of Table 1"
                     + ("" if s["models"].get("clinical_screen_p") is None else
                        f" with univariable score-test p < {s['models']['clinical_screen_p']}, screened inside every "
                        "training set")
                     + "; the nomogram's terms by univariable screening "
                     f"(p < {s['stats']['cox_screen_p']}) and stepwise AIC.", "03",
                     "features/AP_info.json, features/PP_info.json, survival/synthetic/results.json")
    if mres:
        n, ner = mres["n"], mres["n_er"]
        ext = external_cohorts(n)  # one per external cohort
        ans["10"] = ("No sample size calculation: all available patients, development "
                     f"{n['development']} ({ner['development']} early recurrences), "
                     + ", ".join(f"{c} {n[c]} ({ner[c]})" for c in ext) + ".", "04", "models/results.json")
        ans["12a"] = (f"Development cohort only for every fit and choice: nested cross-validation "
                      f"({mres['models'][mres['dsfr_model']]['folds']['outer']} outer, "
                      f"{mres['models'][mres['dsfr_model']]['folds']['inner']} inner stratified folds) for the "
                      "development estimates; the final models refitted on all development patients predict the "
                      "validation cohort unchanged.", "04", "models/results.json")
        ans["12b"] = ("Deep features and continuous clinical variables standardised inside each training fold; "
                      "categorical clinical variables one-hot (reference level first); in the Cox models continuous "
                      "variables per unit given in the mapping.", "04", "models/results.json")
        grid = mres["grid"]
        bp = mres["models"][mres["dsfr_model"]]["best_params"]
        ans["12c"] = (f"L2 logistic regression (lbfgs) for DSFR per phase, DSFR-C and the visual model; grid search "
                      f"over C {grid['C']}, max_iter {grid['max_iter']}, tol {grid['tol']} by ROC AUC; the phase "
                      f"chosen by development cross-validated AUC ("
                      + ", ".join(f"{k} {v:.3f}" for k, v in mres["phase_cv_auc"].items())
                      + f") is {mres['chosen_phase']}; final {mres['dsfr_model']} C = {bp['C']:g}. "
                      "Cox proportional hazards (Efron ties) for the nomogram.", "04",
                      "models/results.json, survival/synthetic/results.json")
        ans["12g"] = ("Development: each patient predicted by the model of the outer fold that left it out; "
                      "validation: the final model.", "04", "models/predictions.csv, models/signature.csv")
        ans["21"] = ("Every model: development "
                     f"{n['development']} patients, {ner['development']} events; "
                     + ", ".join(f"{c} {n[c]}, {ner[c]} events" for c in ext) + ".", "04", "models/results.json")
        ans["13"] = (f"No resampling or reweighting; the prevalence of early recurrence is "
                     f"{100 * ner['development'] / n['development']:.1f}% in development. Thresholds are Youden's on "
                     "the development cross-validated predictions.", "04", "models/results.json")
    if t2 is not None:
        parts = []
        for _, r in t2.iterrows():
            parts.append(f"{r['model']} {r['cohort']} AUC {_ci(r['auc'], r['auc_lower'], r['auc_upper'])}, "
                         f"accuracy {r['accuracy']:.3f}, sensitivity {r['sensitivity']:.3f}, specificity "
                         f"{r['specificity']:.3f}")
        perf = "; ".join(parts)
        if t4 is not None:
            perf += ". Survival: " + "; ".join(
                f"{r['model']} {r['cohort']} C-index {_ci(r['c_index'], r['c_index_lower'], r['c_index_upper'])}, "
                f"tdAUC({lm:g}) {_ci(r['tdauc'], r['tdauc_lower'], r['tdauc_upper'])}" for _, r in t4.iterrows())
        if cal is not None:
            c = cal[cal["model"] == "Nomogram"]
            perf += ". Calibration of the nomogram (predicted vs observed RFS by risk group): " + "; ".join(
                f"{r['cohort']} group {r['group']} {r['predicted']:.3f} vs "
                + ("n/a" if pd.isna(r["observed"]) else f"{r['observed']:.3f}") for _, r in c.iterrows())
        ans["23a"] = (perf + ".", "04", "models/table2.csv, survival/synthetic/table4_discrimination.csv, "
                      "survival/synthetic/calibration.csv")
        ans["12e"] = ("ROC AUC with DeLong 95% CI and paired DeLong tests; accuracy, sensitivity, specificity at the "
                      f"development Youden threshold; Harrell's C-index and time-dependent AUC at {lm:g} months with "
                      f"95% CI; calibration with {s['stats']['n_bootstrap']} bootstrap resamples; decision curves.",
                      "04", "models/table2.csv, survival/synthetic/table4_discrimination.csv")
    if clean is not None:
        cov = clean[clean["role"].isin(["covariate", "signature"])]
        miss = ", ".join(f"{r['variable']} {int(r['n_missing'])}" for _, r in cov.iterrows() if r["n_missing"] > 0)
        ans["11"] = ("Blank clinical values: median imputation fitted inside each training fold (DSFR-C); complete "
                     "cases for the Cox models. Missing per variable: " + (miss or "none") + "; rows dropped "
                     f"without time, event or signature: {int(clean['n_rows_dropped'].sum())}.", "05",
                     "survival/synthetic/cleaning_report.csv")
    if sres:
        terms = ", ".join(sres["final_terms"])
        ans["22"] = (f"Nomogram terms: {terms}; coefficients, baseline survival and point scale in the nomogram spec; "
                     "the DSFR and DSFR-C coefficients, scaler and threshold in the study bundle "
                     "(bundle/models/models.json).", "05",
                     "survival/synthetic/nomogram.json, models/dsfr_weights.csv")
        thr = sres.get("nomogram_risk_threshold")
        ans["15"] = ("Probability of early recurrence (DSFR, DSFR-C) with the development Youden threshold; nomogram "
                     f"points, {lm:g}-month RFS and a high/low risk group"
                     + (f" (high from {100 * thr:.1f}% predicted early recurrence)" if thr is not None else "") + ".",
                     "05", "survival/synthetic/results.json, models/results.json")
    ans["12f"] = ("No model updating or recalibration: the validation cohort is predicted by the final models as "
                  "they are.", "04", "models/results.json")
    ans["24"] = ("Not applicable: no model updating was done.", "04", "models/results.json")
    ans["16"] = ("Development and validation are the manifest's cohorts (the synthetic cohort: two centres); "
                 "differences in the patients are compared in Table 1 (item 20c).", "01", "cohort/summary.json")
    ans["18f"] = ("The analysis code is the hcc_utils package with the numbered notebooks of this book; the study "
                  "bundle records the package version, git commit and a digest of the sources.", "method",
                  "bundle/code_version.json")
    ans["27a"] = ("The manifest check stops the run on unreadable, truncated or implausible images; a case without "
                  "predicted tumour falls back to its most probable region (flagged); new patients get warnings "
                  "for inputs outside the development ranges (hcc_utils.predict).", "03",
                  "features/AP_qc.csv, features/PP_qc.csv")
    rows = []
    for item, section, topic in ITEMS:
        a = ans.get(item)
        if a:
            ch_title, link = CHAPTERS[a[1]]
            rows.append({"item": item, "section": section, "topic": topic, "status": "answered", "answer": a[0],
                         "chapter": ch_title, "chapter_link": link, "source": a[2]})
        else:
            rows.append({"item": item, "section": section, "topic": topic, "status": TO_COMPLETE, "answer": "",
                         "chapter": "", "chapter_link": "", "source": ""})
    return pd.DataFrame(rows)


def to_html(table: pd.DataFrame, outputs_label: str = "outputs/") -> str:
    """The checklist as an HTML table (chapter links relative to the executed chapters).

    Parameters
    ----------
    table : DataFrame
        :func:`checklist` output.
    outputs_label : str
        Prefix shown before the stored files (e.g. ``outputs/demo/``).

    Returns
    -------
    str
    """
    e = html.escape
    out = ['<table class="tripod-ai"><thead><tr><th>Item</th><th>Section</th><th>Topic</th><th>Reported</th>'
           '<th>Where</th></tr></thead><tbody>']
    for _, r in table.iterrows():
        if r["status"] == "answered":
            files = "; ".join(f"<code>{e(f.strip() if f.strip().startswith('profiles.yaml') else outputs_label + f.strip())}</code>"
                              for f in r["source"].split(","))
            where = f'<a href="{e(r["chapter_link"])}">{e(r["chapter"])}</a><br>{files}'
            rep = e(r["answer"])
        else:
            where, rep = "", f"<em>{e(TO_COMPLETE)}</em>"
        out.append(f'<tr data-item="{e(r["item"])}" data-status="{e(r["status"])}"><td>{e(r["item"])}</td>'
                   f'<td>{e(r["section"])}</td><td>{e(r["topic"])}</td><td>{rep}</td><td>{where}</td></tr>')
    out.append("</tbody></table>")
    return "\n".join(out)


def write(profile: Profile) -> dict[str, Path]:
    """Write ``tripod_ai/checklist.csv`` and ``checklist.html`` under ``outputs/<profile>/``.

    Returns
    -------
    dict
        ``csv``, ``html`` -> path.
    """
    t = checklist(profile)
    d = profile.out("tripod_ai", "x").parent
    t.to_csv(d / "checklist.csv", index=False)
    (d / "checklist.html").write_text(to_html(t, f"outputs/{profile.name}/"), encoding="utf-8")
    return {"csv": d / "checklist.csv", "html": d / "checklist.html"}
