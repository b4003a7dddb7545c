"""The plan of a book run: which notebook runs with which parameters, in which order, after which steps."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from hcc_utils.config import PHASES, Profile

#: Folder holding the code (this package, notebooks, book sources); may differ from ``repo_root()``.
CODE_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = CODE_ROOT / "notebooks"
#: The Jupyter kernel the notebooks run in (registered by ``make env``).
KERNEL = "hcc-dsfr"

#: The GSE14520 clinical table (shared, read-only data beside the code, also under ``$HCC_ROOT``).
GSE14520_FILE = CODE_ROOT.parent / "shared" / "data" / "gse14520" / "clinical.tsv"


class RunError(RuntimeError):
    """A step failed or an input is invalid; the message says which and where.

    ``results`` holds the step results up to and including a failed step (empty when nothing ran).
    """

    def __init__(self, message: str, results: list | None = None):
        super().__init__(message)
        self.results = list(results or [])


@dataclass
class Step:
    """One notebook execution.

    Attributes
    ----------
    name : str
        Step (and executed file) name, e.g. ``02_unet_training_AP``.
    notebook : str
        Notebook stem under ``notebooks/``.
    params : dict
        Papermill parameters.
    deps : tuple of str
        Upstream steps whose hashes enter this step's hash.
    title : str
        Human-readable title (used on fallback pages).
    available : callable, optional
        ``() -> (bool, reason)``: whether the step's data exist; when not, a page with the reason replaces it.
    inputs : tuple of Path
        Extra files whose content enters the hash (e.g. a real-data table).
    """

    name: str
    notebook: str
    params: dict[str, Any]
    deps: tuple[str, ...] = ()
    title: str = ""
    available: Callable[[], tuple[bool, str]] | None = None
    inputs: tuple[Path, ...] = ()


@dataclass
class StepResult:
    """What happened to a step in this run.

    ``status`` is one of ``ran``, ``skipped``, ``failed``, ``unavailable``, ``missing``; ``seconds`` is this run's
    time (0 for a skipped step) and ``last_seconds`` the time of the step's last complete execution (this one or an
    earlier run's), so a skipped rerun keeps the step times.
    """

    name: str
    status: str
    seconds: float = 0.0
    executed: str | None = None
    reason: str = ""
    hash: str = ""
    last_seconds: float | None = None


def gse14520_available() -> tuple[bool, str]:
    """Whether the GSE14520 clinical table is on this machine, and if not, why."""
    if not GSE14520_FILE.exists():
        return False, f"the GSE14520 clinical table {GSE14520_FILE} is not present on the machine that built this book"
    return True, ""


def lits_available() -> tuple[bool, str]:
    """Whether the LiTS case can be used (see :func:`hcc_utils.lits.available`)."""
    from hcc_utils import lits  # imported only when the plan is probed

    ok, reason = lits.available()
    return bool(ok), str(reason or "")


def gse14520_parameters() -> dict[str, Any]:
    """Papermill parameters of the GSE14520 run of the survival notebook.

    Returns
    -------
    dict
        :func:`hcc_utils.survival.gse14520_parameters` with ``table_path`` set to :data:`GSE14520_FILE` (the table
        :func:`gse14520_available` checked).
    """
    # the survival stage loads lifelines and scikit-survival: imported only when the plan needs it
    from hcc_utils import survival

    return {**survival.gse14520_parameters(), "table_path": str(GSE14520_FILE)}


def plan(profile: Profile, manifest: Path | None = None, seed: int | None = None,
         optional: bool = True) -> list[Step]:
    """The ordered list of steps for a profile.

    Parameters
    ----------
    profile : Profile
    manifest : Path, optional
        The manifest the notebooks read (None: the profile's synthetic cohort).
    seed : int, optional
        Seed passed to every notebook (None: the profile's seed).
    optional : bool
        Include the real-data chapters (GSE14520, LiTS).

    Returns
    -------
    list of Step
        In execution order (a step comes after the steps it depends on; with several notebooks at once the first
        ready step starts first, so the long radiomics chapter comes before the survival and Grad-CAM chapters).
    """
    base = {"profile": profile.name, "manifest": None if manifest is None else str(manifest), "seed": seed}
    steps = [Step("01_cohort_table", "01_cohort_table", dict(base), title="Cohort and Table 1")]
    for ph in PHASES:
        steps.append(Step(f"02_unet_training_{ph}", "02_unet_training", {**base, "phase": ph},
                          title=f"U-Net training ({ph})"))
    for ph in PHASES:
        steps.append(Step(f"03_feature_extraction_{ph}", "03_feature_extraction", {**base, "phase": ph},
                          deps=(f"02_unet_training_{ph}",), title=f"Deep feature extraction ({ph})"))
    steps += [
        Step("04_model_comparison", "04_model_comparison", dict(base),
             deps=("01_cohort_table",) + tuple(f"03_feature_extraction_{ph}" for ph in PHASES),
             title="DSFR models and Table 2"),
        Step("08_radiomics_robustness", "08_radiomics_robustness", dict(base),
             deps=("04_model_comparison",) + tuple(f"03_feature_extraction_{ph}" for ph in PHASES),
             title="Handcrafted radiomics, feature robustness and harmonisation",
             available=lambda: (bool((profile.get("radiomics") or {}).get("enabled", True)),
                                "radiomics.enabled is false in this profile")),
        Step("05_survival_nomogram", "05_survival_nomogram", dict(base), deps=("04_model_comparison",),
             title="Survival analysis and nomogram"),
        Step("06_gradcam", "06_gradcam", dict(base),
             deps=("04_model_comparison",) + tuple(f"02_unet_training_{ph}" for ph in PHASES),
             title="Grad-CAM of the DSFR features"),
        Step("09_tripod_ai", "09_tripod_ai", dict(base), deps=("01_cohort_table", "04_model_comparison",
                                                               "05_survival_nomogram"), title="TRIPOD+AI checklist"),
    ]
    if optional:
        ok, _ = gse14520_available()
        steps.append(Step("05_survival_nomogram_gse14520", "05_survival_nomogram",
                          {"profile": profile.name, "seed": seed, **(gse14520_parameters() if ok else {})},
                          title="Survival analysis on GSE14520 (real data)", available=gse14520_available,
                          inputs=(GSE14520_FILE,) if ok else ()))
        steps.append(Step("07_lits_segmentation", "07_lits_segmentation", {"profile": profile.name, "seed": seed},
                          title="U-Net on a real LiTS CT (real data)", available=lits_available))
    # last: it fills the time the radiomics chapter leaves to a second notebook
    steps.append(Step("10_ablation", "10_ablation", dict(base),
                      deps=("04_model_comparison",) + tuple(f"03_feature_extraction_{ph}" for ph in PHASES),
                      title="Ablation: what each design choice gives"))
    return steps


def selected(step: Step, only: list[str] | None) -> bool:
    """Whether ``--only`` selects a step (a notebook name selects all of its phases; None selects every step)."""
    if not only:
        return True
    return any(step.name == o or step.name.startswith(o + "_") or step.notebook == o for o in only)


def downstream(steps: list[Step], name: str) -> list[str]:
    """Names of the steps that depend on ``name``, directly or through other steps."""
    out: list[str] = []
    frontier = {name}
    for st in steps:  # plan order: a step comes after its upstream steps
        if frontier & set(st.deps):
            out.append(st.name)
            frontier.add(st.name)
    return out
