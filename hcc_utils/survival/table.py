"""Survival stage, the table: column mapping, cleaning, development/validation split, the dataset mappings.

Any clinical table enters through a column mapping (a plain dict, so papermill can pass it); the mappings of GSE14520
and of the synthetic cohort are data (``datasets.yaml``). Tables are read by :func:`hcc_utils.manifest.read_table`.
The mapping format and the cleaning rules are described in ``book/method.md`` (Survival: column mapping).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from sklearn.model_selection import train_test_split

from hcc_utils.config import repo_root
from hcc_utils.manifest import (CLINICAL_VARIABLES, early_recurrence, is_external, load_patient_table, read_table,
                                report_cohorts)

DATASETS_FILE = Path(__file__).resolve().parent / "datasets.yaml"

#: Cell values read as missing in every mapped column (after stripping spaces); a mapping's ``missing`` list adds more.
MISSING_TOKENS = ("", ".", "NA", "N/A", "na", "n/a", "NaN", "nan", "NULL", "null", "?")
TIME_UNITS = {"months": 1.0, "month": 1.0, "days": 12.0 / 365.25, "day": 12.0 / 365.25,
              "weeks": 12.0 / 52.1775, "week": 12.0 / 52.1775, "years": 12.0, "year": 12.0}
EVENT_DEFAULT = {"1": 1, "0": 0, "1.0": 1, "0.0": 0, "yes": 1, "no": 0, "y": 1, "n": 0, "true": 1, "false": 0,
                 "recurrence": 1, "censored": 0}


def _datasets() -> dict[str, Any]:
    with open(DATASETS_FILE) as fh:
        return yaml.safe_load(fh)


#: Column mapping of GSE14520 (``datasets.yaml``).
GSE14520_MAPPING: dict[str, Any] = _datasets()["gse14520"]["mapping"]
#: Split rule of GSE14520: seeded, stratified by recurrence status, 30 % validation.
GSE14520_SPLIT: dict[str, Any] = _datasets()["gse14520"]["split"]


def gse14520_path() -> Path:
    """Where the GSE14520 clinical table is expected.

    Returns
    -------
    Path
        ``../shared/data/gse14520/clinical.tsv`` beside the repository (``HCC_SHARED_DATA`` overrides the folder).
    """
    base = os.environ.get("HCC_SHARED_DATA")
    root = Path(base) if base else repo_root().parent / "shared" / "data"
    return root / "gse14520" / "clinical.tsv"


def gse14520_parameters() -> dict[str, Any]:
    """Papermill parameters that run notebook 05 on GSE14520 (used by :mod:`hcc_utils.run`).

    Returns
    -------
    dict
        ``table_path``, ``column_map``, ``split``, ``landmark``, ``chapter``.
    """
    d = _datasets()["gse14520"]
    return {"table_path": str(gse14520_path()), "column_map": d["mapping"], "split": d["split"],
            "landmark": d["landmark"], "chapter": d["chapter"]}


def synthetic_mapping() -> dict[str, Any]:
    """Column mapping of the synthetic cohort's patient table joined with ``models/signature.csv``.

    The covariates are :data:`hcc_utils.manifest.CLINICAL_VARIABLES`, with the units and reference levels of
    ``datasets.yaml``.

    Returns
    -------
    dict
    """
    d = _datasets()["synthetic"]
    per = d["covariates_from_manifest"]["per"]
    refs = d["covariates_from_manifest"]["reference"]
    cov = []
    for v in CLINICAL_VARIABLES:
        if v.kind == "continuous":
            k = per.get(v.name, 1)
            cov.append({"column": v.name, "name": v.name, "type": "continuous", "per": k,
                        "label": v.label if k == 1 else f"{v.label}, per {k}"})
        elif v.kind == "binary":
            cov.append({"column": v.name, "name": v.name, "type": "binary", "reference": 0, "label": v.label})
        else:
            ref = refs.get(v.name, v.levels[0])
            cov.append({"column": v.name, "name": v.name, "type": "binary" if len(v.levels) == 2 else "categorical",
                        "reference": ref, "levels": list(v.levels), "label": v.label})
    return {**d["mapping"], "covariates": cov}


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


def _match_columns(raw: pd.DataFrame, names) -> pd.DataFrame:
    """``raw`` with surrounding spaces stripped from its column names and each of ``names`` that matches a column
    only when case is ignored renamed to the mapping's spelling (the one reader lowers column names)."""
    raw = raw.copy()
    raw.columns = [str(c).strip() for c in raw.columns]
    lower = {c.lower(): c for c in raw.columns}
    ren = {lower[n.lower()]: n for n in map(str, names) if n not in raw.columns and n.lower() in lower}
    return raw.rename(columns=ren) if ren else raw


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



def _clean_text(raw: pd.DataFrame, col: str, tokens: set):
    """A column stripped, missing tokens as None; counts of stripped cells, blanks, tokens, and the tokens seen."""
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


def _report_row(column, name, role, kind, n_rows, n_read, cleaned, recoded="", n_missing=0, note="") -> dict:
    _, n_space, n_blank, n_tok, tok_seen = cleaned
    return {"column": column, "variable": name, "role": role, "type": kind, "n_rows": n_rows,
            "n_stripped_spaces": n_space, "n_blank": n_blank, "n_missing_token": n_tok,
            "missing_tokens_seen": " ".join(repr(t) for t in tok_seen), "recoded": recoded,
            "n_missing": n_missing, "n_valid": n_read, "note": note}


def _read_ids(raw, m, src, tokens):
    cleaned = _clean_text(raw, m["id"], tokens)
    ids = cleaned[0]
    if ids.isna().any():
        rows = [int(i) + 2 for i in np.where(ids.isna())[0]]
        raise ValueError(f"{src}: column {m['id']!r} (patient id) is empty in data row(s) {rows[:10]} "
                         "(row numbers count the header as row 1)")
    dups = ids[ids.duplicated()].unique().tolist()
    if dups:
        raise ValueError(f"{src}: patient id(s) {dups[:10]} appear more than once in column {m['id']!r}")
    return ids, _report_row(m["id"], "patient_id", "id", "id", len(raw), len(ids), (*cleaned[:4], []))


def _read_time(raw, m, src, tokens, ids):
    cleaned = _clean_text(raw, m["time"], tokens)
    t = cleaned[0]
    tnum = _to_float(t, ids, src, m["time"])
    if (tnum < 0).any():
        pid = ids[tnum < 0].iloc[0]
        raise ValueError(f"{src}: patient {pid}: negative time {t[ids == pid].iloc[0]!r} in column {m['time']!r}")
    factor = TIME_UNITS[str(m["time_unit"]).lower()]
    row = _report_row(m["time"], "time", "time", f"time ({m['time_unit']} -> months)", len(raw),
                      int(tnum.notna().sum()), cleaned, recoded="" if factor == 1 else f"x {factor:.6g} to months",
                      n_missing=int(tnum.isna().sum()))
    return tnum.values * factor, row


def _read_event(raw, m, src, tokens, ids):
    cleaned = _clean_text(raw, m["event"], tokens)
    e = cleaned[0]
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
    row = _report_row(m["event"], "event", "event", "event 0/1", len(raw), int(ev.notna().sum()), cleaned,
                      recoded=", ".join(f"{k}->{v}" for k, v in sorted(emap.items()) if k in set(e.dropna().str.lower())),
                      n_missing=int(ev.isna().sum()))
    return ev.values, row


def _code_levels(v, s, ids, src, recoded):
    """Binary (0/1 against the reference) or categorical (level strings) codes of one cleaned column; fills
    ``v["levels"]`` / ``v["reference"]``; returns (values, note)."""
    note = ""
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
        if not (set(levels) <= {"0", "1"} and ref == "0"):
            recoded.append(f"{ref!r}->0, {other[0]!r}->1" if other else f"{ref!r}->0")
        return codes.astype(float).values, note
    if ref not in levels:
        raise ValueError(f"{src}: reference {ref!r} of column {v['column']!r} is not a level {levels}")
    v["levels"] = [ref] + [x for x in levels if x != ref]
    absent = [x for x in levels if x not in present]
    if absent:
        note = f"levels {absent} not present"
    return s.values, note


def _read_variable(raw, v, role, src, tokens, ids, out):
    cleaned = _clean_text(raw, v["column"], tokens)
    s = cleaned[0]
    recoded = []
    if v["recode"]:
        hits = s.isin(list(v["recode"]))
        for k, x in v["recode"].items():
            n = int((s == k).sum())
            if n:
                recoded.append(f"{k!r}->{x!r} ({n})")
        s = s.where(~hits, s.map(v["recode"]))
    if v["type"] == "continuous":
        out[v["name"]] = _to_float(s, ids, src, v["column"]).values
        note = ""
    else:
        out[v["name"]], note = _code_levels(v, s, ids, src, recoded)
    n_mis = int(pd.isna(out[v["name"]]).sum())
    return _report_row(v["column"], v["name"], role, v["type"], len(raw), len(out) - n_mis, cleaned,
                       recoded="; ".join(recoded), n_missing=n_mis, note=note)


def prepare_table(table: pd.DataFrame | str | Path, mapping: dict, landmark: float = 24.0,
                  source: str | None = None) -> Prepared:
    """Clean a clinical table according to a column mapping.

    Parameters
    ----------
    table : DataFrame or path
        Raw table (read as text preferred; see :func:`hcc_utils.manifest.read_table`).
    mapping : dict
        Column mapping (``book/method.md``, Survival: column mapping).
    landmark : float
        Landmark in months for the early-recurrence label ``er`` (event before the landmark; censored before it -> 0,
        as :func:`hcc_utils.manifest.early_recurrence`).
    source : str, optional
        File name used in messages (defaults to the table's ``attrs["source"]``).

    Returns
    -------
    Prepared

    Raises
    ------
    ValueError
        On a mapped column absent from the table, an empty or repeated id, a negative time, an unknown event code,
        a non-numeric value in a continuous column or a level outside the mapped ones.
    """
    if not isinstance(table, pd.DataFrame):
        table = read_table(table)
    m = normalise_mapping(mapping)
    src = source or table.attrs.get("source", "<table>")
    needed = [m["id"], m["time"], m["event"]] + [v["column"] for v in [m["signature"]] + m["covariates"]]
    raw = _match_columns(table, needed)
    missing_cols = [c for c in needed if c not in raw.columns]
    if missing_cols:
        raise ValueError(f"{src}: column(s) {missing_cols} named in the mapping are not in the table "
                         f"(columns: {list(raw.columns)})")
    tokens = set(m["missing"])
    ids, id_row = _read_ids(raw, m, src, tokens)
    out = pd.DataFrame(index=pd.Index(ids.values, name="patient_id"))
    report = [id_row]
    out["time"], row = _read_time(raw, m, src, tokens, ids)
    report.append(row)
    out["event"], row = _read_event(raw, m, src, tokens, ids)
    report.append(row)
    for v in [m["signature"]] + m["covariates"]:
        report.append(_read_variable(raw, v, "signature" if v is m["signature"] else "covariate", src, tokens, ids,
                                     out))
    # rows that cannot be analysed at all
    n_raw = len(out)
    dropped = {}
    for col, label in (("time", m["time"]), ("event", m["event"]), (m["signature"]["name"], m["signature"]["column"])):
        bad = out[col].isna()
        if bad.any():
            dropped[label] = out.index[bad].tolist()
        out = out[~bad]
    out["event"] = out["event"].astype(int)
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


# ----------------------------------------------------------------------------------------------------------------
# inputs of notebook 05
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


def load_input(profile, manifest=None, table_path=None, column_map=None) -> tuple[pd.DataFrame, dict]:
    """The raw table and mapping notebook 05 runs on.

    Parameters
    ----------
    profile : Profile
        :func:`hcc_utils.config.load_profile` result.
    manifest : str or Path, optional
        The manifest of the synthetic-cohort input (default: the profile's).
    table_path : str or Path, optional
        None: the synthetic cohort (the manifest's patient table joined with
        ``outputs/<profile>/models/signature.csv``). Otherwise a clinical table (relative paths: against the working
        folder, then the repository root).
    column_map : dict, optional
        The mapping (required with ``table_path``; default for the synthetic cohort: :func:`synthetic_mapping`).

    Returns
    -------
    (DataFrame, dict)
        The raw table (text) and its mapping.
    """
    if table_path is None:
        man = Path(manifest) if manifest else profile.manifest
        raw = load_synthetic_table(man, profile.out("models", "signature.csv", mkdir=False))
        return raw, column_map or synthetic_mapping()
    if column_map is None:
        raise ValueError(f"table_path={table_path!r} needs a column_map (book/method.md, Survival: column mapping)")
    p = Path(table_path)
    if not p.is_absolute() and not p.exists():
        p = repo_root() / p
    return read_table(p), column_map


# ----------------------------------------------------------------------------------------------------------------
# split
# ----------------------------------------------------------------------------------------------------------------
def split_cohorts(prep: Prepared, rule: str | dict | None, seed: int, raw: pd.DataFrame | None = None) -> Prepared:
    """Assign ``cohort`` (development / validation, or several named external cohorts) to each patient.

    Parameters
    ----------
    prep : Prepared
    rule : str, dict or None
        * a column name of the raw table whose values are ``development`` / ``validation`` (case and spaces ignored;
          ``train``/``test`` and ``dev``/``val`` also accepted; ``validation:<name>`` names one of several external
          cohorts, each reported apart), or ``{"column": c, "development": v1, "validation": v2}``;
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
    if raw is not None:
        raw = _match_columns(raw, [prep.mapping["id"], "cohort"] + ([rule] if isinstance(rule, str) else
                                                                   [rule["column"]] if isinstance(rule, dict)
                                                                   and "column" in rule else []))
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
            named = str(x).strip()
            if key.startswith("validation:") and is_external("validation:" + named.split(":", 1)[1]):
                coh.append("validation:" + named.split(":", 1)[1])  # a named external cohort, its name as given
                continue
            if key not in aliases:
                raise ValueError(f"{prep.source}: patient {pid}: split column {col!r} has {x!r}, expected "
                                 f"{rule.get('development', 'development')!r} or "
                                 f"{rule.get('validation', 'validation')!r}")
            coh.append(aliases[key])
        data["cohort"] = coh
        rule_used = {"column": col}
    elif rule.get("method") == "stratified":
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
    for c in report_cohorts(data["cohort"]):
        sub = data[data["cohort"] == c]
        if len(sub) == 0:
            raise ValueError(f"{prep.source}: the split leaves no {c} patients")
        if sub["event"].sum() == 0:
            raise ValueError(f"{prep.source}: the {c} cohort has no events; survival models cannot be fitted")
    prep.mapping["split"] = rule_used
    return prep
