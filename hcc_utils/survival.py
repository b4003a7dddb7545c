"""Survival stage: clinical-table preparation, development/validation split, Cox models, nomogram and figures.

This is the glue behind ``notebooks/05_survival_nomogram.ipynb``. The notebook runs on *any* clinical table through a
column mapping (a plain dict, so papermill can pass it as a parameter); nothing here knows which cohort it is given.

Mapping format
--------------
::

    {
      "name": "GSE14520",                      # free text, used in reports
      "id": "Affy_GSM",                        # patient id column (unique)
      "time": "Recurr months",                 # recurrence-free time
      "event": "Recurr status",                # 1 = recurrence, 0 = censored
      "event_values": {"1": 1, "0": 0},        # optional; default accepts 0/1, yes/no, true/false, y/n
      "time_unit": "months",                   # months | days | weeks | years (converted to months)
      "missing": [".", "NA", ""],              # optional extra missing-value tokens (added to MISSING_TOKENS)
      "signature": {"column": ..., "name": "signature", "type": "continuous" | "binary",
                    "reference": "low", "per": 0.1, "label": ...},
      "covariates": [
         {"column": "Age", "name": "age", "type": "continuous", "label": "Age (years)", "per": 10},
         {"column": "Gender", "name": "sex", "type": "binary", "reference": "F", "label": "Male sex"},
         {"column": "BCLC staging", "name": "bclc", "type": "categorical", "reference": "0/A",
          "recode": {"0": "0/A", "A": "0/A"}, "levels": ["0/A", "B", "C"]},
      ],
    }

``type`` is ``continuous`` (numeric; the model uses ``value / per``), ``binary`` (exactly two levels after cleaning;
``reference`` -> 0, the other level -> 1) or ``categorical`` (dummy coded against ``reference``). ``recode`` maps raw
values (after stripping spaces) to analysis levels before anything else.

Cleaning (:func:`prepare_table`): surrounding spaces are stripped, missing tokens (blank, ``NA``, ``.``, ...) become
missing, numbers are parsed, levels are recoded; every change is counted per column in a report (a DataFrame saved as
``cleaning_report.csv``). Rows without id, time, event or signature are dropped (and counted). A value that cannot be
read (a negative time, an event code outside the accepted ones, a non-numeric value in a continuous column, a third
level in a binary column) raises ``ValueError`` naming the patient, the file and the column.

Statistics used (all from :mod:`hcc_utils.stats`, which is checked against R)
------------------------------------------------------------------------------
* Cox models: ``stats.cox_table`` (statsmodels ``PHReg``, Efron ties, as R ``coxph``); Wald CIs and p; the screening p
  of a categorical variable is the likelihood-ratio p (null log-likelihood ``stats.cox_null_loglik``).
  Univariable models use each variable's complete cases; the multivariable and stepwise models use the complete
  cases of all screened variables (as R ``step`` requires).
* Stepwise selection: ``stats.stepwise_aic`` (AIC = -2 log partial likelihood + 2k, R ``extractAIC``), both
  directions over terms (a categorical variable is one term), as R ``step(fit, scope=list(lower=~signature,
  upper=~all))``: the signature is kept in the lower scope.
* KM medians, log-rank, Youden threshold: ``stats.km_median`` / ``stats.logrank`` / ``stats.youden_threshold``.
* Table 4: ``stats.harrell_c`` and ``stats.time_dependent_auc`` (Wald CIs from their R-matching SEs), differences by
  ``stats.compare_c_index`` / ``stats.compare_td_auc`` (paired, influence functions).
* Calibration at the landmark: ``stats.calibration_at_time`` (rms ``calibrate(cmethod="KM")`` with seeded bootstrap
  optimism) in development; apparent (external) calibration with the same grouping in validation.
* Decision curves: ``stats.survival_net_benefit`` (dcurves/stdca definition).
* Nomogram: rms scaling (100 points for the term with the widest range of beta*x over its displayed range, the rms
  ``datadist`` range from ``stats.default_axis_range``); RFS(t) = S0(t) ** exp(LP - centre) with the Efron-type
  baseline at the covariate means (``stats.cox_baseline_survival``, as R ``survfit.coxph``). Own class here (not
  ``stats.Nomogram``) because its JSON export feeds ``assets/nomogram.js`` and the widget; the arithmetic is the
  same and a test checks the two agree.
"""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "MISSING_TOKENS", "GSE14520_MAPPING", "GSE14520_SPLIT", "gse14520_parameters", "synthetic_mapping", "normalise_mapping", "read_table", "prepare_table",
    "Prepared", "split_cohorts", "design_matrix", "fit_cox", "risk_groups", "km_table", "univariable_cox",
    "multivariable_cox", "stepwise_aic", "Nomogram", "discrimination_table", "calibration", "decision_curve",
    "tdauc_over_time", "run_survival", "SurvivalResult", "save_results", "load_synthetic_table",
    "load_input", "ground_truth_table", "format_table3", "format_table4", "format_table_s1", "glue_values",
    "plot_km", "plot_calibration", "plot_decision_curves", "plot_tdauc", "plot_nomogram", "nomogram_html",
]

#: Cell values read as missing in every mapped column (after stripping spaces); a mapping's ``missing`` list adds more.
MISSING_TOKENS = ("", ".", "NA", "N/A", "na", "n/a", "NaN", "nan", "NULL", "null", "?")
TIME_UNITS = {"months": 1.0, "month": 1.0, "days": 12.0 / 365.25, "day": 12.0 / 365.25,
              "weeks": 12.0 / 52.1775, "week": 12.0 / 52.1775, "years": 12.0, "year": 12.0}
EVENT_DEFAULT = {"1": 1, "0": 0, "1.0": 1, "0.0": 0, "yes": 1, "no": 0, "y": 1, "n": 0, "true": 1, "false": 0,
                 "recurrence": 1, "censored": 0}

# GSE14520 (Roessler et al., Cancer Res 2010), supplementary clinical table: ``../shared/data/gse14520/clinical.tsv``.
# The "Predicted risk Metastasis Signature" is a molecular (gene-expression) signature; it plays the role of the DSFR
# signature here. TNM sub-stages IIIA/IIIB/IIIC are pooled with III, BCLC 0 with A (few patients per level).
GSE14520_MAPPING: dict[str, Any] = {
    "name": "GSE14520",
    "description": (
        "GSE14520 (Roessler et al., Cancer Research 2010;70:10202-12): 242 patients with mostly HBV-related "
        "hepatocellular carcinoma treated by radical resection at the Liver Cancer Institute, Fudan University; "
        "public clinical table of the GEO series. The signature here is the paper's *molecular* (gene-expression) "
        "metastasis/recurrence risk prediction, reported as high/low; it is **not** the DSFR imaging signature and "
        "was derived by its authors on part of this cohort, so its performance here is not an independent "
        "validation. The development/validation split below is a seeded random split of this single centre, not "
        "the paper's cohorts."),
    "id": "Affy_GSM",
    "time": "Recurr months",
    "event": "Recurr status",
    "event_values": {"1": 1, "0": 0},
    "time_unit": "months",
    "missing": ["."],
    "signature": {"column": "Predicted risk Metastasis Signature", "name": "signature", "type": "binary",
                  "reference": "low", "label": "Metastasis signature (high vs low)"},
    "covariates": [
        {"column": "Gender", "name": "male", "type": "binary", "reference": "F", "label": "Male sex"},
        {"column": "Age", "name": "age", "type": "continuous", "per": 10, "label": "Age (per 10 years)"},
        {"column": "HBV viral status", "name": "hbv", "type": "categorical", "reference": "CC",
         "levels": ["CC", "AVR-CC", "N"], "label": "HBV status (vs chronic carrier)"},
        {"column": "ALT(>/<=50U/L)", "name": "alt_gt50", "type": "binary", "reference": "low",
         "label": "ALT > 50 U/L"},
        {"column": "Main Tumor Size (>/<=5 cm)", "name": "size_gt5", "type": "binary", "reference": "small",
         "label": "Tumour size > 5 cm"},
        {"column": "Multinodular", "name": "multinodular", "type": "binary", "reference": "N",
         "label": "Multinodular"},
        {"column": "Cirrhosis", "name": "cirrhosis", "type": "binary", "reference": "N", "label": "Cirrhosis"},
        {"column": "TNM staging", "name": "tnm", "type": "categorical", "reference": "I",
         "recode": {"IIIA": "III", "IIIB": "III", "IIIC": "III"}, "levels": ["I", "II", "III"],
         "label": "TNM stage (vs I)"},
        {"column": "BCLC staging", "name": "bclc", "type": "categorical", "reference": "0/A",
         "recode": {"0": "0/A", "A": "0/A"}, "levels": ["0/A", "B", "C"], "label": "BCLC stage (vs 0/A)"},
        {"column": "AFP (>/<=300ng/ml)", "name": "afp_gt300", "type": "binary", "reference": "low",
         "label": "AFP > 300 ng/mL"},
    ],
}
# Split rule used for GSE14520 (no centre split exists): seeded stratified split, 30 % validation, stratified by
# recurrence status.
GSE14520_SPLIT: dict[str, Any] = {"method": "stratified", "fraction": 0.3}


def gse14520_path() -> Path:
    """``../shared/data/gse14520/clinical.tsv`` beside the repository (``HCC_SHARED_DATA`` overrides the folder)."""
    import os

    from hcc_utils.config import repo_root

    base = os.environ.get("HCC_SHARED_DATA")
    root = Path(base) if base else repo_root().parent / "shared" / "data"
    return root / "gse14520" / "clinical.tsv"


def gse14520_parameters() -> dict[str, Any]:
    """Papermill parameters that run notebook 05 on GSE14520 (used by :mod:`hcc_utils.run`)."""
    return {"table_path": str(gse14520_path()), "column_map": json.loads(json.dumps(GSE14520_MAPPING)),
            "split": dict(GSE14520_SPLIT), "landmark": 24, "chapter": "gse14520"}


def synthetic_mapping() -> dict[str, Any]:
    """Column mapping of the synthetic cohort's patient table joined with ``models/signature.csv``.

    Built from :data:`hcc_utils.manifest.CLINICAL_VARIABLES` so it follows the manifest schema.
    """
    from hcc_utils.manifest import CLINICAL_VARIABLES

    per = {"age": 10, "tb": 10, "alt": 10, "ggt": 10}  # hazard ratios per 10 units (per 1 for albumin, g/L)
    cov = []
    for v in CLINICAL_VARIABLES:
        if v.kind == "continuous":
            k = per.get(v.name, 1)
            cov.append({"column": v.name, "name": v.name, "type": "continuous", "per": k,
                        "label": v.label if k == 1 else f"{v.label}, per {k}"})
        elif v.kind == "binary":
            cov.append({"column": v.name, "name": v.name, "type": "binary", "reference": 0, "label": v.label})
        else:
            ref = "F" if v.name == "sex" else v.levels[0]
            cov.append({"column": v.name, "name": v.name, "type": "binary" if len(v.levels) == 2 else "categorical",
                        "reference": ref, "levels": list(v.levels), "label": v.label})
    return {
        "name": "synthetic",
        "description": (
            "The synthetic default cohort (hcc_utils.synthetic): phantom CT with clinical variables and recurrence-free "
            "survival generated with known effects. The signature is the DSFR early-recurrence probability from "
            "notebook 04 (models/signature.csv)."),
        "id": "patient_id",
        "time": "rfs_months",
        "event": "recurrence",
        "time_unit": "months",
        "signature": {"column": "dsfr_signature", "name": "signature", "type": "continuous", "per": 0.1,
                      "label": "DSFR signature (per 0.1)"},
        "covariates": cov,
    }


# ----------------------------------------------------------------------------------------------------------------
# mapping and cleaning
# ----------------------------------------------------------------------------------------------------------------
def normalise_mapping(mapping: dict[str, Any]) -> dict[str, Any]:
    """Check a column mapping and fill defaults; returns a new dict.

    Raises
    ------
    ValueError
        On a missing key, an unknown type or time unit, a categorical variable without reference, or duplicate names.
    """
    if not isinstance(mapping, dict):
        raise ValueError(f"column mapping must be a dict, got {type(mapping).__name__}")
    m = json.loads(json.dumps(mapping))  # deep copy, and proves it is JSON-able (papermill parameters)
    for key in ("id", "time", "event", "signature"):
        if key not in m or m[key] in (None, ""):
            raise ValueError(f"column mapping lacks {key!r}")
    m.setdefault("name", "table")
    m.setdefault("time_unit", "months")
    if str(m["time_unit"]).lower() not in TIME_UNITS:
        raise ValueError(f"time_unit {m['time_unit']!r} not one of months, days, weeks, years")
    m["missing"] = list(MISSING_TOKENS) + [str(t) for t in m.get("missing", []) if str(t) not in MISSING_TOKENS]
    sig = m["signature"]
    if isinstance(sig, str):
        sig = {"column": sig}
    sig = dict(sig)
    sig.setdefault("name", "signature")
    sig.setdefault("type", "continuous")
    m["signature"] = _normalise_var(sig, "signature")
    covs = m.get("covariates") or []
    if isinstance(covs, dict):  # {"column": {spec}} form
        covs = [{"column": k, **(v or {})} for k, v in covs.items()]
    m["covariates"] = [_normalise_var(dict(c), f"covariate {i}") for i, c in enumerate(covs)]
    names = [m["signature"]["name"]] + [c["name"] for c in m["covariates"]]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"column mapping: variable names used twice: {dup}")
    reserved = {"time", "event", "cohort", "er"}
    bad = reserved.intersection(names)
    if bad:
        raise ValueError(f"column mapping: variable names {sorted(bad)} are reserved")
    return m


def _normalise_var(v: dict, where: str) -> dict:
    if "column" not in v:
        raise ValueError(f"column mapping: {where} lacks 'column'")
    v.setdefault("name", _safe_name(str(v["column"])))
    v.setdefault("label", v["name"])
    v["type"] = str(v.get("type", "continuous")).lower()
    if v["type"] not in ("continuous", "binary", "categorical"):
        raise ValueError(f"column mapping: {where} ({v['column']!r}) has type {v['type']!r}; "
                         "use continuous, binary or categorical")
    if v["type"] == "categorical" and v.get("reference") is None:
        raise ValueError(f"column mapping: categorical {v['column']!r} needs a 'reference' level")
    if v["type"] == "continuous":
        v["per"] = float(v.get("per", 1.0))
        if not v["per"] > 0:
            raise ValueError(f"column mapping: 'per' of {v['column']!r} must be > 0")
    if v.get("reference") is not None:
        v["reference"] = str(v["reference"])
    if v.get("levels") is not None:
        v["levels"] = [str(x) for x in v["levels"]]
    v["recode"] = {str(k): str(x) for k, x in (v.get("recode") or {}).items()}
    return v


def _safe_name(s: str) -> str:
    out = "".join(ch.lower() if ch.isalnum() else "_" for ch in s).strip("_")
    while "__" in out:
        out = out.replace("__", "_")
    return out or "var"


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a clinical table as strings (CSV, TSV/TXT, or Excel ``file.xlsx`` / ``file.xlsx#Sheet``).

    Everything is read as text so that cleaning can report what it changed.
    """
    spath = str(path)
    sheet = None
    if "#" in spath and spath.lower().split("#")[0].endswith((".xlsx", ".xls")):
        spath, sheet = spath.split("#", 1)
    p = Path(spath)
    if not p.exists():
        raise FileNotFoundError(f"clinical table {p} does not exist")
    suffix = p.suffix.lower()
    if suffix in (".xlsx", ".xls"):
        df = pd.read_excel(p, sheet_name=sheet or 0, dtype=str, keep_default_na=False)
    elif suffix in (".tsv", ".txt", ".tab"):
        df = pd.read_csv(p, sep="\t", dtype=str, keep_default_na=False)
    else:
        df = pd.read_csv(p, sep=None, engine="python", dtype=str, keep_default_na=False)
    df.attrs["source"] = str(path)
    return df


@dataclass
class Prepared:
    """A cleaned analysis table.

    Attributes
    ----------
    data : DataFrame
        Index = patient id; columns ``time`` (months), ``event`` (0/1), ``er`` (event before the landmark), the
        signature and covariates under their mapping names (continuous as float, binary as 0/1, categorical as
        level strings), and ``cohort`` once :func:`split_cohorts` has run.
    mapping : dict
        The normalised mapping.
    report : DataFrame
        One row per mapped column: what was read, treated as missing, recoded or dropped.
    source : str
        File the table came from (for error messages and the report).
    """

    data: pd.DataFrame
    mapping: dict
    report: pd.DataFrame
    source: str
    n_raw: int = 0
    dropped: dict = field(default_factory=dict)

    @property
    def variables(self) -> list[dict]:
        return [self.mapping["signature"]] + list(self.mapping["covariates"])

    def var(self, name: str) -> dict:
        for v in self.variables:
            if v["name"] == name:
                return v
        raise KeyError(f"no variable {name!r} in the mapping")


def prepare_table(table: pd.DataFrame | str | Path, mapping: dict, landmark: float = 24.0,
                  source: str | None = None) -> Prepared:
    """Clean a clinical table according to a column mapping.

    Parameters
    ----------
    table : DataFrame or path
        Raw table (read as text preferred; see :func:`read_table`).
    mapping : dict
        Column mapping (module docstring).
    landmark : float
        Landmark in months for the early-recurrence label ``er`` (event before the landmark; censored before it -> 0,
        as :func:`hcc_utils.manifest.early_recurrence`).
    source : str, optional
        File name used in messages (defaults to the table's ``attrs["source"]``).

    Returns
    -------
    Prepared
    """
    if not isinstance(table, pd.DataFrame):
        table = read_table(table)
    m = normalise_mapping(mapping)
    src = source or table.attrs.get("source", "<table>")
    raw = table.copy()
    raw.columns = [str(c).strip() for c in raw.columns]
    needed = [m["id"], m["time"], m["event"]] + [v["column"] for v in [m["signature"]] + m["covariates"]]
    missing_cols = [c for c in needed if c not in raw.columns]
    if missing_cols:
        raise ValueError(f"{src}: column(s) {missing_cols} named in the mapping are not in the table "
                         f"(columns: {list(raw.columns)})")
    tokens = set(m["missing"])
    report = []

    def clean_text(col):
        s = raw[col].astype(object)
        isna0 = s.isna()
        s = s.where(isna0, s.astype(str))
        stripped = s.where(isna0, s.str.strip())
        n_space = int((~isna0 & (stripped != s)).sum())
        is_tok = ~isna0 & stripped.isin(tokens)
        n_blank = int((~isna0 & (stripped == "")).sum()) + int(isna0.sum())
        n_tok = int(is_tok.sum()) - int((~isna0 & (stripped == "")).sum())
        tok_seen = sorted(set(stripped[is_tok & (stripped != "")]))
        out = stripped.where(~is_tok & ~isna0, None)
        return out, n_space, n_blank, n_tok, tok_seen

    # id
    ids, n_space, n_blank, n_tok, _ = clean_text(m["id"])
    if ids.isna().any():
        rows = [int(i) + 2 for i in np.where(ids.isna())[0]]
        raise ValueError(f"{src}: column {m['id']!r} (patient id) is empty in data row(s) {rows[:10]} "
                         "(row numbers count the header as row 1)")
    dups = ids[ids.duplicated()].unique().tolist()
    if dups:
        raise ValueError(f"{src}: patient id(s) {dups[:10]} appear more than once in column {m['id']!r}")
    out = pd.DataFrame(index=pd.Index(ids.values, name="patient_id"))

    def rec(column, name, role, kind, n_read, n_space, n_blank, n_tok, tok_seen, recoded="", n_missing=0, note=""):
        report.append({"column": column, "variable": name, "role": role, "type": kind, "n_rows": len(raw),
                       "n_stripped_spaces": n_space, "n_blank": n_blank, "n_missing_token": n_tok,
                       "missing_tokens_seen": " ".join(repr(t) for t in tok_seen), "recoded": recoded,
                       "n_missing": n_missing, "n_valid": n_read, "note": note})

    rec(m["id"], "patient_id", "id", "id", len(ids), n_space, n_blank, n_tok, [])

    # time
    t, n_space, n_blank, n_tok, tok_seen = clean_text(m["time"])
    tnum = _to_float(t, ids, src, m["time"])
    if (tnum < 0).any():
        pid = ids[tnum < 0].iloc[0]
        raise ValueError(f"{src}: patient {pid}: negative time {t[ids == pid].iloc[0]!r} in column {m['time']!r}")
    factor = TIME_UNITS[str(m["time_unit"]).lower()]
    out["time"] = tnum.values * factor
    rec(m["time"], "time", "time", f"time ({m['time_unit']} -> months)", int(tnum.notna().sum()), n_space, n_blank,
        n_tok, tok_seen, recoded="" if factor == 1 else f"x {factor:.6g} to months", n_missing=int(tnum.isna().sum()))

    # event
    e, n_space, n_blank, n_tok, tok_seen = clean_text(m["event"])
    emap = {str(k).strip().lower(): int(v) for k, v in (m.get("event_values") or EVENT_DEFAULT).items()}
    ev = pd.Series(np.nan, index=e.index)
    for i, val in e.items():
        if val is None:
            continue
        key = str(val).strip().lower()
        if key not in emap:
            raise ValueError(f"{src}: patient {ids[i]}: event value {val!r} in column {m['event']!r} is not one of "
                             f"{sorted(emap)}")
        ev[i] = emap[key]
    out["event"] = ev.values
    rec(m["event"], "event", "event", "event 0/1", int(ev.notna().sum()), n_space, n_blank, n_tok, tok_seen,
        recoded=", ".join(f"{k}->{v}" for k, v in sorted(emap.items()) if k in set(e.dropna().str.lower())),
        n_missing=int(ev.isna().sum()))

    # variables
    for v in [m["signature"]] + m["covariates"]:
        role = "signature" if v is m["signature"] else "covariate"
        s, n_space, n_blank, n_tok, tok_seen = clean_text(v["column"])
        recoded = []
        if v["recode"]:
            hits = s.isin(list(v["recode"]))
            for k, x in v["recode"].items():
                n = int((s == k).sum())
                if n:
                    recoded.append(f"{k!r}->{x!r} ({n})")
            s = s.where(~hits, s.map(v["recode"]))
        note = ""
        if v["type"] == "continuous":
            vals = _to_float(s, ids, src, v["column"])
            out[v["name"]] = vals.values
        else:
            present = sorted(set(s.dropna()), key=_level_key)
            levels = v.get("levels") or present
            extra = [x for x in present if x not in levels]
            if extra:
                pid = ids[s.isin(extra)].iloc[0]
                raise ValueError(f"{src}: patient {pid}: value {extra[0]!r} in column {v['column']!r} is not one of "
                                 f"the mapped levels {levels}")
            ref = v.get("reference")
            if v["type"] == "binary":
                if len(levels) != 2 and len(present) > 2:
                    pid = ids[s == present[2]].iloc[0]
                    raise ValueError(f"{src}: column {v['column']!r} is mapped as binary but has levels {present} "
                                     f"(e.g. patient {pid}); map it as categorical or recode it")
                if ref is None:
                    ref = levels[0]
                if ref not in levels and len(levels) == 2:
                    raise ValueError(f"{src}: reference {ref!r} of column {v['column']!r} is not a level {levels}")
                if len(levels) < 2:
                    note = f"only one level present ({levels})"
                other = [x for x in levels if x != ref]
                v["levels"] = [ref] + other[:1]
                v["reference"] = ref
                codes = s.map({ref: 0.0, **{o: 1.0 for o in other}})
                out[v["name"]] = codes.astype(float).values
                if not (set(levels) <= {"0", "1"} and ref == "0"):
                    recoded.append(f"{ref!r}->0, {other[0]!r}->1" if other else f"{ref!r}->0")
            else:
                if ref not in levels:
                    raise ValueError(f"{src}: reference {ref!r} of column {v['column']!r} is not a level {levels}")
                v["levels"] = [ref] + [x for x in levels if x != ref]
                out[v["name"]] = s.values
                absent = [x for x in levels if x not in present]
                if absent:
                    note = f"levels {absent} not present"
        n_mis = int(pd.isna(out[v["name"]]).sum())
        rec(v["column"], v["name"], role, v["type"], len(out) - n_mis, n_space, n_blank, n_tok, tok_seen,
            recoded="; ".join(recoded), n_missing=n_mis, note=note)

    # rows that cannot be analysed at all
    n_raw = len(out)
    dropped = {}
    for col, label in (("time", m["time"]), ("event", m["event"]), (m["signature"]["name"], m["signature"]["column"])):
        bad = out[col].isna()
        if bad.any():
            dropped[label] = out.index[bad].tolist()
        out = out[~bad]
    out["event"] = out["event"].astype(int)
    from hcc_utils.manifest import early_recurrence

    out["er"] = early_recurrence(out["time"], out["event"], float(landmark))
    rep = pd.DataFrame(report)
    rep["n_rows_dropped"] = [len(dropped.get(c, [])) for c in rep["column"]]
    rep.attrs["n_raw"] = n_raw
    rep.attrs["n_analysed"] = len(out)
    return Prepared(data=out, mapping=m, report=rep, source=str(src), n_raw=n_raw, dropped=dropped)


def _level_key(x: str):
    try:
        return (0, float(x), x)
    except ValueError:
        return (1, 0.0, x)


def _to_float(s: pd.Series, ids: pd.Series, src: str, column: str) -> pd.Series:
    out = pd.to_numeric(s, errors="coerce")
    bad = s.notna() & out.isna()
    if bad.any():
        i = bad[bad].index[0]
        raise ValueError(f"{src}: patient {ids[i]}: value {s[i]!r} in column {column!r} is not a number")
    return out.astype(float)


# ----------------------------------------------------------------------------------------------------------------
# synthetic cohort input
# ----------------------------------------------------------------------------------------------------------------
def load_synthetic_table(manifest_path: str | Path, signature_csv: str | Path) -> pd.DataFrame:
    """Patient table of the manifest joined with ``models/signature.csv`` (patient_id, cohort, dsfr_signature).

    Raises
    ------
    FileNotFoundError
        When the signature file has not been written yet (notebook 04 writes it).
    ValueError
        When a patient lacks a signature or the cohorts disagree.
    """
    from hcc_utils.manifest import load_patient_table

    signature_csv = Path(signature_csv)
    if not signature_csv.exists():
        raise FileNotFoundError(f"{signature_csv} not found: run notebook 04 (model comparison) first")
    pt = load_patient_table(manifest_path)
    sig = pd.read_csv(signature_csv, dtype={"patient_id": str}).set_index("patient_id")
    for col in ("cohort", "dsfr_signature"):
        if col not in sig.columns:
            raise ValueError(f"{signature_csv}: column {col!r} missing")
    pt.index = pt.index.astype(str)
    lost = [p for p in pt.index if p not in sig.index]
    if lost:
        raise ValueError(f"{signature_csv}: no dsfr_signature for patient(s) {lost[:10]}")
    if "cohort" in pt.columns:
        diff = [p for p in pt.index if str(pt.at[p, "cohort"]) != str(sig.at[p, "cohort"])]
        if diff:
            raise ValueError(f"{signature_csv}: cohort of patient {diff[0]} differs from the manifest")
    df = pt.join(sig[["dsfr_signature"]])
    df = df.reset_index().rename(columns={"index": "patient_id"})
    if "patient_id" not in df.columns:
        df = df.rename(columns={df.columns[0]: "patient_id"})
    out = df.astype(object).where(df.notna(), "")
    out = out.astype(str)
    out.attrs["source"] = f"{manifest_path} + {signature_csv}"
    return out


# ----------------------------------------------------------------------------------------------------------------
# split
# ----------------------------------------------------------------------------------------------------------------
def split_cohorts(prep: Prepared, rule: str | dict | None, seed: int, raw: pd.DataFrame | None = None) -> Prepared:
    """Assign ``cohort`` (development / validation) to each patient.

    Parameters
    ----------
    prep : Prepared
    rule : str, dict or None
        * a column name of the raw table whose values are ``development`` / ``validation`` (case and spaces ignored;
          ``train``/``test`` and ``dev``/``val`` also accepted), or ``{"column": c, "development": v1,
          "validation": v2}``;
        * ``{"method": "stratified", "fraction": f, "seed": s}``: seeded random split, a fraction ``f`` of patients
          to validation, stratified by event status (scikit-learn ``train_test_split``); ``seed`` defaults to the
          ``seed`` argument;
        * ``None``: the raw table's ``cohort`` column when there is one, else stratified with fraction 0.3.
    seed : int
    raw : DataFrame, optional
        The raw table (needed for a column rule whose column is not in ``prep.data``).

    Returns
    -------
    Prepared
        Same object, ``data["cohort"]`` filled, ``mapping["split"]`` records the rule used.
    """
    data = prep.data
    if rule is None:
        has_col = (raw is not None and "cohort" in raw.columns) or "cohort" in data.columns
        rule = "cohort" if has_col else {"method": "stratified", "fraction": 0.3}
    if isinstance(rule, str):
        rule = {"column": rule}
    rule = dict(rule)
    if "column" in rule:
        col = rule["column"]
        if col in data.columns:
            vals = data[col]
        elif raw is not None and col in raw.columns:
            vals = pd.Series(raw[col].values, index=raw[prep.mapping["id"]].astype(str).str.strip()).reindex(data.index)
        else:
            raise ValueError(f"{prep.source}: split column {col!r} is not in the table")
        dev_v = str(rule.get("development", "development")).strip().lower()
        val_v = str(rule.get("validation", "validation")).strip().lower()
        aliases = {dev_v: "development", val_v: "validation"}
        if "development" not in rule:
            aliases.update({"dev": "development", "train": "development", "training": "development"})
        if "validation" not in rule:
            aliases.update({"val": "validation", "test": "validation", "valid": "validation"})
        coh = []
        for pid, x in vals.items():
            key = str(x).strip().lower()
            if key not in aliases:
                raise ValueError(f"{prep.source}: patient {pid}: split column {col!r} has {x!r}, expected "
                                 f"{rule.get('development', 'development')!r} or "
                                 f"{rule.get('validation', 'validation')!r}")
            coh.append(aliases[key])
        data["cohort"] = coh
        rule_used = {"column": col}
    elif rule.get("method") == "stratified":
        from sklearn.model_selection import train_test_split

        frac = float(rule.get("fraction", 0.3))
        if not 0 < frac < 1:
            raise ValueError(f"split fraction must be in (0, 1), got {frac}")
        s = int(rule.get("seed", seed) if rule.get("seed") is not None else seed)
        idx = np.arange(len(data))
        strat = data["event"].values if data["event"].value_counts().min() >= 2 else None
        _, val_idx = train_test_split(idx, test_size=frac, random_state=s, stratify=strat)
        coh = np.array(["development"] * len(data), dtype=object)
        coh[val_idx] = "validation"
        data["cohort"] = coh
        rule_used = {"method": "stratified", "fraction": frac, "seed": s, "stratify": "event"}
    else:
        raise ValueError(f"unknown split rule {rule!r}: give a column name or "
                         "{'method': 'stratified', 'fraction': f, 'seed': s}")
    for c in ("development", "validation"):
        sub = data[data["cohort"] == c]
        if len(sub) == 0:
            raise ValueError(f"{prep.source}: the split leaves no {c} patients")
        if sub["event"].sum() == 0:
            raise ValueError(f"{prep.source}: the {c} cohort has no events; survival models cannot be fitted")
    prep.mapping["split"] = rule_used
    return prep


# ----------------------------------------------------------------------------------------------------------------
# Cox models
# ----------------------------------------------------------------------------------------------------------------
def term_columns(var: dict) -> list[str]:
    """Design-matrix columns of one term (``name`` or ``name[level]`` per non-reference level)."""
    if var["type"] == "categorical":
        return [f"{var['name']}[{lv}]" for lv in var["levels"][1:]]
    return [var["name"]]


def design_matrix(data: pd.DataFrame, variables: list[dict]) -> pd.DataFrame:
    """Numeric design matrix: continuous ``value / per``, binary 0/1, categorical dummies against the reference."""
    cols = {}
    for v in variables:
        x = data[v["name"]]
        if v["type"] == "continuous":
            cols[v["name"]] = x.astype(float) / v["per"]
        elif v["type"] == "binary":
            cols[v["name"]] = x.astype(float)
        else:
            for lv in v["levels"][1:]:
                cols[f"{v['name']}[{lv}]"] = np.where(x.isna(), np.nan, (x == lv).astype(float))
    return pd.DataFrame(cols, index=data.index)


@dataclass
class CoxFit:
    """A fitted Cox model (:func:`hcc_utils.stats.cox_table`: statsmodels ``PHReg``, Efron ties, as R ``coxph``).

    Attributes
    ----------
    variables : list of dict
        Term specs (mapping entries).
    table : DataFrame
        index = design column; ``coef, se, hr, hr_lower, hr_upper, z, p``.
    X : DataFrame
        Design matrix of the complete cases used (index = patient id).
    time, event : ndarray
    loglik : float
        Log partial likelihood.
    """

    variables: list
    table: pd.DataFrame
    X: pd.DataFrame
    time: np.ndarray
    event: np.ndarray
    loglik: float

    @property
    def params(self) -> pd.Series:
        return self.table["coef"]

    @property
    def n(self) -> int:
        return len(self.X)

    @property
    def events(self) -> int:
        return int(self.event.sum())

    @property
    def centre(self) -> float:
        """sum(mean(design) * beta): the linear predictor is centred at the covariate means (R ``coxph``/rms)."""
        return float(self.X.mean().to_numpy() @ self.params.to_numpy())

    def lp(self, X: pd.DataFrame | None = None) -> np.ndarray:
        """Centred linear predictor of ``X`` (default: the fitted patients)."""
        X = self.X if X is None else X[self.X.columns]
        return X.to_numpy(float) @ self.params.to_numpy() - self.centre

    def baseline_survival(self, t: float) -> float:
        """S0(t) at the covariate means (:func:`hcc_utils.stats.cox_baseline_survival`, as R ``survfit.coxph``)."""
        from hcc_utils import stats

        return float(stats.cox_baseline_survival(self.time, self.event, self.lp(), float(t)))


def fit_cox(data: pd.DataFrame, variables: list[dict]) -> CoxFit:
    """Fit a Cox model on the complete cases of ``variables`` with :func:`hcc_utils.stats.cox_table`.

    The design is :func:`design_matrix` (continuous ``value / per``, binary 0/1, categorical dummies), so the
    hazard ratios are per ``per`` units and per level against the reference.

    Raises
    ------
    ValueError
        When a design column is constant among the complete cases or the fit does not converge.
    """
    from hcc_utils import stats

    X = design_matrix(data, variables)
    df = pd.concat([data[["time", "event"]], X], axis=1).dropna()
    const = [c for c in X.columns if df[c].nunique() < 2]
    if const:
        raise ValueError(f"Cox model: column(s) {const} are constant in the {len(df)} complete cases")
    tab = stats.cox_table(df, "time", "event", list(X.columns))
    return CoxFit(variables=list(variables), table=tab, X=df[list(X.columns)], time=df["time"].to_numpy(float),
                  event=df["event"].to_numpy(int), loglik=float(tab.attrs["loglik"]))


def _cox_rows(fit: CoxFit, variables: list[dict], prefix: str = "") -> list[dict]:
    s = fit.table
    rows = []
    for v in variables:
        for c in term_columns(v):
            lv = c[len(v["name"]) + 1:-1] if v["type"] == "categorical" else (
                v["levels"][1] if v["type"] == "binary" and v.get("levels") else "")
            rows.append({"variable": v["name"], "label": v["label"], "level": lv, "column": c,
                         f"{prefix}coef": s.loc[c, "coef"], f"{prefix}hr": s.loc[c, "hr"],
                         f"{prefix}hr_lower": s.loc[c, "hr_lower"], f"{prefix}hr_upper": s.loc[c, "hr_upper"],
                         f"{prefix}p": s.loc[c, "p"]})
    return rows


def _null_loglik(sub: pd.DataFrame) -> float:
    """Log partial likelihood at beta = 0 (:func:`hcc_utils.stats.cox_null_loglik`, R ``coxph()$loglik[1]``)."""
    from hcc_utils import stats

    return float(stats.cox_null_loglik(sub["time"].to_numpy(float), sub["event"].to_numpy(int)))


def _lr_p(data: pd.DataFrame, var: dict, others: list[dict]) -> float:
    """Likelihood-ratio p of one term given ``others`` (same complete cases)."""
    from scipy.stats import chi2

    cols = ["time", "event"] + [v["name"] for v in others + [var]]
    sub = data[cols].dropna()
    full = fit_cox(sub, others + [var])
    ll0 = fit_cox(sub, others).loglik if others else _null_loglik(sub)
    return float(chi2.sf(2 * (full.loglik - ll0), len(term_columns(var))))


def univariable_cox(dev: pd.DataFrame, variables: list[dict]) -> pd.DataFrame:
    """Univariable Cox model of each variable on the development cohort (Table S1).

    Each variable uses its own complete cases. ``p_term`` is the likelihood-ratio p of the whole term (equal to the
    Wald p in size for one-column terms; the screening p for categorical variables).
    """
    rows = []
    for v in variables:
        fit = fit_cox(dev, [v])
        r = _cox_rows(fit, [v])
        p_term = _lr_p(dev, v, []) if v["type"] == "categorical" else r[0]["p"]
        for x in r:
            x["n"] = fit.n
            x["events"] = fit.events
            x["p_term"] = p_term
        rows += r
    return pd.DataFrame(rows)


def multivariable_cox(dev: pd.DataFrame, variables: list[dict]):
    """Multivariable Cox of ``variables`` on complete cases; returns (fit, table)."""
    fit = fit_cox(dev, variables)
    tab = pd.DataFrame(_cox_rows(fit, variables))
    tab["n"] = fit.n
    return fit, tab


def stepwise_aic(dev: pd.DataFrame, variables: list[dict], keep: tuple[str, ...] = ("signature",)
                 ) -> tuple[list[dict], pd.DataFrame]:
    """Stepwise selection by AIC in both directions (:func:`hcc_utils.stats.stepwise_aic`, as R
    ``step(full_fit, scope=list(lower=~keep, upper=~all), direction="both")``), starting from the full model.

    All models are fitted on the complete cases of ``variables`` (as R requires); a categorical variable is one term.

    Returns
    -------
    selected : list of dict
        Terms of the final model in mapping order.
    trace : DataFrame
        step, action (start/add/drop), term, aic, model, n.
    """
    from hcc_utils import stats

    names = [v["name"] for v in variables]
    sub = dev[["time", "event"] + names].dropna()
    frame = sub[["time", "event"]].copy()
    reference = {}
    for v in variables:
        x = sub[v["name"]]
        if v["type"] == "continuous":
            frame[v["name"]] = x.astype(float) / v["per"]
        elif v["type"] == "binary":
            frame[v["name"]] = x.astype(float)
        else:
            frame[v["name"]] = pd.Categorical(x, categories=v["levels"])
            reference[v["name"]] = v["reference"]
    res = stats.stepwise_aic(frame, "time", "event", names, direction="both", reference=reference,
                             keep=[k for k in keep if k in names])
    trace = res.path.rename(columns={"move": "action", "variable": "term"})
    trace["action"] = trace["action"].map({"start": "start", "+": "add", "-": "drop"}).fillna(trace["action"])
    trace["n"] = len(sub)
    by = {v["name"]: v for v in variables}
    return [by[n] for n in names if n in res.selected], trace


# ----------------------------------------------------------------------------------------------------------------
# risk groups
# ----------------------------------------------------------------------------------------------------------------
def youden_cutoff(y, score) -> float:
    """Youden threshold as pROC ``coords(x="best")`` (:func:`hcc_utils.stats.youden_threshold`; high = positive)."""
    from hcc_utils import stats

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
        cut = youden_cutoff(dev.loc[known, "er"], dev.loc[known, sig["name"]])
    else:
        raise ValueError(f"cutoff method {method!r}: use 'youden' or 'median'")
    d["risk_group"] = np.where(x >= cut, "high", "low")
    return {"method": method, "cutoff": cut}


def km_table(data: pd.DataFrame, group_col: str = "risk_group") -> pd.DataFrame:
    """Per cohort: patients and events per group, median RFS (95% CI, R ``survfit``), HR of high vs low (Cox, Efron)
    and the log-rank chi-square and p (all from :mod:`hcc_utils.stats`)."""
    from hcc_utils import stats

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
# Nomogram
# ----------------------------------------------------------------------------------------------------------------
def _axis_label(label: str) -> str:
    """Variable label without a trailing "per k" (axes and inputs show values in the table's units)."""
    import re

    return re.sub(r"(,\s*per\s+[0-9.]+|\s*\(per\s+[0-9.]+[^)]*\))\s*$", "", label).strip() or label


class Nomogram:
    """rms-style nomogram of a Cox model for RFS at a landmark.

    Points: each term's linear predictor ``lp_v(x)`` (beta times the design value) is shifted to 0 at its minimum over
    the displayed range; the term with the widest range gets 100 points (``scale = 100 / max range``). Total points
    -> ``LP = total / scale + sum_v min_v`` -> RFS(landmark) = ``S0 ** exp(LP - centre)``, where ``S0`` is the
    Breslow baseline survival at the landmark at the development covariate means (``centre`` = beta . means).
    The scaling is :class:`hcc_utils.stats.Nomogram`'s (checked against R rms); this class turns it into the JSON
    spec shared by the ipywidgets calculator and ``assets/nomogram.js``, which runs the same arithmetic.
    """

    def __init__(self, spec: dict):
        self.spec = spec

    # -- construction
    @classmethod
    def from_cox(cls, fit: CoxFit, landmark: float, risk_threshold: float | None = None,
                 threshold_rule: str = "", title: str = "Nomogram") -> "Nomogram":
        """Build from a :func:`fit_cox` model.

        Continuous axes span the rms ``datadist`` display range of the fitted patients
        (:func:`hcc_utils.stats.default_axis_range`); the sliders of both calculators use the same range.
        """
        from hcc_utils import stats

        beta = fit.params
        s0 = fit.baseline_survival(landmark)
        data = fit.X
        variables, coefs, axes = [], {}, {}
        for v in fit.variables:
            item = {"name": v["name"], "label": v["label"], "type": v["type"],
                    "axis_label": v.get("axis_label") or _axis_label(v["label"])}
            if v["type"] == "continuous":
                x = data[v["name"]].astype(float) * v["per"]  # back to the table's units
                lo, hi = stats.default_axis_range(x)
                b = float(beta[v["name"]])
                per = float(v["per"])
                span = hi - lo
                step = 10 ** math.floor(math.log10(span / 100)) if span > 0 else 1.0
                lo, hi = math.floor(lo / step) * step, math.ceil(hi / step) * step
                default = lo + round((float(np.median(x)) - lo) / step) * step  # on the slider's grid
                item.update(beta=b, per=per, min=float(round(lo, 12)), max=float(round(hi, 12)), step=step,
                            default=float(round(default, 12)))
                coefs[v["name"]] = b / per  # per table unit
                axes[v["name"]] = {"kind": "continuous", "values": [item["min"], item["max"]]}
            else:
                levels = list(v["levels"])
                if v["type"] == "binary":
                    lp_levels = [0.0, float(beta[v["name"]])]
                    counts = data[v["name"]].value_counts()
                    default = levels[int(counts.idxmax())]
                else:
                    lp_levels = [0.0] + [float(beta[f"{v['name']}[{lv}]"]) for lv in levels[1:]]
                    dummies = data[[f"{v['name']}[{lv}]" for lv in levels[1:]]].to_numpy()
                    counts = [int((dummies.sum(1) == 0).sum())] + [int(c) for c in dummies.sum(0)]
                    default = levels[int(np.argmax(counts))]
                item.update(levels=levels, lp=lp_levels, default=default)
                coefs.update({f"{v['name']}[{lv}]": b for lv, b in zip(levels[1:], lp_levels[1:])})
                axes[v["name"]] = {"kind": "categorical", "values": levels}
            variables.append(item)
        # the rms scaling (widest axis = 100 points) is stats.Nomogram's; this class only adds the calculator's spec
        try:
            nom = stats.Nomogram.from_coefficients(coefs, fit.centre, s0, landmark, axes)
        except ValueError as exc:
            raise ValueError(f"nomogram: all coefficients are zero ({exc})") from exc
        for item, ax in zip(variables, nom.axes):
            item["lp_min"] = float(ax.min_bx)
            item["lp_max"] = float(ax.min_bx + max(ax.points) / nom.scale)
        spec = {
            "format": "hcc-dsfr-nomogram", "version": 1, "title": title,
            "landmark": float(landmark), "time_unit": "months",
            "baseline_survival": s0, "centre": fit.centre, "scale": nom.scale,
            "lp_offset": float(sum(v["lp_min"] for v in variables)),
            "variables": variables,
            "risk_threshold": None if risk_threshold is None else float(risk_threshold),
            "risk_threshold_rule": threshold_rule,
            "n": fit.n, "events": fit.events,
        }
        return cls(spec)

    @classmethod
    def from_dict(cls, d: dict) -> "Nomogram":
        if d.get("format") != "hcc-dsfr-nomogram":
            raise ValueError("not a nomogram export (format != 'hcc-dsfr-nomogram')")
        return cls(json.loads(json.dumps(d)))

    def to_dict(self) -> dict:
        return json.loads(json.dumps(self.spec))

    def to_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.spec, indent=2))
        return path

    @property
    def variables(self) -> list[dict]:
        return self.spec["variables"]

    def defaults(self) -> dict:
        return {v["name"]: v["default"] for v in self.variables}

    # -- arithmetic (kept identical to assets/nomogram.js)
    def term_lp(self, var: dict, value) -> float:
        if var["type"] == "continuous":
            return var["beta"] * (float(value) / var["per"])
        levels = var["levels"]
        key = value
        if var["type"] == "binary" and not isinstance(value, str):
            key = levels[int(value)]
        key = str(key)
        if key not in levels:
            raise ValueError(f"nomogram: {var['name']} = {value!r} is not one of {levels}")
        return var["lp"][levels.index(key)]

    def points(self, var: dict, value) -> float:
        return (self.term_lp(var, value) - var["lp_min"]) * self.spec["scale"]

    def predict(self, values: dict) -> dict:
        """Points per variable, total points, linear predictor, RFS and ER probability at the landmark, risk group.

        ``values`` maps variable name to a number (continuous), a level string, or 0/1 (binary).
        """
        pts = {}
        total = 0.0
        for v in self.variables:
            if v["name"] not in values:
                raise ValueError(f"nomogram: no value for {v['name']!r}")
            p = self.points(v, values[v["name"]])
            pts[v["name"]] = p
            total += p
        lp = total / self.spec["scale"] + self.spec["lp_offset"]
        rfs = self.spec["baseline_survival"] ** math.exp(lp - self.spec["centre"])
        er = 1.0 - rfs
        thr = self.spec.get("risk_threshold")
        group = None if thr is None else ("high" if er >= thr else "low")
        return {"points": pts, "total_points": total, "lp": lp, "rfs": rfs, "er_prob": er, "risk_group": group}

    def predict_frame(self, data: pd.DataFrame) -> pd.DataFrame:
        """:meth:`predict` for each row of an analysis table (binary columns 0/1)."""
        rows = []
        for pid, r in data.iterrows():
            vals = {}
            for v in self.variables:
                x = r[v["name"]]
                vals[v["name"]] = x if v["type"] != "binary" else (np.nan if pd.isna(x) else int(x))
            if any(pd.isna(x) if not isinstance(x, str) else False for x in vals.values()):
                rows.append({"patient_id": pid, "total_points": np.nan, "lp": np.nan, "rfs": np.nan, "er_prob": np.nan})
                continue
            p = self.predict(vals)
            rows.append({"patient_id": pid, "total_points": p["total_points"], "lp": p["lp"], "rfs": p["rfs"],
                         "er_prob": p["er_prob"]})
        return pd.DataFrame(rows).set_index("patient_id")


# ----------------------------------------------------------------------------------------------------------------
# discrimination, calibration, decision curves
# ----------------------------------------------------------------------------------------------------------------
def _tdauc(time, event, risk, t) -> float:
    """tdAUC(t) (:func:`hcc_utils.stats.time_dependent_auc`), NaN when there are no cases or no controls at t."""
    from hcc_utils import stats

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
    from hcc_utils import stats

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
    from hcc_utils import stats

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


def calibration(data: pd.DataFrame, fit: CoxFit, pred_rfs: pd.Series, landmark: float, n_bootstrap: int,
                seed: int, progress: bool = False) -> pd.DataFrame:
    """Calibration of predicted RFS at the landmark: KM observed vs mean predicted by group of predicted risk.

    Development: :func:`hcc_utils.stats.calibration_at_time` on the model's design (apparent values and the
    bootstrap optimism correction of rms ``calibrate(cmethod="KM", u=landmark)``, ``n_bootstrap`` replicates,
    seeded). Validation: apparent (external) calibration of the development model with the same grouping rule.

    Parameters
    ----------
    data : DataFrame
        Analysis table with ``cohort``.
    fit : CoxFit
        The development model (its design columns define the bootstrap refits).
    pred_rfs : Series
        Predicted RFS at the landmark of ``fit`` for every patient (index = patient id; NaN when a value is missing).
    """
    from hcc_utils import stats

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
    from hcc_utils import stats

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
    nomogram: Nomogram
    predictions: pd.DataFrame
    table4: pd.DataFrame
    calibration: pd.DataFrame
    decision: pd.DataFrame
    tdauc_time: pd.DataFrame
    results: dict


def run_survival(prep: Prepared, landmark: float = 24.0, n_bootstrap: int = 200, seed: int = 2022,
                 screen_p: float = 0.2, cutoff_method: str = "youden", progress: bool = True) -> SurvivalResult:
    """Run the whole survival analysis of notebook 05 on a prepared, split table.

    Steps: risk groups (cutoff on development) -> KM/log-rank per cohort -> univariable Cox of signature and covariates
    on development (Table S1) -> multivariable Cox of terms with p < ``screen_p`` (the signature always enters) ->
    stepwise AIC (both directions, signature kept) -> final model (Table 3) -> nomogram -> C-index and tdAUC with
    CIs for nomogram vs signature alone (Table 4) -> calibration (bootstrap optimism, ``n_bootstrap`` replicates),
    decision curves, tdAUC over time.

    Selection runs on the development patients complete for all screened variables (one data set for every model
    compared, as R ``step`` needs); the final model is then refitted on all development patients complete for its
    own terms (``stepwise_trace`` and ``table3`` give both n).
    """
    if "cohort" not in prep.data.columns:
        raise ValueError("split the table first (split_cohorts)")
    d = prep.data
    sig = prep.mapping["signature"]
    cutoff = risk_groups(prep, landmark, cutoff_method)
    km = km_table(d)
    dev = d[d["cohort"] == "development"]
    variables = prep.variables
    # drop covariates that cannot be modelled in development (a single level), with a note
    usable, skipped = [], {}
    for v in variables:
        x = dev[v["name"]].dropna()
        if x.nunique() < 2:
            skipped[v["name"]] = "one value in development"
            continue
        try:  # a term whose univariable Cox fit diverges (perfect separation) cannot enter any model
            fit_cox(dev, [v])
        except ValueError as err:
            skipped[v["name"]] = f"not estimable in development: {err}"
            continue
        usable.append(v)
    if sig["name"] in skipped:
        raise ValueError(f"{prep.source}: the signature cannot be modelled in the development cohort: "
                         f"{skipped[sig['name']]}")
    uni = univariable_cox(dev, usable)
    pterm = uni.groupby("variable", sort=False)["p_term"].first()
    screened = [v for v in usable if v["name"] == sig["name"] or pterm[v["name"]] < screen_p]
    while True:  # a multivariable fit that diverges drops its weakest screened covariate (largest p), with a note
        try:
            multi_fit, multi = multivariable_cox(dev, screened)
            break
        except ValueError as err:
            others = [v for v in screened if v["name"] != sig["name"]]
            if not others:
                raise
            worst = max(others, key=lambda v: pterm[v["name"]])
            skipped[worst["name"]] = f"dropped from the multivariable model (not estimable jointly): {err}"
            screened = [v for v in screened if v is not worst]
    final_terms, trace = stepwise_aic(dev, screened, keep=(sig["name"],))
    final_fit, final = multivariable_cox(dev, final_terms)
    # Table 3: univariable, multivariable and final HRs side by side
    t3 = uni[["variable", "label", "level", "column", "hr", "hr_lower", "hr_upper", "p"]].rename(
        columns={"hr": "uni_hr", "hr_lower": "uni_hr_lower", "hr_upper": "uni_hr_upper", "p": "uni_p"})
    mm = multi[["column", "hr", "hr_lower", "hr_upper", "p"]].rename(
        columns={"hr": "multi_hr", "hr_lower": "multi_hr_lower", "hr_upper": "multi_hr_upper", "p": "multi_p"})
    ff = final[["column", "hr", "hr_lower", "hr_upper", "p"]].rename(
        columns={"hr": "final_hr", "hr_lower": "final_hr_lower", "hr_upper": "final_hr_upper", "p": "final_p"})
    table3 = t3.merge(mm, on="column", how="left").merge(ff, on="column", how="left")
    table3 = table3[table3["variable"].isin([v["name"] for v in screened])].reset_index(drop=True)

    # signature-alone Cox model (for its predicted probabilities in calibration/decision curves)
    sig_fit = fit_cox(dev, [sig])
    sig_nomo = Nomogram.from_cox(sig_fit, landmark, title="Signature alone")
    nomo0 = Nomogram.from_cox(final_fit, landmark, title=f"Nomogram for {landmark:g}-month RFS")
    pred = nomo0.predict_frame(d).rename(columns=lambda c: f"nomogram_{c}")
    pred["signature_er_prob"] = sig_nomo.predict_frame(d)["er_prob"]
    pred["signature_lp"] = sig_nomo.predict_frame(d)["lp"]
    # nomogram risk groups: Youden on development predicted ER probability (known status at the landmark)
    dv = pred.loc[dev.index].join(dev[["er", "time"]]).dropna(subset=["nomogram_er_prob"])
    known = (dv["er"] == 1) | (dv["time"] >= landmark)
    thr = youden_cutoff(dv.loc[known, "er"], dv.loc[known, "nomogram_er_prob"])
    nomo = Nomogram.from_cox(final_fit, landmark, risk_threshold=thr,
                             threshold_rule="Youden threshold of the predicted early-recurrence probability in the "
                                            "development cohort (pROC 'best')",
                             title=f"Nomogram for {landmark:g}-month RFS")
    pred["nomogram_risk_group"] = np.where(pred["nomogram_er_prob"] >= thr, "high", "low")
    pred = pred.join(d[["cohort", "time", "event", "er", "risk_group"]])

    risks = {"Nomogram": "nomogram_lp", "Signature": "signature_lp"}
    table4 = discrimination_table(pred, risks, landmark)
    calib = calibration(d, final_fit, pred["nomogram_rfs"], landmark, n_bootstrap, seed, progress=progress)
    sig_cal = calibration(d, sig_fit, 1 - pred["signature_er_prob"], landmark, 0, seed)
    calib = pd.concat([calib.assign(model="Nomogram"), sig_cal.assign(model="Signature")], ignore_index=True)
    dca = decision_curve(pred, {"Nomogram": "nomogram_er_prob", "Signature": "signature_er_prob"}, landmark)
    # times every 6 months while at least 10 patients of each cohort are still followed (controls)
    def _t_followed(c):
        x = np.sort(pred.loc[pred["cohort"] == c, "time"].to_numpy())
        return x[-max(2, min(10, len(x) // 4))]

    tmax = min(_t_followed(c) for c in ("development", "validation"))
    times = [float(t) for t in np.arange(6.0, tmax, 6.0)]
    if landmark <= tmax and float(landmark) not in times:  # follow-up ending at the landmark (see eval_time)
        times = sorted(times + [float(landmark)])
    tdt = tdauc_over_time(pred, risks, times)

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
# notebook helpers
# ----------------------------------------------------------------------------------------------------------------
def load_input(profile, manifest=None, table_path=None, column_map=None) -> tuple[pd.DataFrame, dict]:
    """The raw table and mapping notebook 05 runs on.

    ``table_path=None``: the synthetic cohort (the manifest's patient table joined with
    ``outputs/<profile>/models/signature.csv``) with :func:`synthetic_mapping` unless ``column_map`` is given.
    Otherwise the table at ``table_path`` (relative paths: against the working folder, then the repository root) with
    ``column_map`` (required).
    """
    from hcc_utils.config import repo_root

    if table_path is None:
        man = Path(manifest) if manifest else profile.manifest
        raw = load_synthetic_table(man, profile.out("models", "signature.csv", mkdir=False))
        return raw, column_map or synthetic_mapping()
    if column_map is None:
        raise ValueError(f"table_path={table_path!r} needs a column_map (see hcc_utils.survival docstring)")
    p = Path(table_path)
    if not p.is_absolute() and not p.exists():
        p = repo_root() / p
    return read_table(p), column_map


def ground_truth_table(res: SurvivalResult) -> pd.DataFrame:
    """Synthetic cohort only: planted hazard ratios (:data:`hcc_utils.synthetic.TRUE_HR`) against the estimates.

    For each planted clinical effect: the true HR per the mapping's unit, the univariable and final-model estimates
    with 95% CI, and whether the final model kept the variable and its CI covers the truth. The latent aggressiveness
    has no column (the images carry it; the DSFR signature is its proxy), so it is listed without an estimate.
    """
    from hcc_utils import synthetic

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


def _p(p):
    if pd.isna(p):
        return ""
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def format_table3(res: SurvivalResult) -> pd.DataFrame:
    """Table 3 for display: HR (95% CI) and p, univariable / multivariable / final model."""
    t = res.table3
    out = pd.DataFrame({
        "Variable": t["label"], "Level": t["level"],
        "Univariable HR (95% CI)": [_ci(a, b, c) for a, b, c in zip(t["uni_hr"], t["uni_hr_lower"], t["uni_hr_upper"])],
        "p (uni)": t["uni_p"].map(_p),
        "Multivariable HR (95% CI)": [_ci(a, b, c) for a, b, c in
                                      zip(t["multi_hr"], t["multi_hr_lower"], t["multi_hr_upper"])],
        "p (multi)": t["multi_p"].map(_p),
        "Final model HR (95% CI)": [_ci(a, b, c) for a, b, c in
                                    zip(t["final_hr"], t["final_hr_lower"], t["final_hr_upper"])],
        "p (final)": t["final_p"].map(_p),
    })
    return out


def format_table_s1(res: SurvivalResult) -> pd.DataFrame:
    """Table S1 for display: univariable HR (95% CI), p, and the term's screening p."""
    t = res.univariable
    return pd.DataFrame({"Variable": t["label"], "Level": t["level"], "n": t["n"], "Events": t["events"],
                         "HR (95% CI)": [_ci(a, b, c) for a, b, c in zip(t["hr"], t["hr_lower"], t["hr_upper"])],
                         "p": t["p"].map(_p), "p (term)": t["p_term"].map(_p)})


def format_table4(res: SurvivalResult) -> pd.DataFrame:
    """Table 4 for display: C-index and tdAUC at the landmark with 95% CI; p versus the nomogram."""
    t = res.table4
    lm = f"{res.landmark:g}"
    return pd.DataFrame({
        "Cohort": t["cohort"], "Model": t["model"], "n": t["n"], "Events": t["events"],
        "C-index (95% CI)": [_ci(a, b, c, 3, True) for a, b, c in
                             zip(t["c_index"], t["c_index_lower"], t["c_index_upper"])],
        "p (C vs nomogram)": t.get("c_index_p", pd.Series(np.nan, index=t.index)).map(_p),
        f"tdAUC({lm}) (95% CI)": [_ci(a, b, c, 3, True) for a, b, c in
                                  zip(t["tdauc"], t["tdauc_lower"], t["tdauc_upper"])],
        "p (tdAUC vs nomogram)": t.get("tdauc_p", pd.Series(np.nan, index=t.index)).map(_p),
    })


def glue_values(res: SurvivalResult) -> dict[str, str]:
    """Formatted numbers the narrative quotes (myst-nb glue keys -> text), all read from the results."""
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
        "sig_hr_p": _p(r["signature_hr_uni"]["p"]),
        "sig_hr_final": _ci(r["signature_hr_final"]["hr"], r["signature_hr_final"]["lower"],
                            r["signature_hr_final"]["upper"]),
        "sig_hr_final_p": _p(r["signature_hr_final"]["p"]),
        "nomo_threshold": "" if r["nomogram_risk_threshold"] is None else f"{100 * r['nomogram_risk_threshold']:.1f}%",
        "split_rule": json.dumps(r["split"]), "screen_p": f"{r['screen_p']:g}",
        "n_bootstrap": str(r["n_bootstrap"]),
    }
    for coh, c in r["cohorts"].items():
        k = coh[:3]
        g[f"{k}_n"], g[f"{k}_events"] = str(c["n"]), str(c["events"])
        g[f"{k}_er_rate"] = f"{100 * c['er_rate']:.1f}%"
        g[f"{k}_logrank_p"] = _p(c.get("logrank_p", np.nan))
        g[f"{k}_km_hr"] = _ci(c.get("hr", np.nan), c.get("hr_lower", np.nan), c.get("hr_upper", np.nan))
        for m in ("nomogram", "signature"):
            g[f"{k}_{m}_c"] = _ci(c.get(f"{m}_c_index", np.nan), c.get(f"{m}_c_index_lower", np.nan),
                                  c.get(f"{m}_c_index_upper", np.nan), 3, True)
            g[f"{k}_{m}_tdauc"] = _ci(c.get(f"{m}_tdauc", np.nan), c.get(f"{m}_tdauc_lower", np.nan),
                                      c.get(f"{m}_tdauc_upper", np.nan), 3, True)
        g[f"{k}_c_p"] = _p(c.get("signature_c_index_p", np.nan))
        g[f"{k}_tdauc_p"] = _p(c.get("signature_tdauc_p", np.nan))
    return g


# ----------------------------------------------------------------------------------------------------------------
# saving
# ----------------------------------------------------------------------------------------------------------------
def save_results(res: SurvivalResult, out_dir: str | Path, figures: bool = True) -> dict[str, Path]:
    """Write tables (CSV), figures (PNG), ``results.json``, ``nomogram.json`` and ``nomogram.html`` to ``out_dir``.

    Existing files of an earlier run are replaced (the folder belongs to this notebook and chapter).
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
    (out / "results.json").write_text(json.dumps(res.results, indent=2, default=_json_default))
    paths["results.json"] = out / "results.json"
    if figures:
        import matplotlib.pyplot as plt

        for name, fn in (("figure3_km.png", plot_km), ("figure4a_nomogram.png", plot_nomogram),
                         ("figure4bc_calibration.png", plot_calibration), ("figure4de_decision.png", plot_decision_curves),
                         ("figureS1_tdauc.png", plot_tdauc)):
            fig = fn(res)
            fig.savefig(out / name, dpi=150, bbox_inches="tight")
            plt.close(fig)
            paths[name] = out / name
    return paths


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return None if not np.isfinite(o) else float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o))


# ----------------------------------------------------------------------------------------------------------------
# figures
# ----------------------------------------------------------------------------------------------------------------
COLORS = {"high": "#c0392b", "low": "#2471a3", "Nomogram": "#c0392b", "Signature": "#2471a3",
          "treat_all": "#7f8c8d", "treat_none": "#000000"}


def _fmt_p(p):
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def plot_km(res: SurvivalResult):
    """Figure 3: KM curves of high/low risk per cohort with log-rank p and numbers at risk."""
    import matplotlib.pyplot as plt
    from lifelines import KaplanMeierFitter
    from lifelines.plotting import add_at_risk_counts

    d = res.prep.data
    cohorts = ["development", "validation"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8))
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
        txt = f"log-rank {_fmt_p(row['logrank_p'])}" if "logrank_p" in row and pd.notna(row["logrank_p"]) else ""
        if "hr" in row and pd.notna(row.get("hr")):
            txt += f"\nHR {row['hr']:.2f} ({row['hr_lower']:.2f}-{row['hr_upper']:.2f})"
        ax.text(0.97, 0.95, txt, transform=ax.transAxes, ha="right", va="top", fontsize=9)
        ax.set_title(f"{coh.capitalize()} cohort (n = {len(sub)})")
        ax.legend(loc="lower left", fontsize=9)
        add_at_risk_counts(*fitters, ax=ax, rows_to_show=["At risk"], xticks=ticks)
    fig.tight_layout()
    return fig


def plot_nomogram(res_or_nomo):
    """Figure 4a: the nomogram (points, variable axes, total points, predicted RFS at the landmark)."""
    import matplotlib.pyplot as plt

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


def plot_calibration(res: SurvivalResult):
    """Figures 4b,c: calibration at the landmark, development (apparent and bias-corrected) and validation."""
    import matplotlib.pyplot as plt

    cal = res.calibration
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
    for ax, coh, tag in zip(axes, ("development", "validation"), ("b", "c")):
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
        ax.set_title(f"({tag}) {coh.capitalize()} cohort")
        ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def plot_decision_curves(res: SurvivalResult):
    """Figures 4d,e: decision curves at the landmark per cohort."""
    import matplotlib.pyplot as plt

    dca = res.decision
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.4))
    for ax, coh, tag in zip(axes, ("development", "validation"), ("d", "e")):
        c = dca[dca["cohort"] == coh]
        for k, lab, ls in (("Nomogram", "Nomogram", "-"), ("Signature", "Signature alone", "-"),
                           ("treat_all", "Treat all", "--"), ("treat_none", "Treat none", ":")):
            ax.plot(c["threshold"], c[k], color=COLORS[k], ls=ls, lw=1.3, label=lab)
        top = float(np.nanmax(c[["Nomogram", "Signature", "treat_all"]].to_numpy()))
        ax.set_ylim(-0.05, max(0.05, top * 1.1))
        ax.set_xlim(0, 1)
        ax.set_xlabel(f"Threshold probability (recurrence by {res.landmark:g} months)")
        ax.set_ylabel("Net benefit")
        ax.set_title(f"({tag}) {coh.capitalize()} cohort")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_tdauc(res: SurvivalResult):
    """Figure S1: tdAUC over time per cohort for nomogram and signature."""
    import matplotlib.pyplot as plt

    t = res.tdauc_time
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, coh in zip(axes, ("development", "validation")):
        for model in ("Nomogram", "Signature"):
            c = t[(t["cohort"] == coh) & (t["model"] == model)]
            ax.plot(c["time"], c["tdauc"], marker="o", ms=3, color=COLORS[model], label=model)
        ax.axhline(0.5, color="grey", ls=":", lw=1)
        ax.axvline(res.landmark, color="grey", ls="--", lw=0.8)
        ax.set_ylim(0.3, 1.0)
        ax.set_xlabel("Months after resection")
        ax.set_title(f"{coh.capitalize()} cohort")
    axes[0].set_ylabel("Time-dependent AUC")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------------------------------
# static HTML calculator
# ----------------------------------------------------------------------------------------------------------------
ASSETS = Path(__file__).resolve().parent / "assets"


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
