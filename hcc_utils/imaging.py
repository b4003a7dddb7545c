"""Medical image I/O with SimpleITK: reading, writing, geometry checks and the DICOM tags never read.

Reads NIfTI, NRRD/MHA (what ITK-SNAP saves) and DICOM series folders, keeping HU (SimpleITK applies DICOM's
RescaleSlope/RescaleIntercept), spacing, origin and direction.

Privacy
-------
Nothing from DICOM headers that identifies a person is read into outputs: :func:`read_image` returns pixels and
geometry only (the metadata dictionary that SimpleITK fills from a DICOM file, which holds the patient's name, ids
and dates, is erased), and :func:`list_dicom_series` reads only the series number, description and UID.
:data:`PHI_TAGS` names the identifying tags; :func:`write_dicom_series` writes test series that carry fake values of
them, and :func:`find_text_in_tree` searches a folder (outputs, the HTML book) for such strings.
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import html
import io as _io
import locale
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import SimpleITK as sitk

#: DICOM tags that identify a person or a visit (``group|element`` as SimpleITK spells them). None of them is read
#: into, printed to or stored in outputs.
PHI_TAGS: dict[str, str] = {
    "PatientName": "0010|0010",
    "PatientID": "0010|0020",
    "PatientBirthDate": "0010|0030",
    "PatientSex": "0010|0040",
    "OtherPatientIDs": "0010|1000",
    "PatientAddress": "0010|1040",
    "PatientTelephoneNumbers": "0010|2154",
    "AccessionNumber": "0008|0050",
    "StudyDate": "0008|0020",
    "SeriesDate": "0008|0021",
    "AcquisitionDate": "0008|0022",
    "ContentDate": "0008|0023",
    "StudyTime": "0008|0030",
    "InstitutionName": "0008|0080",
    "InstitutionAddress": "0008|0081",
    "ReferringPhysicianName": "0008|0090",
    "StationName": "0008|1010",
    "OperatorsName": "0008|1070",
    "StudyID": "0020|0010",
}

#: Tags :func:`list_dicom_series` reads (and nothing else).
SERIES_NUMBER_TAG = "0020|0011"
SERIES_DESCRIPTION_TAG = "0008|103e"

IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm")


class DicomSeriesError(ValueError):
    """A DICOM folder holds no series, several series and no ``series_uid`` was given, or not the requested one.

    Attributes
    ----------
    folder : Path
    series : list of DicomSeries
        The series found in the folder (may be empty).
    """

    def __init__(self, message: str, folder: Path, series: list["DicomSeries"]):
        super().__init__(message)
        self.folder = Path(folder)
        self.series = series


@dataclass(frozen=True)
class DicomSeries:
    """One DICOM series in a folder: what a user needs to choose it (no patient information).

    Attributes
    ----------
    uid : str
        SeriesInstanceUID (put it in the manifest's ``series_uid_ap``/``series_uid_pp`` column).
    number : str
        SeriesNumber ('' when absent).
    description : str
        SeriesDescription ('' when absent).
    n_slices : int
        Number of files of the series.
    files : tuple of str
        The files, in the slice order GDCM sorts them.
    """

    uid: str
    number: str
    description: str
    n_slices: int
    files: tuple = ()

    def __str__(self) -> str:
        return (f"series number {self.number or '?'}, description {self.description or '(none)'!r}, "
                f"{self.n_slices} slice{'s' if self.n_slices != 1 else ''}, SeriesInstanceUID {self.uid}")



def _keeps_locale(func):
    """Restore the process locale after ``func``: GDCM (SimpleITK's DICOM back end) switches LC_ALL to "C", which
    would turn Python's preferred encoding into ASCII for the rest of the process (subprocess and file text)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        saved = locale.setlocale(locale.LC_ALL)
        try:
            return func(*args, **kwargs)
        finally:
            if locale.setlocale(locale.LC_ALL) != saved:
                locale.setlocale(locale.LC_ALL, saved)

    return wrapper


def is_image_path(path: str | Path) -> bool:
    """True for a folder (DICOM series) or a file with a known image suffix."""
    path = Path(path)
    return path.is_dir() or path.name.lower().endswith(IMAGE_SUFFIXES)


@_keeps_locale
def list_dicom_series(folder: str | Path) -> list[DicomSeries]:
    """List the DICOM series in a folder (not recursive).

    Only the SeriesInstanceUID, SeriesNumber and SeriesDescription of each series' first file are read.

    Parameters
    ----------
    folder : str or Path

    Returns
    -------
    list of DicomSeries
        Sorted by series number then UID; empty when the folder holds no DICOM series.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder")
    out = []
    for uid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)):
        files = tuple(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid))
        number = description = ""
        if files:
            reader = sitk.ImageFileReader()
            reader.SetFileName(files[0])
            reader.LoadPrivateTagsOff()
            try:
                reader.ReadImageInformation()
                if reader.HasMetaDataKey(SERIES_NUMBER_TAG):
                    number = reader.GetMetaData(SERIES_NUMBER_TAG).strip()
                if reader.HasMetaDataKey(SERIES_DESCRIPTION_TAG):
                    description = reader.GetMetaData(SERIES_DESCRIPTION_TAG).strip()
            except RuntimeError:
                pass
        out.append(DicomSeries(uid=uid, number=number, description=description, n_slices=len(files), files=files))

    def key(s: DicomSeries):
        return (int(s.number) if s.number.lstrip("-").isdigit() else 10**9, s.uid)

    return sorted(out, key=key)


def format_series(series: Sequence[DicomSeries]) -> str:
    """The series of a folder, one per line, for error messages."""
    return "\n".join(f"  - {s}" for s in series)


def resolve_dicom_series(folder: str | Path, series_uid: str | None = None) -> DicomSeries:
    """Choose the series to read from a DICOM folder.

    Parameters
    ----------
    folder : str or Path
    series_uid : str, optional
        Required when the folder holds several series.

    Raises
    ------
    DicomSeriesError
        No series; several series and no ``series_uid``; ``series_uid`` not in the folder. The message lists the
        series found (number, description, slice count, UID).
    """
    folder = Path(folder)
    series = list_dicom_series(folder)
    if not series:
        raise DicomSeriesError(f"{folder}: no DICOM series found in this folder", folder, series)
    if series_uid is not None and str(series_uid).strip() not in ("", "nan"):
        uid = str(series_uid).strip()
        for s in series:
            if s.uid == uid:
                return s
        raise DicomSeriesError(
            f"{folder}: SeriesInstanceUID {uid} is not in this folder; it holds {len(series)} series:\n"
            f"{format_series(series)}", folder, series)
    if len(series) > 1:
        raise DicomSeriesError(
            f"{folder}: this folder holds {len(series)} DICOM series; choose one by its SeriesInstanceUID "
            f"(manifest column series_uid_ap / series_uid_pp):\n{format_series(series)}", folder, series)
    return series[0]


def _strip_metadata(image: sitk.Image) -> sitk.Image:
    for key in image.GetMetaDataKeys():
        image.EraseMetaData(key)
    return image


@_keeps_locale
def read_image(path: str | Path, series_uid: str | None = None) -> sitk.Image:
    """Read a CT volume or mask with its geometry, and nothing else.

    Parameters
    ----------
    path : str or Path
        A NIfTI/NRRD/MHA file, a single DICOM file, or a folder holding a DICOM series.
    series_uid : str, optional
        SeriesInstanceUID to pick when the folder holds several series.

    Returns
    -------
    SimpleITK.Image
        Pixel values as stored in the file, in HU for DICOM (RescaleSlope/Intercept applied by GDCM); spacing, origin
        and direction kept. The metadata dictionary is empty (DICOM headers hold the patient's identity).

    Raises
    ------
    FileNotFoundError
        The path does not exist.
    DicomSeriesError
        See :func:`resolve_dicom_series`.
    RuntimeError
        SimpleITK cannot read the file.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if path.is_dir():
        series = resolve_dicom_series(path, series_uid)
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(list(series.files))
        reader.MetaDataDictionaryArrayUpdateOff()
        reader.LoadPrivateTagsOff()
        image = reader.Execute()
    else:
        image = sitk.ReadImage(str(path))
    return _strip_metadata(image)


@dataclass(frozen=True)
class ImageGeometry:
    """Size, spacing, origin and direction of an image, with SimpleITK's getter names."""

    size: tuple
    spacing: tuple
    origin: tuple
    direction: tuple

    def GetSize(self):  # noqa: N802 - SimpleITK's names, so that check_same_grid takes either
        return self.size

    def GetSpacing(self):  # noqa: N802
        return self.spacing

    def GetOrigin(self):  # noqa: N802
        return self.origin

    def GetDirection(self):  # noqa: N802
        return self.direction

    def GetDimension(self):  # noqa: N802
        return len(self.size)


@_keeps_locale
def _header(file: str) -> sitk.ImageFileReader:
    reader = sitk.ImageFileReader()
    reader.SetFileName(file)
    reader.LoadPrivateTagsOff()
    reader.ReadImageInformation()
    return reader


@_keeps_locale
def _series_information(series: DicomSeries) -> ImageGeometry:
    """Geometry of a DICOM series from the headers of its first and last file (no pixel data read)."""
    first = _header(series.files[0])
    if first.GetDimension() != 3 or first.GetSize()[2] != 1:  # multi-frame files: read the series itself
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(list(series.files))
        image = reader.Execute()
        return ImageGeometry(image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection())
    size = list(first.GetSize())
    spacing = list(first.GetSpacing())
    direction = tuple(first.GetDirection())
    n = len(series.files)
    size[2] = n
    if n > 1:
        last = _header(series.files[-1])
        normal = np.asarray(direction, dtype=float).reshape(3, 3)[:, 2]
        gap = float(np.dot(np.subtract(last.GetOrigin(), first.GetOrigin()), normal)) / (n - 1)
        if gap != 0:
            spacing[2] = abs(gap)
    return ImageGeometry(tuple(int(v) for v in size), tuple(float(v) for v in spacing),
                         tuple(float(v) for v in first.GetOrigin()), tuple(float(v) for v in direction))


@_keeps_locale
def read_image_information(path: str | Path, series_uid: str | None = None):
    """Geometry of an image without reading its pixels where possible.

    Parameters
    ----------
    path : str or Path
        A file (header only, via ``sitk.ImageFileReader.ReadImageInformation``) or a DICOM series folder (the headers
        of its first and last slice: the slice spacing is their distance along the slice normal over the number of
        gaps, as ``ImageSeriesReader`` computes it).
    series_uid : str, optional

    Returns
    -------
    object
        Has ``GetSize``, ``GetSpacing``, ``GetOrigin``, ``GetDirection``, ``GetDimension`` (an ``ImageFileReader`` or
        an :class:`ImageGeometry`); no patient metadata is kept from it by callers.
    """
    path = Path(path)
    if path.is_dir():
        return _series_information(resolve_dicom_series(path, series_uid))
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    return reader


def write_image(image: sitk.Image, path: str | Path, compress: bool = True) -> Path:
    """Write an image (format by extension: .nii.gz, .nrrd, .mha ...), creating parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=compress)
    return path


def check_same_grid(image, mask, atol: float = 1e-3) -> list[str]:
    """Differences between the grids of an image and its mask.

    Parameters
    ----------
    image, mask : SimpleITK.Image or SimpleITK.ImageFileReader
        Anything with ``GetSize/GetSpacing/GetOrigin/GetDirection``.
    atol : float
        Absolute tolerance for spacing (mm), origin (mm) and direction cosines.

    Returns
    -------
    list of str
        One line per differing property (size, spacing, origin, direction); empty when the grids match.
    """
    out = []
    if tuple(image.GetSize()) != tuple(mask.GetSize()):
        out.append(f"size {tuple(mask.GetSize())} differs from the image's {tuple(image.GetSize())}")
        if len(image.GetSize()) != len(mask.GetSize()):
            return out
    for name in ("spacing", "origin", "direction"):
        a = np.asarray(getattr(image, f"Get{name.capitalize()}")(), dtype=float)
        b = np.asarray(getattr(mask, f"Get{name.capitalize()}")(), dtype=float)
        if a.shape != b.shape or not np.allclose(a, b, atol=atol, rtol=0):
            fa = tuple(round(float(x), 4) for x in a)
            fb = tuple(round(float(x), 4) for x in b)
            out.append(f"{name} {fb} differs from the image's {fa}")
    return out


def _uid_from(*parts) -> str:
    """A deterministic DICOM UID (``2.25.<uuid5 as integer>``, DICOM PS3.5 B.2)."""
    return "2.25." + str(uuid.uuid5(uuid.NAMESPACE_OID, "|".join(map(str, parts))).int)


@_keeps_locale
def write_dicom_series(image: sitk.Image, folder: str | Path, series_uid: str | None = None,
                       phi: dict[str, str] | None = None, description: str = "synthetic CT",
                       series_number: int = 1, study_uid: str | None = None) -> DicomSeries:
    """Write a 3-D CT volume in HU as a DICOM series (one int16 file per slice, RescaleIntercept -1024, slope 1).

    Used by tests and by the privacy end-to-end check to create DICOM input that carries (fake) identifying tags.

    Parameters
    ----------
    image : SimpleITK.Image
        3-D, values in HU (rounded to integers; must lie in [-33792, 31743]).
    folder : str or Path
        Created if missing; several series may be written into the same folder.
    series_uid : str, optional
        SeriesInstanceUID; default: derived deterministically from the pixels, geometry and description.
    phi : dict, optional
        Identifying tags to write, keyed by :data:`PHI_TAGS` names (``PatientName``) or ``gggg|eeee`` tags.
    description : str
        SeriesDescription.
    series_number : int
    study_uid : str, optional
        StudyInstanceUID; default derived from ``phi``.

    Returns
    -------
    DicomSeries
        The series written (files sorted by slice).
    """
    if image.GetDimension() != 3:
        raise ValueError(f"write_dicom_series needs a 3-D image, got {image.GetDimension()}-D")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arr = np.rint(sitk.GetArrayViewFromImage(image).astype(np.float64))
    if arr.min() < -33792 or arr.max() > 31743:  # stored = HU + 1024 must fit a signed 16-bit integer
        raise ValueError(f"HU values {arr.min()}..{arr.max()} do not fit int16 storage with intercept -1024")
    hu = sitk.GetImageFromArray(arr.astype(np.int16))
    hu.CopyInformation(image)
    phi = dict(phi or {})
    digest = hashlib.sha1(arr.tobytes()).hexdigest()
    series_uid = series_uid or _uid_from("series", digest, image.GetSpacing(), image.GetOrigin(), description,
                                         series_number, sorted(phi.items()))
    study_uid = study_uid or _uid_from("study", sorted(phi.items()))
    d = image.GetDirection()
    tags = {
        "0008|0060": "CT",
        "0008|0008": "ORIGINAL\\PRIMARY\\AXIAL",
        "0008|0016": "1.2.840.10008.5.1.4.1.1.2",  # CT Image Storage
        "0020|000d": study_uid,
        "0020|000e": series_uid,
        "0020|0011": str(int(series_number)),
        "0008|103e": description,
        "0020|0037": "\\".join(f"{v:.6f}" for v in (d[0], d[3], d[6], d[1], d[4], d[7])),
        "0018|0050": f"{image.GetSpacing()[2]:.6f}",
        "0028|1052": "-1024",
        "0028|1053": "1",
        "0028|1054": "HU",
    }
    for key, value in phi.items():
        tags[PHI_TAGS.get(key, key)] = str(value)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    files = []
    for k in range(hu.GetDepth()):
        slice_ = hu[:, :, k]
        for key, value in tags.items():
            slice_.SetMetaData(key, value)
        pos = image.TransformIndexToPhysicalPoint((0, 0, k))
        slice_.SetMetaData("0020|0032", "\\".join(f"{v:.6f}" for v in pos))
        slice_.SetMetaData("0020|0013", str(k + 1))
        slice_.SetMetaData("0008|0018", f"{series_uid}.{k + 1}")
        name = folder / f"s{int(series_number):03d}_{k + 1:04d}.dcm"
        writer.SetFileName(str(name))
        writer.Execute(slice_)
        files.append(str(name))
    return DicomSeries(uid=series_uid, number=str(int(series_number)), description=description,
                       n_slices=len(files), files=tuple(files))


# --- privacy search -------------------------------------------------------------------------------------------------

_TEXT_SUFFIXES = (".html", ".htm", ".xml", ".json", ".ipynb", ".js", ".txt", ".csv", ".md", ".svg", ".tex")


def _views(path: Path, data: bytes, depth: int = 0) -> Iterable[bytes]:
    """The byte strings in which to look for needles: the raw bytes plus decoded forms of compressed/escaped files."""
    yield data
    if depth > 2:
        return
    name = path.name.lower()
    if data[:2] == b"\x1f\x8b":  # gzip (.nii.gz, .gz)
        try:
            inner = gzip.decompress(data)
        except (OSError, EOFError):
            inner = None
        if inner is not None:
            yield from _views(Path(name[:-3] if name.endswith(".gz") else name), inner, depth + 1)
    if data[:4] == b"PK\x03\x04":  # zip (.xlsx, .docx, torch .pth, .npz)
        try:
            with zipfile.ZipFile(_io.BytesIO(data)) as zf:
                for member in zf.namelist():
                    yield from _views(Path(member), zf.read(member), depth + 1)
        except (zipfile.BadZipFile, OSError, RuntimeError):
            pass
    if data[:4] == b"PAR1" or name.endswith(".parquet"):  # parquet pages may be snappy/zstd-compressed
        try:
            import pyarrow.parquet as pq

            table = pq.read_table(_io.BytesIO(data))
            yield str(table.schema.metadata or "").encode()
            yield table.to_pandas().to_csv().encode()
        except Exception:  # noqa: BLE001 - an unreadable file is still searched as raw bytes above
            pass
    if name.endswith(_TEXT_SUFFIXES):
        text = data.decode("utf-8", errors="replace")
        unescaped = html.unescape(text)
        if unescaped != text:
            yield unescaped.encode()
        if "\\u" in text:
            try:
                yield text.encode("latin-1", errors="replace").decode("unicode_escape").encode("utf-8", "replace")
            except (UnicodeDecodeError, ValueError):
                pass


def find_text_in_tree(root: str | Path, needles: Iterable[str], case_sensitive: bool = False) -> list[tuple[Path, str]]:
    """Search every file under ``root`` for strings (privacy check of outputs and the HTML book).

    Each file is searched as raw bytes, and also decompressed (gzip, zip members such as ``.xlsx`` or ``.pth``),
    as a parquet table, and HTML/JSON-unescaped; each needle is looked for as UTF-8 and UTF-16 (little endian).

    Parameters
    ----------
    root : str or Path
        A folder (searched recursively, symlinks not followed) or a single file.
    needles : iterable of str
        Strings that must not appear (e.g. a fake patient name, MRN, accession number).
    case_sensitive : bool

    Returns
    -------
    list of (Path, str)
        Each file and the needle found in it; empty when none is found.
    """
    root = Path(root)
    needles = [n for n in dict.fromkeys(needles) if n]
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())

    def norm(b: bytes) -> bytes:
        return b if case_sensitive else b.lower()

    patterns = {n: [norm(n.encode("utf-8")), norm(n.encode("utf-16-le"))] for n in needles}
    hits = []
    for f in files:
        try:
            data = f.read_bytes()
        except OSError:
            continue
        found = set()
        for view in _views(f, data):
            view = norm(view)
            for n, pats in patterns.items():
                if n not in found and any(p in view for p in pats):
                    found.add(n)
            if len(found) == len(needles):
                break
        hits.extend((f, n) for n in needles if n in found)
    return hits
