"""Notebook execution: papermill runs each step that is not up to date, in plan order, and records its state.

A notebook is executed into ``executed/.running/`` and moved into place when it has finished; while it runs, its
state is ``running`` and its downstream steps' ``stale``, so an interrupted run leaves nothing a later run skips or
publishes. A failed notebook stops the run (steps already running finish); its executed copy (with the error) is kept.

With ``jobs > 1`` up to that many notebooks run at once, each in its own kernel: a step starts when the steps it
depends on have finished, the first ready step in plan order first. The U-Net trains on one torch thread
(:func:`hcc_utils.segmentation.torch_threads`), so the AP and PP networks train side by side on two cores with the
same results as one after the other.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Callable

import nbformat
import papermill as pm
from jupyter_client.manager import KernelManager

from hcc_utils.progress import ENV as PROGRESS_ENV
from hcc_utils.run import monitor
from hcc_utils.run import state as st
from hcc_utils.run.hashing import step_hashes
from hcc_utils.run.steps import KERNEL, RunError, Step, StepResult, downstream, selected


class IPCKernelManager(KernelManager):
    """A kernel reached over local sockets (no TCP port, so no unencrypted-transport warning).

    ``kernel_env`` (set on a subclass, see :func:`kernel_manager`) is added to the kernel's environment, so kernels
    started at the same time from several threads each get their own values without touching ``os.environ``.
    """

    kernel_env: dict[str, str | None] = {}

    def __init__(self, **kwargs):
        kwargs.setdefault("transport", "ipc")
        if kwargs["transport"] == "ipc":
            # one socket path per kernel: the default ("kernel-ipc" in the working folder) lets two kernels started
            # at the same time pick the same sockets
            kwargs.setdefault("ip", os.path.join(tempfile.gettempdir(), f"hcc-kernel-{uuid.uuid4().hex[:16]}-ipc"))
        super().__init__(**kwargs)

    async def _async_pre_start_kernel(self, **kw):
        env = dict(kw.pop("env", None) or os.environ)
        for k, v in self.kernel_env.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = v
        return await super()._async_pre_start_kernel(env=env, **kw)

    async def _async_interrupt_kernel(self) -> None:
        # jupyter_client sends SIGINT before every shutdown request; a finished notebook's kernel is idle, and the
        # signal only made ipykernel print "ERROR | KeyboardInterrupt caught in kernel" into the run's log
        if self.shutting_down:
            return
        await super()._async_interrupt_kernel()


def kernel_manager(**env: str | None) -> type[IPCKernelManager]:
    """An :class:`IPCKernelManager` class whose kernels get ``env`` (None removes a variable)."""
    return type("IPCKernelManager", (IPCKernelManager,), {"kernel_env": dict(env)})


def default_jobs() -> int:
    """Notebooks run at once: ``$HCC_JOBS``, else the CPUs this process may use, at most 4 (at least 1)."""
    n = os.environ.get("HCC_JOBS")
    if n:
        return max(1, int(n))
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(4, cpus))


def execute_notebook(src: Path, dst: Path, params: dict, *, kernel: str = KERNEL, cwd: Path | None = None,
                     progress_file: Path | None = None, on_cell_start: Callable | None = None) -> None:
    """Execute one notebook with papermill into ``dst`` (the executed copy is written even when a cell fails).

    Parameters
    ----------
    src, dst : Path
        The notebook and its executed copy.
    params : dict
        Papermill parameters.
    kernel : str
        The Jupyter kernel.
    cwd : Path, optional
        The kernel's working folder (default: the notebook's).
    progress_file : Path, optional
        Given to the kernel as ``$HCC_PROGRESS_FILE`` (see :mod:`hcc_utils.progress`).
    on_cell_start : callable, optional
        ``(cell, cell_index)`` hook called as each cell starts.

    Returns
    -------
    None
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    # The kernel inherits the environment: an MPLBACKEND=Agg set for headless scripts would leave every figure out
    # of the executed notebook, so the kernel gets the inline backend (it renders into the notebook, no display).
    hooks = {"on_cell_start": on_cell_start} if on_cell_start else {}
    km = kernel_manager(MPLBACKEND="module://matplotlib_inline.backend_inline",
                        **{PROGRESS_ENV: None if progress_file is None else str(progress_file)})
    pm.execute_notebook(str(src), str(dst), parameters=params, kernel_name=kernel, cwd=str(cwd or src.parent),
                        progress_bar=False, log_output=False, report_mode=False, kernel_manager_class=km, **hooks)


def _current(step: Step, prev: dict, h: str, dst: Path, force: bool) -> bool:
    return not force and prev.get("status") == "ok" and prev.get("hash") == h and dst.exists()


def _expected_runs(todo: list[Step], state: dict, hashes: dict[str, str], executed_dir: Path,
                   force: bool) -> set[str]:
    """Steps of ``todo`` expected to execute (not up to date, not left out in the previous run)."""
    out = set()
    for s in todo:
        prev = state["steps"].get(s.name, {})
        if prev.get("status") in ("unavailable", "missing") and not force:
            continue
        if not _current(s, prev, hashes[s.name], executed_dir / f"{s.name}.ipynb", force):
            out.add(s.name)
    return out


def run_steps(steps: list[Step], *, notebooks_dir: Path, executed_dir: Path, state_path: Path,
              manifest_hash: str, code_hash: str | Callable[[Path], str], settings: dict, force: bool = False,
              only: list[str] | None = None, kernel: str = KERNEL, progress: bool = True, jobs: int = 1,
              log: Callable[[str], None] = print) -> list[StepResult]:
    """Run the steps, skipping those whose input hash is unchanged.

    Parameters
    ----------
    steps : list of Step
        The plan (see :func:`hcc_utils.run.steps.plan`).
    notebooks_dir, executed_dir : Path
        Where the notebooks are and where their executed copies go.
    state_path : Path
        The run state (``run_state.json``).
    manifest_hash, code_hash, settings
        Inputs of :func:`hcc_utils.run.hashing.step_hashes`.
    force : bool
        Redo every selected step even if its inputs did not change.
    only : list of str, optional
        Run only these steps (a notebook name selects all of its phases).
    kernel : str
        The Jupyter kernel.
    progress : bool
        Relay the notebooks' progress lines and say when a step is still running.
    jobs : int
        Notebooks run at once (1: one after the other, in plan order). A step starts once the steps it depends on
        (``Step.deps``) have finished; results do not depend on it.
    log : callable
        Receives the lines for the terminal.

    Returns
    -------
    list of StepResult
        In plan order.

    Raises
    ------
    RunError
        When a notebook fails (after recording it; the executed copy with the error is kept). No further step starts;
        steps already running finish and are recorded.
    """
    notebooks_dir, executed_dir = Path(notebooks_dir), Path(executed_dir)
    jobs = max(1, int(jobs))
    hashes = step_hashes(steps, notebooks_dir=notebooks_dir, manifest_hash=manifest_hash, code_hash=code_hash,
                         settings=settings)
    state = st.load_state(state_path)
    todo = [s for s in steps if selected(s, only)]
    if only and not todo:
        raise RunError(f"--only {' '.join(only)}: no such step; steps are {', '.join(s.name for s in steps)}")
    will_run = _expected_runs(todo, state, hashes, executed_dir, force)
    last = {s.name: st.last_seconds(state, s.name) for s in todo}
    left, known = monitor.run_estimate([s.name for s in todo], will_run, last)
    at_once = f" (the steps' times summed; up to {jobs} run at once)" if jobs > 1 and len(will_run) > 1 else ""
    log(f"{len(will_run)} of {len(todo)} steps to run; notebooks' time: {monitor.estimate_text(left, known)}{at_once}")
    lock = threading.Lock()
    names = {s.name for s in todo}
    number = {s.name: i for i, s in enumerate(todo, 1)}
    pending, running = list(todo), {}
    finished: dict[str, StepResult] = {}
    failure: tuple[Step, StepResult, Exception] | None = None

    def start(s: Step, pool: ThreadPoolExecutor | None) -> Future:
        tag = f"[{number[s.name]}/{len(todo)}] {s.name}"
        left, known = monitor.run_estimate([t.name for t in pending] + [s.name] + [t.name for t in running.values()],
                                           will_run, last)
        kw = dict(force=force, kernel=kernel, progress=progress, log=log, estimate=monitor.estimate_text(left, known),
                  lock=lock, prefix=f"{s.name}: " if jobs > 1 else "")
        args = (s, tag, hashes[s.name], state, state_path, steps, notebooks_dir, executed_dir)
        if pool is None:  # one at a time: in this thread
            fut: Future = Future()
            fut.set_result(_run_one(*args, **kw))
            return fut
        return pool.submit(_run_one, *args, **kw)

    with ThreadPoolExecutor(max_workers=jobs) if jobs > 1 else contextlib.nullcontext() as pool:
        while pending or running:
            while failure is None and len(running) < jobs:
                ready = next((s for s in pending if all(d in finished or d not in names for d in s.deps)), None)
                if ready is None:
                    break
                pending.remove(ready)
                running[start(ready, pool)] = ready
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in sorted(done, key=lambda f: number[running[f].name]):
                s = running.pop(fut)
                r, error = fut.result()
                finished[s.name] = r
                if error is not None and failure is None:
                    failure = (s, r, error)
    results = [finished[s.name] for s in todo if s.name in finished]
    if failure is not None:
        s, r, error = failure
        raise RunError(
            f"step {s.name} failed ({r.reason}).\n"
            f"The executed notebook with the error is {r.executed}\n"
            f"Outputs of the earlier steps are kept; fix the problem and rerun (unchanged steps are skipped).",
            results,
        ) from error
    return results


def _run_one(s: Step, tag: str, h: str, state: dict, state_path: Path, steps: list[Step], notebooks_dir: Path,
             executed_dir: Path, *, force: bool, kernel: str, progress: bool, log: Callable[[str], None],
             estimate: str, lock: threading.Lock, prefix: str = "") -> tuple[StepResult, Exception | None]:
    """Run, skip or leave out one step and record its state; a failure is returned with its exception."""
    src, dst = notebooks_dir / f"{s.notebook}.ipynb", executed_dir / f"{s.name}.ipynb"
    prev = state["steps"].get(s.name, {})
    left_out = _left_out(s, src)
    if left_out:
        status, reason = left_out
        log(f"{tag}: {'left out' if status == 'unavailable' else 'missing'}: {reason}")
        with lock:
            st.mark_left_out(state, s.name, status, reason)
            st.save_state(state_path, state)
        return StepResult(s.name, status, reason=reason), None
    last = st.last_seconds(state, s.name)
    if _current(s, prev, h, dst, force):
        log(f"{tag}: unchanged, skipped (ran {prev.get('seconds', 0):.1f} s on {prev.get('finished', '?')})")
        return StepResult(s.name, "skipped", executed=str(dst), hash=h, last_seconds=last), None
    shown = json.dumps(s.params, default=str)
    log(f"{tag}: running {src.name} with {shown if len(shown) <= 240 else shown[:236] + ' ...}'}")
    known = ([f"previous run of this step: {monitor.duration(last)}"] if last else []) + \
        ([f"notebooks left, this one included: {estimate}"] if estimate != monitor.UNKNOWN else [])
    if known:
        log("      " + prefix + "; ".join(known))
    with lock:
        st.mark_running(state, s.name, downstream(steps, s.name))
        st.save_state(state_path, state)
    tmp = executed_dir / ".running" / dst.name  # same name, so the notebook's page title is unchanged
    t0 = time.perf_counter()
    try:
        _execute_watched(src, tmp, s, notebooks_dir, kernel=kernel, progress=progress, log=log, expected=last,
                         prefix=prefix)
    except Exception as exc:  # noqa: BLE001 - any failure stops the run and is recorded
        dt = time.perf_counter() - t0
        if tmp.exists():
            tmp.replace(dst)
        with lock:
            st.mark_failed(state, s.name, dt, str(dst))
            st.save_state(state_path, state)
        log(f"{tag}: FAILED after {dt:.1f} s")
        return StepResult(s.name, "failed", dt, str(dst), reason=_short_error(exc), hash=h, last_seconds=last), exc
    dt = time.perf_counter() - t0
    tmp.replace(dst)
    with lock:
        st.mark_done(state, s.name, h, dt, str(dst))
        st.save_state(state_path, state)
    log(f"{tag}: done in {monitor.duration(dt)}")
    return StepResult(s.name, "ran", dt, str(dst), hash=h, last_seconds=round(dt, 2)), None


def _left_out(s: Step, src: Path) -> tuple[str, str] | None:
    """``(status, reason)`` when a step cannot run here: its data are absent or its notebook is."""
    if s.available is not None:
        ok, reason = s.available()
        if not ok:
            return "unavailable", reason
    if not src.exists():
        return "missing", f"notebook {src.name} is not in this checkout"
    return None


def _execute_watched(src: Path, tmp: Path, s: Step, notebooks_dir: Path, *, kernel: str, progress: bool,
                     log: Callable[[str], None], expected: float | None, prefix: str = "") -> None:
    if not progress:
        execute_notebook(src, tmp, s.params, kernel=kernel, cwd=notebooks_dir)
        return
    n_cells = len(nbformat.read(str(src), as_version=4).cells) + bool(s.params)  # + the injected parameters
    with monitor.StepMonitor(tmp.with_name(tmp.stem + ".progress.jsonl"), log, n_cells, expected,
                             indent="      " + prefix) as mon:
        execute_notebook(src, tmp, s.params, kernel=kernel, cwd=notebooks_dir,
                         progress_file=mon.file, on_cell_start=mon.cell_started)


def _short_error(exc: BaseException) -> str:
    ename = getattr(exc, "ename", None)
    evalue = getattr(exc, "evalue", None)
    if ename:
        return f"{ename}: {evalue}"[:500]
    return f"{type(exc).__name__}: {exc}"[:500]
