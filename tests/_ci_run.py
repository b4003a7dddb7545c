"""A finished ci run for the bundle, prediction and TRIPOD+AI tests.

Reuses ``outputs/ci`` under the repository root (``$HCC_ROOT``) when it holds every output a bundle needs; otherwise
runs the ci book's notebooks once (no HTML build, no real-data chapters) in a temporary root.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def ci_run(tmp_path_factory):
    """``{"profile": Profile, "manifest": Path}`` of a finished ci run."""
    from hcc_utils import bundle, run
    from hcc_utils.config import load_profile

    prof = load_profile("ci")
    if not bundle.missing_outputs(prof):
        return {"profile": prof, "manifest": bundle._run_manifest(prof)}
    root = tmp_path_factory.mktemp("ci_root")
    shutil.copy2(run.CODE_ROOT / "profiles.yaml", root / "profiles.yaml")
    env = {**os.environ, "HCC_ROOT": str(root), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, "-m", "hcc_utils.run", "book", "--profile", "ci", "--no-build",
                           "--no-optional"], env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    prof = load_profile("ci", path=root / "profiles.yaml")
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
