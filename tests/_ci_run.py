"""A finished ci run for the bundle, prediction and TRIPOD+AI tests.

Reuses ``outputs/ci`` under the repository root (``$HCC_ROOT``) when it holds every output a bundle needs; otherwise
the ci book that the tiny benchmark builds once for the test-suite (on the DICOM copy of the ci cohort, see
:mod:`_privacy_book`), so a fresh clone runs the ci notebooks once, not twice.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from _privacy_book import finished_book


@pytest.fixture(scope="session")
def ci_run(request):
    """``{"profile": Profile, "manifest": Path}`` of a finished ci run."""
    from hcc_utils import bundle
    from hcc_utils.config import load_profile

    prof = load_profile("ci")
    if not bundle.missing_outputs(prof):
        return {"profile": prof, "manifest": bundle._run_manifest(prof)}
    bench = finished_book(request.getfixturevalue("tiny_benchmark"))
    prof = load_profile("ci", path=bench["root"] / "profiles.yaml")
    assert not bundle.missing_outputs(prof), (bench["root"], bundle.missing_outputs(prof))
    return {"profile": prof, "manifest": bundle._run_manifest(prof)}


def prediction_manifest(manifest: Path, ids: list[str], dest: Path) -> Path:
    """The rows of ``ids`` as a manifest of new patients: absolute paths, no outcome, cohort, seg_train or masks."""
    from hcc_utils.manifest import read_manifest

    df = read_manifest(manifest)
    sub = df[df["patient_id"].isin(ids)].drop(columns=["outcome_file", "cohort", "seg_train", "mask_ap", "mask_pp"])
    dest.parent.mkdir(parents=True, exist_ok=True)
    sub.to_csv(dest, index=False)
    return dest


__all__ = ["ci_run", "prediction_manifest", "Path"]
