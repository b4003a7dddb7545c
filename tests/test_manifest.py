"""Manifest reading, patient table and validation: every bad input names the patient, the file and the column."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from hcc_utils import imaging, manifest
from hcc_utils.manifest import ManifestError, load_patient_table, read_manifest, validate

ROOT = Path(__file__).resolve().parents[1]
PIDS = [f"P{k:03d}" for k in range(1, 9)]  # P003 and P008 validation
VALIDATION = (2, 7)
ER = [1, 0, 0, 1, 0, 1, 0, 1]


def _volume(size=(8, 8, 4), spacing=(0.8, 0.8, 2.5), origin=(-3.0, 4.0, 10.0), seed=0, direction=None):
    rng = np.random.default_rng(seed)
    arr = rng.normal(60, 20, size[::-1]).round().astype(np.int16)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    if direction is not None:
        img.SetDirection(direction)
    return img


def _mask_like(img, values=(1,)):
    arr = np.zeros(img.GetSize()[::-1], np.uint8)
    arr[1:3, 2:5, 2:5] = values[0]
    if len(values) > 1:
        arr[1, 2, 2] = values[1]
    m = sitk.GetImageFromArray(arr)
    m.CopyInformation(img)
    return m


class Cohort:
    """A tiny valid cohort (8 patients, NIfTI images and masks, CSV tables) that a test then breaks.

    Large enough for the cohort-level checks: 3 cases that train the network, both outcome classes in development.
    """

    def __init__(self, root: Path):
        self.root = root
        self.manifest = root / "data_manifest.csv"
        rows, clin, vis, out = [], [], [], []
        for k, pid in enumerate(PIDS):
            for ph in ("AP", "PP"):
                img = _volume(seed=k * 2 + (ph == "PP"))
                imaging.write_image(img, root / "images" / f"{pid}_{ph}.nii.gz")
                imaging.write_image(_mask_like(img), root / "masks" / f"{pid}_{ph}.nii.gz")
            rows.append(dict(patient_id=pid, cohort="validation" if k in VALIDATION else "development",
                             centre=1 + (k == 2),
                             ct_ap=f"images/{pid}_AP.nii.gz", ct_pp=f"images/{pid}_PP.nii.gz",
                             series_uid_ap="", series_uid_pp="",
                             mask_ap=f"masks/{pid}_AP.nii.gz", mask_pp=f"masks/{pid}_PP.nii.gz",
                             seg_train=int(k in (0, 3, 4)), clinical_file="tables/clinical.csv",
                             visual_file="tables/visual.csv", outcome_file="tables/outcome.csv"))
            clin.append(dict(patient_id=pid, sex="MF"[k % 2], age=50 + k, hbsag=k % 2, hbv_dna=1, afp_ge400=0,
                             child_pugh="A", tb=12.5, alb=41.0, alt=35, ggt=60 + k))
            vis.append({v.name: (k + j) % 2 for j, v in enumerate(manifest.VISUAL_FEATURES)} | {"patient_id": pid})
            out.append(dict(patient_id=pid, rfs_months=[10.0, 30.0, 24.0, 8.0, 40.0, 12.0, 36.0, 20.0][k],
                            recurrence=[1, 1, 0, 1, 0, 1, 1, 1][k]))
        self.df = pd.DataFrame(rows)
        self.clinical, self.visual, self.outcome = pd.DataFrame(clin), pd.DataFrame(vis), pd.DataFrame(out)
        self.save()

    def save(self):
        (self.root / "tables").mkdir(exist_ok=True)
        self.df.to_csv(self.manifest, index=False)
        self.clinical.to_csv(self.root / "tables" / "clinical.csv", index=False)
        self.visual.to_csv(self.root / "tables" / "visual.csv", index=False)
        self.outcome.to_csv(self.root / "tables" / "outcome.csv", index=False)

    def set(self, pid, column, value, table="df"):
        frame = getattr(self, table)
        frame[column] = frame[column].astype(object)
        frame.loc[frame["patient_id"] == pid, column] = value

    def image(self, pid, ph):
        return sitk.ReadImage(str(self.root / "images" / f"{pid}_{ph}.nii.gz"))

    def write_mask(self, pid, ph, mask):
        imaging.write_image(mask, self.root / "masks" / f"{pid}_{ph}.nii.gz")

    def dicom_folder(self, pid, ph, extra_series=False):
        """Replace the patient's CT by a DICOM folder (optionally holding a second series); returns the series."""
        img = self.image(pid, ph)
        folder = self.root / "dicom" / f"{pid}_{ph}"
        s1 = imaging.write_dicom_series(img, folder, description=f"{ph} 1.25mm", series_number=3,
                                   phi={"PatientName": "DOE^JANE"})
        series = [s1]
        if extra_series:
            series.append(imaging.write_dicom_series(_volume(size=(8, 8, 6), seed=9), folder, description="scout",
                                                series_number=1, phi={"PatientName": "DOE^JANE"}))
        self.set(pid, f"ct_{ph.lower()}", f"dicom/{pid}_{ph}")
        return series


@pytest.fixture
def cohort(tmp_path):
    return Cohort(tmp_path)


# --- reading --------------------------------------------------------------------------------------------------------

def test_valid_cohort_is_ok(cohort):
    report = validate(cohort.manifest, progress=False)
    assert report.ok, str(report)
    assert report.problems == []
    assert report.n_patients == len(PIDS)
    assert "OK" in str(report)
    report.raise_if_errors()


def test_read_manifest_resolves_paths_and_types(cohort):
    cohort.df = cohort.df.drop(columns=["series_uid_ap", "series_uid_pp", "visual_file"])
    cohort.set("P003", "mask_pp", "")
    cohort.save()
    df = read_manifest(cohort.manifest)
    assert list(df.columns[: len(manifest.MANIFEST_COLUMNS)]) == manifest.MANIFEST_COLUMNS
    assert df["patient_id"].tolist() == PIDS
    assert df["seg_train"].dtype.kind == "i" and df["seg_train"].tolist()[:3] == [1, 0, 0]
    assert df["series_uid_ap"].isna().all() and df["visual_file"].isna().all()
    assert pd.isna(df.loc[2, "mask_pp"])
    for col in ("ct_ap", "mask_ap", "clinical_file"):
        p = Path(df.loc[0, col])
        assert p.is_absolute() and p.exists()
    assert df.loc[0, "ct_ap"] == str((cohort.root / "images" / "P001_AP.nii.gz").resolve())
    assert df.attrs["manifest"] == str(cohort.manifest.resolve())


def test_read_manifest_keeps_string_ids(cohort):
    ids = ["007", "010", "100"] + [f"{k:03d}" for k in range(101, 106)]
    cohort.df["patient_id"] = ids
    for t in ("clinical", "visual", "outcome"):
        getattr(cohort, t)["patient_id"] = ids
    cohort.save()
    assert read_manifest(cohort.manifest)["patient_id"].tolist() == ids
    assert load_patient_table(cohort.manifest).index.tolist() == ids


def test_read_manifest_raises_all_structural_problems(cohort):
    cohort.set("P001", "cohort", "train")
    cohort.set("P003", "seg_train", "yes")
    cohort.save()
    with pytest.raises(ManifestError) as exc:
        read_manifest(cohort.manifest)
    msg = str(exc.value)
    assert "P001" in msg and "cohort" in msg and "'train'" in msg
    assert "P003" in msg and "seg_train" in msg and "data_manifest.csv" in msg
    assert len(exc.value.problems) == 2


def test_load_patient_table(cohort):
    t = load_patient_table(cohort.manifest)
    assert t.index.name == "patient_id" and t.index.tolist() == PIDS
    expected = (["cohort", "centre", "seg_train"] + [v.name for v in manifest.CLINICAL_VARIABLES]
                + [v.name for v in manifest.VISUAL_FEATURES] + ["rfs_months", "recurrence", "er"])
    assert list(t.columns) == expected
    assert t["er"].tolist() == ER  # P001 10 months + event; P002 30 months; P003 censored at 24
    assert t["er"].dtype.kind == "i" and t["hbsag"].dtype.kind == "i" and t["age"].dtype.kind == "f"
    assert t.loc["P002", "sex"] == "F" and t.loc["P003", "ggt"] == 62.0
    assert t.loc["P002", "vis_size_gt5cm"] == 1 and t["centre"].tolist()[:3] == ["1", "1", "2"]
    assert t["cohort"].tolist()[:3] == ["development", "development", "validation"]
    # the same from the data frame read_manifest returned
    pd.testing.assert_frame_equal(load_patient_table(read_manifest(cohort.manifest)), t)


def test_load_patient_table_without_visual_file_and_blank_clinical_value(cohort):
    cohort.df["visual_file"] = ""
    cohort.set("P002", "alt", "", table="clinical")
    cohort.save()
    with pytest.warns(UserWarning, match="P002"):
        t = load_patient_table(cohort.manifest)
    assert t[[v.name for v in manifest.VISUAL_FEATURES]].isna().all().all()
    assert np.isnan(t.loc["P002", "alt"]) and t.loc["P001", "alt"] == 35


def test_excel_style_csv_files(cohort):
    """CSV saved by Excel: BOM, semicolons, Latin-1 accents."""
    text = cohort.manifest.read_text().replace(",", ";")
    cohort.manifest.write_bytes(b"\xef\xbb\xbf" + text.encode())
    clinical = cohort.root / "tables" / "clinical.csv"
    clinical.write_bytes(clinical.read_text().replace(",", ";").replace("patient_id", "Patient_ID ").encode("latin-1")
                         + "P999;M;60;0;0;0;A;1;40;1;1 # Jos\u00e9\n".encode("latin-1"))
    assert validate(cohort.manifest, progress=False).ok
    t = load_patient_table(cohort.manifest)
    assert t.index.tolist() == PIDS and t.loc["P003", "ggt"] == 62.0


def test_empty_manifest(cohort):
    cohort.df.iloc[:0].to_csv(cohort.manifest, index=False)
    report = validate(cohort.manifest)
    assert not report.ok and "no patient rows" in str(report)


def test_tables_read_once_each(cohort, monkeypatch):
    calls = []
    real = manifest._read_table_file

    def counting(file, sheet):
        calls.append((file, sheet))
        return real(file, sheet)

    monkeypatch.setattr(manifest, "_read_table_file", counting)
    load_patient_table(cohort.manifest)
    assert len(calls) == 3 and len(set(calls)) == 3
    calls.clear()
    validate(cohort.manifest, check_images=False)
    assert len(calls) == 3


def test_excel_clinical_table_with_sheet(cohort):
    xlsx = cohort.root / "tables" / "hospital.xlsx"
    with pd.ExcelWriter(xlsx, engine="openpyxl") as xw:
        pd.DataFrame({"note": ["not this sheet"]}).to_excel(xw, sheet_name="Readme", index=False)
        cohort.clinical.to_excel(xw, sheet_name="Clinical", index=False)
        cohort.outcome.to_excel(xw, sheet_name="Follow-up", index=False)
    cohort.df["clinical_file"] = "tables/hospital.xlsx#Clinical"
    cohort.df["outcome_file"] = "tables/hospital.xlsx#Follow-up"
    cohort.save()
    (cohort.root / "tables" / "clinical.csv").unlink()
    (cohort.root / "tables" / "outcome.csv").unlink()
    assert validate(cohort.manifest, progress=False).ok
    df = read_manifest(cohort.manifest)
    assert df.loc[0, "clinical_file"] == str((cohort.root / "tables" / "hospital.xlsx").resolve()) + "#Clinical"
    t = load_patient_table(cohort.manifest)
    assert t.loc["P002", "sex"] == "F" and t.loc["P003", "ggt"] == 62.0 and t["er"].tolist() == ER
    # an Excel value of the wrong type is reported with its sheet
    cohort.set("P002", "age", "sixty", table="clinical")
    with pd.ExcelWriter(xlsx, engine="openpyxl") as xw:
        cohort.clinical.to_excel(xw, sheet_name="Clinical", index=False)
        cohort.outcome.to_excel(xw, sheet_name="Follow-up", index=False)
    with pytest.raises(ManifestError, match=r"P002 \| file .*hospital.xlsx#Clinical \| column age"):
        load_patient_table(cohort.manifest)


def test_dicom_series_folder_in_manifest(cohort):
    cohort.dicom_folder("P001", "AP")
    cohort.save()
    report = validate(cohort.manifest, progress=False)
    assert report.ok, str(report)


def test_dicom_folder_with_two_series_resolved_by_uid(cohort):
    series = cohort.dicom_folder("P001", "AP", extra_series=True)
    cohort.save()
    report = validate(cohort.manifest, progress=False)
    assert not report.ok
    msg = str(report)
    for s in series:
        assert s.uid in msg and s.description in msg
    assert "6 slices" in msg and "4 slices" in msg
    cohort.set("P001", "series_uid_ap", series[0].uid)
    cohort.save()
    report = validate(cohort.manifest, progress=False)
    assert report.ok, str(report)


# --- bad inputs -----------------------------------------------------------------------------------------------------

def _missing_ct(c):
    (c.root / "images" / "P002_AP.nii.gz").unlink()
    return "P002", "P002_AP.nii.gz", "ct_ap", "not found"


def _unreadable_ct(c):
    (c.root / "images" / "P002_PP.nii.gz").write_bytes(b"this is not an image" * 10)
    return "P002", "P002_PP.nii.gz", "ct_pp", "unreadable image"


def _ct_2d(c):
    imaging.write_image(_volume()[:, :, 0], c.root / "images" / "P002_AP.nii.gz")
    return "P002", "P002_AP.nii.gz", "ct_ap", "3-D"


def _duplicate_id(c):
    c.df.loc[2, "patient_id"] = "P002"
    return "P002", "data_manifest.csv", "patient_id", "duplicate patient_id (manifest lines 3, 4)"


def _blank_patient_id(c):
    c.df["patient_id"] = c.df["patient_id"].astype(object)
    c.df.loc[1, "patient_id"] = ""
    return "(line 3)", "data_manifest.csv", "patient_id", "blank"


def _blank_required_value(c):
    c.set("P002", "ct_pp", "")
    return "P002", "data_manifest.csv", "ct_pp", "required value is blank"


def _unknown_cohort(c):
    c.set("P002", "cohort", "training")
    return "P002", "data_manifest.csv", "cohort", "unknown cohort 'training'"


def _seg_train_not_binary(c):
    c.set("P002", "seg_train", "yes")
    return "P002", "data_manifest.csv", "seg_train", "must be 0 or 1"


def _seg_train_validation(c):
    c.set("P003", "seg_train", 1)
    return "P003", "data_manifest.csv", "seg_train", "validation patient"


def _seg_train_without_mask(c):
    c.set("P002", "seg_train", 1)
    c.set("P002", "mask_pp", "")
    return "P002", "data_manifest.csv", "mask_pp", "no mask"


def _missing_mask_file(c):
    c.set("P002", "mask_ap", "masks/P002_AP_missing.nii.gz")
    return "P002", "P002_AP_missing.nii.gz", "mask_ap", "mask file not found"


def _unreadable_mask(c):
    (c.root / "masks" / "P002_PP.nii.gz").write_bytes(b"\x00garbage" * 20)
    return "P002", "P002_PP.nii.gz", "mask_pp", "unreadable mask"


def _mask_size(c):
    img = _volume(size=(8, 8, 5))
    c.write_mask("P002", "AP", _mask_like(img))
    return "P002", "masks/P002_AP.nii.gz", "mask_ap", "size (8, 8, 5) differs"


def _mask_spacing(c):
    c.write_mask("P002", "AP", _mask_like(_volume(spacing=(0.8, 0.8, 5.0))))
    return "P002", "masks/P002_AP.nii.gz", "mask_ap", "spacing"


def _mask_origin(c):
    c.write_mask("P002", "PP", _mask_like(_volume(origin=(0.0, 0.0, 0.0))))
    return "P002", "masks/P002_PP.nii.gz", "mask_pp", "origin"


def _mask_direction(c):
    flip = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)
    c.write_mask("P002", "PP", _mask_like(_volume(direction=flip)))
    return "P002", "masks/P002_PP.nii.gz", "mask_pp", "direction"


def _mask_not_binary(c):
    c.write_mask("P002", "AP", _mask_like(c.image("P002", "AP"), values=(1, 2)))
    return "P002", "masks/P002_AP.nii.gz", "mask_ap", "not binary 0/1 (values 0, 1, 2)"


def _mask_255(c):
    c.write_mask("P002", "AP", _mask_like(c.image("P002", "AP"), values=(255,)))
    return "P002", "masks/P002_AP.nii.gz", "mask_ap", "not binary"


def _mask_empty(c):
    c.write_mask("P002", "PP", _mask_like(c.image("P002", "PP"), values=(0,)))
    return "P002", "masks/P002_PP.nii.gz", "mask_pp", "empty"


def _rfs_missing(c):
    c.set("P002", "rfs_months", "", table="outcome")
    return "P002", "outcome.csv", "rfs_months", "missing survival time"


def _rfs_negative(c):
    c.set("P002", "rfs_months", -3.5, table="outcome")
    return "P002", "outcome.csv", "rfs_months", "negative survival time"


def _rfs_not_a_number(c):
    c.set("P002", "rfs_months", "ten", table="outcome")
    return "P002", "outcome.csv", "rfs_months", "not a number"


def _event_missing(c):
    c.set("P002", "recurrence", "", table="outcome")
    return "P002", "outcome.csv", "recurrence", "missing event"


def _event_not_binary(c):
    c.set("P002", "recurrence", 2, table="outcome")
    return "P002", "outcome.csv", "recurrence", "event must be 0 or 1, got '2'"


def _event_yes(c):
    c.set("P002", "recurrence", "yes", table="outcome")
    return "P002", "outcome.csv", "recurrence", "not a number"


def _age_out_of_range(c):
    c.set("P002", "age", 150, table="clinical")
    return "P002", "clinical.csv", "age", "out of range [10, 100]"


def _age_wrong_type(c):
    c.set("P002", "age", "sixty", table="clinical")
    return "P002", "clinical.csv", "age", "'sixty' is not a number"


def _ggt_negative(c):
    c.set("P002", "ggt", -1, table="clinical")
    return "P002", "clinical.csv", "ggt", "out of range"


def _sex_unknown(c):
    c.set("P002", "sex", "X", table="clinical")
    return "P002", "clinical.csv", "sex", "'X' is not one of M, F"


def _child_pugh_c(c):
    c.set("P002", "child_pugh", "C", table="clinical")
    return "P002", "clinical.csv", "child_pugh", "not one of A, B"


def _hbsag_not_binary(c):
    c.set("P002", "hbsag", 3, table="clinical")
    return "P002", "clinical.csv", "hbsag", "must be 0 or 1"


def _visual_not_binary(c):
    c.set("P002", "vis_washout", 5, table="visual")
    return "P002", "visual.csv", "vis_washout", "must be 0 or 1"


def _missing_from_clinical(c):
    c.clinical = c.clinical[c.clinical["patient_id"] != "P002"]
    return "P002", "clinical.csv", "patient_id", "missing from the clinical table"


def _missing_from_outcome(c):
    c.outcome = c.outcome[c.outcome["patient_id"] != "P002"]
    return "P002", "outcome.csv", "patient_id", "missing from the outcome table"


def _duplicate_in_table(c):
    c.clinical = pd.concat([c.clinical, c.clinical.iloc[[1]]])
    return "P002", "clinical.csv", "patient_id", "appears 2 times"


def _clinical_file_missing(c):
    c.set("P002", "clinical_file", "tables/clinical_centre2.csv")
    return "P002", "clinical_centre2.csv", "clinical_file", "file not found"


def _outcome_column_missing(c):
    c.outcome.drop(columns="recurrence").to_csv(c.root / "tables" / "outcome_p2.csv", index=False)
    c.set("P002", "outcome_file", "tables/outcome_p2.csv")
    return "P002", "outcome_p2.csv", "recurrence", "column recurrence is missing"


def _table_without_patient_id(c):
    c.visual.rename(columns={"patient_id": "id"}).to_csv(c.root / "tables" / "visual_p2.csv", index=False)
    c.set("P002", "visual_file", "tables/visual_p2.csv")
    return "P002", "visual_p2.csv", "visual_file", "no patient_id column"


def _excel_sheet_missing(c):
    c.clinical.to_excel(c.root / "tables" / "clinical.xlsx", sheet_name="Clinical", index=False)
    c.set("P002", "clinical_file", "tables/clinical.xlsx#Labs")
    return "P002", "clinical.xlsx#Labs", "clinical_file", "sheet 'Labs' not found"


def _dicom_several_series(c):
    c.dicom_folder("P002", "AP", extra_series=True)
    return "P002", "dicom/P002_AP", "series_uid_ap", "holds 2 DICOM series"


def _dicom_unknown_uid(c):
    c.dicom_folder("P002", "PP")
    c.set("P002", "series_uid_pp", "1.2.3.999")
    return "P002", "dicom/P002_PP", "series_uid_pp", "1.2.3.999 is not in this folder"


def _dicom_empty_folder(c):
    (c.root / "dicom" / "empty").mkdir(parents=True)
    c.set("P002", "ct_ap", "dicom/empty")
    return "P002", "dicom/empty", "series_uid_ap", "no DICOM series"


BAD_INPUTS = [f for name, f in sorted(globals().items()) if name.startswith("_") and callable(f)
              and f.__module__ == __name__ and f.__code__.co_varnames[:1] == ("c",)]


@pytest.mark.parametrize("case", BAD_INPUTS, ids=lambda f: f.__name__.strip("_"))
def test_bad_input_names_patient_file_and_column(cohort, case):
    patient, file, column, message = case(cohort)
    cohort.save()
    report = validate(cohort.manifest, progress=False)
    assert not report.ok
    matching = [p for p in report.errors
                if p.patient_id == patient and p.column == column and p.file.replace("\\", "/").endswith(file)
                and message in p.message]
    assert matching, f"no error for {patient}/{file}/{column}/{message!r} in:\n{report}"
    # the problem is located: no other patient is blamed
    assert all(patient in p.patient_id for p in report.errors), str(report)
    # the exception raised from the report names all three
    with pytest.raises(ManifestError) as exc:
        report.raise_if_errors()
    text = str(exc.value)
    assert f"patient {patient}" in text and f"column {column}" in text and file in text.replace("\\", "/")


def test_table_problems_also_raise_from_load_patient_table(cohort):
    _age_out_of_range(cohort)
    _missing_from_outcome(cohort)
    cohort.save()
    with pytest.raises(ManifestError) as exc:
        load_patient_table(cohort.manifest)
    assert {(p.patient_id, p.column) for p in exc.value.problems} == {("P002", "age"), ("P002", "patient_id")}


@pytest.mark.parametrize("column,message", [("outcome_file", "required column is missing"),
                                            ("ct_dp", "unknown phase 'DP'")])
def test_manifest_column_problems(cohort, column, message):
    if column in cohort.df:
        cohort.df = cohort.df.drop(columns=column)
    else:
        cohort.df[column] = "images/P001_AP.nii.gz"
    cohort.save()
    report = validate(cohort.manifest, progress=False)
    [problem] = [p for p in report.errors if p.column == column]
    assert message in problem.message and problem.file.endswith("data_manifest.csv")
    assert problem.patient_id == "P001, P002, ... (8 patients)"


def test_missing_manifest(tmp_path):
    report = validate(tmp_path / "nope.csv")
    assert not report.ok and "manifest not found" in str(report) and "nope.csv" in str(report)
    with pytest.raises(ManifestError, match="nope.csv"):
        read_manifest(tmp_path / "nope.csv")


def test_all_problems_reported_together(cohort):
    cases = [_missing_ct, _mask_origin, _age_out_of_range, _rfs_negative, _unknown_cohort, _sex_unknown]
    expected = []
    for case in cases:
        expected.append(case(cohort))
    cohort.set("P003", "recurrence", 7, table="outcome")  # a second patient
    expected.append(("P003", "outcome.csv", "recurrence", "0 or 1"))
    cohort.save()
    report = validate(cohort.manifest, progress=False)
    assert len(report.errors) == len(expected), str(report)
    text = str(report)
    assert f"{len(expected)} errors" in text
    for patient, file, column, message in expected:
        assert any(p.patient_id == patient and p.column == column and message in p.message for p in report.errors)
        assert f"column {column}" in text
    frame = report.to_frame()
    assert len(frame) == len(expected) and set(frame["patient_id"]) == {"P002", "P003"}


def test_warning_for_series_uid_on_a_file(cohort):
    cohort.set("P001", "series_uid_ap", "1.2.3")
    cohort.save()
    report = validate(cohort.manifest, progress=False)
    assert report.ok and len(report.warnings) == 1 and report.warnings[0].column == "series_uid_ap"


def test_check_images_false_skips_images(cohort):
    _mask_empty(cohort)
    cohort.save()
    report = validate(cohort.manifest, check_images=False)
    assert report.ok and "images not checked" in str(report)


def test_cli_check(cohort, capsys):
    assert manifest.main(["check", str(cohort.manifest), "--no-progress"]) == 0
    assert "OK" in capsys.readouterr().out
    _rfs_negative(cohort)
    _mask_not_binary(cohort)
    cohort.save()
    assert manifest.main(["check", str(cohort.manifest), "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "2 errors" in out and "rfs_months" in out and "mask_ap" in out and "P002" in out


def test_cli_as_module(cohort):
    _event_not_binary(cohort)
    cohort.save()
    proc = subprocess.run([sys.executable, "-m", "hcc_utils.manifest", "check", str(cohort.manifest)],
                          capture_output=True, text=True, encoding="utf-8", errors="replace", cwd=ROOT, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "patient P002 | file" in proc.stdout and "column recurrence" in proc.stdout
