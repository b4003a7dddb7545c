"""The whole run: the cohort prepared and validated, the steps executed, the book built, the summary saved."""
from __future__ import annotations

import datetime as _dt
import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from hcc_utils import manifest as mf
from hcc_utils.bundle import bundle_after_run
from hcc_utils import synthetic
from hcc_utils.checks import ACCEPT_FILE
from hcc_utils.config import Profile, load_profile, repo_root
from hcc_utils.run import monitor
from hcc_utils.run.assets import assets_present, vendor_assets
from hcc_utils.run.book import build_book, stage_book_sources, sync_executed, write_benchmarks_page
from hcc_utils.run.execute import default_jobs, run_steps
from hcc_utils.run.hashing import manifest_digest, notebook_code_digest
from hcc_utils.run.state import load_state
from hcc_utils.run.steps import CODE_ROOT, NOTEBOOKS, RunError, StepResult, plan


@dataclass
class RunSummary:
    """What a run did, saved as ``outputs/<profile>/run_summary.json``.

    Per step, ``seconds`` is this run's time (0 when skipped) and ``last_seconds`` the time of its last complete
    execution, so a rerun that skips every step keeps the step times.
    """

    profile: str
    manifest: str | None
    results: list[StepResult] = field(default_factory=list)
    total_seconds: float = 0.0
    book_seconds: float | None = None
    html: str | None = None
    prepare_seconds: float | None = None
    notebooks_seconds: float | None = None
    jobs: int = 1

    def to_json(self) -> dict:
        """The summary as saved."""
        return {
            "profile": self.profile,
            "manifest": self.manifest,
            "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "total_seconds": round(self.total_seconds, 2),
            "book_seconds": None if self.book_seconds is None else round(self.book_seconds, 2),
            "prepare_seconds": None if self.prepare_seconds is None else round(self.prepare_seconds, 2),
            "notebooks_seconds": None if self.notebooks_seconds is None else round(self.notebooks_seconds, 2),
            "jobs": self.jobs,
            "html": self.html,
            "steps": [
                {"step": r.name, "status": r.status, "seconds": round(r.seconds, 2),
                 "last_seconds": None if r.last_seconds is None else round(r.last_seconds, 2),
                 "executed": r.executed, "reason": r.reason}
                for r in self.results
            ],
        }

    def table(self) -> str:
        """The summary as a plain-text table for the terminal."""
        lines = [f"{'step':34s} {'status':12s} {'seconds':>9s}"]
        for r in self.results:
            note = r.reason or (f"last run {r.last_seconds:.1f} s" if r.status == "skipped" and r.last_seconds
                                else "")
            lines.append(f"{r.name:34s} {r.status:12s} {r.seconds:9.1f}" + (f"  ({note})" if note else ""))
        lines.append(f"{'total (notebooks)':34s} {'':12s} {sum(r.seconds for r in self.results):9.1f}")
        if self.notebooks_seconds is not None and self.jobs > 1:
            lines.append(f"{f'notebooks, wall time ({self.jobs} at once)':34s} {'':12s} {self.notebooks_seconds:9.1f}")
        if self.book_seconds is not None:
            lines.append(f"{'jupyter-book build':34s} {'':12s} {self.book_seconds:9.1f}")
        return "\n".join(lines)


def prepare_manifest(profile: Profile, manifest: Path | None, log: Callable[[str], None] = print) -> Path:
    """Without a manifest, make sure the profile's synthetic cohort is complete (generate it if not); validate.

    Whether the cohort is there is decided from the cohort itself (its ``stamp.json`` and a complete set of files,
    :func:`hcc_utils.synthetic.is_complete`), not from the manifest's existence: the demo manifest is committed, so
    a fresh clone has the manifest but no images, and an interrupted generation leaves no stamp.

    Parameters
    ----------
    profile : hcc_utils.config.Profile
    manifest : path or None
        A user's manifest (validated as it is), or None for the profile's synthetic cohort.
    log : callable
        Receives progress lines.

    Returns
    -------
    Path
        The validated manifest.

    Raises
    ------
    RunError
        With the validation report when the manifest has errors or unaccepted warnings of the data checks.
    """
    bars = sys.stderr.isatty()  # progress bars redraw with carriage returns: a terminal only, never a log file
    if manifest is None:
        spec, root, manifest = synthetic.cohort_spec(profile)
        if not synthetic.is_complete(spec, root, manifest):
            why = "is incomplete" if root.exists() else "is missing"
            log(f"generating the synthetic {profile.name} cohort ({spec.n} patients): {root} {why}")
            t0 = time.perf_counter()
            manifest = Path(synthetic.generate_cohort(profile, progress=bars))
            log(f"synthetic cohort written in {time.perf_counter() - t0:.1f} s: {manifest}")
    manifest = Path(manifest).resolve()
    if not manifest.exists():
        raise RunError(f"manifest {manifest} does not exist")
    log(f"validating {manifest}")
    report = mf.validate(manifest, progress=bars)
    if report.errors:
        raise RunError(f"the manifest {manifest} has {len(report.errors)} problem(s); nothing was run:\n{report}")
    if report.blocking:
        raise RunError(
            f"the manifest {manifest} has {len(report.blocking)} warning(s) of the data checks; nothing was run. Fix "
            f"the data, or accept a warning that is right for this cohort by adding a line `check,patient_id,column,"
            f"reason` to {manifest.parent / ACCEPT_FILE} (see the README, 'Data checks'):\n{report}")
    if report.problems:
        log(str(report))
    return manifest


def run_book(profile_name: str = "demo", manifest: str | Path | None = None, *, seed: int | None = None,
             force: bool = False, only: list[str] | None = None, build: bool = True, optional: bool = True,
             jobs: int | None = None, log: Callable[[str], None] = print) -> RunSummary:
    """Run every step for a profile and build the book (see :mod:`hcc_utils.run`).

    Parameters
    ----------
    profile_name : {'ci', 'demo', 'paper'}
    manifest : path, optional
        Your own cohort's manifest; None uses (and if needed generates) the profile's synthetic cohort.
    seed : int, optional
        Overrides the profile's seed in every notebook.
    force : bool
        Redo every selected step even if its inputs did not change.
    only : list of str, optional
        Run only these steps (a notebook name selects all of its phases).
    build : bool
        Build the HTML book after the notebooks.
    optional : bool
        Include the real-data chapters.
    jobs : int, optional
        Notebooks run at once (None: :func:`hcc_utils.run.execute.default_jobs`, ``$HCC_JOBS`` or the CPUs, at most
        4). Results do not depend on it.
    log : callable
        Receives the lines for the terminal (they also go to ``outputs/<profile>/run.log``).

    Returns
    -------
    RunSummary
        Also saved to ``outputs/<profile>/run_summary.json``.
    """
    t_all = time.perf_counter()
    root = repo_root()
    if root.resolve() != CODE_ROOT and not (root / "profiles.yaml").exists():
        root.mkdir(parents=True, exist_ok=True)
        shutil.copy2(CODE_ROOT / "profiles.yaml", root / "profiles.yaml")
    profile = load_profile(profile_name)
    outputs = profile.outputs
    log = monitor.RunLog(log, outputs / "run.log")
    previous_book = _previous_book_seconds(outputs / "run_summary.json")
    given = Path(manifest).resolve() if manifest is not None else None
    manifest_path = prepare_manifest(profile, given, log=log)
    steps = plan(profile, given, seed, optional=optional)
    executed_dir = outputs / "executed"
    summary = RunSummary(profile.name, str(manifest_path), prepare_seconds=time.perf_counter() - t_all,
                         jobs=default_jobs() if jobs is None else max(1, int(jobs)))
    t_nb = time.perf_counter()
    try:
        summary.results = run_steps(
            steps, notebooks_dir=NOTEBOOKS, executed_dir=executed_dir,
            state_path=outputs / "run_state.json", manifest_hash=manifest_digest(manifest_path),
            code_hash=notebook_code_digest, settings=profile.settings, force=force, only=only, jobs=summary.jobs,
            log=log)
    except RunError as exc:
        summary.results = exc.results
        summary.notebooks_seconds = time.perf_counter() - t_nb
        _finish(summary, outputs, t_all, log)
        raise
    summary.notebooks_seconds = time.perf_counter() - t_nb
    bundle_after_run(profile, manifest_path, log=log)  # the study bundle, once every step has finished
    if build:
        if not assets_present(CODE_ROOT):
            vendor_assets(CODE_ROOT, log=log)
        stage_book_sources(root)
        sync_executed(steps, summary.results, executed_dir, root / "book" / "executed",
                      state=load_state(outputs / "run_state.json"))
        write_benchmarks_page(root)
        if previous_book:
            log(f"the book build took {monitor.duration(previous_book)} last time")
        t0 = time.perf_counter()
        html = build_book(root, log=log)
        summary.book_seconds = time.perf_counter() - t0
        summary.html = str(html)
    _finish(summary, outputs, t_all, log)
    if summary.html:
        log(f"\nThe book is at {summary.html}")
    return summary


def _previous_book_seconds(path: Path) -> float | None:
    try:
        return json.loads(path.read_text()).get("book_seconds")
    except (OSError, json.JSONDecodeError):
        return None


def _finish(summary: RunSummary, outputs: Path, t0: float, log: Callable[[str], None]) -> None:
    summary.total_seconds = time.perf_counter() - t0
    outputs.mkdir(parents=True, exist_ok=True)
    path = outputs / "run_summary.json"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(summary.to_json(), indent=2))
    tmp.replace(path)
    log("\n" + summary.table() + f"\n(summary saved to {path}; this log in {outputs / 'run.log'})")
