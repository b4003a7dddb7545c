"""Data checks of the images and of the cohort as a whole, run by :func:`hcc_utils.manifest.validate`.

Three kinds, each reported as a :class:`hcc_utils.manifest.Problem` naming the patient, the file and the column:

* **Integrity** (:func:`file_integrity`): every image file is read to its end; a truncated or corrupted compressed file
  (gzip CRC or length of ``.nii.gz``, zlib stream of ``.mha``/``.nrrd``) or a file shorter than its header says is an
  error. SimpleITK would read such a file without complaint and fill the missing part with zeros or garbage.
* **Plausibility** of images (:func:`patient_image_checks`): intensities that are not HU (stored values HU + 1024, values
  scaled to [0, 1], a constant image, saturated or all-zero slices), spacing that looks like the wrong unit, slices
  that are not axial, a mask that lies mostly on air, the same image used for two patients or for both phases, a
  DICOM series whose slices disagree (size, spacing, orientation, image type, positions).
* **Cohort preconditions** (:func:`cohort_checks`): what every later stage needs, checked before the first one runs:
  development and validation patients (of any external cohort), at least two cases that train the segmentation
  network per phase, both outcome classes and recurrence events in development, visual reads for every patient,
  survival times and laboratory values in the expected units.

Warnings carry a ``check`` code. A warning that is right for a cohort is accepted deliberately by listing it in
``accepted_warnings.csv`` beside the manifest (columns ``check, patient_id, column, reason``; ``*`` as patient_id
accepts it for every patient); accepted warnings are reported as ``ACCEPTED`` with the reason and do not stop the book.
"""
from __future__ import annotations

import gzip
import hashlib
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

ACCEPT_FILE = "accepted_warnings.csv"
_CHUNK = 1 << 20


# --- integrity ------------------------------------------------------------------------------------------------------

def _nifti_expected(header: bytes) -> int | None:
    """Bytes a NIfTI-1/2 file needs (voxel offset + data) from its header; None when it is not NIfTI."""
    for endian in ("<", ">"):
        if len(header) >= 348 and struct.unpack(endian + "i", header[:4])[0] == 348:
            dim = struct.unpack(endian + "8h", header[40:56])
            bitpix = struct.unpack(endian + "h", header[72:74])[0]
            offset = int(struct.unpack(endian + "f", header[108:112])[0])
            n = int(np.prod([max(int(d), 1) for d in dim[1:1 + max(0, min(int(dim[0]), 7))]]))
            return max(offset, 348) + n * bitpix // 8
        if len(header) >= 540 and struct.unpack(endian + "i", header[:4])[0] == 540:
            bitpix = struct.unpack(endian + "h", header[14:16])[0]
            dim = struct.unpack(endian + "8q", header[16:80])
            offset = struct.unpack(endian + "q", header[168:176])[0]
            n = int(np.prod([max(int(d), 1) for d in dim[1:1 + max(0, min(int(dim[0]), 7))]]))
            return max(int(offset), 540) + n * bitpix // 8
    return None


def _gunzip_size(path: Path, keep: int = 0) -> tuple[int, bytes]:
    """Decompress a gzip file to its end (CRC and length checked by :mod:`gzip`); returns size and first bytes."""
    n, head = 0, b""
    with gzip.open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            if len(head) < keep:
                head += chunk[: keep - len(head)]
            n += len(chunk)
    return n, head


_TYPE_SIZE = {"char": 1, "uchar": 1, "int8": 1, "uint8": 1, "signed char": 1, "unsigned char": 1, "short": 2,
              "ushort": 2, "int16": 2, "uint16": 2, "short int": 2, "unsigned short": 2, "int": 4, "uint": 4,
              "int32": 4, "uint32": 4, "float": 4, "double": 8, "int64": 8, "uint64": 8, "longlong": 8,
              "met_char": 1, "met_uchar": 1, "met_short": 2, "met_ushort": 2, "met_int": 4, "met_uint": 4,
              "met_float": 4, "met_double": 8, "met_long_long": 8, "met_ulong_long": 8}


def _header_block(path: Path, end: bytes) -> tuple[dict, int]:
    """Key/value header of an NRRD or MetaImage file and the offset where the data start."""
    with open(path, "rb") as fh:
        data = fh.read(1 << 16)
    if end not in data:
        return {}, -1
    text, pos = data[: data.index(end) + len(end)], data.index(end) + len(end)
    out = {}
    for line in text.decode("latin-1").splitlines():
        for sep in (":=", ":", "="):
            if sep in line:
                k, v = line.split(sep, 1)
                out[k.strip().lower()] = v.strip()
                break
    return out, pos


def _expect(n_voxels: int, type_name: str, channels: int = 1) -> int | None:
    size = _TYPE_SIZE.get(type_name.lower())
    return None if size is None else n_voxels * size * channels


def _zlib_size(data: bytes, gz: bool) -> int:
    d = zlib.decompressobj(31 if gz else 15)
    n = len(d.decompress(data)) + len(d.flush())
    if not d.eof:
        raise zlib.error("the compressed stream ends early")
    return n


def file_integrity(path: str | Path) -> str | None:
    """Read an image file to its end and compare its length with what its header says.

    Parameters
    ----------
    path : str or Path
        A ``.nii``, ``.nii.gz``, ``.nrrd``/``.nhdr`` or ``.mha``/``.mhd`` file (other files, DICOM included, are left
        to the reader).

    Returns
    -------
    str or None
        What is wrong (truncated, corrupted, failed decompression), or None when the file is whole.
    """
    path = Path(path)
    name = path.name.lower()
    try:
        if name.endswith(".gz"):
            with open(path, "rb") as fh:
                if fh.read(2) != b"\x1f\x8b":
                    return "not a gzip file although its name ends in .gz"
            try:
                n, head = _gunzip_size(path, keep=544)
            except (OSError, EOFError, zlib.error) as exc:
                return f"truncated or corrupted compressed file (gzip: {exc}); copy the file again"
            need = _nifti_expected(head) if name.endswith(".nii.gz") else None
            if need is not None and n < need:
                return f"truncated: {n} bytes once decompressed but its header needs {need}; copy the file again"
        elif name.endswith(".nii"):
            with open(path, "rb") as fh:
                need = _nifti_expected(fh.read(544))
            if need is not None and path.stat().st_size < need:
                return f"truncated: {path.stat().st_size} bytes but its header needs {need}; copy the file again"
        elif name.endswith((".nrrd", ".nhdr")):
            hdr, pos = _header_block(path, b"\n\n")
            sizes = [int(s) for s in hdr.get("sizes", "").split()] if hdr.get("sizes") else []
            need = _expect(int(np.prod(sizes)), hdr.get("type", "")) if sizes else None
            enc = hdr.get("encoding", "raw").lower()
            data_file = hdr.get("data file") or hdr.get("datafile")
            target = (path.parent / data_file) if data_file else path
            if not target.is_file():
                return f"its data file {target.name} is missing"
            raw = target.read_bytes()[pos if target == path else 0:]
            if enc in ("gzip", "gz"):
                try:
                    got = _zlib_size(raw, gz=True)
                except zlib.error as exc:
                    return f"truncated or corrupted compressed data (gzip: {exc}); copy the file again"
            elif enc == "raw":
                got = len(raw)
            else:
                return None
            if need is not None and got < need:
                return f"truncated: {got} bytes of pixel data but its header needs {need}; copy the file again"
        elif name.endswith((".mha", ".mhd")):
            with open(path, "rb") as fh:
                data = fh.read(1 << 16)
            m = re.search(rb"ElementDataFile\s*=\s*([^\r\n]*)\r?\n", data)
            if not m:
                return None
            hdr, _ = _header_block(path, m.group(0))
            pos = m.end()
            dims = [int(s) for s in hdr.get("dimsize", "").split()]
            need = _expect(int(np.prod(dims)), hdr.get("elementtype", ""),
                           int(hdr.get("elementnumberofchannels", "1") or 1)) if dims else None
            src = m.group(1).decode("latin-1").strip()
            raw = path.read_bytes()[pos:] if src.upper() == "LOCAL" else (path.parent / src).read_bytes()
            if hdr.get("compresseddata", "false").lower() == "true":
                try:
                    got = _zlib_size(raw, gz=False)
                except zlib.error as exc:
                    return f"truncated or corrupted compressed data (zlib: {exc}); copy the file again"
            else:
                got = len(raw)
            if need is not None and got < need:
                return f"truncated: {got} bytes of pixel data but its header needs {need}; copy the file again"
    except OSError as exc:
        return f"cannot be read to its end ({exc})"
    return None


# --- image plausibility ---------------------------------------------------------------------------------------------

def pixel_digest(arr: np.ndarray) -> str:
    """SHA-1 of an array's shape and bytes (finds the same pixels under two names)."""
    h = hashlib.sha1(str(arr.shape).encode())
    h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def intensity_problems(hu: np.ndarray) -> list[tuple[str, str, str]]:
    """(severity, check, message) for CT values that do not look like HU (see the module docstring)."""
    out = []
    a = hu.astype(np.float32, copy=False)
    lo, hi = float(a.min()), float(a.max())
    p50 = float(np.median(a))
    if hi == lo:
        return [("error", "constant_image", f"every voxel is {lo:g}: not a CT image")]
    if lo >= -1.0 and hi <= 1.0:
        out.append(("error", "not_hu", f"values lie in [{lo:g}, {hi:g}]: scaled or normalised, not HU; export the "
                                       "CT in Hounsfield units"))
    elif lo > -200 and p50 > 700:
        out.append(("error", "not_hu", f"values look like stored values HU + 1024 (minimum {lo:g}, median "
                                       f"{p50:g}): subtract 1024 or export with the DICOM rescale applied"))
    elif lo < -2000 or hi > 4000:
        out.append(("warning", "hu_range", f"values {lo:g} to {hi:g} lie outside the HU range of CT (-1024 to "
                                           "about 3000): a damaged or wrongly converted file?"))
    sat = np.isin(a, (-32768, 32767, 65535)).mean()
    if sat > 0.001:
        out.append(("warning", "saturated", f"{100 * sat:.1f} % of the voxels hold the integer limits "
                                            "(-32768/32767): a damaged file?"))
    zero = int((a.reshape(a.shape[0], -1) == 0).all(axis=1).sum()) if a.ndim == 3 else 0
    if zero and lo < -100:
        out.append(("warning", "zero_slices", f"{zero} axial slice(s) are all 0 HU: a truncated or badly "
                                              "converted volume?"))
    return out


def geometry_problems(img) -> list[tuple[str, str, str]]:
    """(severity, check, message) for spacing in the wrong unit or slices that are not axial."""
    out = []
    sx, sy, sz = (float(v) for v in img.GetSpacing())
    if not (0.1 <= sx <= 10 and 0.1 <= sy <= 10):
        out.append(("warning", "spacing_unit", f"in-plane pixel spacing {sx:g} x {sy:g} mm is implausible for CT "
                                               "(0.1-10 mm): cm or m instead of mm?"))
    if not 0.1 <= sz <= 20:
        out.append(("warning", "spacing_unit", f"slice spacing {sz:g} mm is implausible for CT (0.1-20 mm): cm or "
                                               "m instead of mm?"))
    normal = np.asarray(img.GetDirection(), float).reshape(3, 3)[:, 2]
    if abs(normal[2]) < 0.9:
        shown = tuple(round(float(v), 2) + 0.0 for v in normal)
        out.append(("warning", "not_axial", f"the slices are not axial (slice normal {shown}): the 2-D pipeline "
                                            "works on axial slices; resample to an axial volume"))
    if img.GetSize()[2] < 3:
        out.append(("error", "too_few_slices", f"only {img.GetSize()[2]} slice(s): a CT volume is expected"))
    return out


def mask_on_image_problems(hu: np.ndarray, mask: np.ndarray) -> list[tuple[str, str, str]]:
    """(severity, check, message) when a mask does not lie on tumour-bearing tissue of its image."""
    inside = hu[mask > 0]
    if inside.size == 0:
        return []
    air = float((inside < -300).mean())
    if air > 0.5:
        return [("warning", "mask_on_air", f"{100 * air:.0f} % of the mask lies on air or lung (< -300 HU, mean "
                                           f"{float(inside.mean()):.0f} HU): flipped, shifted or from another image?")]
    return []


def dicom_series_problems(files) -> list[tuple[str, str, str]]:
    """(severity, check, message) when the slices of one DICOM series disagree with each other (headers only)."""
    import SimpleITK as sitk

    rows = []
    for f in files:
        r = sitk.ImageFileReader()
        r.SetFileName(str(f))
        r.LoadPrivateTagsOff()
        try:
            r.ReadImageInformation()
        except RuntimeError as exc:
            return [("error", "dicom_slices", f"slice {Path(f).name} is unreadable: {str(exc).strip()[-200:]}")]
        itype = r.GetMetaData("0008|0008").strip() if r.HasMetaDataKey("0008|0008") else ""
        rows.append((Path(f).name, tuple(r.GetSize()[:2]), tuple(round(v, 4) for v in r.GetSpacing()[:2]),
                     tuple(round(v, 4) for v in r.GetDirection()), itype, np.asarray(r.GetOrigin(), float)))
    if len(rows) < 2:
        return []
    out = []
    for k, what in ((1, "size"), (2, "pixel spacing"), (3, "orientation"), (4, "image type")):
        values = sorted({str(r[k]) for r in rows})
        if len(values) > 1:
            first = next(r[0] for r in rows if str(r[k]) != str(rows[0][k]))
            out.append(("error", "dicom_slices", f"the slices differ in {what} ({', '.join(values[:3])}; e.g. "
                                                 f"{rows[0][0]} and {first}): the folder mixes series or scouts"))
    if out:
        return out
    normal = np.asarray(rows[0][3], float).reshape(3, 3)[:, 2]
    pos = np.sort(np.array([float(np.dot(r[5], normal)) for r in rows]))
    gaps = np.diff(pos)
    if (gaps < 1e-3).any():
        out.append(("error", "dicom_slices", f"{int((gaps < 1e-3).sum())} slice(s) share a position with another: "
                                             "duplicated files or two series in one folder"))
    elif gaps.size and gaps.max() > 1.5 * np.median(gaps):
        out.append(("error", "dicom_slices", f"the slice positions are unevenly spaced (gaps {np.median(gaps):.2f} "
                                             f"to {gaps.max():.2f} mm): slices are missing"))
    return out


# --- cohort preconditions -------------------------------------------------------------------------------------------

#: Cohort-level medians that suggest a wrong unit: variable -> (test, message).
UNIT_HINTS = {
    "rfs_months": (lambda med, mx: med > 100 or mx > 400,
                   "survival times look like days or weeks, not months (median {med:g}, maximum {mx:g}); "
                   "divide days by 30.44"),
    "tb": (lambda med, mx: med < 3, "total bilirubin looks like mg/dL, not umol/L (median {med:g}); multiply by 17.1"),
    "age": (lambda med, mx: med < 15, "ages look like decades or are not ages in years (median {med:g})"),
}


def cohort_checks(table: pd.DataFrame, manifest_df: pd.DataFrame, report, mf: str) -> None:
    """Add the cohort-level problems of a patient table (from ``_patient_table``) to ``report``."""
    from hcc_utils.config import PHASES
    from hcc_utils.tables import patients_label as _patients_label

    if table.empty:
        return
    from hcc_utils.tables import is_external

    dev = table[table["cohort"] == "development"]
    val = table[is_external(table["cohort"])]  # every external cohort counts
    if dev.empty:
        report.add("(all)", mf, "cohort", "no development patient: the models and the segmentation network are "
                                          "fitted on development patients", check="no_development")
    if val.empty:
        report.add("(all)", mf, "cohort", "no validation patient: Table 2 and the survival analysis evaluate on the "
                                          "validation cohort", check="no_validation")
    for ph in PHASES:
        col = f"mask_{ph.lower()}"
        n = int(((manifest_df["seg_train"] == 1) & manifest_df[col].notna()).sum()) if col in manifest_df else 0
        if n < 2:
            report.add("(all)", mf, "seg_train", f"{n} case(s) with seg_train = 1 and a {col}: the segmentation "
                                                 f"network of phase {ph} needs at least 2 (one to train, one to "
                                                 "choose the checkpoint)", check="seg_train_count")
    ofile = _table_files(manifest_df, "outcome_file") or mf
    if not dev.empty and dev["er"].notna().all():
        counts = dev["er"].astype(int).value_counts()
        for cls, label in ((1, "early recurrence"), (0, "no early recurrence")):
            if counts.get(cls, 0) < 2:
                report.add(_patients_label(dev.index), ofile, "recurrence",
                           f"{counts.get(cls, 0)} development patient(s) with {label}: the classifiers need both "
                           "outcome classes (at least 2 of each)", check="outcome_classes")
        if dev["recurrence"].sum() == 0:
            report.add(_patients_label(dev.index), ofile, "recurrence", "no recurrence event in development: the Cox "
                                                                     "model cannot be fitted", check="no_events")
    vis = [c for c in table.columns if c.startswith("vis_")]
    lacking = table.index[table[vis].isna().any(axis=1)] if vis else table.index
    if len(lacking) == len(table):
        report.add("(all)", mf, "visual_file", "no visual reads: the visual model of Table 2 needs visual_file with "
                                               "all 8 reads for every patient", check="visual_missing")
    elif len(lacking):
        by = ", ".join(f"{c}: {n}" for c, n in table.loc[lacking, "cohort"].value_counts().items())
        report.add(_patients_label(lacking), mf, "visual_file",
                   f"visual reads are missing for {len(lacking)} patient(s) ({by}): the visual model needs all 8 "
                   "reads of every patient", check="visual_missing")
    for var, (test, message) in UNIT_HINTS.items():
        x = pd.to_numeric(table.get(var), errors="coerce").dropna() if var in table else pd.Series(dtype=float)
        if len(x) >= 3 and test(float(x.median()), float(x.max())):
            source = _table_files(manifest_df, "outcome_file" if var == "rfs_months" else "clinical_file") or mf
            report.add(_patients_label(table.index), source, var,
                       message.format(med=float(x.median()), mx=float(x.max())), "warning", check="unit")


def _table_files(manifest_df: pd.DataFrame, column: str) -> str:
    """The table file(s) a manifest column names, for messages."""
    if column not in manifest_df:
        return ""
    return ", ".join(sorted({str(v) for v in manifest_df[column].dropna()}))


# --- accepting warnings ---------------------------------------------------------------------------------------------

def apply_accepted(report, manifest: Path) -> None:
    """Mark the warnings listed in ``accepted_warnings.csv`` beside the manifest as accepted (with their reason)."""
    from dataclasses import replace

    from hcc_utils.tables import TableError, read_table

    path = Path(manifest).parent / ACCEPT_FILE
    if not path.is_file():
        return
    try:
        acc = read_table(path)
    except TableError as exc:
        report.add("(all)", path, "(all)", f"cannot read the accepted warnings: {exc}")
        return
    missing = [c for c in ("check", "patient_id", "column", "reason") if c not in acc.columns]
    if missing:
        report.add("(all)", path, ", ".join(missing), "accepted_warnings.csv needs the columns check, patient_id, "
                                                      "column, reason")
        return
    rules = [r for r in acc.to_dict("records") if r["check"]]
    for i, p in enumerate(report.problems):
        if p.severity != "warning" or not p.check:
            continue
        for r in rules:
            if r["check"] == p.check and r["patient_id"] in ("*", p.patient_id) and r["column"] in ("*", p.column):
                if not r["reason"]:
                    continue  # a reason is part of accepting
                report.problems[i] = replace(p, severity="accepted", message=f"{p.message} [accepted: {r['reason']}]")
                break


# --- one patient's images -------------------------------------------------------------------------------------------

def _short(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    for ln in lines:  # ITK messages carry a file:line prefix; keep the human part
        if "Description:" in ln:
            return ln.split("Description:", 1)[1].strip()
    return lines[-1] if lines else type(exc).__name__


def _add_all(report, pid, file, column, found) -> bool:
    """Add (severity, check, message) tuples; True when one of them is an error."""
    for severity, check, message in found:
        report.add(pid, file, column, message, severity, check=check)
    return any(s == "error" for s, _, _ in found)


def patient_image_checks(row, report, seen: dict) -> None:
    """Check one manifest row's CTs and masks: existence, integrity, header, pixels, grid, plausibility.

    ``seen`` collects pixel digests across patients (see :func:`duplicate_images`).
    """
    from hcc_utils import imaging
    from hcc_utils.config import PHASES
    from hcc_utils.tables import blank as _blank

    pid = row["patient_id"]
    for phase in PHASES:
        ph = phase.lower()
        ct_col, uid_col, mask_col = f"ct_{ph}", f"series_uid_{ph}", f"mask_{ph}"
        ct, uid, mask = row.get(ct_col), row.get(uid_col), row.get(mask_col)
        info = hu = None
        if not _blank(ct):
            ct_path = Path(ct)
            if not ct_path.exists():
                report.add(pid, ct, ct_col, "image file or DICOM folder not found")
            elif ct_path.is_file() and (bad := file_integrity(ct_path)):
                report.add(pid, ct, ct_col, f"unreadable image: {bad}", check="integrity")
            else:
                if ct_path.is_file() and not _blank(uid):
                    report.add(pid, ct, uid_col, f"{uid_col} is set but {ct_col} is a file, not a DICOM folder; "
                                                 "the UID is ignored", "warning")
                use_uid = None if _blank(uid) or ct_path.is_file() else uid
                try:
                    info = imaging.read_image_information(ct_path, use_uid)
                    if ct_path.is_dir():
                        series = imaging.resolve_dicom_series(ct_path, use_uid)
                        if _add_all(report, pid, ct, ct_col, dicom_series_problems(series.files)):
                            info = None
                except imaging.DicomSeriesError as exc:
                    report.add(pid, ct, uid_col, str(exc).split(": ", 1)[-1])
                except (RuntimeError, OSError) as exc:
                    report.add(pid, ct, ct_col, f"unreadable image: {_short(exc)}")
                if info is not None and info.GetDimension() != 3:
                    report.add(pid, ct, ct_col, f"image is {info.GetDimension()}-D; a 3-D CT volume is expected")
                    info = None
                if info is not None and not _add_all(report, pid, ct, ct_col, geometry_problems(info)):
                    try:
                        hu = imaging.sitk.GetArrayFromImage(imaging.read_image(ct_path, use_uid))
                    except (RuntimeError, OSError, ValueError) as exc:
                        report.add(pid, ct, ct_col, f"unreadable image: {_short(exc)}")
                    if hu is not None:
                        if _add_all(report, pid, ct, ct_col, intensity_problems(hu)):
                            hu = None
                        else:
                            seen.setdefault(pixel_digest(hu), []).append((pid, ct_col, str(ct)))
        if _blank(mask):
            continue  # a missing mask of a seg_train case is reported by the structure check
        if not Path(mask).exists():
            report.add(pid, mask, mask_col, "mask file not found")
            continue
        if Path(mask).is_file() and (bad := file_integrity(mask)):
            report.add(pid, mask, mask_col, f"unreadable mask: {bad}", check="integrity")
            continue
        try:
            mimg = imaging.read_image(mask)
        except (RuntimeError, OSError, ValueError) as exc:
            report.add(pid, mask, mask_col, f"unreadable mask: {_short(exc)}")
            continue
        if info is not None:
            diffs = imaging.check_same_grid(info, mimg)
            for diff in diffs:
                report.add(pid, mask, mask_col, f"mask is not on its image's grid ({ct_col}): {diff}")
            if diffs:
                hu = None
        arr = np.asarray(imaging.sitk.GetArrayViewFromImage(mimg))
        values = np.unique(arr)
        if not np.isin(values, (0, 1)).all():
            shown = ", ".join(f"{v:g}" for v in values[:6]) + (", ..." if len(values) > 6 else "")
            hint = " (label 2 of a liver/tumour map? keep the tumour label as 1)" if 2 in values else ""
            report.add(pid, mask, mask_col, f"mask is not binary 0/1 (values {shown}){hint}")
        elif not (arr == 1).any():
            report.add(pid, mask, mask_col, "mask is empty (no tumour voxel)")
        elif hu is not None and hu.shape == arr.shape:
            _add_all(report, pid, mask, mask_col, mask_on_image_problems(hu, arr))


def duplicate_images(seen: dict, report) -> None:
    """Errors for identical CT pixels under two patients, or under both phases of one patient."""
    for entries in seen.values():
        if len(entries) < 2:
            continue
        for pid, col, file in entries:
            others = [f"{p} {c}" if p != pid else c for p, c, _ in entries if (p, c) != (pid, col)]
            report.add(pid, file, col, f"identical pixels to {', '.join(others)}: the same image used twice "
                                       "(a copy-paste slip in the manifest?)", check="duplicate_image")
