"""Data manifest: schema, loading and validation (stage 1).

The manifest (``data_manifest.csv``) has one row per patient. Paths are relative to the manifest's folder.

==================  ========  ==========================================================================
column              required  meaning
==================  ========  ==========================================================================
patient_id          yes       unique id; the only patient identifier that appears in outputs
cohort              yes       ``development``, ``validation`` or ``validation:<name>`` (an external cohort)
centre              yes       centre label (e.g. 1, 2)
ct_ap, ct_pp        yes       arterial / portal CT: NIfTI/NRRD/MHA file or DICOM series folder
series_uid_ap/_pp   no        SeriesInstanceUID when the DICOM folder holds several series
mask_ap, mask_pp    no        tumour mask (same grid as its image), 0/1
seg_train           yes       1 if this case's masks may be used to train the segmentation network
clinical_file       yes       CSV or Excel (``file.xlsx`` or ``file.xlsx#Sheet``) with a row per patient_id
visual_file         no        CSV/Excel with the radiologists' visual reads (columns ``vis_*``)
outcome_file        yes       CSV/Excel with ``patient_id, rfs_months, recurrence``
==================  ========  ==========================================================================

Cohorts: ``development`` patients fit every model; every other patient belongs to an external (validation) cohort.
Plain ``validation`` is one external cohort; ``validation:<name>`` (``<name>`` of letters, digits, ``_`` and ``-``,
e.g. ``validation:centre2``, ``validation:centre3``) names one of several, and Tables 2 and 4 and the survival
figures then report a block per external cohort. :func:`is_external`, :func:`external_cohorts`,
:func:`cohort_order`, :func:`report_cohorts` and :func:`cohort_label` (from :mod:`hcc_utils.tables`, re-exported
here) are the one place that tells the cohorts apart.

Tables: the clinical table has ``patient_id`` and the columns of :data:`CLINICAL_VARIABLES` (``sex`` M/F, ``age``,
``hbsag``, ``hbv_dna``, ``afp_ge400`` 0/1, ``child_pugh`` A/B, ``tb``, ``alb``, ``alt``, ``ggt``); the visual table the
8 ``vis_*`` columns of :data:`VISUAL_FEATURES` (0/1); the outcome table ``rfs_months`` (>= 0) and ``recurrence``
(0/1). Several patients usually share one table; each is read once. Column names are case-insensitive.

Use :func:`read_manifest` (the manifest alone), :func:`load_patient_table` (one row per patient with the clinical,
visual and outcome data), :func:`validate` (everything, images included, all problems reported together),
:func:`read_table` (any table as text: the one reader every stage uses, from :mod:`hcc_utils.tables`) and
:func:`safe_name` (a patient_id as a file name). The image, plausibility and cohort checks live in
:mod:`hcc_utils.checks`. From the
shell: ``python -m hcc_utils.manifest check data_manifest.csv`` (or ``--profile ci``) prints the report and exits 1
when there are errors.
"""
from __future__ import annotations

import argparse
import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from hcc_utils.config import PHASES
from hcc_utils.tables import (  # noqa: F401  (the cohort helpers are re-exported)
    COHORTS, DEVELOPMENT, VALIDATION, TableError, blank as _blank, cohort_label, cohort_order, external_cohorts,
    external_text, is_cohort, is_external, patients_label as _patients_label, read_table, report_cohorts, split_spec)

LANDMARK_MONTHS = 24.0

MANIFEST_COLUMNS = [
    "patient_id", "cohort", "centre", "ct_ap", "ct_pp", "series_uid_ap", "series_uid_pp",
    "mask_ap", "mask_pp", "seg_train", "clinical_file", "visual_file", "outcome_file",
]
REQUIRED_COLUMNS = ["patient_id", "cohort", "centre", "ct_ap", "ct_pp", "seg_train", "clinical_file", "outcome_file"]
#: Columns a manifest of new patients needs for prediction (:mod:`hcc_utils.predict`): no outcome, cohort or
#: ``seg_train``; an outcome table, when given, is not read.
PREDICTION_REQUIRED_COLUMNS = ["patient_id", "ct_ap", "ct_pp", "clinical_file"]
PURPOSES = ("book", "predict")


def _required(purpose: str) -> list[str]:
    if purpose not in PURPOSES:
        raise ValueError(f"purpose must be one of {PURPOSES}, got {purpose!r}")
    return REQUIRED_COLUMNS if purpose == "book" else PREDICTION_REQUIRED_COLUMNS
PATH_COLUMNS = ["ct_ap", "ct_pp", "mask_ap", "mask_pp", "clinical_file", "visual_file", "outcome_file"]


@dataclass(frozen=True)
class Variable:
    """A clinical or visual variable: name, kind and allowed values/range (used for validation and Table 1)."""

    name: str
    label: str
    kind: str  # "binary" (0/1), "categorical" (levels), "continuous"
    levels: tuple = ()
    low: float | None = None
    high: float | None = None
    table1: str = "categorical"  # "normal" | "skewed" | "categorical"


# Clinical variables of the paper's Table 1 (names used by every stage).
CLINICAL_VARIABLES = [
    Variable("sex", "Sex (male)", "categorical", levels=("M", "F")),
    Variable("age", "Age (years)", "continuous", low=10, high=100, table1="normal"),
    Variable("hbsag", "HBsAg positive", "binary"),
    Variable("hbv_dna", "HBV-DNA >= 10^4 IU/mL", "binary"),
    Variable("afp_ge400", "AFP >= 400 ng/mL", "binary"),
    Variable("child_pugh", "Child-Pugh class", "categorical", levels=("A", "B")),
    Variable("tb", "Total bilirubin (umol/L)", "continuous", low=0, high=500, table1="skewed"),
    Variable("alb", "Albumin (g/L)", "continuous", low=10, high=70, table1="normal"),
    Variable("alt", "ALT (U/L)", "continuous", low=0, high=5000, table1="skewed"),
    Variable("ggt", "GGT (U/L)", "continuous", low=0, high=5000, table1="skewed"),
]

# The 8 radiologist-read visual features (0/1), as two readers' consensus.
VISUAL_FEATURES = [
    Variable("vis_size_gt5cm", "Tumour size > 5 cm", "binary"),
    Variable("vis_nonsmooth_margin", "Non-smooth tumour margin", "binary"),
    Variable("vis_peritumoral_enhancement", "Arterial peritumoral enhancement", "binary"),
    Variable("vis_rim_enhancement", "Rim arterial enhancement", "binary"),
    Variable("vis_intratumoral_artery", "Intratumoral artery", "binary"),
    Variable("vis_incomplete_capsule", "Incomplete or absent capsule", "binary"),
    Variable("vis_washout", "Portal-phase washout", "binary"),
    Variable("vis_heterogeneity", "Marked heterogeneity / necrosis", "binary"),
]

OUTCOME_COLUMNS = ["rfs_months", "recurrence"]


def early_recurrence(rfs_months, recurrence, landmark: float = LANDMARK_MONTHS):
    """Early recurrence label: recurrence observed before ``landmark`` months (0/1)."""
    import numpy as np

    return ((np.asarray(recurrence) == 1) & (np.asarray(rfs_months, dtype=float) < landmark)).astype(int)


# --- errors and the validation report -------------------------------------------------------------------------------

TABLE_COLUMNS = ["clinical_file", "visual_file", "outcome_file"]
IMAGE_COLUMNS = ["ct_ap", "ct_pp", "mask_ap", "mask_pp"]
OUTCOME_VARIABLES = [
    Variable("rfs_months", "Recurrence-free survival (months)", "continuous", low=0, high=None, table1="skewed"),
    Variable("recurrence", "Recurrence (event)", "binary"),
]
TABLE_VARIABLES = {
    "clinical_file": CLINICAL_VARIABLES,
    "visual_file": VISUAL_FEATURES,
    "outcome_file": OUTCOME_VARIABLES,
}
_PHASE_COLUMN = re.compile(r"^(ct|mask|series_uid)_([a-z0-9]+)$")


class ManifestError(ValueError):
    """Bad manifest or data: the message names the patient, the file and the column of every problem.

    Attributes
    ----------
    problems : list of Problem
    """

    def __init__(self, message: str, problems=()):
        super().__init__(message)
        self.problems = list(problems)


@dataclass(frozen=True)
class Problem:
    """One problem found in the manifest or the data it points to.

    Attributes
    ----------
    patient_id : str
        The patient (``row N`` when the id itself is blank; a list of ids when a whole table or column is at fault).
    file : str
        The file or folder at fault (the manifest itself for problems in its cells).
    column : str
        The manifest or table column at fault.
    message : str
    severity : {'error', 'warning', 'accepted'}
        ``accepted``: a warning listed in ``accepted_warnings.csv`` beside the manifest.
    check : str
        Code of the plausibility check that found it ('' for the basic checks); what ``accepted_warnings.csv``
        names.
    """

    patient_id: str
    file: str
    column: str
    message: str
    severity: str = "error"
    check: str = ""

    def __str__(self) -> str:
        return f"{self.severity.upper()}: patient {self.patient_id} | file {self.file} | column {self.column}: " \
               f"{self.message}"


@dataclass
class ValidationReport:
    """All problems of a manifest, reported together.

    Attributes
    ----------
    manifest : str
        The manifest's path.
    problems : list of Problem
    n_patients : int
    images_checked : bool
    """

    manifest: str
    problems: list = field(default_factory=list)
    n_patients: int = 0
    images_checked: bool = True

    @property
    def errors(self) -> list:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def accepted(self) -> list:
        return [p for p in self.problems if p.severity == "accepted"]

    @property
    def blocking(self) -> list:
        """Errors, and plausibility warnings (those with a ``check`` code) that have not been accepted."""
        return self.errors + [p for p in self.warnings if p.check]

    @property
    def ok(self) -> bool:
        """True when there is no error (warnings allowed)."""
        return not self.errors

    def add(self, patient_id, file, column, message, severity="error", check="") -> None:
        self.problems.append(Problem(str(patient_id), str(file), str(column), message, severity, check))

    def raise_if_errors(self) -> "ValidationReport":
        """Raise :class:`ManifestError` listing every error; return the report otherwise."""
        if self.errors:
            raise ManifestError(str(self), self.errors)
        return self

    def to_frame(self) -> pd.DataFrame:
        """The problems as a table (patient_id, file, column, message, severity, check)."""
        return pd.DataFrame([p.__dict__ for p in self.problems],
                            columns=["patient_id", "file", "column", "message", "severity", "check"])

    def __iter__(self):
        return iter(self.problems)

    def __len__(self) -> int:
        return len(self.problems)

    def __str__(self) -> str:
        n_err, n_warn, n_acc = len(self.errors), len(self.warnings), len(self.accepted)
        head = (f"Manifest {self.manifest}: {self.n_patients} patients, {n_err} error{'s' * (n_err != 1)}, "
                f"{n_warn} warning{'s' * (n_warn != 1)}" + (f", {n_acc} accepted" if n_acc else "")
                + ("" if self.images_checked else " (images not checked)"))
        if not self.problems:
            return head + ": OK"
        lines = [head + ":"]
        for p in self.errors + self.warnings + self.accepted:
            lines.append("  " + str(p).replace("\n", "\n    ") + (f" [check {p.check}]" if p.check else ""))
        return "\n".join(lines)


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10)), *(f"LPT{i}" for i in range(10))}


def safe_name(patient_id) -> str:
    """The form of a ``patient_id`` used in file and folder names (caches, predicted masks).

    Parameters
    ----------
    patient_id : object
        The id as the manifest holds it.

    Returns
    -------
    str
        The id itself when it is made of letters, digits, ``.``, ``_`` and ``-`` only (and not a reserved or
        dot-leading name); otherwise those characters with every other run replaced by ``_``, shortened to 80
        characters, plus ``-`` and 8 hex digits of the id's SHA-1, so that two different ids never share a name
        (``2019/DEV001`` -> ``2019_DEV001-1f0c...``, ``../../x`` -> ``x-...``). Never empty, never contains a path
        separator, so ``folder / safe_name(pid)`` stays inside ``folder``. The id itself is kept in every table.
    """
    import hashlib

    pid = str(patient_id)
    name = _UNSAFE.sub("_", pid).strip("._")[:80]
    if name and name == pid and name.split(".")[0].upper() not in _RESERVED:
        return name
    return f"{name or 'id'}-{hashlib.sha1(pid.encode('utf-8')).hexdigest()[:8]}"


# --- reading the manifest -------------------------------------------------------------------------------------------

def _read_raw(path: Path) -> pd.DataFrame:
    """The manifest through :func:`read_table`, blanks as NaN (the manifest's own convention)."""
    df = read_table(path).astype(object)
    return df.where(df != "", np.nan)


def _structure_problems(df: pd.DataFrame, manifest: Path, report: ValidationReport,
                        purpose: str = "book") -> list[int]:
    """Checks on the manifest's own cells; returns the row positions that are usable for further checks."""
    mf = str(manifest)
    required = _required(purpose)
    all_ids = [v for v in df.get("patient_id", pd.Series(dtype=str)).tolist() if not _blank(v)]
    for col in required:
        if col not in df.columns:
            report.add(_patients_label(all_ids), mf, col,
                       f"required column is missing (the manifest has: {', '.join(df.columns)})")
    for col in df.columns:
        m = _PHASE_COLUMN.match(col)
        if m and m.group(2).upper() not in PHASES:
            report.add(_patients_label(all_ids), mf, col,
                       f"unknown phase {m.group(2).upper()!r} in column name; phases are {', '.join(PHASES)}")
    if len(df) == 0:
        report.add("(none)", mf, "patient_id", "the manifest has no patient rows")
    usable = []
    ids = df["patient_id"] if "patient_id" in df.columns else pd.Series([np.nan] * len(df))
    dup = ids[ids.notna() & ids.duplicated(keep=False)]
    for pid, rows in dup.groupby(dup).groups.items():
        lines = ", ".join(str(int(i) + 2) for i in rows)
        report.add(pid, mf, "patient_id", f"duplicate patient_id (manifest lines {lines})")
    by_name: dict[str, list[str]] = {}
    for pid in dict.fromkeys(all_ids):
        by_name.setdefault(safe_name(pid).lower(), []).append(str(pid))
    for names in by_name.values():
        if len(names) > 1:  # differ only by case: one file name on Windows and macOS disks
            for pid in names:
                report.add(pid, mf, "patient_id", f"patient ids {', '.join(map(repr, names))} differ only in "
                                                  "upper/lower case; file names could not tell them apart")
    for i, row in df.iterrows():
        pid = row.get("patient_id")
        if _blank(pid):
            report.add(f"(line {int(i) + 2})", mf, "patient_id", "patient_id is blank")
            continue
        good = True
        for col in required:
            if col != "patient_id" and col in df.columns and _blank(row[col]):
                report.add(pid, mf, col, "required value is blank")
                good = False
        cohort = row.get("cohort")
        if "cohort" in df.columns and not _blank(cohort) and not is_cohort(cohort):
            report.add(pid, mf, "cohort", f"unknown cohort {cohort!r}; use one of {', '.join(COHORTS)} or "
                                          "validation:<name> (name of letters, digits, _ and -)")
        seg = row.get("seg_train")
        if "seg_train" in df.columns and not _blank(seg):
            try:
                segv = float(seg)
            except ValueError:
                segv = np.nan
            if segv not in (0.0, 1.0):
                report.add(pid, mf, "seg_train", f"seg_train must be 0 or 1, got {seg!r}")
            elif segv == 1.0 and is_external(cohort):
                where = "" if cohort == VALIDATION else f" ({cohort})"
                report.add(pid, mf, "seg_train", f"seg_train is 1 for a validation patient{where}: only development "
                                                 "masks may train the network")
            elif segv == 1.0:
                for phase in PHASES:
                    if _blank(row.get(f"mask_{phase.lower()}")):
                        report.add(pid, mf, f"mask_{phase.lower()}",
                                   "seg_train is 1 but no mask is given for this phase")
        if good:
            usable.append(i)
    return usable


def _resolve(value, base: Path, table: bool = False):
    if _blank(value):
        return np.nan
    value = str(value)
    full = (base / Path(value).expanduser()).resolve()
    if not table or full.exists():
        return str(full)
    file, sheet = split_spec(str(base / Path(value).expanduser()))
    return str(file.resolve()) + ("" if sheet is None else "#" + sheet)


def _finish(df: pd.DataFrame, manifest: Path, purpose: str = "book") -> pd.DataFrame:
    base = manifest.resolve().parent
    df = df.copy()
    for col in MANIFEST_COLUMNS:
        if col not in df.columns:
            df[col] = np.nan
    if purpose == "predict":  # new patients: no outcome is read, no case trains
        df["outcome_file"] = np.nan
        df["seg_train"] = df["seg_train"].where(df["seg_train"].notna(), 0)
    for col in PATH_COLUMNS:
        df[col] = [_resolve(v, base, table=col in TABLE_COLUMNS) for v in df[col]]
    df["patient_id"] = df["patient_id"].astype(str)
    df["seg_train"] = df["seg_train"].astype(float).astype(int)
    df["centre"] = df["centre"].astype(str)
    df = df[MANIFEST_COLUMNS + [c for c in df.columns if c not in MANIFEST_COLUMNS]].reset_index(drop=True)
    df.attrs["manifest"] = str(manifest.resolve())
    df.attrs["purpose"] = purpose
    return df


def read_manifest(path: str | Path, purpose: str = "book") -> pd.DataFrame:
    """Read and check a manifest's own cells (not the files it points to: see :func:`validate`).

    Parameters
    ----------
    path : str or Path
        The manifest CSV.
    purpose : {'book', 'predict'}
        ``predict``: a manifest of new patients (:data:`PREDICTION_REQUIRED_COLUMNS`; ``cohort``, ``seg_train`` and
        ``outcome_file`` optional, the outcome table ignored).

    Returns
    -------
    pandas.DataFrame
        One row per patient, the columns of :data:`MANIFEST_COLUMNS` in that order (optional ones present, NaN when
        blank) followed by any extra columns; path columns absolute (tables keep a ``#Sheet`` suffix); ``patient_id``
        and ``centre`` str, ``seg_train`` int. ``df.attrs["manifest"]`` holds the manifest's absolute path.

    Raises
    ------
    ManifestError
        Missing file or required columns, blank required values, duplicate ids, unknown cohort or phase, bad
        ``seg_train`` (not 0/1, set for a validation patient or for a case without masks): every such problem is
        listed.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"patient (all) | file {path} | column (all): manifest not found")
    report = ValidationReport(str(path))
    try:
        df = _read_raw(path)
    except TableError as exc:
        raise ManifestError(f"patient (all) | file {path} | column (all): cannot read the manifest: {exc}") from exc
    report.n_patients = len(df)
    _structure_problems(df, path, report, purpose)
    report.raise_if_errors()
    return _finish(df, path, purpose)


# --- clinical, visual and outcome tables ----------------------------------------------------------------------------

def _split_sheet(spec: str) -> tuple[str, str | None]:
    file, sheet = split_spec(spec)
    return str(file), sheet


def _read_table_file(file: str, sheet: str | None) -> pd.DataFrame:
    """A clinical/visual/outcome table through :func:`read_table`, blanks as NaN (one call per file and sheet)."""
    df = read_table(file, sheet).astype(object)
    return df.where(df != "", np.nan)


class _TableCache:
    """Reads each table (file + sheet) once; remembers the error when it cannot be read."""

    def __init__(self):
        self._store: dict[tuple[str, str | None], tuple[pd.DataFrame | None, str | None]] = {}

    def get(self, spec: str) -> tuple[pd.DataFrame | None, str | None]:
        file, sheet = _split_sheet(spec)
        key = (file, sheet)
        if key not in self._store:
            self._store[key] = self._read(file, sheet)
        return self._store[key]

    @staticmethod
    def _read(file: str, sheet: str | None):
        if not Path(file).is_file():
            return None, "file not found"
        try:
            df = _read_table_file(file, sheet)
        except TableError as exc:
            return None, str(exc)
        except Exception as exc:  # noqa: BLE001 - any reader failure is reported, with its type
            return None, f"cannot read the table: {type(exc).__name__}: {exc}"
        if "patient_id" not in df.columns:
            return None, f"no patient_id column (columns: {', '.join(map(str, df.columns))})"
        df["patient_id"] = df["patient_id"].astype(str).str.strip().str.replace(r"\.0$", "", regex=True)
        return df, None


def _check_value(var: Variable, raw, table_column: str):
    """Convert one cell; returns (value, message or None, severity)."""
    if _blank(raw):
        if table_column == "outcome_file":
            what = "survival time" if var.name == "rfs_months" else "event"
            return np.nan, f"missing {what}", "error"
        return np.nan, "missing value", "warning"
    text = str(raw).strip()
    if var.kind == "categorical":
        for level in var.levels:
            if text.lower() == str(level).lower():
                return level, None, ""
        return np.nan, f"{text!r} is not one of {', '.join(map(str, var.levels))}", "error"
    try:
        value = float(text)
    except ValueError:
        return np.nan, f"{text!r} is not a number", "error"
    if not np.isfinite(value):
        return np.nan, f"{text!r} is not a finite number", "error"
    if var.kind == "binary":
        if value not in (0.0, 1.0):
            name = "event" if table_column == "outcome_file" else "value"
            return np.nan, f"{name} must be 0 or 1, got {text!r}", "error"
        return int(value), None, ""
    if var.name == "rfs_months" and value < 0:
        return np.nan, f"negative survival time {text}", "error"
    if (var.low is not None and value < var.low) or (var.high is not None and value > var.high):
        return np.nan, f"{text} is out of range [{var.low}, {var.high}]", "error"
    return value, None, ""


def _patient_table(df: pd.DataFrame, report: ValidationReport, cache: _TableCache | None = None) -> pd.DataFrame:
    """Join clinical, visual and outcome data onto the manifest; problems go to ``report``."""
    cache = cache or _TableCache()
    out = pd.DataFrame(index=pd.Index(df["patient_id"].astype(str), name="patient_id"))
    out["cohort"] = df["cohort"].to_numpy()
    out["centre"] = df["centre"].astype(str).to_numpy()
    out["seg_train"] = df["seg_train"].to_numpy()
    for table_column, variables in TABLE_VARIABLES.items():
        for var in variables:
            out[var.name] = pd.Series(np.nan, index=out.index, dtype=object)
        if table_column not in df.columns:
            continue
        specs = df[table_column]
        for spec, idx in df.groupby(specs.where(specs.notna(), "")).groups.items():
            pids = df.loc[idx, "patient_id"].astype(str).tolist()
            if spec == "":
                continue  # optional table absent (required ones are reported by the structure check)
            table, error = cache.get(spec)
            if error:
                report.add(_patients_label(pids), spec, table_column, error)
                continue
            missing_cols = [v.name for v in variables if v.name not in table.columns]
            for col in missing_cols:
                report.add(_patients_label(pids), spec, col, f"column {col} is missing from the {table_column[:-5]} table")
            counts = table["patient_id"].value_counts()
            rows = table.drop_duplicates("patient_id").set_index("patient_id")
            for pid in pids:
                if pid not in rows.index:
                    report.add(pid, spec, "patient_id", f"patient is missing from the {table_column[:-5]} table")
                    continue
                if counts[pid] > 1:
                    report.add(pid, spec, "patient_id", f"patient appears {counts[pid]} times in the table")
                for var in variables:
                    if var.name in missing_cols:
                        continue
                    value, message, severity = _check_value(var, rows.at[pid, var.name], table_column)
                    if message:
                        report.add(pid, spec, var.name, message, severity)
                    out.at[pid, var.name] = value
    for var in CLINICAL_VARIABLES + VISUAL_FEATURES + OUTCOME_VARIABLES:
        col = out[var.name]
        if var.kind == "categorical":
            out[var.name] = col.astype(object)
        else:
            num = pd.to_numeric(col, errors="coerce").astype(float)
            out[var.name] = num.astype(int) if var.kind == "binary" and num.notna().all() else num
    ok = out["rfs_months"].notna() & out["recurrence"].notna()
    er = pd.Series(np.nan, index=out.index)
    er[ok] = early_recurrence(out.loc[ok, "rfs_months"], out.loc[ok, "recurrence"])
    out["er"] = er.astype(int) if ok.all() else er
    return out


def load_patient_table(manifest: str | Path | pd.DataFrame) -> pd.DataFrame:
    """One row per patient: manifest facts, clinical variables, visual reads and the outcome.

    Parameters
    ----------
    manifest : str, Path or pandas.DataFrame
        The manifest's path, or the frame :func:`read_manifest` returned.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``patient_id`` in manifest order: ``cohort``, ``centre``, ``seg_train``, the
        :data:`CLINICAL_VARIABLES` (binary ones int, categorical str, continuous float), the :data:`VISUAL_FEATURES`
        (NaN when the manifest gives no visual file), ``rfs_months``, ``recurrence`` and ``er`` (early recurrence,
        :func:`early_recurrence`). Each table is read once however many patients point to it.

    Raises
    ------
    ManifestError
        Any error in the tables (missing patients or columns, values of the wrong type or out of range, missing or
        negative survival times, events not 0/1), all listed together. Blank clinical values are only warned about.
    """
    df = manifest if isinstance(manifest, pd.DataFrame) else read_manifest(manifest)
    report = ValidationReport(str(df.attrs.get("manifest", "(data frame)")), n_patients=len(df))
    table = _patient_table(df, report)
    report.raise_if_errors()
    if report.warnings:
        warnings.warn(f"{len(report.warnings)} blank value(s) in the patient tables:\n"
                      + "\n".join(f"  {p}" for p in report.warnings[:20]), stacklevel=2)
    return table


# --- validation -----------------------------------------------------------------------------------------------------

def validate(path: str | Path, check_images: bool = True, progress: bool = True,
             purpose: str = "book") -> ValidationReport:
    """Check a manifest and everything it points to, collecting every problem.

    Checks: the manifest's columns and cells (missing required columns, blank values, duplicate ids, unknown cohort,
    unknown phase columns, ``seg_train`` not 0/1 or set for a validation patient); the clinical, visual and outcome
    tables (file or sheet missing, no ``patient_id`` column, missing variable columns, patients missing from a table,
    values of the wrong type or out of range, missing or negative survival times, events not 0/1); with
    ``check_images``, every CT (file exists and is readable as a 3-D image, DICOM folders resolve to exactly one
    series: several series with no UID, or an unknown UID, list the series found) and every mask (readable, on its
    image's grid: size, spacing, origin, direction; binary 0/1; not empty; present when ``seg_train`` is 1); and
    the checks of :mod:`hcc_utils.checks`: every image file read to its end (truncated or corrupted files), CT
    intensities, geometry, masks on air, the same pixels twice, DICOM slices that disagree, and the cohort-level
    preconditions of every later stage. Warnings listed in ``accepted_warnings.csv`` beside the manifest are marked
    accepted.

    Parameters
    ----------
    path : str or Path
        The manifest CSV.
    check_images : bool
        Also check the images and masks (slower).
    progress : bool
        Show a progress bar for the image checks.
    purpose : {'book', 'predict'}
        ``predict``: new patients (see :func:`read_manifest`); the cohort-level preconditions of the book are not
        checked.

    Returns
    -------
    ValidationReport
        ``.ok``, ``.errors``, ``.warnings``, ``.accepted``, ``.blocking`` (what stops the book),
        ``.raise_if_errors()``; ``str()`` lists every problem.
    """
    path = Path(path)
    report = ValidationReport(str(path), images_checked=check_images)
    if not path.is_file():
        report.add("(all)", path, "(all)", "manifest not found")
        return report
    try:
        df = _read_raw(path)
    except TableError as exc:
        report.add("(all)", path, "(all)", f"cannot read the manifest: {exc}")
        return report
    report.n_patients = len(df)
    usable = _structure_problems(df, path, report, purpose)
    needed = ["patient_id"] + (["seg_train", "cohort"] if purpose == "book" else [])
    if any(c not in df.columns for c in needed):
        return report
    first = ~df["patient_id"].duplicated(keep="first")
    keep = [i for i in usable if first[i]]
    if "seg_train" in df.columns:
        seg = pd.to_numeric(df["seg_train"], errors="coerce")
        seg_ok = seg.isin((0, 1)) | (seg.isna() if purpose == "predict" else False)
        keep = [i for i in keep if seg_ok[i]]
    good = _finish(df.loc[keep], path, purpose)
    from hcc_utils import checks

    table = _patient_table(good, report)
    if purpose == "book" and len(good) == len(df):  # cohort-level preconditions only when every row could be read
        checks.cohort_checks(table, good, report, str(path))
    if check_images:
        from tqdm.auto import tqdm

        seen: dict = {}
        for _, row in tqdm(good.iterrows(), total=len(good), desc="checking images", unit="patient",
                           disable=not progress, file=sys.stderr):
            checks.patient_image_checks(row, report, seen)
        checks.duplicate_images(seen, report)
    checks.apply_accepted(report, path)
    return report


# --- command line ---------------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    """``python -m hcc_utils.manifest check [MANIFEST | --profile NAME] [--no-images]``."""
    parser = argparse.ArgumentParser(prog="python -m hcc_utils.manifest", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="validate a manifest and the files it points to; exit 1 on errors")
    check.add_argument("manifest", nargs="?", help="manifest CSV (default: the profile's manifest)")
    check.add_argument("--profile", default=None, help="ci | demo | paper (default demo)")
    check.add_argument("--no-images", action="store_true", help="skip the image and mask checks")
    check.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.manifest and args.profile:
        parser.error("give a manifest or --profile, not both")
    if args.manifest:
        path = Path(args.manifest)
    else:
        from hcc_utils.config import load_profile

        prof = load_profile(args.profile or "demo")
        path = prof.manifest
        if not (prof.cohort_root / "stamp.json").exists():
            print(f"the synthetic {prof.name} cohort described by {path} has not been generated (or its generation "
                  f"was interrupted): run `make cohort PROFILE={prof.name}` or `make book PROFILE={prof.name}` first")
            return 1
    report = validate(path, check_images=not args.no_images, progress=not args.no_progress)
    print(report)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
