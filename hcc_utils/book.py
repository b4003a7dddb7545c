"""One setup call for the book's notebooks, and the text blocks every chapter shares.

``ctx = book.setup(profile, manifest, seed)`` resolves the profile, the seed and the manifest the same way in every
chapter, sets a headless matplotlib backend and the book's style (:mod:`hcc_utils.style`), and sends Python
warnings to ``outputs/<profile>/logs/warnings.log`` instead of the published page.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from hcc_utils import style
from hcc_utils.config import Profile, load_profile, repo_root
from hcc_utils.manifest import cohort_label


@dataclass
class Context:
    """What a chapter needs to know about its run.

    Attributes
    ----------
    profile : Profile
    seed : int
    manifest : Path
        Absolute path of the manifest read (the profile's synthetic cohort unless one was given).
    synthetic : bool
        True when the manifest is the profile's synthetic cohort.
    phase : str or None
        ``AP`` or ``PP`` for the per-phase chapters.
    """

    profile: Profile
    seed: int
    manifest: Path
    synthetic: bool
    phase: str | None = None
    _patients: object = field(default=None, repr=False)

    @property
    def outputs(self) -> Path:
        """``outputs/<profile>/``."""
        return self.profile.outputs

    def out(self, *parts: str) -> Path:
        """A path under ``outputs/<profile>/`` (parent folders created)."""
        return self.profile.out(*parts)

    def patients(self):
        """The patient table of the manifest (:func:`hcc_utils.manifest.load_patient_table`), read once."""
        if self._patients is None:
            from hcc_utils.manifest import load_patient_table

            self._patients = load_patient_table(self.manifest)
        return self._patients

    def step_time(self, step: str) -> str:
        """How long ``step`` took when it last ran (``outputs/<profile>/run_summary.json``), as text.

        Parameters
        ----------
        step : str
            A step of :func:`hcc_utils.run.plan`, e.g. ``02_unet_training_AP``.

        Returns
        -------
        str
        """
        import json

        try:
            steps = json.loads((self.outputs / "run_summary.json").read_text())["steps"]
            secs = next(float(s["seconds"]) for s in steps if s["step"] == step and s["status"] == "ran")
        except (OSError, ValueError, KeyError, TypeError, StopIteration):
            return "not recorded yet (the first run of this step)"
        return f"{secs / 60:.1f} min" if secs >= 90 else f"{secs:.0f} s"

    def cohort_note(self, n_patients: int | None = None) -> str:
        """MyST of the admonition that says which cohort a chapter's results describe.

        Parameters
        ----------
        n_patients : int, optional
            Patients in the cohort (read from the manifest when None).

        Returns
        -------
        str
        """
        n = len(self.patients()) if n_patients is None else int(n_patients)
        if self.synthetic:
            return synthetic_note(n)
        return (f"```{{note}}\nThese results describe the cohort of the manifest `{self.manifest.name}` "
                f"({n} patients).\n```")


def figure_data(data, path: str | Path, key: str | None = None, label: str | None = None) -> str:
    """Write the data behind a figure as CSV beside it and return the MyST link that offers it on the page.

    The link is a ``{download}`` role to the file under ``outputs/`` (a path from the book's root, so it holds on
    every page); Sphinx copies the file into the HTML build. With ``key`` the link is also glued (as Markdown) for a
    caption: ``Data: {glue:md}`key:myst`.``

    Parameters
    ----------
    data : pandas.DataFrame
        The figure's data, one row per plotted point (or step, bar, panel); the index is not written.
    path : str or Path
        The CSV to write (suffix set to ``.csv``), normally beside the figure's PNG under ``outputs/<profile>/``.
    key : str, optional
        Glue the link under this name (notebooks only).
    label : str, optional
        The link text (default: the file name).

    Returns
    -------
    str
        The MyST link, e.g. ``{download}`figure3_km_data.csv </outputs/ci/survival/synthetic/figure3_km_data.csv>```.
    """
    import os

    path = Path(path).with_suffix(".csv")
    path.parent.mkdir(parents=True, exist_ok=True)
    data.to_csv(path, index=False)
    root = repo_root().resolve()
    try:
        target = "/" + path.resolve().relative_to(root).as_posix()  # from the book's source root
    except ValueError:  # outside the book's root: relative to the executed pages (book/executed/)
        target = Path(os.path.relpath(path.resolve(), root / "book" / "executed")).as_posix()
    link = f"{{download}}`{label or path.name} <{target}>`"
    if key is not None:
        from IPython.display import Markdown
        from myst_nb import glue

        glue(key, Markdown(link), display=False)
    return link


def synthetic_note(n_patients: int) -> str:
    """MyST of the "synthetic cohort" admonition shown on every chapter with synthetic results.

    Parameters
    ----------
    n_patients : int

    Returns
    -------
    str
    """
    return ("```{admonition} Synthetic cohort\n:class: warning\n"
            f"The {n_patients} patients of this chapter are synthetic: images, masks, clinical data and outcomes "
            "were generated from a seed by `hcc_utils.synthetic`, with effects planted on purpose. The numbers "
            "show what the method finds in such a cohort; they are not the paper's results and say nothing about "
            "real patients.\n```")


def setup(profile: str = "demo", manifest: str | Path | None = None, seed: int | None = None,
          phase: str | None = None) -> Context:
    """Prepare a notebook's run: profile, seed, manifest, figure style and where warnings go.

    Parameters
    ----------
    profile : str
        Name of a profile of ``profiles.yaml``.
    manifest : str or Path, optional
        A data manifest; a relative path is taken from the repository root. None: the profile's synthetic cohort.
    seed : int, optional
        None: the profile's seed.
    phase : str, optional
        ``AP`` or ``PP``.

    Returns
    -------
    Context
    """
    import matplotlib

    if "inline" not in matplotlib.get_backend():
        matplotlib.use("Agg")
    style.apply()
    prof = load_profile(profile)
    path = prof.manifest if manifest is None else Path(manifest)
    if not path.is_absolute():
        path = repo_root() / path
    path = path.resolve()
    synthetic = manifest is None or path == prof.manifest.resolve()
    capture_warnings(prof.out("logs", "warnings.log"))
    try:
        import pandas as pd

        pd.set_option("display.max_colwidth", 80)
    except ImportError:  # pragma: no cover - pandas is a dependency
        pass
    return Context(prof, prof.seed if seed is None else int(seed), path, synthetic, phase)


def capture_warnings(log_file: Path) -> None:
    """Write Python warnings to ``log_file`` rather than to stderr (so no warning reaches a published page).

    Parameters
    ----------
    log_file : Path
        Appended to; its folder must exist.
    """
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger = logging.getLogger("py.warnings")
    for h in list(logger.handlers):
        logger.removeHandler(h)
    logger.addHandler(handler)
    logger.propagate = False
    logging.captureWarnings(True)
    warnings.simplefilter("default")


def run_info() -> dict:
    """Version, commit and date of this run, for the book's "how to cite".

    Returns
    -------
    dict
        ``version`` (of hcc_utils), ``commit`` (short hash, ``+ local changes`` when the tree differs from it, or
        ``unknown`` outside git) and ``date`` (ISO date of the run).
    """
    import datetime
    import subprocess

    import hcc_utils

    code = Path(hcc_utils.__file__).resolve().parents[1]

    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=code, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "--short=10", "HEAD") or "unknown"
    if commit != "unknown" and git("status", "--porcelain", "--untracked-files=no"):
        commit += " + local changes"
    return {"version": hcc_utils.__version__, "commit": commit, "date": datetime.date.today().isoformat()}


def citation(info: dict | None = None) -> str:
    """The book's citation as MyST text (version, commit and run date from :func:`run_info`).

    Parameters
    ----------
    info : dict, optional
        :func:`run_info` output.

    Returns
    -------
    str
    """
    i = run_info() if info is None else info
    return (f"hcc-dsfr-book contributors. *DSFR: early recurrence of HCC after resection, an open reproducible "
            f"analysis book*. Version {i['version']}, commit `{i['commit']}`, run on {i['date']}.")


def comparison_text(table2, reference: str, other: str, cohort: str, names: dict | None = None) -> str:
    """One plain sentence comparing two models' AUCs of Table 2 in a cohort, including when the reference loses.

    Parameters
    ----------
    table2 : pandas.DataFrame
        Rows with ``model, cohort, auc`` and ``delong_p`` (the paired DeLong test against the reference model).
    reference, other : str
        Model names.
    cohort : str
        ``development``, ``validation`` or a named external cohort (``validation:centre2``).
    names : dict, optional
        Model name -> how the sentence calls it.

    Returns
    -------
    str
    """
    names = names or {}
    row = lambda m: table2[(table2.model == m) & (table2.cohort == cohort)].iloc[0]
    a, b = row(reference), row(other)
    ra, rb = names.get(reference, f"the {reference} model"), names.get(other, f"the {other} model")
    p = b.get("delong_p")
    sig = (p is not None and p == p and p < 0.05)
    if abs(a.auc - b.auc) < 5e-4:
        verdict = f"{rb} and {ra} discriminate equally well"
    elif b.auc > a.auc:
        verdict = f"{rb} is ahead of {ra}"
    else:
        verdict = f"{ra} is ahead of {rb}"
    tail = ("the difference is significant" if sig else
            "the difference is within chance for this number of patients")
    label = cohort_label(cohort)
    label = label[0].lower() + label[1:]
    return (f"In the {label} cohort {verdict} (AUC {style.fmt(b.auc)} for {rb}, {style.fmt(a.auc)} for {ra}; "
            f"DeLong {style.format_p(p, prefix=True) or 'p not available'}): {tail}.")
