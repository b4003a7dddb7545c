"""Image I/O with SimpleITK (stage 1, with :mod:`hcc_utils.manifest`).

Reads NIfTI, NRRD/MHA (what ITK-SNAP saves) and DICOM series folders, keeping HU, spacing, origin and direction.
Nothing from DICOM headers that identifies a person is read into outputs.
"""
from __future__ import annotations

from pathlib import Path

import SimpleITK as sitk


def read_image(path: str | Path, series_uid: str | None = None) -> sitk.Image:
    """Read a CT volume or mask.

    Parameters
    ----------
    path : str or Path
        A NIfTI/NRRD/MHA file, or a folder holding a DICOM series.
    series_uid : str, optional
        SeriesInstanceUID to pick when the folder holds several series.
    """
    path = Path(path)
    if path.is_dir():
        reader = sitk.ImageSeriesReader()
        uids = reader.GetGDCMSeriesIDs(str(path))
        if not uids:
            raise ValueError(f"{path}: no DICOM series found")
        uid = series_uid or uids[0]
        files = reader.GetGDCMSeriesFileNames(str(path), uid)
        reader.SetFileNames(files)
        return reader.Execute()
    return sitk.ReadImage(str(path))


def write_image(image: sitk.Image, path: str | Path, compress: bool = True) -> Path:
    """Write an image (NIfTI by extension), creating parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=compress)
    return path
