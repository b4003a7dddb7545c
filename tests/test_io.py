"""Image I/O: formats round-trip with their geometry, DICOM keeps HU, series are chosen explicitly, no PHI leaks."""
from __future__ import annotations

import gzip
import shutil
import zipfile

import numpy as np
import pandas as pd
import pydicom
import pydicom.data
import pytest
import SimpleITK as sitk

from hcc_utils import imaging

FAKE_PHI = {
    "PatientName": "TESTPERSON^ALICE",
    "PatientID": "MRN-0042-XYZ",
    "PatientBirthDate": "19510417",
    "AccessionNumber": "ACC7781234",
    "StudyDate": "20190305",
    "InstitutionName": "Fictional General Hospital",
}
# 30 degrees about z: a non-trivial direction
_C, _S = np.cos(np.pi / 6), np.sin(np.pi / 6)
OBLIQUE = (_C, -_S, 0.0, _S, _C, 0.0, 0.0, 0.0, 1.0)


def _ct(size=(12, 10, 5), spacing=(0.7, 0.8, 2.5), origin=(-120.5, 33.25, 7.0), direction=OBLIQUE, seed=1):
    rng = np.random.default_rng(seed)
    arr = rng.integers(-1000, 1800, size[::-1]).astype(np.int16)
    arr[0, 0, 0], arr[-1, -1, -1] = -2048, 3071  # below the usual -1024 (outside the field of view) to bone
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    img.SetDirection(direction)
    return img


def _same_geometry(a, b, atol=1e-4):
    assert a.GetSize() == b.GetSize()
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), atol=atol)
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=atol)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=atol)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
@pytest.mark.parametrize("dtype", [np.int16, np.float32, np.uint8])
def test_file_formats_round_trip(tmp_path, suffix, dtype):
    img = _ct()
    img = sitk.Cast(img, sitk.GetImageFromArray(np.zeros((1, 1, 1), dtype)).GetPixelID()) if dtype != np.int16 else img
    path = imaging.write_image(img, tmp_path / "sub" / f"ct{suffix}")
    back = imaging.read_image(path)
    _same_geometry(img, back)
    assert back.GetPixelID() == img.GetPixelID()
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(img))
    info = imaging.read_image_information(path)
    _same_geometry(img, info)
    assert imaging.check_same_grid(back, info) == []


def test_dicom_series_round_trip_keeps_hu_and_geometry(tmp_path):
    img = _ct()
    series = imaging.write_dicom_series(img, tmp_path / "dcm", description="AP 2.5mm", series_number=4, phi=FAKE_PHI)
    assert series.n_slices == 5 and len(list((tmp_path / "dcm").glob("*.dcm"))) == 5
    back = imaging.read_image(tmp_path / "dcm")
    _same_geometry(img, back)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(img))
    # the files really store rescaled values: stored = HU + 1024, intercept -1024 (what a scanner writes)
    ds = pydicom.dcmread(series.files[0])
    assert float(ds.RescaleIntercept) == -1024 and float(ds.RescaleSlope) == 1
    np.testing.assert_array_equal(ds.pixel_array.astype(int) - 1024, sitk.GetArrayViewFromImage(img)[0])
    assert str(ds.PatientName) == FAKE_PHI["PatientName"] and ds.SeriesInstanceUID == series.uid
    # deterministic UIDs for the same input
    again = imaging.write_dicom_series(img, tmp_path / "dcm2", description="AP 2.5mm", series_number=4, phi=FAKE_PHI)
    assert again.uid == series.uid


def test_dicom_series_with_slope(tmp_path):
    """A series written by another tool with slope 2 / intercept -1000 is read in HU."""
    hu = (np.arange(2 * 4 * 4).reshape(2, 4, 4) * 2 - 1000).astype(np.int16)
    folder = tmp_path / "slope"
    folder.mkdir()
    src = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
    for k in range(2):
        ds = src.copy()
        stored = ((hu[k].astype(int) + 1000) // 2).astype(np.int16)
        ds.Rows, ds.Columns = 4, 4
        ds.PixelData = stored.tobytes()
        ds.RescaleSlope, ds.RescaleIntercept = 2, -1000
        ds.ImagePositionPatient = [0, 0, 5.0 * k]
        ds.InstanceNumber = k + 1
        ds.SOPInstanceUID = f"{src.SOPInstanceUID}.{k + 1}"
        ds.save_as(folder / f"{k}.dcm")
    back = imaging.read_image(folder)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(back), hu)
    assert back.GetSpacing()[2] == pytest.approx(5.0)


def test_dicom_folder_with_two_series(tmp_path):
    folder = tmp_path / "study"
    ap = imaging.write_dicom_series(_ct(seed=1), folder, description="Arterial 1.25", series_number=5, phi=FAKE_PHI)
    pp = imaging.write_dicom_series(_ct(size=(12, 10, 7), seed=2), folder, description="Portal venous", series_number=6,
                               phi=FAKE_PHI)
    listed = imaging.list_dicom_series(folder)
    assert [(s.uid, s.number, s.description, s.n_slices) for s in listed] == [
        (ap.uid, "5", "Arterial 1.25", 5), (pp.uid, "6", "Portal venous", 7)]
    with pytest.raises(imaging.DicomSeriesError) as exc:
        imaging.read_image(folder)
    msg = str(exc.value)
    assert "holds 2 DICOM series" in msg and str(folder) in msg
    for s in (ap, pp):
        assert s.uid in msg and s.description in msg and f"{s.n_slices} slices" in msg and f"number {s.number}" in msg
    assert len(exc.value.series) == 2
    assert imaging.read_image(folder, series_uid=pp.uid).GetSize() == (12, 10, 7)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(imaging.read_image(folder, series_uid=ap.uid)),
                                  sitk.GetArrayFromImage(_ct(seed=1)))
    with pytest.raises(imaging.DicomSeriesError, match="1.2.3.4 is not in this folder"):
        imaging.read_image(folder, series_uid="1.2.3.4")
    # nothing identifying in the error text
    assert not any(v in msg for v in FAKE_PHI.values())


def test_pydicom_ct_small_reads_through_read_image(tmp_path):
    src = pydicom.data.get_testdata_file("CT_small.dcm")
    folder = tmp_path / "ct_small"
    folder.mkdir()
    shutil.copy(src, folder / "CT_small.dcm")
    ds = pydicom.dcmread(src)
    hu = ds.pixel_array.astype(float) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    for image in (imaging.read_image(folder), imaging.read_image(folder / "CT_small.dcm")):
        arr = sitk.GetArrayFromImage(image)
        assert arr.shape == (1, 128, 128)
        np.testing.assert_array_equal(arr[0], hu)
        np.testing.assert_allclose(image.GetSpacing()[:2], [float(v) for v in ds.PixelSpacing[::-1]])
        np.testing.assert_allclose(image.GetOrigin(), [float(v) for v in ds.ImagePositionPatient], atol=1e-4)
        assert image.GetMetaDataKeys() == ()  # SimpleITK would otherwise carry PatientName etc.
    # the single file's reader really fills a metadata dictionary with the patient's name (what read_image removes)
    assert sitk.ReadImage(str(folder / "CT_small.dcm")).GetMetaData(imaging.PHI_TAGS["PatientName"]).strip() \
        == str(ds.PatientName)


def test_no_phi_survives_read_and_write(tmp_path):
    imaging.write_dicom_series(_ct(), tmp_path / "in", description="AP", phi=FAKE_PHI)
    image = imaging.read_image(tmp_path / "in")
    assert image.GetMetaDataKeys() == ()
    for suffix in (".nii.gz", ".nrrd", ".mha"):
        imaging.write_image(image, tmp_path / "out" / f"ct{suffix}")
    one = sitk.ReadImage(str(sorted((tmp_path / "in").glob("*.dcm"))[0]))
    imaging.write_image(imaging.read_image(sorted((tmp_path / "in").glob("*.dcm"))[0]), tmp_path / "out" / "slice.nrrd")
    needles = list(FAKE_PHI.values())
    # positive control: the input holds every value, and a naive NRRD copy with metadata would leak the name
    assert {n for _, n in imaging.find_text_in_tree(tmp_path / "in", needles)} == set(needles)
    sitk.WriteImage(one, str(tmp_path / "naive.nrrd"))
    assert FAKE_PHI["PatientName"] in {n for _, n in imaging.find_text_in_tree(tmp_path / "naive.nrrd", needles)}
    assert imaging.find_text_in_tree(tmp_path / "out", needles) == []


def test_check_same_grid_lists_each_difference():
    img = _ct()
    assert imaging.check_same_grid(img, img) == []
    other = sitk.Image(img)
    other.SetSpacing((0.7, 0.8, 5.0))
    other.SetOrigin((0.0, 0.0, 0.0))
    diffs = imaging.check_same_grid(img, other)
    assert len(diffs) == 2 and diffs[0].startswith("spacing") and diffs[1].startswith("origin")
    other = sitk.Image(img)
    other.SetDirection((1, 0, 0, 0, 1, 0, 0, 0, 1))
    assert [d.split()[0] for d in imaging.check_same_grid(img, other)] == ["direction"]
    smaller = img[:, :, :4]
    assert imaging.check_same_grid(img, smaller)[0].startswith("size (12, 10, 4) differs")
    other = sitk.Image(img)
    other.SetOrigin(tuple(np.add(img.GetOrigin(), 1e-5)))
    assert imaging.check_same_grid(img, other) == []  # within tolerance
    assert "size" in imaging.check_same_grid(img, img[:, :, 0])[0]


def test_read_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        imaging.read_image(tmp_path / "missing.nii.gz")
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"not an image")
    with pytest.raises(RuntimeError):
        imaging.read_image(bad)
    (tmp_path / "empty").mkdir()
    with pytest.raises(imaging.DicomSeriesError, match="no DICOM series"):
        imaging.read_image(tmp_path / "empty")


def test_find_text_in_tree_finds_planted_strings(tmp_path):
    needle = "Zebediah^Quux"
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "clean.txt").write_text("nothing to see")
    (tmp_path / "a" / "notes.txt").write_text(f"patient {needle} seen")
    (tmp_path / "a" / "b" / "data.bin.gz").write_bytes(gzip.compress(f"xx{needle}yy".encode() * 50))
    with zipfile.ZipFile(tmp_path / "a" / "model.pth", "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data.pkl", f"....{needle}....".encode() * 20)
    (tmp_path / "a" / "page.html").write_text("<p>O&#x27;Brien-Smythe</p>")
    (tmp_path / "a" / "wide.bin").write_bytes("ACC99887766".encode("utf-16-le"))
    pd.DataFrame({"name": [needle] * 3, "x": [1, 2, 3]}).to_parquet(tmp_path / "a" / "t.parquet",
                                                                      compression="zstd")
    (tmp_path / "a" / "lower.csv").write_text("id,name\n1,mrn-55512\n")
    hits = imaging.find_text_in_tree(tmp_path, [needle, "O'Brien-Smythe", "ACC99887766", "MRN-55512", "absent-string"])
    found = {(p.name, n) for p, n in hits}
    assert found == {("notes.txt", needle), ("data.bin.gz", needle), ("model.pth", needle), ("t.parquet", needle),
                     ("page.html", "O'Brien-Smythe"), ("wide.bin", "ACC99887766"), ("lower.csv", "MRN-55512")}
    assert imaging.find_text_in_tree(tmp_path, ["MRN-55512"], case_sensitive=True) == []
    assert imaging.find_text_in_tree(tmp_path / "clean.txt", [needle]) == []


def test_phi_tags_named():
    for name, tag in [("PatientName", "0010|0010"), ("PatientID", "0010|0020"), ("PatientBirthDate", "0010|0030"),
                      ("AccessionNumber", "0008|0050"), ("StudyDate", "0008|0020"), ("InstitutionName", "0008|0080")]:
        assert imaging.PHI_TAGS[name] == tag


@pytest.mark.parametrize("direction", [OBLIQUE, (1, 0, 0, 0, 1, 0, 0, 0, 1), (1, 0, 0, 0, -1, 0, 0, 0, -1)])
def test_dicom_header_geometry_matches_full_read(tmp_path, direction, monkeypatch):
    img = _ct(size=(9, 7, 6), spacing=(0.66, 0.66, 1.25), direction=direction)
    imaging.write_dicom_series(img, tmp_path / "s", description="x")
    full = imaging.read_image(tmp_path / "s")

    def no_pixels(*args, **kwargs):
        raise AssertionError("pixel data read")

    monkeypatch.setattr(imaging.sitk.ImageSeriesReader, "Execute", no_pixels)
    info = imaging.read_image_information(tmp_path / "s")
    _same_geometry(full, info)
    assert imaging.check_same_grid(full, info) == [] and info.GetDimension() == 3


def test_single_slice_header_geometry(tmp_path):
    (tmp_path / "one").mkdir()
    shutil.copy(pydicom.data.get_testdata_file("CT_small.dcm"), tmp_path / "one" / "a.dcm")
    _same_geometry(imaging.read_image(tmp_path / "one"), imaging.read_image_information(tmp_path / "one"))


def test_write_dicom_series_refuses_what_it_cannot_store(tmp_path):
    big = sitk.GetImageFromArray(np.full((2, 3, 3), 40000.0, np.float32))
    with pytest.raises(ValueError, match="do not fit int16"):
        imaging.write_dicom_series(big, tmp_path / "x")
    with pytest.raises(ValueError, match="3-D"):
        imaging.write_dicom_series(_ct()[:, :, 0], tmp_path / "y")


def test_dicom_io_leaves_the_process_locale_alone(tmp_path):
    """GDCM switches LC_ALL to "C"; reading or writing DICOM must not leave Python decoding text as ASCII."""
    import locale

    import numpy as np
    import SimpleITK as sitk

    from hcc_utils import imaging

    before = locale.setlocale(locale.LC_ALL)
    img = sitk.GetImageFromArray(np.zeros((2, 4, 4), np.int16))
    folder = tmp_path / "dcm"
    imaging.write_dicom_series(img, folder)
    assert locale.setlocale(locale.LC_ALL) == before
    imaging.read_image(folder)
    imaging.list_dicom_series(folder)
    assert locale.setlocale(locale.LC_ALL) == before
