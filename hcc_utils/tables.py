"""Reading the cohort's tables: one reader for the manifest and every clinical, visual and outcome table.

Validation, the run's change detection and every stage read tables through :func:`read_table` (re-exported as
:func:`hcc_utils.manifest.read_table`), so that what the check accepts is exactly what is hashed and analysed.

Accepted variants
-----------------
* CSV: UTF-8 with or without the byte-order mark Excel writes, or Latin-1; LF or CRLF line ends; separated by ``,``,
  ``;`` or tab (chosen from the header line; ``.tsv``/``.tab`` files are tab separated). In a ``;``-separated file, a
  cell that is a number with a decimal comma (``12,5``) is read as ``12.5``.
* Excel (``.xlsx``, ``.xlsm``, ``.xls``): the first sheet, or the sheet named after ``#`` (``clinical.xlsx#Labs``).
  A ``#`` that is part of a real file name is kept when that file exists.
* Header names are trimmed and lower-cased; two headers that are then equal (``CT_AP`` and ``ct_ap``) are an error.

The cohort values of the manifest's ``cohort`` column (``development``, ``validation``, ``validation:<name>``) are
told apart here too (:func:`is_external`, :func:`external_cohorts`, :func:`cohort_order`, :func:`report_cohorts`,
:func:`cohort_label`), so that every stage, the checks included, reads them alike.
"""
from __future__ import annotations

import re
from io import StringIO
from pathlib import Path

import numpy as np
import pandas as pd

EXCEL_SUFFIXES = (".xlsx", ".xlsm", ".xls")
_DECIMAL_COMMA = re.compile(r"^[-+]?\d+,\d+$")

DEVELOPMENT = "development"
VALIDATION = "validation"
#: The two kinds of cohort; an external cohort may also be named ``validation:<name>`` (:func:`is_external`).
COHORTS = (DEVELOPMENT, VALIDATION)
_EXTERNAL = re.compile(r"validation(?::[A-Za-z0-9_-]+)?")


class TableError(ValueError):
    """A table cannot be read as the cohort's tables must be: the message says why, and how to fix it."""


def split_spec(spec: str | Path, sheet: str | None = None) -> tuple[Path, str | None]:
    """Split ``file.xlsx#Sheet`` into the file and the sheet.

    Parameters
    ----------
    spec : str or Path
        A path, optionally followed by ``#Sheet`` for an Excel workbook.
    sheet : str, optional
        A sheet given separately; it wins over one in ``spec``.

    Returns
    -------
    (Path, str or None)
        The file, and the sheet (None: the first one). ``#`` splits only when the text before it names an Excel file
        and the whole text is not itself an existing file, so a file called ``reads#2.csv`` is read as it is.
    """
    text = str(spec)
    if sheet is not None or "#" not in text or Path(text).exists():
        return Path(text), sheet
    file, _, name = text.rpartition("#")
    if file.lower().endswith(EXCEL_SUFFIXES):
        return Path(file), name or None
    return Path(text), None


def _decode(raw: bytes) -> str:
    for encoding in ("utf-8-sig", "latin-1"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise TableError("the file is neither UTF-8 nor Latin-1 text")  # latin-1 decodes anything; kept for clarity


def _separator(text: str, suffix: str) -> str:
    if suffix in (".tsv", ".tab"):
        return "\t"
    header = text.lstrip("\ufeff").split("\n", 1)[0]
    if "\t" in header and "," not in header:
        return "\t"
    if ";" in header and "," not in header:
        return ";"
    return ","


def _with_header(raw: pd.DataFrame, file: Path) -> pd.DataFrame:
    """First row as the header (trimmed, lower-case), all cells as trimmed strings, blanks as ''."""
    if raw.shape[0] == 0:
        raise TableError("the table is empty (no header line)")
    raw = raw.fillna("").astype(str).apply(lambda s: s.str.strip())
    names = [str(c).strip() for c in raw.iloc[0]]
    lower = [n.lower() for n in names]
    seen: dict[str, str] = {}
    for orig, low in zip(names, lower):
        if low in seen and low:
            raise TableError(f"columns {seen[low]!r} and {orig!r} are the same column (names are case-insensitive); "
                             "keep one of them")
        seen[low] = orig
    df = raw.iloc[1:].reset_index(drop=True)
    df.columns = lower
    if "" in df.columns:  # unnamed columns: dropped when empty (a trailing separator), an error otherwise
        blank = df.loc[:, [c == "" for c in df.columns]]
        if (blank != "").any().any():
            raise TableError("a column with values has no name in the header line")
        df = df.loc[:, [c != "" for c in df.columns]]
    df = df.loc[~(df == "").all(axis=1)].reset_index(drop=True)  # blank lines Excel leaves at the end
    return df


def read_table(spec: str | Path, sheet: str | None = None) -> pd.DataFrame:
    """Read a manifest, clinical, visual or outcome table as text: the one table reader of the project.

    Parameters
    ----------
    spec : str or Path
        A CSV/TSV file or an Excel workbook, optionally ``workbook.xlsx#Sheet`` (see :func:`split_spec`).
    sheet : str, optional
        The Excel sheet (default: the one in ``spec``, else the first).

    Returns
    -------
    pandas.DataFrame
        Every cell a ``str``, trimmed, blanks kept as ``""`` (never NaN); column names trimmed and lower-case, in file
        order; a default ``RangeIndex``; rows that are blank in every column dropped. Decimal commas of a
        ``;``-separated CSV are turned into points. ``df.attrs["source"]`` holds ``spec`` as given.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    TableError
        The file cannot be parsed, the sheet does not exist, two columns have the same name up to case, or a column
        with values has no name. The message says what to do.
    """
    file, sheet = split_spec(spec, sheet)
    if not file.is_file():
        raise FileNotFoundError(f"{file}: file not found")
    suffix = file.suffix.lower()
    raw_bytes = file.read_bytes()
    workbook = raw_bytes[:4] == b"PK\x03\x04" or raw_bytes[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # xlsx / xls
    if suffix in EXCEL_SUFFIXES or workbook:
        if suffix not in EXCEL_SUFFIXES:
            raise TableError(f"this file is an Excel workbook saved with the suffix {suffix or '(none)'}: rename it "
                             f"to {file.stem}.xlsx, or save it from Excel as 'CSV UTF-8'")
        try:
            raw = pd.read_excel(file, sheet_name=sheet if sheet is not None else 0, header=None, dtype=str)
        except ValueError as exc:
            if sheet is not None and "not found" in str(exc).lower():
                raise TableError(f"sheet {sheet!r} not found in the workbook") from exc
            raise TableError(f"cannot read the workbook: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - a damaged workbook: say so, with the reader's reason
            raise TableError(f"cannot read the workbook ({type(exc).__name__}: {exc}); open it in Excel and save it "
                             "again, or save it as 'CSV UTF-8'") from exc
        comma = False
    else:
        text = _decode(raw_bytes)
        if not text.strip():
            raise TableError("the file is empty")
        sep = _separator(text, suffix)
        try:
            raw = pd.read_csv(StringIO(text), sep=sep, header=None, dtype=str, keep_default_na=False,
                              skipinitialspace=True, skip_blank_lines=True)
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise TableError(f"cannot read the file as CSV ({str(exc).strip()}); check that every line has as many "
                             "separators as the header") from exc
        comma = sep == ";"
    df = _with_header(raw, file)
    if comma:
        df = df.apply(lambda s: s.map(lambda v: v.replace(",", ".") if _DECIMAL_COMMA.match(v) else v))
    df.attrs["source"] = str(spec)
    return df


def blank(value) -> bool:
    """Whether a table cell is empty (None, NaN, or blank text)."""
    return value is None or (isinstance(value, float) and np.isnan(value)) or str(value).strip() in ("", "nan", "NaN")


def patients_label(ids) -> str:
    """Patient ids for a message: all of them up to three, else the first two and the count."""
    ids = [str(i) for i in ids]
    if not ids:
        return "(none)"
    if len(ids) <= 3:
        return ", ".join(ids)
    return f"{ids[0]}, {ids[1]}, ... ({len(ids)} patients)"


# --- cohort values -------------------------------------------------------------------------------------------------

def is_external(cohort):
    """Whether a cohort value names an external (validation) cohort: ``validation`` or ``validation:<name>``.

    Parameters
    ----------
    cohort : str, pandas.Series or array-like
        One value, or several.

    Returns
    -------
    bool, or a boolean Series (same index) / array for several values
    """
    test = lambda v: isinstance(v, str) and _EXTERNAL.fullmatch(v) is not None
    if isinstance(cohort, pd.Series):
        return cohort.map(test).astype(bool)
    if isinstance(cohort, (pd.Index, np.ndarray, list, tuple)):
        return np.array([test(v) for v in cohort], dtype=bool)
    return test(cohort)


def is_cohort(value) -> bool:
    """Whether ``value`` is a valid cohort: ``development`` or an external cohort (:func:`is_external`)."""
    return value == DEVELOPMENT or is_external(value)


def external_cohorts(cohorts) -> list[str]:
    """The distinct external cohorts among some cohort values, sorted (plain ``validation`` first, then by name).

    Sorted order is also the order of ``groupby("cohort")``, so per-cohort tables list their blocks alike.

    Parameters
    ----------
    cohorts : iterable of str
        E.g. a patient table's ``cohort`` column.

    Returns
    -------
    list of str
    """
    return sorted({c for c in cohorts if is_external(c)})


def cohort_order(cohorts) -> list[str]:
    """The distinct valid cohorts among ``cohorts``: ``development`` (when present), then :func:`external_cohorts`."""
    values = set(cohorts)
    return ([DEVELOPMENT] if DEVELOPMENT in values else []) + external_cohorts(values)


def report_cohorts(cohorts) -> list[str]:
    """The cohorts a per-cohort report has: ``development``, then each external cohort (``validation`` when there is
    none, so that a report of one external cohort keeps its two blocks)."""
    return [DEVELOPMENT] + (external_cohorts(cohorts) or [VALIDATION])


def cohort_label(cohort: str) -> str:
    """Display label of a cohort: ``Development``, ``Validation``, ``Validation (centre2)`` for ``validation:centre2``.
    """
    head, _, name = str(cohort).partition(":")
    return head.capitalize() + (f" ({name})" if name else "")


def external_text(values: dict) -> str:
    """Text of one value per external cohort: the value alone for one cohort, else ``v1 (centre2), v2 (centre3)``.

    Parameters
    ----------
    values : dict
        External cohort -> text, in display order.
    """
    if len(values) == 1:
        return str(next(iter(values.values())))
    return ", ".join(f"{v} ({str(c).partition(':')[2] or c})" for c, v in values.items())

