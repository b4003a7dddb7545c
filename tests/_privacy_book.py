"""The ci book on DICOM series that carry fake patient identifiers, run once by the tiny benchmark.

``python -m benchmarks --tiny --book-manifest <DICOM manifest>`` times ``make book PROFILE=ci`` cold and warm on a
copy of the ci cohort whose CTs are DICOM series with :data:`FAKE_PHI` in their headers. The same two runs serve the
benchmark's test (``tests/test_benchmarks.py``) and the end-to-end and privacy checks (``tests/test_book.py``), so the
test-suite builds that book once.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Fake identifying DICOM tags written into every series of the privacy cohort.
FAKE_PHI = {
    "PatientName": "Qzorblat^Wilhelmina",
    "PatientID": "MRN88412307",
    "PatientBirthDate": "19470923",
    "OtherPatientIDs": "OPID5519034",
    "AccessionNumber": "ACC7730419X",
    "InstitutionName": "Xylophone Privacy Hospital",
    "InstitutionAddress": "17 Vrenkel Lane",
    "ReferringPhysicianName": "Dr^Quoxtelbaum",
    "StudyDate": "19990817",
    "StudyID": "STUDY66129",
}
#: What must not appear anywhere: the tag values, their parts and other renderings of the dates.
NEEDLES = sorted({*FAKE_PHI.values(), "Qzorblat", "Wilhelmina", "Quoxtelbaum", "Xylophone", "Vrenkel",
                  "1947-09-23", "1999-08-17", "23.09.1947", "17.08.1999"})


def dicom_cohort(src_manifest: Path, dest: Path) -> Path:
    """Copy a cohort with its CTs re-written as DICOM series that carry FAKE_PHI; masks and tables are copied."""
    from hcc_utils import imaging

    df = pd.read_csv(src_manifest, dtype=str, keep_default_na=False)
    base = src_manifest.parent
    dest.mkdir(parents=True, exist_ok=True)
    for col in ("clinical_file", "visual_file", "outcome_file", "mask_ap", "mask_pp"):
        if col not in df:
            continue
        for rel in df[col].unique():
            if rel:
                target = dest / rel.split("#", 1)[0]
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(base / rel.split("#", 1)[0], target)
    for i, row in df.iterrows():
        for ph in ("ap", "pp"):
            img = imaging.read_image(base / row[f"ct_{ph}"])
            folder = Path("dicom") / f"{row['patient_id']}_{ph.upper()}"
            imaging.write_dicom_series(img, dest / folder, phi=FAKE_PHI, description=f"{ph.upper()} synthetic CT")
            df.loc[i, f"ct_{ph}"] = str(folder)
            if f"series_uid_{ph}" in df:
                df.loc[i, f"series_uid_{ph}"] = ""
    out = dest / "data_manifest.csv"
    df.to_csv(out, index=False)
    return out


@pytest.fixture(scope="session")
def tiny_benchmark(tmp_path_factory, ci_manifest):
    """The tiny benchmark run with its ``make book`` on the DICOM privacy cohort.

    Returns ``{"proc", "json", "manifest", "root", "outputs", "html", "logs", "summaries", "seconds"}``: the
    benchmark's process and results JSON, and of its book runs the isolated root, the outputs and HTML folders, the
    cold and warm logs and ``run_summary.json`` files.
    """
    from benchmarks.tasks import book_root

    tmp = tmp_path_factory.mktemp("tiny_benchmark")
    manifest = dicom_cohort(Path(ci_manifest), tmp / "privacy_cohort")
    out = tmp / "results"
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--tiny", "--out", str(out), "--book-manifest",
                           str(manifest)], cwd=ROOT, capture_output=True, text=True, encoding="utf-8",
                          errors="replace", timeout=2400)
    files = sorted(out.glob("*.json"))
    root = book_root("ci")
    logs = {k: (root / f"make_book_{k}.log").read_text(encoding="utf-8", errors="replace")
            if (root / f"make_book_{k}.log").exists() else "" for k in ("cold", "warm")}
    summaries = {k: json.loads((root / f"run_summary_{k}.json").read_text())
                 if (root / f"run_summary_{k}.json").exists() else None for k in ("cold", "warm")}
    data = json.loads(files[0].read_text()) if len(files) == 1 else None
    seconds = next((f["value"] for f in (data or {}).get("figures", []) if f["group"] == "book"
                    and f["stage"] == "make book PROFILE=ci (cold)" and f["metric"] == "wall time"), None)
    return {"proc": proc, "files": files, "json": data, "manifest": manifest, "root": root,
            "outputs": root / "outputs" / "ci", "html": root / "book" / "_build" / "html", "logs": logs,
            "summaries": summaries, "seconds": seconds}


def finished_book(bench: dict) -> dict:
    """``bench`` (the :func:`tiny_benchmark` fixture's value) once its cold ci book has finished; else fail with why."""
    assert bench["summaries"]["cold"] is not None, (
        f"the ci book run failed:\n{bench['logs']['cold'][-6000:]}\n{bench['proc'].stdout[-3000:]}"
        f"{bench['proc'].stderr[-3000:]}")
    return bench
