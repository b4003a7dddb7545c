"""The environment files agree, and the profiles file is complete."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from hcc_utils.config import PROFILES, load_profile

ROOT = Path(__file__).resolve().parents[1]


def _requirements() -> dict[str, str]:
    out = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        assert m, f"requirements.txt: {line!r} is not pinned as name==version"
        out[m.group(1).lower()] = m.group(2)
    return out


def test_requirements_pinned_and_core_packages_present():
    reqs = _requirements()
    for name in ["torch", "torchvision", "fastai", "jupyterlab", "jupyter-book", "papermill", "simpleitk",
                 "scikit-learn", "lifelines", "scikit-survival", "seaborn", "ipywidgets", "pandas", "pyarrow",
                 "matplotlib", "nbclient", "pytest"]:
        assert name in reqs, f"{name} missing from requirements.txt"
    assert reqs["torch"] == "2.14.1" and reqs["torchvision"] == "0.29.1"
    assert int(reqs["jupyter-book"].split(".")[0]) < 2


def test_environment_yml_parses_and_names_same_packages():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    assert "python=3.11" in deps
    pip_section = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    conda_pins = {}
    for item in pip_section:
        name, version = item.split("==")
        conda_pins[name.lower()] = version
    assert conda_pins == _requirements()


@pytest.mark.parametrize("name", PROFILES)
def test_profiles_load_with_all_sections(name):
    p = load_profile(name)
    for key in ["seed", "windows", "cohort", "preprocess", "unet", "features", "models", "stats", "gradcam"]:
        assert key in p.settings, f"profile {name} lacks {key}"
    assert p["windows"]["AP"] == {"level": 70, "width": 150}
    assert p["windows"]["PP"] == {"level": 100, "width": 200}
    assert p.outputs.name == name


def test_profile_scales_are_ordered():
    ci, demo, paper = (load_profile(n) for n in PROFILES)
    assert paper["preprocess"]["size"] == 256
    # the network sees the synthetic tumour at no coarser than about 3 mm per pixel (field of view / input size)
    from hcc_utils.phantom import CENTRES

    for c in CENTRES.values():
        assert c["size"][0] * c["spacing"][0] / demo["preprocess"]["size"] <= 3.05, c
    assert ci["cohort"]["n_annotated"] < demo["cohort"]["n_annotated"]
    assert ci["cohort"]["n_development"] < demo["cohort"]["n_development"]
    assert demo["cohort"]["n_development"] == 180 and demo["cohort"]["n_validation"] == 28
    assert demo["cohort"]["n_annotated"] == 60


def test_unknown_profile_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown profile"):
        load_profile("nope")


def test_overrides_merge_recursively():
    p = load_profile("ci", overrides={"unet": {"epochs": 3}})
    assert p["unet"]["epochs"] == 3 and p["unet"]["arch"] == "classic"


def test_ci_script_runs_a_make_target_that_exists():
    import re
    import subprocess

    ci = (ROOT / ".ci" / "run").read_text()
    targets = set(re.findall(r"^([A-Za-z][\w-]*):", (ROOT / "Makefile").read_text(), flags=re.M))
    used = set(re.findall(r"\bmake\s+([A-Za-z][\w-]*)", ci))
    assert used and used <= targets
    # make parses the Makefile and knows how to build the target (dry run: nothing is executed)
    for t in used:
        assert subprocess.run(["make", "-n", "-C", str(ROOT), t], capture_output=True).returncode == 0
