"""Hospital data as it really arrives: every bad input with the outcome and the message it must produce.

``CASES`` is the table: each case breaks (or varies) the tiny valid cohort of ``test_manifest`` and says whether the
check must end in an ``error``, a ``warning`` (a plausibility warning that stops the book until accepted) or
``accepted`` (read correctly, nothing to report, or a warning accepted in ``accepted_warnings.csv``), and for errors
and warnings the patient, file and column named and a piece of the message. Add a case for every new habit found.
"""
from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from hcc_utils import imaging, manifest, run
from hcc_utils.manifest import validate
from test_manifest import Cohort, _mask_like, _volume


@pytest.fixture
def cohort(tmp_path):
    return Cohort(tmp_path)


def _ct(c, pid="P002", ph="AP"):
    return c.root / "images" / f"{pid}_{ph}.nii.gz"


def _write_ct(c, arr, pid="P002", ph="AP", spacing=(0.8, 0.8, 2.5), direction=None, suffix=".nii.gz"):
    """Replace a patient's CT (and keep its mask on the new grid)."""
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    img.SetOrigin((-3.0, 4.0, 10.0))
    if direction is not None:
        img.SetDirection(direction)
    path = c.root / "images" / f"{pid}_{ph}{suffix}"
    imaging.write_image(img, path, compress=suffix.endswith(".gz") or suffix == ".mha")
    c.set(pid, f"ct_{ph.lower()}", f"images/{pid}_{ph}{suffix}")
    c.write_mask(pid, ph, _mask_like(img))
    return img


def _hu(shape=(4, 8, 8), seed=99, air=False):
    arr = np.random.default_rng(seed).normal(60, 20, shape).round()
    if air:
        arr[:, :, :2] = -1000
    return arr.astype(np.int16)


def _truncate(path: Path, fraction=0.6):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


# --- integrity --------------------------------------------------------------------------------------------------------

def _truncated_ct_gz(c):
    _write_ct(c, _hu((40, 32, 32), air=True))
    c.save()
    _truncate(_ct(c))
    return "P002", "P002_AP.nii.gz", "ct_ap", "truncated or corrupted compressed file"


def _bit_rot_ct_gz(c):
    _write_ct(c, _hu((40, 32, 32), air=True))
    c.save()
    data = bytearray(_ct(c).read_bytes())
    data[len(data) // 2] ^= 0xFF
    _ct(c).write_bytes(bytes(data))
    return "P002", "P002_AP.nii.gz", "ct_ap", "compressed"


def _truncated_mask(c):
    _truncate(c.root / "masks" / "P002_PP.nii.gz", 0.5)
    return "P002", "P002_PP.nii.gz", "mask_pp", "unreadable mask: truncated or corrupted"


def _truncated_ct_nii(c):
    _write_ct(c, _hu((20, 16, 16)), suffix=".nii")
    c.save()
    _truncate(c.root / "images" / "P002_AP.nii", 0.7)
    return "P002", "P002_AP.nii", "ct_ap", "truncated"


def _truncated_ct_mha(c):
    _write_ct(c, _hu((20, 16, 16), air=True), suffix=".mha")
    c.save()
    _truncate(c.root / "images" / "P002_AP.mha", 0.8)
    return "P002", "P002_AP.mha", "ct_ap", "truncated"


def _truncated_ct_nrrd(c):
    _write_ct(c, _hu((20, 16, 16)), suffix=".nrrd")
    c.save()
    _truncate(c.root / "images" / "P002_AP.nrrd", 0.8)
    return "P002", "P002_AP.nrrd", "ct_ap", "truncated"


def _gz_that_is_not_gzip(c):
    _ct(c).write_bytes(b"\x5c\x01\x00\x00" + b"\x00" * 400)  # an uncompressed NIfTI header named .nii.gz
    return "P002", "P002_AP.nii.gz", "ct_ap", "not a gzip file"


# --- intensities and geometry ---------------------------------------------------------------------------------------

def _hu_plus_1024(c):
    _write_ct(c, (_hu() + 1024).astype(np.int16))
    return "P002", "P002_AP.nii.gz", "ct_ap", "HU + 1024"


def _normalised_ct(c):
    _write_ct(c, (np.random.default_rng(1).random((4, 8, 8))).astype(np.float32))
    return "P002", "P002_AP.nii.gz", "ct_ap", "not HU"


def _constant_ct(c):
    _write_ct(c, np.full((4, 8, 8), -1000, np.int16))
    return "P002", "P002_AP.nii.gz", "ct_ap", "not a CT image"


def _two_slices(c):
    _write_ct(c, _hu((2, 8, 8)))
    return "P002", "P002_AP.nii.gz", "ct_ap", "only 2 slice(s)"


def _same_ct_for_two_patients(c):
    c.set("P002", "ct_pp", "images/P001_PP.nii.gz")
    return "P002", "P001_PP.nii.gz", "ct_pp", "identical pixels to P001 ct_pp"


def _same_ct_for_both_phases(c):
    shutil.copy(_ct(c, "P002", "AP"), _ct(c, "P002", "PP"))
    return "P002", "P002_PP.nii.gz", "ct_pp", "identical pixels to ct_ap"


def _hu_out_of_range(c):
    arr = _hu(air=True)
    arr[0, 0, 0] = 6000
    _write_ct(c, arr)
    return "P002", "P002_AP.nii.gz", "ct_ap", "outside the HU range"


def _zero_slices(c):
    arr = _hu((6, 8, 8), air=True)
    arr[4:] = 0
    _write_ct(c, arr)
    return "P002", "P002_AP.nii.gz", "ct_ap", "2 axial slice(s) are all 0 HU"


def _spacing_in_cm(c):
    _write_ct(c, _hu(), spacing=(0.08, 0.08, 0.25))
    return "P002", "P002_AP.nii.gz", "ct_ap", "cm or m instead of mm"


def _sagittal_slices(c):
    _write_ct(c, _hu(), direction=(0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0))
    return "P002", "P002_AP.nii.gz", "ct_ap", "not axial"


def _mask_on_air(c):
    img = _write_ct(c, _hu(air=True))
    arr = np.zeros(img.GetSize()[::-1], np.uint8)
    arr[1:3, 2:5, 0:2] = 1  # the columns that are air
    m = sitk.GetImageFromArray(arr)
    m.CopyInformation(img)
    c.write_mask("P002", "AP", m)
    return "P002", "P002_AP.nii.gz", "mask_ap", "lies on air"


def _mask_label_2(c):
    c.write_mask("P002", "AP", _mask_like(c.image("P002", "AP"), values=(2,)))
    return "P002", "P002_AP.nii.gz", "mask_ap", "label 2"


# --- DICOM series ---------------------------------------------------------------------------------------------------

def _dicom_duplicated_slice(c):
    series = c.dicom_folder("P002", "AP")
    shutil.copy(series[0].files[1], Path(series[0].files[1]).with_name("copy_of_slice_2.dcm"))
    return "P002", "dicom/P002_AP", "ct_ap", "share a position"


def _dicom_missing_slice(c):
    img = _volume(size=(8, 8, 6))
    c.dicom_folder("P002", "AP")
    folder = c.root / "dicom" / "P002_AP"
    shutil.rmtree(folder)
    s = imaging.write_dicom_series(img, folder, series_number=3)
    Path(s.files[3]).unlink()
    c.write_mask("P002", "AP", _mask_like(_volume(size=(8, 8, 5))))
    return "P002", "dicom/P002_AP", "ct_ap", "slices are missing"


# --- manifest and tables --------------------------------------------------------------------------------------------

def _ids_differ_by_case(c):
    c.df.loc[1, "patient_id"] = "p001"
    for t in (c.clinical, c.visual, c.outcome):
        t.loc[1, "patient_id"] = "p001"
    return "p001", "data_manifest.csv", "patient_id", "differ only in upper/lower case"


def _duplicate_manifest_column(c):
    c.df["CT_AP"] = c.df["ct_ap"]
    return "(all)", "data_manifest.csv", "(all)", "columns 'ct_ap' and 'CT_AP' are the same column"


def _duplicate_clinical_column(c):
    c.clinical["Age"] = c.clinical["age"]
    return "P001, P002, ... (8 patients)", "clinical.csv", "clinical_file", "'age' and 'Age' are the same column"


def _excel_saved_as_csv(c):
    c.clinical.to_excel(c.root / "tables" / "clin.xlsx", index=False)
    shutil.move(c.root / "tables" / "clin.xlsx", c.root / "tables" / "clin_excel.csv")
    c.set("P002", "clinical_file", "tables/clin_excel.csv")
    return "P002", "clin_excel.csv", "clinical_file", "Excel workbook saved with the suffix .csv"


def _ragged_csv(c):
    c.save()
    (c.root / "tables" / "outcome_bad.csv").write_text("patient_id,rfs_months,recurrence\nP002,10,1,extra,cells\n")
    c.set("P002", "outcome_file", "tables/outcome_bad.csv")
    return "P002", "outcome_bad.csv", "outcome_file", "cannot read the file as CSV"


# --- cohort preconditions -------------------------------------------------------------------------------------------

def _no_validation_patient(c):
    c.df["cohort"] = "development"
    c.df["seg_train"] = c.df["seg_train"].astype(int)
    return "(all)", "data_manifest.csv", "cohort", "no validation patient"


def _only_validation_patients(c):
    c.df["cohort"] = "validation"
    c.df["seg_train"] = 0
    return "(all)", "data_manifest.csv", "cohort", "no development patient"


def _one_case_trains(c):
    c.df["seg_train"] = [1, 0, 0, 0, 0, 0, 0, 0]
    return "(all)", "data_manifest.csv", "seg_train", "needs at least 2"


def _no_early_recurrence(c):
    c.outcome["rfs_months"] = 30.0
    return "P001, P002, ... (6 patients)", "outcome.csv", "recurrence", "0 development patient(s) with early recurrence"


def _no_recurrence_at_all(c):
    c.outcome["recurrence"] = 0
    return "P001, P002, ... (6 patients)", "outcome.csv", "recurrence", "no recurrence event"


def _visual_reads_missing_for_validation(c):
    c.df["visual_file"] = c.df["visual_file"].astype(object)
    c.df.loc[c.df["cohort"] == "validation", "visual_file"] = ""
    return "P003, P008", "data_manifest.csv", "visual_file", "validation: 2"


def _single_patient(c):
    c.df = c.df.iloc[:1]
    return "(all)", "data_manifest.csv", "cohort", "no validation patient"


# --- units (warnings) -----------------------------------------------------------------------------------------------

def _rfs_in_days(c):
    c.outcome["rfs_months"] = c.outcome["rfs_months"] * 30.44
    return "P001, P002, ... (8 patients)", "outcome.csv", "rfs_months", "look like days"


def _bilirubin_mg_dl(c):
    c.clinical["tb"] = 0.7
    return "P001, P002, ... (8 patients)", "clinical.csv", "tb", "mg/dL"


def _albumin_g_dl(c):
    c.set("P002", "alb", 4.1, table="clinical")
    return "P002", "clinical.csv", "alb", "out of range [10, 70]"


# --- accepted: variants read correctly, ids made safe, warnings accepted deliberately ------------------------------

def _excel_habits_everywhere(c):
    """BOM, CRLF, ';' with decimal commas, Title-Case headers with spaces, in the manifest and every table."""
    c.save()
    for f in [c.manifest, *sorted((c.root / "tables").glob("*.csv"))]:
        df = pd.read_csv(f, dtype=str, keep_default_na=False)
        df.columns = [f" {col.title()} " for col in df.columns]
        text = df.to_csv(sep=";", index=False, lineterminator="\r\n").replace("12.5", "12,5")
        f.write_bytes(b"\xef\xbb\xbf" + text.encode())
    return "accepted:no-save"


def _tab_separated_tables(c):
    c.save()
    for name in ("clinical", "outcome"):
        getattr(c, name).to_csv(c.root / "tables" / f"{name}.tsv", sep="\t", index=False)
        c.set("P002", f"{name}_file", f"tables/{name}.tsv")
    return "accepted"


def _manifest_as_xlsx(c):
    c.save()
    c.df.to_excel(c.root / "data_manifest.xlsx", index=False)
    c.manifest.unlink()
    c.manifest = c.root / "data_manifest.xlsx"
    return "accepted:no-save"


def _hash_in_real_file_name(c):
    c.save()
    shutil.copy(c.root / "tables" / "visual.csv", c.root / "tables" / "reads#2.csv")
    c.df["visual_file"] = "tables/reads#2.csv"
    return "accepted"


def _path_like_patient_ids(c):
    ids = ["2019/DEV001", "../../../../outside/x"]
    for t in (c.df, c.clinical, c.visual, c.outcome):
        t.loc[[0, 1], "patient_id"] = ids
    return "accepted"


def _metal_accepted_with_reason(c):
    _hu_out_of_range(c)
    c.save()
    (c.root / "accepted_warnings.csv").write_text("check,patient_id,column,reason\n"
                                                  "hu_range,P002,ct_ap,hip prosthesis (checked by the radiologist)\n")
    return "accepted:warning"


def _unit_accepted_for_everyone(c):
    _bilirubin_mg_dl(c)
    c.save()
    (c.root / "accepted_warnings.csv").write_text("check,patient_id,column,reason\n"
                                                  "unit,*,*,the laboratory reports mg/dL (checked)\n")
    return "accepted:warning"


def _empty_table_file(c):
    c.save()
    (c.root / "tables" / "visual_empty.csv").write_text("")
    c.set("P002", "visual_file", "tables/visual_empty.csv")
    return "P002", "visual_empty.csv", "visual_file", "empty"


CASES = [f for name, f in sorted(globals().items()) if name.startswith("_") and callable(f)
         and getattr(f, "__module__", None) == __name__ and f.__code__.co_varnames[:1] == ("c",)
         and name not in ("_ct", "_write_ct", "_truncate")]
WARNINGS = {"_hu_out_of_range", "_zero_slices", "_spacing_in_cm", "_sagittal_slices", "_mask_on_air",
            "_rfs_in_days", "_bilirubin_mg_dl"}


def _outcome(case) -> str:
    src = case.__code__.co_consts
    if any(isinstance(k, str) and k.startswith("accepted") for k in src):
        return "accepted"
    return "warning" if case.__name__ in WARNINGS else "error"


def test_count_of_bad_inputs_by_outcome():
    counts = pd.Series([_outcome(f) for f in CASES]).value_counts().to_dict()
    assert counts.get("error", 0) >= 30 and counts.get("warning", 0) >= 7 and counts.get("accepted", 0) >= 6, counts


@pytest.mark.parametrize("case", CASES, ids=lambda f: f.__name__.strip("_"))
def test_bad_input(cohort, case):
    expected = case(cohort)
    if not (isinstance(expected, str) and expected.endswith("no-save")):
        cohort.save()
    report = validate(cohort.manifest, progress=False)
    if isinstance(expected, str):
        assert report.ok and not report.blocking, str(report)
        if expected == "accepted:warning":
            assert report.accepted and "(checked" in str(report), str(report)
        else:
            assert not report.warnings, str(report)
        return
    patient, file, column, message = expected
    pool = report.errors if _outcome(case) == "error" else report.warnings
    if _outcome(case) == "warning":
        assert report.blocking, str(report)
    matching = [p for p in pool if p.patient_id == patient and p.column == column
                and p.file.replace("\\", "/").endswith(file) and message in p.message]
    assert matching, f"no {_outcome(case)} for {patient}/{file}/{column}/{message!r} in:\n{report}"


# --- what validation accepts, the rest of the pipeline reads the same way ------------------------------------------

def test_accepted_variants_give_the_same_patient_table(cohort):
    reference = manifest.load_patient_table(cohort.manifest)
    _excel_habits_everywhere(cohort)
    again = manifest.load_patient_table(cohort.manifest)
    pd.testing.assert_frame_equal(again, reference)


def test_path_like_ids_keep_caches_inside_their_folder(cohort, tmp_path):
    from hcc_utils import preprocess as pp
    from toy_cohort import toy_profile

    _path_like_patient_ids(cohort)
    cohort.save()
    df = manifest.read_manifest(cohort.manifest)
    cache = tmp_path / "cache"
    prof = toy_profile(tmp_path)
    for _, row in df.iloc[:2].iterrows():
        case = pp.prepare_case(row, "AP", prof, cache_root=cache)
        assert case.patient_id == row["patient_id"]  # the id itself is kept
        assert case.path.resolve().parent == (cache / "AP").resolve()
    assert not (tmp_path.parent / "outside").exists()
    assert manifest.safe_name("2019/DEV001") != manifest.safe_name("2019_DEV001")


@pytest.mark.parametrize("variant", ["plain", "excel_habits", "xlsx"])
def test_digest_follows_every_accepted_variant(cohort, variant):
    if variant == "excel_habits":
        _excel_habits_everywhere(cohort)
    elif variant == "xlsx":
        _manifest_as_xlsx(cohort)
    d0 = run.manifest_digest(cohort.manifest)
    assert run.manifest_digest(cohort.manifest) == d0
    # a table value changes (the outcome of one patient)
    import re

    outcome = cohort.root / "tables" / "outcome.csv"
    text = outcome.read_bytes()
    changed = re.sub(rb"(P002[,;][^,;\r\n]*[,;])1", rb"\g<1>0", text)
    assert changed != text
    outcome.write_bytes(changed)
    d1 = run.manifest_digest(cohort.manifest)
    assert d1 != d0
    # an image is replaced by another of the same size, its time stamp kept
    ct, other = cohort.root / "images" / "P002_AP.nii.gz", cohort.root / "images" / "P001_AP.nii.gz"
    st = ct.stat()
    data = other.read_bytes()
    if len(data) == st.st_size:
        ct.write_bytes(data)
    else:
        raw = bytearray(ct.read_bytes())
        raw[-9] ^= 1
        ct.write_bytes(bytes(raw))
    import os

    os.utime(ct, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert run.manifest_digest(cohort.manifest) != d1


def test_unaccepted_warning_stops_the_book_and_accepting_lets_it_run(cohort, ci_profile):
    _hu_out_of_range(cohort)
    cohort.save()
    with pytest.raises(run.RunError, match="accepted_warnings.csv"):
        run.prepare_manifest(ci_profile, cohort.manifest, log=lambda s: None)
    _metal_accepted_with_reason(cohort)
    assert run.prepare_manifest(ci_profile, cohort.manifest, log=lambda s: None) == cohort.manifest.resolve()


def test_accepting_needs_a_reason(cohort):
    _bilirubin_mg_dl(cohort)
    cohort.save()
    (cohort.root / "accepted_warnings.csv").write_text("check,patient_id,column,reason\nunit,*,tb,\n")
    report = validate(cohort.manifest, progress=False)
    assert report.blocking and not report.accepted


# --- atomic runs ----------------------------------------------------------------------------------------------------

def _steps():
    return [run.Step("a", "a", {}), run.Step("b", "b", {}, deps=("a",)), run.Step("c", "c", {}, deps=("b",))]


def _notebooks(folder: Path):
    import nbformat

    folder.mkdir()
    for name in "abc":
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(f"x = '{name}'")])
        nbformat.write(nb, str(folder / f"{name}.ipynb"))


@pytest.mark.parametrize("only", [None, ["b"]])
def test_interrupted_forced_step_is_never_trusted(tmp_path, monkeypatch, only):
    nbdir, out = tmp_path / "nb", tmp_path / "out"
    _notebooks(nbdir)
    calls: list[str] = []
    interrupt = {"b": False}

    def execute(src, dst, params, **kw):
        calls.append(Path(src).stem)
        Path(dst).parent.mkdir(parents=True, exist_ok=True)
        Path(dst).write_text("half")  # papermill writes as it goes
        if interrupt.get(Path(src).stem):
            raise KeyboardInterrupt
        Path(dst).write_text(Path(src).read_text())

    monkeypatch.setattr("hcc_utils.run.execute.execute_notebook", execute)
    args = dict(notebooks_dir=nbdir, executed_dir=out / "executed", state_path=out / "state.json",
                manifest_hash="m", code_hash="c", settings={}, log=lambda s: None)
    run.run_steps(_steps(), **args)
    good_b = (out / "executed" / "b.ipynb").read_text()
    interrupt["b"] = True
    with pytest.raises(KeyboardInterrupt):
        run.run_steps(_steps(), force=True, only=only, **args)
    assert (out / "executed" / "b.ipynb").read_text() == good_b  # the half-written copy never took its place
    state = run.state.load_state(out / "state.json")["steps"]
    assert state["b"]["status"] == "running" and state["c"]["status"] == "stale"
    interrupt["b"] = False
    calls.clear()
    results = run.run_steps(_steps(), **args)
    assert calls == ["b", "c"] and {r.name: r.status for r in results} == {"a": "skipped", "b": "ran", "c": "ran"}


def test_book_shows_no_untrusted_notebook(tmp_path):
    executed, book = tmp_path / "executed", tmp_path / "book" / "executed"
    _notebooks(executed)
    state = {"steps": {"a": {"status": "ok"}, "b": {"status": "running"}, "c": {"status": "stale"}}}
    run.sync_executed(_steps(), [], executed, book, state=state)
    assert (book / "a.ipynb").exists() and not (book / "b.ipynb").exists()
    assert "did not complete" in (book / "b.md").read_text() and (book / "c.md").exists()
    assert not book.with_name("executed.tmp").exists()
