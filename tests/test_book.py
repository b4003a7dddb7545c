"""End to end: the ci-profile book, run on DICOM series that carry fake patient identifiers.

The tiny benchmark's ``make book PROFILE=ci MANIFEST=<DICOM manifest>``, cold then warm, in an isolated
``$HCC_ROOT`` so the user's ``outputs/ci`` is untouched (``tests/_privacy_book.py``; one run serves the benchmark's
test too), serves these checks:

* every notebook is executed (both phases where relevant), every expected output file exists, the HTML book exists;
* the HTML loads nothing from the internet (no remote ``src``/``href`` of scripts, styles, fonts, images);
* privacy: none of the fake name, MRN, birth date, accession number, institution... written into the DICOM headers
  appears under ``outputs/``, in the HTML book or in what the runs printed;

and the second run skips every step.
"""
from __future__ import annotations

import pytest
from _privacy_book import FAKE_PHI, NEEDLES, finished_book

from hcc_utils import imaging, run

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]  # the ci book run takes longer than one test

STEPS = ["01_cohort_table", "02_unet_training_AP", "02_unet_training_PP", "03_feature_extraction_AP",
         "03_feature_extraction_PP", "04_model_comparison", "05_survival_nomogram", "06_gradcam"]
OPTIONAL = ["05_survival_nomogram_gse14520", "07_lits_segmentation"]

#: Output files every ci run must produce (relative to outputs/ci/); the shared contracts of the stages.
EXPECTED = [
    *[f"segmentation/{ph}/{f}" for ph in ("AP", "PP")
      for f in ("model.pth", "metrics.json", "history.csv", "dsc_per_patient.csv")],
    "features/AP.parquet", "features/PP.parquet", "features/DP.parquet",
    "features/AP_slices.parquet", "features/PP_slices.parquet",
    "models/predictions.csv", "models/table2.csv", "models/dsfr_weights.csv", "models/signature.csv",
    "models/results.json", "models/figure1_roc.png",
    # the paper's tables and figures
    "cohort/table1.csv", "gradcam/figure2.png", "gradcam/locations.csv",
    *[f"survival/synthetic/{f}" for f in (
        "figure3_km.png", "km_logrank.csv", "tableS1_univariable_cox.csv", "table3_cox.csv", "figure4a_nomogram.png",
        "table4_discrimination.csv", "figure4bc_calibration.png", "figure4de_decision.png", "figureS1_tdauc.png",
        "nomogram.json", "nomogram.html", "results.json")],
    "run_state.json", "run_summary.json",
    *[f"executed/{s}.ipynb" for s in STEPS],
]
#: Folders that must hold at least one file.
EXPECTED_DIRS = ["cohort", "survival", "gradcam", "segmentation/AP/pred_masks", "segmentation/PP/pred_masks"]


@pytest.fixture(scope="module")
def book_run(tiny_benchmark):
    """The tiny benchmark's cold ``make book PROFILE=ci`` on the DICOM privacy cohort (``tests/_privacy_book.py``)."""
    b = finished_book(tiny_benchmark)
    return {**b, "log": b["logs"]["cold"]}


def test_dicom_manifest_carries_the_fake_identifiers(book_run):
    """The privacy check is only meaningful if the input really holds the identifiers."""
    hits = imaging.find_text_in_tree(book_run["manifest"].parent / "dicom", [FAKE_PHI["PatientName"],
                                                                       FAKE_PHI["AccessionNumber"]])
    assert {n for _, n in hits} == {FAKE_PHI["PatientName"], FAKE_PHI["AccessionNumber"]}


def test_all_notebooks_executed_and_outputs_exist(book_run):
    out = book_run["outputs"]
    summary = book_run["summaries"]["cold"]
    status = {s["step"]: s["status"] for s in summary["steps"]}
    assert {s: status.get(s) for s in STEPS} == {s: "ran" for s in STEPS}, book_run["log"][-3000:]
    for s in OPTIONAL:
        assert status.get(s) in ("ran", "unavailable")
    missing = [f for f in EXPECTED if not (out / f).is_file()]
    assert not missing, f"missing outputs: {missing}"
    empty = [d for d in EXPECTED_DIRS if not (out / d).is_dir() or not any(p.is_file() for p in (out / d).rglob("*"))]
    assert not empty, f"empty or missing output folders: {empty}"
    # the executed copies carry no error
    import nbformat

    for s in STEPS:
        nb = nbformat.read(str(out / "executed" / f"{s}.ipynb"), as_version=4)
        errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                  if o.get("output_type") == "error"]
        assert not errors, f"{s}: {errors[0].get('ename')}: {errors[0].get('evalue')}"
    print(f"\nci book run: {book_run['seconds'] or 0:.0f} s\n" + "\n".join(
        f"  {s['step']:34s} {s['status']:12s} {s['seconds']:7.1f} s" for s in summary["steps"])
        + f"\n  jupyter-book build {summary['book_seconds']:.1f} s")


def test_html_book_exists_and_has_every_chapter(book_run):
    html = book_run["html"]
    assert (html / "index.html").is_file()
    assert str(html / "index.html") in book_run["log"]  # the run prints where the book is
    for s in STEPS:
        page = html / "book" / "executed" / f"{s}.html"
        assert page.is_file(), page
    for s in OPTIONAL:
        assert (html / "book" / "executed" / f"{s}.html").is_file()
    # the figures are in the pages (Table 1's cases, learning curves, Figure 1 ROC, Figures 3-4, Figure 2 Grad-CAM)
    no_fig = [s for s in ("01_cohort_table", "02_unet_training_AP", "02_unet_training_PP", "04_model_comparison",
                          "05_survival_nomogram", "06_gradcam")
              if "<img" not in (html / "book" / "executed" / f"{s}.html").read_text(encoding="utf-8")]
    assert not no_fig, f"pages without a figure: {no_fig}"
    for p in ("intro", "method", "data", "references"):
        assert (html / "book" / f"{p}.html").is_file()


def test_html_loads_nothing_from_the_internet(book_run):
    html = book_run["html"]
    remote = run.remote_resources(html)
    assert remote == [], "remote resources in the built book:\n" + "\n".join(map(str, remote[:30]))
    for f in run.VENDOR_FILES:
        assert (html / "_static" / "vendor" / f).is_file(), f


def test_no_identifier_from_dicom_headers_is_published(book_run):
    root = book_run["root"]
    hits = imaging.find_text_in_tree(root / "outputs", NEEDLES) + imaging.find_text_in_tree(book_run["html"], NEEDLES)
    hits += imaging.find_text_in_tree(root / "book" / "executed", NEEDLES)
    assert not hits, "identifiers found:\n" + "\n".join(f"{p}: {n}" for p, n in hits[:30])
    said = "\n".join([*book_run["logs"].values(), book_run["proc"].stdout, book_run["proc"].stderr]).lower()
    printed = [n for n in NEEDLES if n.lower() in said]
    assert not printed, f"the run printed identifiers: {printed}"


def test_second_run_skips_every_step(book_run):
    summary = book_run["summaries"]["warm"]
    assert summary is not None, book_run["logs"]["warm"][-4000:]
    status = {s["step"]: s["status"] for s in summary["steps"]}
    assert {s: status[s] for s in STEPS} == {s: "skipped" for s in STEPS}
    assert all(status[s] in ("skipped", "unavailable") for s in OPTIONAL)
    assert (book_run["html"] / "index.html").is_file()
