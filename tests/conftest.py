"""Shared fixtures. The ci profile is what the test-suite runs end to end."""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")
os.environ.setdefault("MPLBACKEND", "Agg")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

from _ci_run import ci_run  # noqa: E402,F401 - one session fixture for the bundle, prediction and TRIPOD+AI tests
from _privacy_book import tiny_benchmark  # noqa: E402,F401 - the fixture shared by test_benchmarks and test_book


@pytest.fixture(scope="session")
def ci_profile():
    from hcc_utils.config import load_profile

    return load_profile("ci")


@pytest.fixture(scope="session")
def ci_manifest(ci_profile):
    """Path of the ci-profile synthetic cohort's manifest (generated once per machine, deterministic)."""
    from hcc_utils import synthetic

    return synthetic.generate_cohort(ci_profile)


@pytest.fixture(scope="session")
def shared_data():
    if not SHARED_DATA.exists():
        pytest.skip(f"{SHARED_DATA} is not present on this machine")
    return SHARED_DATA
