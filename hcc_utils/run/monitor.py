"""What the terminal shows while the book runs: one line per event, never a carriage return.

* :class:`RunLog` prints each line and appends it to ``outputs/<profile>/run.log``.
* :class:`StepMonitor` follows one running notebook: the progress lines its code reports
  (:func:`hcc_utils.progress.report`, e.g. every epoch of the U-Net with loss and Dice), and, when nothing was
  reported for a while, how long the step has run, at which cell, against its time in the previous run.
* :func:`run_estimate` is the time left for the run's notebooks, from the step times of the previous run.
"""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Callable

#: The estimate when no step that will run has a stored time.
UNKNOWN = "unknown (no previous run)"
#: How the numbers of a progress line are labelled in the terminal.
LABELS = {"train_loss": "loss", "valid_loss": "valid loss", "dice": "Dice"}


def duration(seconds: float) -> str:
    """``"4 min 05 s"``, ``"35 s"``, ``"2.4 s"``, ``"1 h 02 min"``."""
    if seconds < 9.95:
        return f"{max(seconds, 0):.1f} s"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class RunLog:
    """A log function that also writes every line to a file (overwritten when the run starts).

    Parameters
    ----------
    echo : callable
        Receives each line (``print`` in a terminal, ``list.append`` in tests).
    path : Path, optional
        The log file; None writes no file.
    """

    def __init__(self, echo: Callable[[str], None] = print, path: Path | None = None):
        self.echo, self.path = echo, path
        self._lock = threading.Lock()
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text("", encoding="utf-8")

    def __call__(self, line: str) -> None:
        line = str(line).replace("\r\n", "\n").replace("\r", "\n")
        with self._lock:
            self.echo(line)
            if self.path is not None:
                with open(self.path, "a", encoding="utf-8") as fh:
                    fh.write(line + "\n")


def format_progress(event: dict) -> str:
    """One terminal line from a progress event: ``U-Net AP epoch 3/8  loss 0.412  valid loss 0.398  Dice 0.612``,
    followed by the time per unit and an estimate of the time left in this task."""
    done, total = int(event.get("done", 0)), int(event.get("total", 0))
    unit = event.get("unit", "")
    parts = [f"{event.get('task', '')} {unit + ' ' if unit else ''}{done}/{total}"]
    for k, v in event.items():
        if k in ("task", "done", "total", "time", "unit", "seconds", "elapsed"):
            continue
        label = LABELS.get(k, k.replace("_", " "))
        parts.append(f"{label} {v:.3f}" if isinstance(v, float) else f"{label} {v if v is not None else 'n/a'}")
    line = "  ".join(parts)
    per = event.get("elapsed")
    if per is not None and done:
        per = per / done
        left = f", about {duration(per * (total - done))} left in it" if total > done else ""
        line += f"  ({duration(per)}/{unit or 'unit'}{left})"
    return line


class StepMonitor:
    """Follow a running notebook: relay its progress file, and say it is alive when it reports nothing.

    Use as a context manager around the execution; :meth:`cell_started` is papermill's ``on_cell_start`` hook.

    Parameters
    ----------
    progress_file : Path
        The file the notebook's code appends progress events to (removed at the start and the end).
    log : callable
        Receives the lines.
    n_cells : int
        Code and markdown cells of the executed notebook (for ``cell i/n``).
    expected : float, optional
        The step's time in the previous run.
    heartbeat : float
        Seconds without any line after which a line says the step is still running.
    """

    def __init__(self, progress_file: Path, log: Callable[[str], None], n_cells: int = 0,
                 expected: float | None = None, heartbeat: float = 30.0, indent: str = "      "):
        self.file, self.log, self.n_cells = Path(progress_file), log, n_cells
        self.expected, self.heartbeat, self.indent = expected, heartbeat, indent
        self.cell = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._offset = 0
        self._task_start: dict[str, float] = {}

    def cell_started(self, cell=None, cell_index: int = 0, **_) -> None:
        self.cell = cell_index + 1

    def __enter__(self) -> "StepMonitor":
        self.file.parent.mkdir(parents=True, exist_ok=True)
        self.file.unlink(missing_ok=True)
        self.t0 = self._last = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._relay()
        self.file.unlink(missing_ok=True)

    def _watch(self) -> None:
        while not self._stop.wait(1.0):
            self._relay()
            if time.monotonic() - self._last >= self.heartbeat:
                self._say(self.alive_line())

    def _say(self, line: str) -> None:
        self._last = time.monotonic()
        self.log(self.indent + line)

    def alive_line(self) -> str:
        """``still running: 1 min 30 s, cell 6/13 (previous run: 4 min 02 s in all)``."""
        line = f"still running: {duration(time.monotonic() - self.t0)}"
        if self.cell:
            line += f", cell {self.cell}/{self.n_cells}" if self.n_cells else f", cell {self.cell}"
        if self.expected:
            line += f" (previous run: {duration(self.expected)} in all)"
        return line

    def _relay(self) -> None:
        if not self.file.exists():
            return
        with open(self.file, encoding="utf-8") as fh:
            fh.seek(self._offset)
            chunk = fh.read()
        complete, _, _ = chunk.rpartition("\n")  # a line being written is read next time
        if not complete:
            return
        self._offset += len(complete.encode("utf-8")) + 1
        for raw in complete.split("\n"):
            try:
                event = json.loads(raw)
            except json.JSONDecodeError:
                continue
            task = str(event.get("task", ""))
            start = self._task_start.setdefault(task, event.get("time", time.time()) - (event.get("seconds") or 0))
            event["elapsed"] = event.get("time", time.time()) - start
            self._say(format_progress(event))


def run_estimate(names: list[str], will_run: set[str], last: dict[str, float | None]) -> tuple[float, bool]:
    """Seconds the steps ``names`` that will run should take, from ``last`` (the previous run's step times).

    Returns
    -------
    (float, bool)
        The sum of the known times, and whether every step that will run has one.
    """
    todo = [n for n in names if n in will_run]
    known = [last.get(n) for n in todo]
    return float(sum(k for k in known if k is not None)), all(k is not None for k in known)


def estimate_text(seconds: float, complete: bool) -> str:
    """``about 6 min 10 s`` or ``at least 2 min 00 s`` (no time stored for some steps)."""
    if not seconds and not complete:
        return UNKNOWN
    return ("about " if complete else "at least ") + duration(seconds)
