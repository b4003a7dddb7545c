"""The cohort chapter (notebook 01): Table 1, the outcome summary and the case figure.

Table 1 comes from :func:`hcc_utils.stats.table_one`, each variable's test chosen by its ``table1`` kind in
:data:`hcc_utils.manifest.CLINICAL_VARIABLES` / :data:`~hcc_utils.manifest.VISUAL_FEATURES`; medians of RFS with R's
log CI (:func:`hcc_utils.stats.km_median`) and the log-rank test between cohorts.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import SimpleITK as sitk

from hcc_utils import imaging as io, stats
from hcc_utils.classifiers import clinical_variable
from hcc_utils.manifest import CLINICAL_VARIABLES, VISUAL_FEATURES, cohort_label, cohort_order

TABLE1_VARIABLES = [*CLINICAL_VARIABLES, *VISUAL_FEATURES]
#: Row labels of the displayed Table 1 where the manifest's label is written for a plain-text file.
DISPLAY_LABELS = {"sex": "Sex", "hbv_dna": "HBV-DNA \u2265 10\u2074 IU/mL", "afp_ge400": "AFP \u2265 400 ng/mL",
                  "tb": "Total bilirubin (\u00b5mol/L)"}
#: Level names of categorical variables in the displayed Table 1.
DISPLAY_LEVELS = {"sex": {"M": "Male", "F": "Female"}, "child_pugh": {"A": "Class A", "B": "Class B"}}
#: Indentation of a level row under its variable: non-breaking spaces, kept by HTML, CSV readers and spreadsheets.
LEVEL_INDENT = "\u00a0" * 4
#: What a continuous variable's cell shows, by its ``table1`` kind.
SUMMARY_NAMES = {"normal": "mean (SD)", "skewed": "median (IQR)"}


# ----------------------------------------------------------------------------------------------------------------
# Table 1
# ----------------------------------------------------------------------------------------------------------------
def table_one(patients: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    """Table 1 (development vs validation; a column per external cohort when there are several) with the paper's
    tests (those for more than two groups then).

    Parameters
    ----------
    patients : DataFrame
        :func:`hcc_utils.manifest.load_patient_table` output.
    digits : int
        Rounding of the formatted cells.

    Returns
    -------
    DataFrame
        :func:`hcc_utils.stats.table_one` output (columns ``variable, level, development, validation, Overall,
        missing, p, p_formatted, test, statistic``) plus ``name`` (the variable's column name) and ``kind``.
        Variables whose reads are all missing (no visual file) are left out.
    """
    if "cohort" not in patients.columns:
        raise ValueError("patient table has no 'cohort' column")
    present = [v for v in TABLE1_VARIABLES if v.name in patients.columns and patients[v.name].notna().any()]
    df = patients[[v.name for v in present]].copy()
    df["cohort"] = pd.Categorical(patients["cohort"], categories=cohort_order(patients["cohort"]))
    kinds = {k: [v.name for v in present if v.table1 == k] for k in ("normal", "skewed", "categorical")}
    for name in kinds["categorical"]:
        var = next(v for v in present if v.name == name)
        levels = list(var.levels) if var.kind == "categorical" else [0, 1]
        x = df[name]
        if var.kind == "binary":
            x = pd.to_numeric(x).astype("Int64")
        df[name] = pd.Categorical(x, categories=levels)
    t = stats.table_one(df, "cohort", normal=kinds["normal"], skewed=kinds["skewed"],
                        categorical=kinds["categorical"], digits=digits)
    # stats.table_one keeps the variable name in ``variable`` when no labels are given
    t.insert(0, "name", t["variable"])
    bykey = {v.name: v for v in present}
    t["variable"] = t["name"].map(lambda n: bykey[n].label)
    t["kind"] = t["name"].map(lambda n: bykey[n].kind)
    # rows in the paper's (manifest's) variable order, level rows kept under their heading
    order = {v.name: i for i, v in enumerate(present)}
    attrs = dict(t.attrs)
    t = t.iloc[np.argsort(t["name"].map(order).to_numpy(), kind="stable")].reset_index(drop=True)
    t.attrs.update(attrs)
    return t


def display_label(name: str, label: str) -> str:
    """The row label of a variable in the displayed Table 1: :data:`DISPLAY_LABELS`, else the manifest's label with
    typed symbols replaced (``>=`` by ≥, ``<=`` by ≤, ``umol`` by µmol, ``10^9`` by 10⁹).

    Parameters
    ----------
    name : str
        The variable's column name.
    label : str
        Its label in the manifest.

    Returns
    -------
    str
    """
    if name in DISPLAY_LABELS:
        return DISPLAY_LABELS[name]
    sup = str.maketrans("0123456789", "\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079")
    out = label.replace(">=", "\u2265").replace("<=", "\u2264").replace("umol", "\u00b5mol")
    out = re.sub(r"10\^(\d+)", lambda m: "10" + m.group(1).translate(sup), out)
    return re.sub(r"(?<![A-Za-z])x\s*10(?=[\u2070-\u2079\u00b9\u00b2\u00b3])", "\u00d7 10", out)


def clinical_column_label(column: str) -> str:
    """Display label of a clinical model column (:func:`hcc_utils.classifiers.clinical_design`'s names): the variable's
    :func:`display_label`, with the level for a categorical's indicator (``child_pugh_B``: "Child-Pugh class B")."""
    v = clinical_variable(column)
    if v is None:
        return column
    label = display_label(v.name, v.label)
    return label if column == v.name else f"{label.split(' (')[0]} {column[len(v.name) + 1:]}"


def format_table_one(t1: pd.DataFrame, indent: str = LEVEL_INDENT) -> pd.DataFrame:
    """Table 1 for display and CSV: one row per continuous or binary variable, level rows for categoricals.

    Binary 0/1 variables are shown as one row (n (%) with the value 1); categorical variables keep a row per level,
    indented by ``indent``, under a heading row carrying the p value. Continuous rows name their summary (mean (SD)
    or median (IQR)); labels carry units with their symbols (:func:`display_label`). Column headers carry each
    cohort's n.

    Parameters
    ----------
    t1 : DataFrame
        :func:`table_one` output.
    indent : str
        Put before each level row's name (default :data:`LEVEL_INDENT`).

    Returns
    -------
    DataFrame
    """
    kinds = {v.name: v.table1 for v in TABLE1_VARIABLES}
    n = t1.attrs.get("n", {})
    groups = cohort_order(c for c in t1.columns if c != "Overall")
    head = {g: f"{cohort_label(g)} (n = {n[g]})" if g in n else cohort_label(g) for g in groups}
    rows = []
    for name, block in t1.groupby("name", sort=False):
        first = block.iloc[0]
        label = display_label(name, first["variable"])
        if first["kind"] == "binary":
            lvl = block[block["level"] == "1"]
            src = lvl.iloc[0] if len(lvl) else first
            r = {"Variable": label, **{head[g]: src[g] for g in groups}}
            r.update({"p": first["p_formatted"], "Test": first["test"]})
            rows.append(r)
        elif first["kind"] == "categorical":
            rows.append({"Variable": label, **{head[g]: "" for g in groups},
                         "p": first["p_formatted"], "Test": first["test"]})
            names = DISPLAY_LEVELS.get(name, {})
            for _, lv in block.iloc[1:].iterrows():
                rows.append({"Variable": indent + names.get(str(lv["level"]), str(lv["level"])),
                             **{head[g]: lv[g] for g in groups}, "p": "", "Test": ""})
        else:
            what = SUMMARY_NAMES.get(kinds.get(name, ""), "")
            rows.append({"Variable": f"{label}, {what}" if what else label, **{head[g]: first[g] for g in groups},
                         "p": first["p_formatted"], "Test": first["test"]})
    return pd.DataFrame(rows)


def table_one_legend(t1: pd.DataFrame) -> str:
    """A sentence naming the tests that were actually used (read from the table).

    Parameters
    ----------
    t1 : DataFrame
        :func:`table_one` output.

    Returns
    -------
    str
    """
    used = [t for t in dict.fromkeys(t1["test"]) if isinstance(t, str) and t]
    what = {
        "Student's t": "Student's t-test (mean (SD))",
        "Mann-Whitney U": "Mann-Whitney U test with continuity correction (median (IQR))",
    }
    parts = [what.get(t, t) for t in used]
    return "Tests: " + "; ".join(parts) + "." if parts else ""


# ----------------------------------------------------------------------------------------------------------------
# Outcome summary
# ----------------------------------------------------------------------------------------------------------------
def cohort_summary(patients: pd.DataFrame, landmark: float = 24.0) -> dict[str, Any]:
    """Median RFS with 95% CI per cohort, log-rank between cohorts, recurrence and early-recurrence rates.

    Parameters
    ----------
    patients : DataFrame
        Patient table with ``cohort``, ``rfs_months``, ``recurrence``, ``er``.
    landmark : float
        Months defining early recurrence (for the text only; ``er`` is already computed).

    Returns
    -------
    dict
        ``{"n": ..., "landmark_months": ..., "cohorts": {cohort: {n, recurrences, recurrence_rate, er, er_rate,
        median_rfs, median_rfs_lower, median_rfs_upper, median_follow_up}}, "logrank": {chisq, p, df}}``. A median
        that is not reached is ``None``.
    """
    for col in ("cohort", "rfs_months", "recurrence", "er"):
        if col not in patients.columns:
            raise ValueError(f"patient table has no {col!r} column")
    out: dict[str, Any] = {"n": int(len(patients)), "landmark_months": float(landmark), "cohorts": {}}
    for c in cohort_order(patients.cohort):
        d = patients[patients.cohort == c]
        km = stats.km_median(d["rfs_months"].to_numpy(float), d["recurrence"].to_numpy(int))
        # reverse Kaplan-Meier median follow-up (censoring as the event)
        fu = stats.km_median(d["rfs_months"].to_numpy(float), 1 - d["recurrence"].to_numpy(int))
        out["cohorts"][c] = {
            "n": int(len(d)),
            "recurrences": int(d["recurrence"].sum()),
            "recurrence_rate": float(d["recurrence"].mean()),
            "er": int(d["er"].sum()),
            "er_rate": float(d["er"].mean()),
            "median_rfs": _num(km.median),
            "median_rfs_lower": _num(km.lower),
            "median_rfs_upper": _num(km.upper),
            "median_follow_up": _num(fu.median),
        }
    if len(out["cohorts"]) >= 2:  # across every cohort (several external ones: more than two groups)
        lr = stats.logrank(patients["rfs_months"].to_numpy(float), patients["recurrence"].to_numpy(int),
                           patients["cohort"].to_numpy())
        out["logrank"] = {"chisq": float(lr.chisq), "p": float(lr.p), "df": int(lr.df)}
    return out


def summary_table(summary: dict[str, Any], digits: int = 1) -> pd.DataFrame:
    """The outcome summary as a small display table (one row per cohort).

    Parameters
    ----------
    summary : dict
        :func:`cohort_summary` output.
    digits : int

    Returns
    -------
    DataFrame
    """
    def ci(c):
        if c["median_rfs"] is None:
            return "not reached"
        lo = "NA" if c["median_rfs_lower"] is None else f"{c['median_rfs_lower']:.{digits}f}"
        hi = "NA" if c["median_rfs_upper"] is None else f"{c['median_rfs_upper']:.{digits}f}"
        return f"{c['median_rfs']:.{digits}f} ({lo}-{hi})"

    rows = []
    for name, c in summary["cohorts"].items():
        rows.append({"Cohort": cohort_label(name), "n": c["n"],
                     "Recurrence, n (%)": f"{c['recurrences']} ({100 * c['recurrence_rate']:.{digits}f}%)",
                     f"ER (< {summary['landmark_months']:g} months), n (%)":
                         f"{c['er']} ({100 * c['er_rate']:.{digits}f}%)",
                     "Median RFS, months (95% CI)": ci(c)})
    return pd.DataFrame(rows)


def _num(v) -> float | None:
    v = float(v)
    return v if np.isfinite(v) else None


def pick_cases(patients: pd.DataFrame, n: int = 3, seed: int = 0) -> list[str]:
    """A few patients to show: alternately with and without early recurrence, both cohorts, reproducibly.

    Parameters
    ----------
    patients : DataFrame
        Patient table with ``cohort`` and ``er``.
    n : int
    seed : int

    Returns
    -------
    list of str
        Patient ids.
    """
    rng = np.random.default_rng(seed)
    groups = []
    for c in cohort_order(patients.cohort):
        for er in (1, 0):
            ids = patients.index[(patients.cohort == c) & (patients.er == er)].tolist()
            if ids:
                groups.append(list(rng.permutation(ids)))
    out: list[str] = []
    while len(out) < n and any(groups):
        for g in groups:
            if g and len(out) < n:
                out.append(str(g.pop(0)))
    return out


def _axial_slice(image, mask=None):
    arr = sitk.GetArrayFromImage(image).astype(float)  # z, y, x
    m = None
    if mask is not None:
        m = sitk.GetArrayFromImage(mask) > 0
        if m.shape != arr.shape:
            raise ValueError(f"mask shape {m.shape} differs from image shape {arr.shape}")
        area = m.sum(axis=(1, 2))
        z = int(np.argmax(area)) if area.max() > 0 else arr.shape[0] // 2
    else:
        z = arr.shape[0] // 2
    sx, sy = image.GetSpacing()[:2]
    return arr[z], (m[z] if m is not None else None), z, (sx, sy)


def case_figure(manifest: pd.DataFrame, patient_ids: Sequence[str], windows: dict[str, dict], patients=None):
    """AP and PP axial slices through the largest tumour cross-section, with the mask outline.

    Parameters
    ----------
    manifest : DataFrame
        :func:`hcc_utils.manifest.read_manifest` output (absolute paths).
    patient_ids : list of str
        Patients to show (one row each).
    windows : dict
        ``profile["windows"]``: ``{"AP": {"level", "width"}, "PP": {...}}`` in HU.
    patients : DataFrame, optional
        Patient table; when given, the row titles add cohort and ER status.

    Returns
    -------
    matplotlib.figure.Figure
    """
    m = manifest.set_index("patient_id") if "patient_id" in manifest.columns else manifest
    missing = [p for p in patient_ids if p not in m.index]
    if missing:
        raise ValueError(f"patient(s) {missing} not in the manifest")
    fig, axes = plt.subplots(len(patient_ids), 2, figsize=(6.4, 3.2 * len(patient_ids)), squeeze=False)
    for i, pid in enumerate(patient_ids):
        row = m.loc[pid]
        for j, ph in enumerate(("AP", "PP")):
            ax = axes[i, j]
            ct, uid, mk = row.get(f"ct_{ph.lower()}"), row.get(f"series_uid_{ph.lower()}"), row.get(f"mask_{ph.lower()}")
            uid = None if uid is None or (isinstance(uid, float) and np.isnan(uid)) or uid == "" else str(uid)
            try:
                img = io.read_image(ct, uid)
            except Exception as exc:  # noqa: BLE001 - name the patient and file
                raise ValueError(f"patient {pid}: cannot read ct_{ph.lower()} {ct}: {exc}") from exc
            mask = None
            if isinstance(mk, (str, Path)) and str(mk) not in ("", "nan"):
                mask = io.read_image(mk)
            sl, ms, z, (sx, sy) = _axial_slice(img, mask)
            w = windows[ph]
            lo, hi = w["level"] - w["width"] / 2, w["level"] + w["width"] / 2
            extent = (0, sl.shape[1] * sx, sl.shape[0] * sy, 0)
            ax.imshow(sl, cmap="gray", vmin=lo, vmax=hi, extent=extent, interpolation="nearest")
            if ms is not None and ms.any():
                ys = (np.arange(sl.shape[0]) + 0.5) * sy
                xs = (np.arange(sl.shape[1]) + 0.5) * sx
                ax.contour(xs, ys, ms.astype(float), levels=[0.5], colors=["#E69F00"], linewidths=1.2)
            title = f"{pid} {ph} (slice {z})"
            if patients is not None and pid in patients.index:
                title += f"\n{patients.loc[pid, 'cohort']}, ER={int(patients.loc[pid, 'er'])}"
            ax.set_title(title, fontsize=8)
            ax.set_axis_off()
    fig.tight_layout()
    return fig
