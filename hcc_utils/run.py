"""Orchestration: run the notebooks with papermill and build the Jupyter Book (last stage).

``python -m hcc_utils.run book --profile demo [--manifest M] [--force] [--only STEP]`` executes the notebooks in order
(once per CT phase where a notebook takes a phase) into executed copies under ``outputs/<profile>/executed/``, copies
them to ``book/executed/`` and builds the HTML book into ``book/_build/html``.

* A step is skipped when its inputs have not changed: a SHA-256 over the manifest, the tables and images it points to, the
  step's parameters, the resolved profile settings, the content of the ``hcc_utils`` sources, the notebook's cell
  sources and the hashes of the upstream steps. Hashes live in ``outputs/<profile>/run_state.json``; ``--force``
  redoes every step.
* A failed notebook stops the run; its executed copy (with the error) stays and is named; earlier outputs stay.
* A notebook is executed into ``executed/.running/`` and moved into place when it has finished; its state is
  ``running`` (and its downstream steps' ``stale``) while it runs, so an interrupted run (also with ``--force`` or
  ``--only``) leaves nothing that a later run skips or publishes.
* Optional real-data chapters (GSE14520 survival, LiTS segmentation) run only when their data are present; otherwise a
  page saying why takes their place in the book.
* ``python -m hcc_utils.run assets`` vendors require.js, the Jupyter widgets HTML manager and MathJax from npm into
  ``book/_static/vendor/`` so that the HTML book loads nothing from the internet.

Setting ``$HCC_ROOT`` (see :func:`hcc_utils.config.repo_root`) moves data, outputs, the executed notebooks and the
book build under another folder (the book sources are copied there); the tests use this for an isolated run.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from hcc_utils.config import PROFILES, Profile, load_profile, repo_root
from hcc_utils.files import file_sha256

#: Folder holding the code (this package, notebooks, book sources); may differ from ``repo_root()``.
CODE_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = CODE_ROOT / "notebooks"
KERNEL = "hcc-dsfr"
PHASES = ("AP", "PP")

#: The GSE14520 clinical table (shared, read-only data; see ../shared/data/README.md).
GSE14520_FILE = CODE_ROOT.parent / "shared" / "data" / "gse14520" / "clinical.tsv"

#: npm packages vendored for the offline book: (package spec, [(source inside the package, target under vendor/)])
NPM_ASSETS = [
    ("requirejs@2.3.8", [("require.js", "require.js")]),
    ("@jupyter-widgets/html-manager@1.0.15", [("dist", "html-manager")]),
    ("mathjax@3.2.2", [("es5", "mathjax")]),
]
#: Files that must exist under ``book/_static/vendor`` (what ``_config.yml`` points at).
VENDOR_FILES = ("require.js", "html-manager/embed-amd.js", "mathjax/tex-mml-chtml.js")


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
    name: str
    status: str  # ran | skipped | failed | unavailable | missing
    seconds: float = 0.0
    executed: str | None = None
    reason: str = ""
    hash: str = ""


@dataclass
class RunSummary:
    profile: str
    manifest: str | None
    results: list[StepResult] = field(default_factory=list)
    total_seconds: float = 0.0
    book_seconds: float | None = None
    html: str | None = None

    def to_json(self) -> dict:
        return {
            "profile": self.profile,
            "manifest": self.manifest,
            "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "total_seconds": round(self.total_seconds, 2),
            "book_seconds": None if self.book_seconds is None else round(self.book_seconds, 2),
            "html": self.html,
            "steps": [
                {"step": r.name, "status": r.status, "seconds": round(r.seconds, 2), "executed": r.executed,
                 "reason": r.reason}
                for r in self.results
            ],
        }

    def table(self) -> str:
        lines = [f"{'step':34s} {'status':12s} {'seconds':>9s}"]
        for r in self.results:
            lines.append(f"{r.name:34s} {r.status:12s} {r.seconds:9.1f}" + (f"  ({r.reason})" if r.reason else ""))
        lines.append(f"{'total (notebooks)':34s} {'':12s} {sum(r.seconds for r in self.results):9.1f}")
        if self.book_seconds is not None:
            lines.append(f"{'jupyter-book build':34s} {'':12s} {self.book_seconds:9.1f}")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------------------------------
# the plan
# --------------------------------------------------------------------------------------------------------------------
def _gse14520_available() -> tuple[bool, str]:
    if not GSE14520_FILE.exists():
        return False, f"the GSE14520 clinical table {GSE14520_FILE} is not present on the machine that built this book"
    return True, ""


def _lits_available() -> tuple[bool, str]:
    try:
        from hcc_utils import lits
    except ImportError as exc:  # the helper is not part of this checkout
        return False, f"hcc_utils.lits could not be imported ({exc})"
    try:
        ok, reason = lits.available()
    except Exception as exc:  # noqa: BLE001 - report any failure of the probe as the reason
        return False, f"checking for the LiTS data failed: {type(exc).__name__}: {exc}"
    return bool(ok), str(reason or "")


def gse14520_parameters() -> dict[str, Any]:
    """Papermill parameters of the GSE14520 run of the survival notebook.

    Uses ``hcc_utils.survival.gse14520_parameters()`` when the survival helper provides it, else points the notebook
    at the shared clinical table with ``dataset="gse14520"``.
    """
    try:
        from hcc_utils import survival
    except ImportError:
        survival = None
    fn = getattr(survival, "gse14520_parameters", None) if survival else None
    if callable(fn):
        params = dict(fn())
        if "table_path" in params:  # the table checked by _gse14520_available (beside the code, even under HCC_ROOT)
            params["table_path"] = str(GSE14520_FILE)
        return params
    return {"dataset": "gse14520", "table_path": str(GSE14520_FILE), "chapter": "gse14520"}


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
        Step("05_survival_nomogram", "05_survival_nomogram", dict(base), deps=("04_model_comparison",),
             title="Survival analysis and nomogram"),
        Step("06_gradcam", "06_gradcam", dict(base),
             deps=("04_model_comparison",) + tuple(f"02_unet_training_{ph}" for ph in PHASES),
             title="Grad-CAM of the DSFR features"),
        Step("09_tripod_ai", "09_tripod_ai", dict(base), deps=("01_cohort_table", "04_model_comparison",
                                                               "05_survival_nomogram"), title="TRIPOD+AI checklist"),
    ]
    if optional:
        ok, _ = _gse14520_available()
        steps.append(Step("05_survival_nomogram_gse14520", "05_survival_nomogram",
                          {"profile": profile.name, "seed": seed, **(gse14520_parameters() if ok else {})},
                          title="Survival analysis on GSE14520 (real data)", available=_gse14520_available,
                          inputs=(GSE14520_FILE,) if ok else ()))
        steps.append(Step("07_lits_segmentation", "07_lits_segmentation", {"profile": profile.name, "seed": seed},
                          title="U-Net on a real LiTS CT (real data)", available=_lits_available))
    return steps


# --------------------------------------------------------------------------------------------------------------------
# hashing
# --------------------------------------------------------------------------------------------------------------------
def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_digest(path: Path) -> str:
    """SHA-256 of a file's content (``missing`` when it does not exist)."""
    path = Path(path)
    return file_sha256(path) if path.is_file() else "missing"


def manifest_digest(manifest: Path | None) -> str:
    """Hash of everything a manifest describes: the manifest file, the content of the clinical/visual/outcome tables
    it names and the content of every image and mask file (every file of a DICOM folder).

    The manifest is read with :func:`hcc_utils.manifest.read_table`, the reader validation uses, so every variant the
    check accepts (``;`` or tab separators, BOM, CRLF, case and spaces in headers, an Excel manifest) is hashed the
    same way; a manifest that cannot be read hashes as its bytes alone (validation then reports why).
    """
    if manifest is None:
        return "none"
    manifest = Path(manifest)
    parts = [file_digest(manifest)]
    if manifest.is_file():
        from hcc_utils.tables import TableError, read_table, split_spec

        try:
            df = read_table(manifest)
        except (TableError, OSError):
            return _sha("\n".join(parts).encode())
        base = manifest.resolve().parent
        tables: set[str] = set()
        images: set[str] = set()
        for col in df.columns:
            values = {v for v in df[col] if v}
            if col in ("clinical_file", "visual_file", "outcome_file"):
                tables |= values
            elif col.startswith(("ct_", "mask_")):
                images |= values
        for t in sorted(tables):
            whole = base / t
            file = whole if whole.exists() else split_spec(str(whole))[0]
            parts.append(f"{t}:{file_digest(file)}")
        for im in sorted(images):
            p = base / im
            files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
            parts.extend(f"{f}:{file_digest(f)}" for f in files)
    return _sha("\n".join(parts).encode())


def code_digest(package: Path = CODE_ROOT / "hcc_utils", modules: set[str] | None = None) -> str:
    """Hash of the content of the ``hcc_utils`` files (``run.py`` itself excluded: it computes nothing).

    Parameters
    ----------
    package : Path
        The package folder.
    modules : set of str, optional
        Only these modules' sources (dotted names, e.g. ``hcc_utils.stats.roc``) plus every non-Python file (assets);
        None: every file of the package.
    """
    h = hashlib.sha256()
    package = Path(package)
    for p in sorted(package.rglob("*")):
        if (not p.is_file() or p == package / "run.py" or "__pycache__" in p.parts
                or p.suffix in (".pyc", ".pyo")):
            continue
        if modules is not None and p.suffix == ".py" and _module_name(p, package) not in modules:
            continue
        h.update(str(p.relative_to(package)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def _module_name(path: Path, package: Path) -> str:
    rel = path.relative_to(package.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _module_file(name: str, package: Path) -> Path | None:
    base = package.parent.joinpath(*name.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _imported_names(source: str, current: str, is_package: bool) -> set[str]:
    """Absolute dotted names a source imports (relative imports resolved against ``current``)."""
    import ast

    tree = ast.parse(source)
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = current.split(".") if is_package else current.split(".")[:-1]
                parts = parts[: len(parts) - (node.level - 1)] if node.level > 1 else parts
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return out


def _dynamic_import(source: str) -> bool:
    """Whether a source imports modules by computed name (then its dependencies cannot be read from it)."""
    import re

    return bool(re.search(r"import_module\s*\(|__import__\s*\(\s*(?!['\"](?!hcc_utils))", source))


def code_modules(notebook: Path, package: Path = CODE_ROOT / "hcc_utils") -> set[str] | None:
    """The ``hcc_utils`` modules a notebook uses: its imports and, transitively, theirs (with parent packages).

    Returns None (meaning: the whole package) when a cell cannot be parsed or the notebook calls ``importlib``.
    """
    import nbformat

    pkg = package.name
    nb = nbformat.read(str(notebook), as_version=4)
    todo: set[str] = set()
    for c in nb.cells:
        if c.cell_type != "code":
            continue
        src = "\n".join(line for line in c.source.splitlines() if not line.lstrip().startswith(("%", "!")))
        if _dynamic_import(src):
            return None
        try:
            todo |= _imported_names(src, "__main__", False)
        except SyntaxError:
            return None
    seen: set[str] = set()
    todo = {n for n in todo if n == pkg or n.startswith(pkg + ".")}
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for k in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ too
            mod = ".".join(parts[:k])
            f = _module_file(mod, package)
            if f is None or mod in seen:
                continue
            seen.add(mod)
            try:
                names = _imported_names(f.read_text(), mod, f.name == "__init__.py")
            except SyntaxError:
                return None
            if _dynamic_import(f.read_text()):
                return None
            todo |= {n for n in names if (n == pkg or n.startswith(pkg + ".")) and n not in seen}
    return seen


def notebook_code_digest(notebook: Path) -> str:
    """Hash of the ``hcc_utils`` code a notebook uses (its modules and, transitively, theirs; all when unsure)."""
    return code_digest(modules=code_modules(notebook))


def notebook_digest(path: Path) -> str:
    """Hash of a notebook's cell types and sources (outputs and metadata do not count)."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    cells = [[c.cell_type, c.source] for c in nb.cells]
    return _sha(json.dumps(cells, sort_keys=True).encode())


#: Profile settings that change how fast a step runs but never its results (tested): left out of the step hashes, so
#: changing them does not redo finished steps.
RESULT_NEUTRAL_SETTINGS = (("models", "n_jobs"),)


def _hashed_settings(settings: dict) -> dict:
    out = json.loads(json.dumps(settings, default=str))
    for section, key in RESULT_NEUTRAL_SETTINGS:
        if isinstance(out.get(section), dict):
            out[section].pop(key, None)
    return out


def step_hashes(steps: list[Step], *, notebooks_dir: Path, manifest_hash: str,
                code_hash: str | Callable[[Path], str], settings: dict) -> dict[str, str]:
    """The input hash of every step, in plan order (a step's hash includes its upstream steps' hashes).

    ``code_hash`` is a fixed string or a function of the notebook's path (see :func:`notebook_code_digest`).
    """
    out: dict[str, str] = {}
    settings_json = json.dumps(_hashed_settings(settings), sort_keys=True, default=str)
    for s in steps:
        nb = Path(notebooks_dir) / f"{s.notebook}.ipynb"
        payload = {
            "step": s.name,
            "manifest": manifest_hash,
            "params": json.dumps(s.params, sort_keys=True, default=str),
            "settings": settings_json,
            "code": (code_hash(nb) if nb.exists() else "missing") if callable(code_hash) else code_hash,
            "notebook": notebook_digest(nb) if nb.exists() else "missing",
            "inputs": [file_digest(p) for p in s.inputs],
            "upstream": [out.get(d, "none") for d in s.deps],
        }
        out[s.name] = _sha(json.dumps(payload, sort_keys=True).encode())
    return out


# --------------------------------------------------------------------------------------------------------------------
# executing
# --------------------------------------------------------------------------------------------------------------------
def _load_state(path: Path) -> dict:
    if path.exists():
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            return {"steps": {}}
    return {"steps": {}}


def _save_state(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
    tmp.replace(path)


def _selected(step: Step, only: list[str] | None) -> bool:
    if not only:
        return True
    return any(step.name == o or step.name.startswith(o + "_") or step.notebook == o for o in only)


def _fallback_page(step: Step, reason: str) -> str:
    return (f"# {step.title or step.name}\n\n"
            f"This chapter was left out of this build: {reason}.\n\n"
            f"It is produced by `notebooks/{step.notebook}.ipynb`; once its data are available, "
            f"`make book` runs it and this page is replaced by the executed notebook.\n")


def execute_notebook(src: Path, dst: Path, params: dict, *, kernel: str = KERNEL, cwd: Path | None = None,
                     progress: bool = True) -> None:
    """Execute one notebook with papermill into ``dst`` (the executed copy is written even when a cell fails)."""
    import os

    import papermill as pm

    dst.parent.mkdir(parents=True, exist_ok=True)
    # The kernel inherits the environment: an MPLBACKEND=Agg set for headless scripts would leave every figure out
    # of the executed notebook, so the kernel gets the inline backend (it renders into the notebook, no display).
    old = os.environ.get("MPLBACKEND")
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    try:
        pm.execute_notebook(str(src), str(dst), parameters=params, kernel_name=kernel,
                            cwd=str(cwd or src.parent), progress_bar=progress, log_output=False,
                            report_mode=False)
    finally:
        if old is None:
            os.environ.pop("MPLBACKEND", None)
        else:
            os.environ["MPLBACKEND"] = old


def run_steps(steps: list[Step], *, notebooks_dir: Path, executed_dir: Path, state_path: Path,
              manifest_hash: str, code_hash: str | Callable[[Path], str], settings: dict, force: bool = False,
              only: list[str] | None = None, kernel: str = KERNEL, progress: bool = True,
              log: Callable[[str], None] = print) -> list[StepResult]:
    """Run the steps in order, skipping those whose input hash is unchanged.

    Raises
    ------
    RunError
        When a notebook fails (after recording it; the executed copy with the error is kept).
    """
    notebooks_dir, executed_dir = Path(notebooks_dir), Path(executed_dir)
    hashes = step_hashes(steps, notebooks_dir=notebooks_dir, manifest_hash=manifest_hash, code_hash=code_hash,
                         settings=settings)
    state = _load_state(state_path)
    state.setdefault("steps", {})
    results: list[StepResult] = []
    todo = [s for s in steps if _selected(s, only)]
    if only and not todo:
        raise RunError(f"--only {' '.join(only)}: no such step; steps are {', '.join(s.name for s in steps)}")
    for i, s in enumerate(todo, 1):
        tag = f"[{i}/{len(todo)}] {s.name}"
        src = notebooks_dir / f"{s.notebook}.ipynb"
        dst = executed_dir / f"{s.name}.ipynb"
        h = hashes[s.name]
        if s.available is not None:
            ok, reason = s.available()
            if not ok:
                log(f"{tag}: left out: {reason}")
                state["steps"][s.name] = {"status": "unavailable", "reason": reason}
                results.append(StepResult(s.name, "unavailable", reason=reason))
                _save_state(state_path, state)
                continue
        if not src.exists():
            reason = f"notebook {src.name} is not in this checkout"
            log(f"{tag}: missing: {reason}")
            state["steps"][s.name] = {"status": "missing", "reason": reason}
            results.append(StepResult(s.name, "missing", reason=reason))
            _save_state(state_path, state)
            continue
        prev = state["steps"].get(s.name, {})
        if not force and prev.get("status") == "ok" and prev.get("hash") == h and dst.exists():
            log(f"{tag}: unchanged, skipped (ran {prev.get('seconds', 0):.1f} s on {prev.get('finished', '?')})")
            results.append(StepResult(s.name, "skipped", executed=str(dst), hash=h))
            continue
        shown = json.dumps(s.params, default=str)
        log(f"{tag}: running {src.name} with {shown if len(shown) <= 240 else shown[:236] + ' ...}'}")
        # Until it ends, neither this step nor any step downstream of it is trusted (also after an interrupt).
        state["steps"][s.name] = {"status": "running", "hash": None, "started": _now()}
        for d in _downstream(steps, s.name):
            if state["steps"].get(d, {}).get("status") == "ok":
                state["steps"][d] = {**state["steps"][d], "status": "stale", "hash": None}
        _save_state(state_path, state)
        tmp = executed_dir / ".running" / dst.name  # same name, so the notebook's page title is unchanged
        t0 = time.perf_counter()
        try:
            execute_notebook(src, tmp, s.params, kernel=kernel, cwd=notebooks_dir, progress=progress)
        except Exception as exc:  # noqa: BLE001 - any failure stops the run and is recorded
            dt = time.perf_counter() - t0
            if tmp.exists():
                tmp.replace(dst)
            state["steps"][s.name] = {"status": "failed", "hash": None, "seconds": round(dt, 2),
                                      "finished": _now(), "executed": str(dst)}
            _save_state(state_path, state)
            results.append(StepResult(s.name, "failed", dt, str(dst), reason=_short_error(exc), hash=h))
            log(f"{tag}: FAILED after {dt:.1f} s")
            raise RunError(
                f"step {s.name} failed ({_short_error(exc)}).\n"
                f"The executed notebook with the error is {dst}\n"
                f"Outputs of the earlier steps are kept; fix the problem and rerun (unchanged steps are skipped).",
                results,
            ) from exc
        dt = time.perf_counter() - t0
        tmp.replace(dst)
        state["steps"][s.name] = {"status": "ok", "hash": h, "seconds": round(dt, 2), "finished": _now(),
                                  "executed": str(dst)}
        _save_state(state_path, state)
        results.append(StepResult(s.name, "ran", dt, str(dst), hash=h))
        log(f"{tag}: done in {dt:.1f} s")
    return results


def _downstream(steps: list[Step], name: str) -> list[str]:
    """Names of the steps that depend on ``name``, directly or through other steps."""
    out: list[str] = []
    frontier = {name}
    for st in steps:  # plan order: a step comes after its upstream steps
        if frontier & set(st.deps):
            out.append(st.name)
            frontier.add(st.name)
    return out


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _short_error(exc: BaseException) -> str:
    ename = getattr(exc, "ename", None)
    evalue = getattr(exc, "evalue", None)
    if ename:
        return f"{ename}: {evalue}"[:500]
    return f"{type(exc).__name__}: {exc}"[:500]


# --------------------------------------------------------------------------------------------------------------------
# the book
# --------------------------------------------------------------------------------------------------------------------
BOOK_SOURCES = ("_config.yml", "_toc.yml", "book")


def stage_book_sources(root: Path) -> None:
    """Copy the book's sources (config, toc, pages, vendored JS) to ``root`` when it is not the code folder."""
    if Path(root).resolve() == CODE_ROOT:
        return
    for name in BOOK_SOURCES:
        src, dst = CODE_ROOT / name, Path(root) / name
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("_build", "executed", ".ipynb_checkpoints"))
        else:
            shutil.copy2(src, dst)


def sync_executed(steps: list[Step], results: list[StepResult], executed_dir: Path, book_executed: Path,
                  state: dict | None = None) -> None:
    """Refresh ``book/executed/`` with this profile's executed notebooks and the pages of left-out chapters.

    The folder is assembled under a temporary name and then swapped in. With ``state`` (the run state), a step that
    did not run now and whose recorded state is not ``ok`` (interrupted, failed, stale) gets a page saying so
    instead of an old executed copy.
    """
    book_executed = Path(book_executed)
    work = book_executed.with_name(book_executed.name + ".tmp")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    by_name = {r.name: r for r in results}
    recorded = (state or {}).get("steps", {})
    for s in steps:
        r = by_name.get(s.name)
        nb = Path(executed_dir) / f"{s.name}.ipynb"
        untrusted = (state is not None and (r is None or r.status not in ("ran", "skipped"))
                     and recorded.get(s.name, {}).get("status") not in (None, "ok", "unavailable", "missing"))
        if r is not None and r.status in ("unavailable", "missing"):
            (work / f"{s.name}.md").write_text(_fallback_page(s, r.reason))
        elif untrusted:
            status = recorded[s.name].get("status")
            (work / f"{s.name}.md").write_text(_fallback_page(
                s, f"its last run did not complete or its inputs changed since (state: {status}); rerun it"))
        elif nb.exists():
            _copy_for_book(nb, work / nb.name, _title_suffix(s))
        else:
            (work / f"{s.name}.md").write_text(_fallback_page(s, "this step has not been run yet"))
    if book_executed.exists():
        shutil.rmtree(book_executed)
    work.replace(book_executed)


def _title_suffix(step: Step) -> str:
    """What tells apart two book pages made from one notebook: the phase, or a chapter other than the default."""
    if step.params.get("phase"):
        return f" ({step.params['phase']})"
    chapter = step.params.get("chapter")
    if chapter and chapter != "synthetic":
        return f" ({chapter.upper() if chapter.startswith('gse') else chapter})"
    return ""


def _copy_for_book(src: Path, dst: Path, title_suffix: str = "") -> None:
    """Copy an executed notebook for the book, folding the parameter cells away (``hide-input``) and appending
    ``title_suffix`` to the page's first heading (so the table of contents tells the AP and PP pages apart)."""
    import nbformat

    nb = nbformat.read(str(src), as_version=4)
    titled = not title_suffix
    for c in nb.cells:
        tags = c.metadata.get("tags", [])
        if ("parameters" in tags or "injected-parameters" in tags) and "hide-input" not in tags:
            c.metadata["tags"] = [*tags, "hide-input"]
        if not titled and c.cell_type == "markdown" and c.source.lstrip().startswith("# "):
            first, _, rest = c.source.lstrip().partition("\n")
            c.source = first.rstrip() + title_suffix + ("\n" + rest if rest else "")
            titled = True
    nbformat.write(nb, str(dst))


def build_book(root: Path, log: Callable[[str], None] = print) -> Path:
    """Build the HTML book with Jupyter Book 1.x into ``<root>/book/_build/html``."""
    exe = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(exe) if exe.exists() else (shutil.which("jupyter-book") or "jupyter-book"),
           "build", str(root), "--path-output", str(Path(root) / "book")]
    log("building the book: " + " ".join(cmd))
    proc = subprocess.run(cmd, cwd=str(root), capture_output=True, text=True, encoding="utf-8", errors="replace")
    if proc.returncode != 0:
        raise RunError(f"jupyter-book build failed (exit {proc.returncode}):\n{proc.stdout[-4000:]}\n"
                       f"{proc.stderr[-4000:]}")
    html = Path(root) / "book" / "_build" / "html" / "index.html"
    if not html.exists():
        raise RunError(f"jupyter-book reported success but {html} does not exist:\n{proc.stdout[-2000:]}")
    remote = remote_resources(html.parent)
    for fname, what, url in remote[:20]:
        log(f"warning: {fname} loads {url} from the network ({what})")
    return html


_REMOTE = ("http://", "https://", "//")
_LOAD_TAGS = {"script": "src", "img": "src", "iframe": "src", "source": "src", "audio": "src", "video": "src",
              "embed": "src", "object": "data"}
_LINK_NAV = {"next", "prev", "index", "search", "canonical", "author", "license", "help", "alternate"}


def remote_resources(html_dir: Path) -> list[tuple[str, str, str]]:
    """Resources that the built book would fetch from the network.

    Scans every HTML page for ``<script src>``, ``<link href>`` (stylesheets, icons, preloads, fonts), ``<img src>``
    and similar attributes, inline ``<style>`` ``@import``/``url()``, and the CSS files under ``_static`` for
    ``url(http...)``/``@import``. Plain links in prose (``<a href>``) do not load anything and are not reported.

    Returns
    -------
    list of (file, what, url)
    """
    import re
    from html.parser import HTMLParser

    css_url = re.compile(r"""(?:url\(\s*['"]?|@import\s+['"])\s*((?:https?:)?//[^'")\s]+)""", re.I)
    found: list[tuple[str, str, str]] = []
    html_dir = Path(html_dir)

    class _P(HTMLParser):
        def __init__(self, fname: str):
            super().__init__(convert_charrefs=True)
            self.fname, self.in_style = fname, False

        def handle_starttag(self, tag, attrs):
            a = {k.lower(): (v or "") for k, v in attrs}
            if tag == "style":
                self.in_style = True
            if tag in _LOAD_TAGS and a.get(_LOAD_TAGS[tag], "").lower().startswith(_REMOTE):
                found.append((self.fname, f"<{tag} {_LOAD_TAGS[tag]}>", a[_LOAD_TAGS[tag]]))
            if tag == "link" and a.get("href", "").lower().startswith(_REMOTE):
                rel = set(a.get("rel", "").lower().split())
                if not rel or not rel <= _LINK_NAV:
                    found.append((self.fname, f"<link rel={a.get('rel', '')}>", a["href"]))

        def handle_endtag(self, tag):
            if tag == "style":
                self.in_style = False

        def handle_data(self, data):
            if self.in_style:
                for m in css_url.finditer(data):
                    found.append((self.fname, "<style> url/@import", m.group(1)))

    for page in sorted(html_dir.rglob("*.html")):
        p = _P(str(page.relative_to(html_dir)))
        p.feed(page.read_text(errors="replace"))
    for css in sorted(html_dir.rglob("*.css")):
        for m in css_url.finditer(css.read_text(errors="replace")):
            found.append((str(css.relative_to(html_dir)), "css url/@import", m.group(1)))
    return found


# --------------------------------------------------------------------------------------------------------------------
# offline assets
# --------------------------------------------------------------------------------------------------------------------
def vendor_dir(root: Path | None = None) -> Path:
    return Path(root or CODE_ROOT) / "book" / "_static" / "vendor"


def assets_present(root: Path | None = None) -> bool:
    v = vendor_dir(root)
    return all((v / f).is_file() for f in VENDOR_FILES)


def vendor_assets(root: Path | None = None, cache: Path | None = None, log: Callable[[str], None] = print) -> Path:
    """Install require.js, @jupyter-widgets/html-manager and MathJax with npm and copy them to ``book/_static/vendor``.

    Raises
    ------
    RunError
        When npm is not available or an install fails.
    """
    npm = shutil.which("npm")
    if npm is None:
        raise RunError("npm is not available: the offline book needs require.js, @jupyter-widgets/html-manager and "
                       "MathJax from npm. Install Node.js/npm (Debian: `apt-get install npm`) and rerun "
                       "`make assets`.")
    cache = Path(cache or CODE_ROOT / ".cache" / "npm")
    cache.mkdir(parents=True, exist_ok=True)
    specs = [spec for spec, _ in NPM_ASSETS]
    cmd = [npm, "install", "--no-audit", "--no-fund", "--ignore-scripts", "--prefix", str(cache), *specs]
    log("vendoring offline JavaScript: " + " ".join(cmd[1:]))
    proc = subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", errors="replace")
    if proc.returncode != 0:
        raise RunError(f"npm install failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    out = vendor_dir(root)
    out.mkdir(parents=True, exist_ok=True)
    for spec, files in NPM_ASSETS:
        pkg = spec.rsplit("@", 1)[0]
        for src_rel, dst_rel in files:
            src = cache / "node_modules" / pkg / src_rel
            dst = out / dst_rel
            if not src.exists():
                raise RunError(f"{src} is missing after `npm install {spec}`")
            if src.is_dir():
                if dst.exists():
                    shutil.rmtree(dst)
                shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.map"))
            else:
                shutil.copy2(src, dst)
    log(f"offline JavaScript in {out}")
    return out


# --------------------------------------------------------------------------------------------------------------------
# the whole run
# --------------------------------------------------------------------------------------------------------------------
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
        With the validation report when the manifest has errors.
    """
    if manifest is None:
        from hcc_utils import synthetic

        spec, root, manifest = synthetic.cohort_spec(profile)
        if not synthetic.is_complete(spec, root, manifest):
            why = "is incomplete" if root.exists() else "is missing"
            log(f"generating the synthetic {profile.name} cohort ({spec.n} patients): {root} {why}")
            t0 = time.perf_counter()
            manifest = Path(synthetic.generate_cohort(profile))
            log(f"synthetic cohort written in {time.perf_counter() - t0:.1f} s: {manifest}")
    manifest = Path(manifest).resolve()
    if not manifest.exists():
        raise RunError(f"manifest {manifest} does not exist")
    from hcc_utils import manifest as mf

    validate = getattr(mf, "validate", None)
    if validate is None:
        log("warning: hcc_utils.manifest.validate is not available; the manifest was not validated")
        return manifest
    log(f"validating {manifest}")
    report = validate(manifest)
    errors = _report_errors(report)
    blocking = list(getattr(report, "blocking", errors))
    if not blocking and getattr(report, "problems", None):
        log(_report_text(report))
    if errors:
        raise RunError(f"the manifest {manifest} has {len(errors)} problem(s); nothing was run:\n{_report_text(report)}")
    if blocking:
        raise RunError(
            f"the manifest {manifest} has {len(blocking)} warning(s) of the data checks; nothing was run. Fix the "
            f"data, or accept a warning that is right for this cohort by adding a line `check,patient_id,column,"
            f"reason` to {manifest.parent / 'accepted_warnings.csv'} (see the README, 'Data checks'):\n"
            f"{_report_text(report)}")
    return manifest


def _report_errors(report: Any) -> list:
    """Errors of a validation report (a list of problems, or an object with ``errors``/``ok``)."""
    if report is None:
        return []
    if hasattr(report, "errors"):
        errs = report.errors
        return list(errs() if callable(errs) else errs)
    if isinstance(report, (list, tuple)):
        return [p for p in report if str(getattr(p, "level", getattr(p, "severity", "error"))).lower() == "error"]
    if hasattr(report, "ok"):
        return [] if report.ok else [report]
    return []


def _report_text(report: Any) -> str:
    for attr in ("format", "to_text", "text"):
        fn = getattr(report, attr, None)
        if callable(fn):
            return str(fn())
    if isinstance(report, (list, tuple)):
        return "\n".join(f"  - {p}" for p in report)
    return str(report)


def run_book(profile_name: str = "demo", manifest: str | Path | None = None, *, seed: int | None = None,
             force: bool = False, only: list[str] | None = None, build: bool = True, optional: bool = True,
             log: Callable[[str], None] = print) -> RunSummary:
    """Run every step for a profile and build the book (see the module docstring).

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
    given = Path(manifest).resolve() if manifest is not None else None
    manifest_path = prepare_manifest(profile, given, log=log)
    steps = plan(profile, given, seed, optional=optional)
    outputs = profile.outputs
    executed_dir = outputs / "executed"
    summary = RunSummary(profile.name, str(manifest_path))
    try:
        summary.results = run_steps(
            steps, notebooks_dir=NOTEBOOKS, executed_dir=executed_dir,
            state_path=outputs / "run_state.json", manifest_hash=manifest_digest(manifest_path),
            code_hash=notebook_code_digest, settings=profile.settings, force=force, only=only, log=log)
    except RunError as exc:
        summary.results = exc.results
        _finish(summary, outputs, t_all, log)
        raise
    # --- study bundle (hcc_utils.bundle): written once the steps have finished -------------------------------------
    from hcc_utils.bundle import bundle_after_run; bundle_after_run(profile, log=log)  # noqa: E702
    if build:
        if not assets_present(CODE_ROOT):
            vendor_assets(CODE_ROOT, log=log)
        stage_book_sources(root)
        sync_executed(steps, summary.results, executed_dir, root / "book" / "executed",
                      state=_load_state(outputs / "run_state.json"))
        t0 = time.perf_counter()
        html = build_book(root, log=log)
        summary.book_seconds = time.perf_counter() - t0
        summary.html = str(html)
    _finish(summary, outputs, t_all, log)
    if summary.html:
        log(f"\nThe book is at {summary.html}")
    return summary


def _finish(summary: RunSummary, outputs: Path, t0: float, log: Callable[[str], None]) -> None:
    summary.total_seconds = time.perf_counter() - t0
    outputs.mkdir(parents=True, exist_ok=True)
    path = outputs / "run_summary.json"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(summary.to_json(), indent=2))
    tmp.replace(path)
    log("\n" + summary.table() + f"\n(summary saved to {path})")


def main(argv: list[str] | None = None) -> int:
    """Command line: ``book``, ``assets`` and ``steps``."""
    ap = argparse.ArgumentParser(prog="python -m hcc_utils.run", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("book", help="run the notebooks with papermill and build the HTML book")
    b.add_argument("--profile", default="demo", choices=PROFILES)
    b.add_argument("--manifest", default=None, help="your cohort's manifest (default: the synthetic cohort)")
    b.add_argument("--seed", type=int, default=None)
    b.add_argument("--force", action="store_true", help="redo every step even if its inputs did not change")
    b.add_argument("--only", nargs="+", default=None, metavar="STEP", help="run only these steps")
    b.add_argument("--no-build", action="store_true", help="run the notebooks but do not build the HTML")
    b.add_argument("--no-optional", action="store_true", help="leave out the real-data chapters")
    a = sub.add_parser("assets", help="vendor require.js, the widgets HTML manager and MathJax from npm")
    a.add_argument("--force", action="store_true", help="reinstall even if present")
    s = sub.add_parser("steps", help="list the steps of a profile")
    s.add_argument("--profile", default="demo", choices=PROFILES)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "assets":
            if args.force or not assets_present(CODE_ROOT):
                vendor_assets(CODE_ROOT)
            else:
                print(f"offline JavaScript already in {vendor_dir(CODE_ROOT)} (--force to reinstall)")
        elif args.cmd == "steps":
            for st in plan(load_profile(args.profile)):
                print(f"{st.name:34s} notebooks/{st.notebook}.ipynb {json.dumps(st.params, default=str)}")
        else:
            run_book(args.profile, args.manifest, seed=args.seed, force=args.force, only=args.only,
                     build=not args.no_build, optional=not args.no_optional)
    except RunError as exc:
        print(f"\nERROR: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
