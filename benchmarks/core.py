"""Benchmark harness: machine description, figures with units, child processes with honest peak memory.

Every measured number is a :class:`Figure` (group, stage, metric, value, unit, note). Work whose memory matters runs
in a child process (``python -m benchmarks child <task> <args.json> <out.json>``) that reports its own wall time and
its peak resident set size: ``ru_maxrss`` of the child itself and of its own children (e.g. the cohort generator's
worker pool), read with :func:`resource.getrusage` once the work is done.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hcc_utils.files import json_text

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
#: Generator seeds of ``make stability`` (:mod:`benchmarks.stability`), also reported apart by ``make planted``.
SEEDS = (2022, 2023, 2024)
SCHEMA = 1


@dataclass
class Figure:
    """One measured number."""

    group: str  # stage | scaling | ratio | flops | machine | gpu
    stage: str
    metric: str
    value: float | int | str | None
    unit: str
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def rss_mb() -> float:
    """Current resident set size of this process in MiB (Linux ``/proc``; falls back to the peak)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return peak_rss_mb()["self"]


def peak_rss_mb() -> dict[str, float]:
    """Peak RSS (MiB) of this process and of the largest of its waited-for children."""
    scale = 1 / 2**20 if sys.platform == "darwin" else 1 / 1024
    return {"self": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale,
            "children": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale}


def git_info() -> dict[str, Any]:
    def _git(*args):
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = _git("rev-parse", "HEAD")
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    return {"commit": commit or None, "dirty_tracked_files": dirty, "branch": _git("rev-parse", "--abbrev-ref", "HEAD")}


def machine_info() -> dict[str, Any]:
    """CPU model, cores, memory, OS, and the GPU when torch sees one."""
    cpu = platform.processor() or ""
    flags: list[str] = []
    mhz = None
    try:
        txt = Path("/proc/cpuinfo").read_text()
        for line in txt.splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = line.split(":", 1)[1].split()
            if line.startswith("cpu MHz") and mhz is None:
                mhz = float(line.split(":", 1)[1])
    except OSError:
        pass
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gb = int(line.split()[1]) / 2**20
    except OSError:
        pass
    info = {
        "platform": platform.platform(), "python": platform.python_version(), "cpu": cpu,
        "cpu_mhz": mhz, "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "simd": [f for f in flags if f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")],
        "memory_gb": round(mem_gb, 1) if mem_gb else None,
        "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for pkg in ("torch", "torchvision", "fastai", "numpy", "scipy", "pandas", "scikit-learn", "lifelines",
                "scikit-survival", "statsmodels", "SimpleITK", "jupyter-book", "papermill", "joblib"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def timestamp() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


class ChildError(RuntimeError):
    pass


def run_child(task: str, args: dict[str, Any], timeout: float, log_dir: Path | None = None,
              threads: int | None = None) -> dict[str, Any]:
    """Run ``benchmarks.tasks.<task>(**args)`` in a fresh Python process.

    Returns
    -------
    dict
        The task's own result dict plus ``wall_s`` (whole child, imports included), ``task_s`` (the task only),
        ``peak_rss_mb`` (max of the child and its worker processes), ``peak_rss_self_mb``,
        ``peak_rss_children_mb``, ``rss_after_imports_mb``.
    """
    import tempfile

    log_dir = Path(log_dir or RESULTS / "logs")
    log_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        a, o = Path(tmp) / "args.json", Path(tmp) / "out.json"
        a.write_text(json.dumps(args, default=str))
        env = dict(os.environ)
        env.setdefault("PYTHONHASHSEED", "0")
        env["MPLBACKEND"] = "Agg"
        env["TQDM_DISABLE"] = "1"
        if threads:
            env["OMP_NUM_THREADS"] = str(threads)
            env["MKL_NUM_THREADS"] = str(threads)
        log = log_dir / f"{task}.log"
        t0 = time.perf_counter()
        with open(log, "a") as fh:
            fh.write(f"\n=== {timestamp()} {task} {json.dumps(args, default=str)}\n")
            fh.flush()
            try:
                proc = subprocess.run([sys.executable, "-m", "benchmarks", "child", task, str(a), str(o)], cwd=ROOT,
                                      env=env, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout)
            except subprocess.TimeoutExpired as exc:
                raise ChildError(f"{task} did not finish within {timeout:.0f} s (log: {log})") from exc
        wall = time.perf_counter() - t0
        if proc.returncode != 0 or not o.exists():
            tail = log.read_text().strip().splitlines()[-6:]
            raise ChildError(f"{task} failed (exit {proc.returncode}); log {log}:\n  " + "\n  ".join(tail))
        res = json.loads(o.read_text())
    res["wall_s"] = wall
    return res


class Run:
    """Collects figures and writes ``benchmarks/results/<timestamp>.json``."""

    def __init__(self, profile: str, mode: str, args: dict[str, Any]):
        self.t0 = time.perf_counter()
        self.stamp = timestamp()
        self.data: dict[str, Any] = {
            "schema": SCHEMA, "timestamp": self.stamp, "profile": profile, "mode": mode, "args": args,
            "git": git_info(), "machine": machine_info(), "versions": versions(), "figures": [], "skipped": [],
            "errors": [],
        }

    def add(self, group: str, stage: str, metric: str, value, unit: str, note: str = "", **extra) -> None:
        if isinstance(value, float) and value != value:  # NaN -> None (valid JSON)
            value = None
        self.data["figures"].append(asdict(Figure(group, stage, metric, value, unit, note, extra)))

    def skip(self, what: str, reason: str) -> None:
        self.data["skipped"].append({"what": what, "reason": reason})
        print(f"  skipped {what}: {reason}", flush=True)

    def error(self, what: str, exc: BaseException) -> None:
        self.data["errors"].append({"what": what, "error": f"{type(exc).__name__}: {exc}"})
        print(f"  FAILED {what}: {type(exc).__name__}: {exc}", flush=True)

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def write(self, folder: Path = RESULTS) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        self.data["total_s"] = self.elapsed()
        path = folder / f"{self.stamp}.json"
        path.write_text(json_text(self.data, indent=1, fallback=str))
        return path
