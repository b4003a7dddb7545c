"""Data manifest: schema, loading and validation (stage 1).

The manifest (``data_manifest.csv``) has one row per patient. Paths are relative to the manifest's folder.

==================  ========  ==========================================================================
column              required  meaning
==================  ========  ==========================================================================
patient_id          yes       unique id; the only patient identifier that appears in outputs
cohort              yes       ``development`` or ``validation``
centre              yes       centre label (e.g. 1, 2)
ct_ap, ct_pp        yes       arterial / portal CT: NIfTI/NRRD/MHA file or DICOM series folder
series_uid_ap/_pp   no        SeriesInstanceUID when the DICOM folder holds several series
mask_ap, mask_pp    no        tumour mask (same grid as its image), 0/1
seg_train           yes       1 if this case's masks may be used to train the segmentation network
clinical_file       yes       CSV or Excel (``file.xlsx`` or ``file.xlsx#Sheet``) with a row per patient_id
visual_file         no        CSV/Excel with the radiologists' visual reads (columns ``vis_*``)
outcome_file        yes       CSV/Excel with ``patient_id, rfs_months, recurrence``
==================  ========  ==========================================================================
"""
from __future__ import annotations

from dataclasses import dataclass

COHORTS = ("development", "validation")
PHASES = ("AP", "PP")
LANDMARK_MONTHS = 24.0

MANIFEST_COLUMNS = [
    "patient_id", "cohort", "centre", "ct_ap", "ct_pp", "series_uid_ap", "series_uid_pp",
    "mask_ap", "mask_pp", "seg_train", "clinical_file", "visual_file", "outcome_file",
]
REQUIRED_COLUMNS = ["patient_id", "cohort", "centre", "ct_ap", "ct_pp", "seg_train", "clinical_file", "outcome_file"]
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
