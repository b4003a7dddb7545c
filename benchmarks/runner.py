"""The benchmark run: stages on a profile, scaling with the cohort size, side-by-side ratios, FLOPs.

Order matters for the time budget: FLOPs and the CPU's measured limit first (seconds), then the demo-profile stages
(each in its own child process, so its peak memory is its own), the ratios, then the scaling sizes from small to
large, each in one child process. A size whose time, extrapolated from the previous size, would overrun the budget
is skipped and the skip is recorded with the estimate (never silently).
"""
from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.core import RESULTS, ROOT, ChildError, Run, peak_rss_mb, rss_mb, run_child
from hcc_utils.files import json_text

FULL = {
    "profile": "demo", "tag": "demo", "n": None, "sizes": [50, 100, 200, 400], "budget_s": 1140,
    "train": {"classic": {"epochs": 1, "max_patients": None}, "dynamic": {"epochs": 1, "max_patients": 3}},
    "ratio_slices": 256, "cache_slices": 512, "delong_ns": [1000, 10000, 100000], "delong_fast_only": [1000000],
    "delong_budget_s": 20, "gse14520": True, "boot": {"n_auc": 5000, "n_boot_auc": 2000, "n_c": 1000, "n_boot_c": 500},
    # `make book` cold + warm on the demo profile costs ~11 min here, more than the 20-min budget leaves after the
    # scaling sizes: it is its own run, `make bench-book` (`--only book`); the results page shows the latest of each
    "groups": ["flops", "stages", "ratios", "scaling"],
    "flops": [
        {"profile": "demo"}, {"profile": "demo", "unet": {"arch": "dynamic"}},
        {"profile": "paper"}, {"profile": "paper", "unet": {"arch": "dynamic"}},
    ],
}
TINY = {
    "profile": "ci", "tag": "tiny", "n": None, "sizes": [24], "budget_s": 600,
    "train": {"classic": {"epochs": 1, "max_patients": None}, "dynamic": {"epochs": 1, "max_patients": 2}},
    "ratio_slices": 32, "cache_slices": 32, "delong_ns": [1000], "delong_fast_only": [10000],
    "delong_budget_s": 2, "gse14520": False, "boot": {"n_auc": 300, "n_boot_auc": 100, "n_c": 100, "n_boot_c": 40},
    "flops": [{"profile": "ci"}],
    "groups": ["flops", "stages", "ratios", "book", "scaling"],
}


def _safe(run: Run, what: str, fn, *a, **k):
    try:
        return fn(*a, **k)
    except (ChildError, Exception) as exc:  # noqa: BLE001 - one failing stage must not lose the others
        run.error(what, exc)
        return None


def _print(msg: str) -> None:
    print(msg, flush=True)


class _Bench:
    """What the benchmark groups of one run share: its configuration, results, child processes and figures."""

    def __init__(self, cfg: dict[str, Any], run: Run, log_dir: Path):
        self.cfg, self.run, self.log_dir = cfg, run, log_dir
        self.base, self.tag = cfg["profile"], cfg["tag"]
        self.sizes = sorted(cfg["sizes"])
        self.tag0 = f"{self.tag}-n{self.sizes[0]}"
        self.peak: float | None = None  # the CPU's measured fp32 matmul throughput
        self._cpu: dict | None = None  # the cpu_peak task's result, measured once per run
        self.flops_by_arch: dict[str, float] = {}
        self.fwd_by_arch: dict[str, float] = {}
        self.model_dir: str | None = None  # the trained classic U-Net of the first size
        self.per_size: dict[int, float] = {}

    def child(self, task, args, timeout=900):
        return run_child(task, args, timeout=timeout, log_dir=self.log_dir)

    def cpu_peak(self) -> dict | None:
        """The CPU's fp32 matmul throughput (the ``cpu_peak`` task), measured once per run."""
        if self._cpu is None:
            self._cpu = _safe(self.run, "cpu peak", self.child, "cpu_peak", {})
        return self._cpu

    def flops(self) -> None:
        """FLOPs of the networks and the CPU's limit."""
        run, child, cfg = self.run, self.child, self.cfg
        _print("[flops] FLOP counter and the CPU's matrix-multiply throughput")
        r = self.cpu_peak()
        if r:
            self.peak = r["gflops_sgemm"]
            run.add("machine", "CPU", "fp32 matmul throughput (torch.mm 2048^2)", r["gflops_sgemm"], "GFLOP/s",
                    f"{r['threads']} thread(s), the book's torch setting ($HCC_TORCH_THREADS); the practical compute "
                    "limit the fractions below refer to")
            if "gflops_sgemm_all" in r:
                run.add("machine", "CPU", f"fp32 matmul throughput, {r['threads_all']} threads",
                        r["gflops_sgemm_all"], "GFLOP/s", "every usable CPU (for reference)")
        r = _safe(run, "flops", child, "flops", {"configs": cfg["flops"]})
        for row in (r or {}).get("rows", []):
            run.add("flops", row["name"], "forward per slice", row["gflop_forward"], "GFLOP",
                    params_m=row["params_m"], arch=row["arch"], size=row["size"], profile=row["profile"])
            run.add("flops", row["name"], "training step per slice", row["gflop_train_step"], "GFLOP",
                    params_m=row["params_m"], arch=row["arch"], size=row["size"], profile=row["profile"])

    def arch_flops(self) -> None:
        """FLOPs per slice of each architecture at the profile's size (from the flops group, if it ran)."""
        run, base = self.run, self.base
        from hcc_utils.config import load_profile

        base_size = int(load_profile(base)["preprocess"]["size"])
        flops_by_arch = {f["extra"]["arch"]: f["value"] for f in run.data["figures"]
                         if f["group"] == "flops" and f["metric"] == "training step per slice"
                         and f["extra"].get("size") == base_size and f["extra"].get("profile") == base}
        fwd_by_arch = {f["extra"]["arch"]: f["value"] for f in run.data["figures"]
                       if f["group"] == "flops" and f["metric"] == "forward per slice"
                       and f["extra"].get("size") == base_size and f["extra"].get("profile") == base}
        self.flops_by_arch, self.fwd_by_arch = flops_by_arch, fwd_by_arch

    def stage_run(self, n: int, first: bool) -> None:
        """Every per-patient stage for a cohort of n, one child process per stage (peak RSS per stage)."""
        run, child, base, tag = self.run, self.child, self.base, self.tag
        kw = {"base": base, "tag": f"{tag}-n{n}", "n": n}
        rec = []  # (stage, seconds, peak rss)

        def stage(name, task, args, timeout=1800):
            _print(f"[n = {n}] {name}")
            r = _safe(run, f"{name} (n = {n})", child, task, args, timeout)
            if r:
                rec.append((name, r["seconds"], r["peak_rss_mb"]))
                if r.get("peak_python_heap_mb") is not None:  # what the stage itself holds (RSS adds torch and
                    # the memory-mapped slice cache pages it has read)
                    run.add("scaling", name, "peak Python heap (tracemalloc)", r["peak_python_heap_mb"], "MiB", n=n)
            return r

        r = stage("cohort generation", "generate", kw)
        if r and first:
            run.add("stage", "cohort generation", "wall time", r["seconds"], "s",
                    f"{r['n_patients']} patients, {r['workers']} worker processes")
            run.add("stage", "cohort generation", "throughput", r["patients_per_s"], "patients/s")
            run.add("stage", "cohort generation", "peak RSS", r["peak_rss_mb"], "MiB", "largest of parent and workers")
            run.add("stage", "cohort generation", "disk", r["disk_mb"], "MiB")
        r = stage("slice cache (AP+PP)", "cache", kw)
        if r and first:
            run.add("stage", "slice cache build", "wall time", r["seconds"], "s",
                    f"{r['volumes']} volumes (AP+PP), {r['slices']} slices")
            run.add("stage", "slice cache build", "throughput", r["slices_per_s"], "slices/s")
            run.add("stage", "slice cache build", "peak RSS", r["peak_rss_mb"], "MiB")
            run.add("stage", "slice cache build", "disk", r["disk_mb"], "MiB")
        if first:
            self.train(n, kw)
        self.after_training(n, first, kw, stage)
        for name, sec, rss in rec:
            run.add("scaling", name, "wall time", sec, "s", n=n, rss_high_water_mb=rss)
        if rec:
            tot = sum(x[1] for x in rec)
            self.per_size[n] = tot
            run.add("scaling", "all stages", "wall time", tot, "s", n=n)
            run.add("scaling", "all stages", "peak RSS", max(x[2] for x in rec), "MiB", n=n,
                    note="largest peak among the stages' processes")

    def train(self, n: int, kw: dict[str, Any]) -> None:
        """The U-Nets of the profile (classic and dynamic): throughput, epoch time, memory, compute."""
        run, child, cfg, peak, flops_by_arch = self.run, self.child, self.cfg, self.peak, self.flops_by_arch
        for arch, tc in cfg["train"].items():
            _print(f"[n = {n}] U-Net training, {arch}")
            r = _safe(run, f"training {arch}", child, "train",
                      {**kw, "arch": arch, "epochs": tc["epochs"], "max_patients": tc["max_patients"]}, 1800)
            if not r:
                continue
            if arch == "classic":
                self.model_dir = r["model_dir"]
            st = f"U-Net training ({arch})"
            sub = "" if r["annotated_used"] == r["annotated_total"] else \
                f"; measured on {r['annotated_used']} of {r['annotated_total']} annotated patients"
            run.add("stage", st, "training throughput", r["train_slices_per_s"], "slices/s",
                    f"{r['n_train_slices']} training slices x {r['epochs']} epochs over the fit wall time "
                    f"(validation passes included){sub}")
            run.add("stage", st, "time per epoch (measured)", r["seconds_per_epoch"], "s/epoch",
                    f"{r['n_train_slices']} training + {r['n_valid_slices']} validation slices")
            run.add("stage", st, "time per epoch, demo's 60 annotated patients (extrapolated)",
                    _demo_epoch(r), "s/epoch",
                    "measured s per training slice x training slices per patient of this cohort x the "
                    "demo profile's training patients (annotated minus the validation fraction)")
            run.add("stage", st, "peak RSS", r["peak_rss_mb"], "MiB")
            if peak and arch in flops_by_arch:
                achieved = r["train_slices_per_s"] * flops_by_arch[arch]
                run.add("stage", st, "achieved compute", achieved, "GFLOP/s",
                        f"{100 * achieved / peak:.1f} % of the measured fp32 matmul limit ({peak:.0f} GFLOP/s)",
                        fraction_of_peak=achieved / peak)

    def after_training(self, n: int, first: bool, kw: dict[str, Any], stage) -> None:
        """Inference, features, models and survival with the trained classic U-Net."""
        run, peak, fwd_by_arch, model_dir = self.run, self.peak, self.fwd_by_arch, self.model_dir
        if not model_dir:
            run.skip(f"inference, features, models, survival (n = {n})", "no trained classic model")
        else:
            r = stage("inference (PP)", "infer", {**kw, "model_from": model_dir})
            if r and first:
                st = "inference (PP, all patients)"
                run.add("stage", st, "network throughput", r["network_slices_per_s"], "slices/s", "forward passes only")
                run.add("stage", st, "end-to-end throughput", r["slices_per_s_end_to_end"], "slices/s",
                        "cache read + network + resampling to the image grid + NIfTI write + DSC")
                run.add("stage", st, "wall time", r["seconds"], "s",
                        f"{r['n_patients']} patients, {r['n_slices']} slices")
                run.add("stage", st, "peak RSS", r["peak_rss_mb"], "MiB")
                if peak and "classic" in fwd_by_arch:
                    a = r["network_slices_per_s"] * fwd_by_arch["classic"]
                    run.add("stage", st, "achieved compute", a, "GFLOP/s",
                            f"{100 * a / peak:.1f} % of the measured fp32 matmul limit", fraction_of_peak=a / peak)
            r = stage("feature extraction (PP)", "features", kw)
            if r and first:
                run.add("stage", "feature extraction (PP)", "throughput", r["patients_per_s"], "patients/s",
                        f"{r['n_patients']} patients, {r['n_features']} features")
                run.add("stage", "feature extraction (PP)", "wall time", r["seconds"], "s")
                run.add("stage", "feature extraction (PP)", "peak RSS", r["peak_rss_mb"], "MiB")
            r = stage("model grid search", "models", kw)
            if r and first:
                st = "model grid search (DSFR-PP, DSFR-C, Visual)"
                run.add("stage", st, "wall time", r["seconds"], "s",
                        f"{r['n_models']} models, {r['grid_points']} grid points, {r['cv_folds']}-fold nested CV, "
                        f"{r['n_patients']} patients, {r.get('n_jobs', 1)} processes")
                run.add("stage", st, "peak RSS", r["peak_rss_mb"], "MiB")
            r = stage("survival statistics", "survival", kw)
            if r and first:
                run.add("stage", "survival statistics (synthetic)", "wall time", r["seconds"], "s",
                        f"{r['n_patients']} patients, {r['n_bootstrap']} bootstrap replicates")
                run.add("stage", "survival statistics (synthetic)", "peak RSS", r["peak_rss_mb"], "MiB")

    def stages(self) -> None:
        """The stages on the profile (the first scaling size), GSE14520 and the book build."""
        run, child, cfg, base, sizes, stage_run = self.run, self.child, self.cfg, self.base, self.sizes, self.stage_run
        stage_run(sizes[0], True)
        if cfg["gse14520"]:
            _print("[stages] survival statistics on GSE14520")
            r = _safe(run, "survival GSE14520", child, "survival_gse14520", {"base": base})
            if r and "skipped" not in r:
                run.add("stage", "survival statistics (GSE14520, real)", "wall time", r["seconds"], "s",
                        f"{r['n_patients']} patients, {r['n_bootstrap']} bootstrap replicates")
            elif r:
                run.skip("survival GSE14520", r["skipped"])
        _print("[stages] book build (jupyter-book on the current sources)")
        r = _safe(run, "book build", child, "book_build", {})
        if r:
            run.add("stage", "book build (jupyter-book only)", "wall time", r["seconds"], "s",
                    f"{r['html_pages']} HTML pages; {r['executed_pages_present']} executed chapters present "
                    "(notebooks are not run in this figure)")

    def ratios(self) -> None:
        """Side-by-side ratios: fastai vs PyTorch, cache vs NIfTI, CPU modes, DeLong, bootstrap."""
        run, child, cfg, base, tag0 = self.run, self.child, self.cfg, self.base, self.tag0
        _print("[ratios] fastai vs plain PyTorch")
        r = _safe(run, "fastai vs plain", child, "ratio_fastai_vs_plain",
                  {"base": base, "tag": tag0, "n_slices": cfg["ratio_slices"]})
        if r:
            run.add("ratio", "training loop: fastai Learner vs plain PyTorch", "fastai / plain time per epoch",
                    r["ratio_fastai_over_plain"], "x",
                    f"classic U-Net, {r['n_slices']} slices, batch {r['batch_size']}, Adam, no augmentation",
                    a_s=r["fastai_s_per_epoch"], b_s=r["plain_s_per_epoch"], a="fastai", b="plain")
        _print("[ratios] cached slices vs re-reading NIfTI")
        r = _safe(run, "cache vs nifti", child, "ratio_cache_vs_nifti",
                  {"base": base, "tag": tag0, "n_slices": cfg["cache_slices"]})
        if r:
            run.add("ratio", "data per epoch: re-read NIfTI vs slice cache", "NIfTI / cache time per epoch",
                    r["ratio_nifti_over_cached"], "x",
                    f"{r['n_slices']} training slices of {r['n_cases']} cases; NIfTI read once per case per epoch",
                    a_s=r["nifti_s_per_epoch"], b_s=r["cached_s_per_epoch"], a="NIfTI", b="cache")
        _print("[ratios] inference on this CPU: fp32 vs channels_last vs bf16, book threads vs all")
        r = _safe(run, "cpu inference modes", child, "ratio_cpu_inference_modes", {"base": base, "tag": tag0})
        rows = (r or {}).get("rows", [])
        b0 = rows[0] if rows else None
        for row in rows[1:]:
            run.add("ratio", f"inference: {row['mode']}, {row['threads']} thread(s) vs the book's fp32, "
                    f"{b0['threads']} thread(s)", "time ratio (book / this)", row["speedup"], "x",
                    f"{r['n_slices']} slices; masks differ in {row['mask_pixels_differing']} of "
                    f"{row['mask_pixels']:,} pixels", a_s=r["n_slices"] / b0["slices_per_s"],
                    b_s=r["n_slices"] / row["slices_per_s"], a="book", b=row["mode"])
        _print("[ratios] DeLong fast vs O(n^2)")
        r = _safe(run, "delong", child, "ratio_delong",
                  {"ns": cfg["delong_ns"], "fast_only": cfg["delong_fast_only"], "budget_s": cfg["delong_budget_s"]})
        for row in (r or {}).get("rows", []):
            if "quadratic_s" in row:
                note = ("O(n^2) time extrapolated from "
                        f"{100 * row['quadratic_fraction_computed']:.1f} % of the case rows"
                        if row["quadratic_extrapolated"] else "both computed in full")
                if "max_abs_diff_auc" in row:
                    note += f"; |dAUC| {row['max_abs_diff_auc']:.1e}, |dz| {row['abs_diff_z']:.1e}"
                run.add("ratio", f"DeLong test, n = {row['n']:,}", "O(n^2) / fast time", row["speedup"], "x", note,
                        a_s=row["quadratic_s"], b_s=row["fast_s"], a="O(n^2)", b="fast", n=row["n"])
            else:
                run.add("ratio", f"DeLong test, n = {row['n']:,}", "fast DeLong time", row["fast_s"], "s",
                        "stats.delong_test (Sun & Xu), two correlated scores", n=row["n"])
        _print("[ratios] bootstrap serial vs parallel")
        r = _safe(run, "bootstrap", child, "ratio_bootstrap", {"n_jobs": 2, **cfg["boot"]})
        if r:
            for k, lab in (("auc", "AUC"), ("c_index", "Harrell's C")):
                x = r[k]
                note = f"n = {x['n']}, {x['n_boot']} replicates; identical CIs: {x['identical']}"
                run.add("ratio", f"bootstrap CI of {lab}: serial vs {r['n_jobs']} processes",
                        "serial / parallel time (workers started)", x["speedup"], "x",
                        note + "; parallel time includes starting the joblib workers",
                        a_s=x["serial_s"], b_s=x["parallel_s"], a="serial", b="parallel")
                run.add("ratio", f"bootstrap CI of {lab}: serial vs {r['n_jobs']} processes",
                        "serial / parallel time (warm workers)", x["speedup_warm"], "x",
                        note + "; second parallel call, joblib's reusable workers already running",
                        a_s=x["serial_s"], b_s=x["parallel_warm_s"], a="serial", b="parallel (warm)")

    def book(self) -> None:
        """The whole `make book`, cold and warm, in an isolated root."""
        run, child, base = self.run, self.child, self.base
        # the book's time depends on the CPU: its 1-thread matmul figure goes beside it (machines of one kind differ 2x)
        r = self.cpu_peak()
        if r:
            run.add("book", "machine", "fp32 matmul throughput, 1 thread (torch.mm 2048^2)", r["gflops_sgemm"],
                    "GFLOP/s", f"measured in this run; {r.get('threads_all', '?')} threads: "
                    f"{r.get('gflops_sgemm_all', float('nan')):.0f} GFLOP/s")
        for cold in (True, False):
            label = "cold" if cold else "warm"
            _print(f"[book] make book PROFILE={base} ({label})")
            manifest = self.cfg.get("book_manifest")
            r = _safe(run, f"make book {label}", child, "make_book",
                      {"profile": base, "cold": cold, "manifest": manifest}, 3600)
            if not r:
                continue
            what = ("empty $HCC_ROOT: " + (f"manifest {Path(manifest).name} read" if manifest else "cohort generated")
                    + ", every notebook run, HTML built" if cold else "second run, nothing changed")
            run.add("book", f"make book PROFILE={base} ({label})", "wall time", r["seconds"], "s",
                    f"{what}; {r['n_run']} notebook runs, {r['n_skipped']} skipped, {r['html_pages']} HTML pages")
            run.add("book", f"make book PROFILE={base} ({label})", "peak RSS", r["peak_rss_mb"], "MiB",
                    "largest of all processes of the run (papermill kernels included)")
            if cold:
                pre = r.get("prepare_seconds")
                if pre is None:  # a summary written before the runner recorded it (notebooks one at a time)
                    pre = (r["run_seconds"] or 0) - sum(x["seconds"] for x in r["steps"]) - (r["book_seconds"] or 0)
                run.add("book", "before the notebooks (cohort generation, manifest)", "time (cold run)", pre, "s",
                        f"{r['cohort_disk_mb']:.0f} MiB of synthetic CT written")
                if r.get("notebooks_seconds") is not None:
                    run.add("book", "the notebooks, start of the first to end of the last", "time (cold run)",
                            r["notebooks_seconds"], "s", f"up to {r.get('jobs', 1)} notebook(s) at once; the step "
                            "times below overlap when more than one")
                for x in r["steps"]:
                    run.add("book", f"notebook {x['step']}", "time (cold run)", x["seconds"], "s",
                            "papermill, kernel start included" if x["status"] == "ran" else x["status"])
                run.add("book", "jupyter-book build", "time (cold run)", r["book_seconds"], "s")

    def scaling(self) -> None:
        """The larger sizes, each while the budget allows (estimated linearly from the previous size)."""
        run, cfg, sizes, per_size, tag, tag0 = self.run, self.cfg, self.sizes, self.per_size, self.tag, self.tag0
        stage_run = self.stage_run
        for n in sizes[1:]:
            left = cfg["budget_s"] - run.elapsed()
            prev_n = max(per_size) if per_size else None
            if prev_n is not None:
                est = per_size[prev_n] * n / prev_n + 30  # + process start-ups
                if est > left:
                    run.skip(f"scaling n = {n}", f"estimated {est:.0f} s (linear from n = {prev_n}) exceeds the "
                             f"{left:.0f} s left of the {cfg['budget_s']:.0f} s budget")
                    continue
            stage_run(n, False)
        _cleanup_bench_data(tag, keep=tag0)


def run_all(mode: str = "full", sizes: list[int] | None = None, only: list[str] | None = None,
            budget_s: float | None = None, out_dir: Path = RESULTS, report: bool = True,
            book_manifest: Path | None = None) -> Path:
    """Run the benchmarks and write ``benchmarks/results/<timestamp>.json`` (and the README when ``report``).

    Order matters for the time budget (see the module docstring): FLOPs, the stages on the profile, the ratios,
    ``make book`` when asked for, then the scaling sizes. ``book_manifest``: time ``make book`` on that cohort (for
    example a hospital's DICOM series) instead of the profile's synthetic one.
    """
    cfg = dict(FULL if mode == "full" else TINY)
    if book_manifest is not None:
        cfg["book_manifest"] = str(Path(book_manifest).resolve())
    if sizes is not None:
        cfg["sizes"] = sizes
    if budget_s is not None:
        cfg["budget_s"] = budget_s
    groups = only or cfg["groups"]
    run = Run(cfg["profile"], mode, {"sizes": cfg["sizes"], "only": groups, "budget_s": cfg["budget_s"]})
    log_dir = out_dir / "logs" / run.stamp
    _print(f"benchmarks ({mode}, profile {cfg['profile']}) -> {out_dir}; logs in {log_dir}")
    bench = _Bench(cfg, run, log_dir)
    if "flops" in groups:
        bench.flops()
    bench.arch_flops()
    if "stages" in groups or "scaling" in groups or "ratios" in groups:
        bench.stages()
    if "ratios" in groups:
        bench.ratios()
    if "book" in groups:
        bench.book()
    if "scaling" in groups and bench.model_dir:
        bench.scaling()
    path = run.write(out_dir)
    _print(summary_table(run.data))
    _print(f"written {path} ({run.elapsed():.0f} s)")
    if report:
        refresh_report(out_dir)
    return path


def refresh_report(folder: Path = RESULTS, main: Path | None = None) -> Path | None:
    """Rewrite ``benchmarks/README.md`` from the newest full run with scaling figures (or ``main``) and the newest
    run with ``make book`` figures (``make bench-book``)."""
    from benchmarks.report import write_report

    main = main or latest_result(folder, group="scaling") or _committed_full_run(folder)
    main = main or latest_result(folder, group="book")
    if main is None:
        return None
    return write_report(main, book_json=latest_result(folder, group="book"))


def _committed_full_run(folder: Path) -> Path | None:
    """The committed ``benchmarks/latest.json``, put back under its own name in ``folder`` when it is a full run with
    scaling figures, so that a ``make bench-book`` on a fresh clone (no full run of its own) keeps the page's stage
    and scaling figures instead of replacing them with the book's alone."""
    from benchmarks.report import LATEST

    if not LATEST.exists():
        return None
    d = json.loads(LATEST.read_text())
    if d.get("mode") != "full" or not any(f["group"] == "scaling" for f in d.get("figures", [])):
        return None
    dest = folder / f"{d['timestamp']}.json"
    if not dest.exists():
        folder.mkdir(parents=True, exist_ok=True)
        dest.write_text(LATEST.read_text())
    return dest


def _cleanup_bench_data(tag: str, keep: str) -> None:
    """Remove the larger scaling cohorts (hundreds of MB); the first size's cohort is kept for inspection."""
    for d in (ROOT / "data" / "bench", ROOT / ".cache" / "bench", ROOT / "outputs" / "bench"):
        for sub in d.glob(f"{tag}-n*"):
            if sub.name != keep:
                shutil.rmtree(sub, ignore_errors=True)


def summary_table(data: dict[str, Any]) -> str:
    """A short plain-text table of the figures."""
    lines = [f"{'group':8} {'stage':52} {'metric':44} {'value':>12} unit"]
    for f in data["figures"]:
        v = f["value"]
        vs = f"{v:12.4g}" if isinstance(v, (int, float)) else f"{str(v):>12}"
        st = f["stage"] + (f" [n={f['extra']['n']}]" if "n" in f.get("extra", {}) and f["group"] == "scaling" else "")
        lines.append(f"{f['group']:8} {st[:52]:52} {f['metric'][:44]:44} {vs} {f['unit']}")
    for s in data.get("skipped", []):
        lines.append(f"skipped  {s['what']}: {s['reason']}")
    for e in data.get("errors", []):
        lines.append(f"ERROR    {e['what']}: {e['error']}")
    return "\n".join(lines)


def latest_result(folder: Path = RESULTS, mode: str | None = "full", group: str | None = None) -> Path | None:
    """Newest results JSON of ``mode`` (None: any); with ``group``, the newest that holds figures of that group."""
    files = sorted(p for p in folder.glob("*.json") if not p.name.startswith("gpu"))
    for p in reversed(files):
        d = json.loads(p.read_text())
        if mode is not None and d.get("mode") != mode:
            continue
        if group is not None and not any(f["group"] == group for f in d.get("figures", [])):
            continue
        return p
    return None


def child_main(task: str, args_path: str, out_path: str) -> int:
    """Entry point of a child process (see :func:`run_child`)."""
    rss0 = rss_mb()
    from benchmarks import tasks

    fn = getattr(tasks, task, None)
    if fn is None or task.startswith("_"):
        raise SystemExit(f"unknown benchmark task {task!r}")
    args = json.loads(Path(args_path).read_text())
    rss_imports = rss_mb()
    t0 = time.perf_counter()
    res = fn(**args) or {}
    task_s = time.perf_counter() - t0
    peak = peak_rss_mb()
    res.update({"task_s": task_s, "peak_rss_self_mb": peak["self"], "peak_rss_children_mb": peak["children"],
                "peak_rss_mb": max(peak["self"], peak["children"]), "rss_start_mb": rss0,
                "rss_after_imports_mb": rss_imports})
    Path(out_path).write_text(json_text(res, indent=None, fallback=str))
    return 0


def main_cli(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m benchmarks", description="Benchmarks of the HCC DSFR book.")
    sub = ap.add_subparsers(dest="cmd")
    r = sub.add_parser("run", help="run the benchmarks (default)")
    for p in (ap, r):
        p.add_argument("--tiny", action="store_true", help="ci profile, tiny sizes: a smoke run of every path")
        p.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], help="scaling sizes, e.g. 50,100")
        p.add_argument("--only", type=lambda s: s.split(","), help="flops,stages,ratios,book,scaling")
        p.add_argument("--budget", type=float, help="seconds; scaling sizes that would overrun it are skipped")
        p.add_argument("--out", type=Path, default=RESULTS, help="results folder")
        p.add_argument("--no-report", action="store_true", help="do not rewrite benchmarks/README.md")
        p.add_argument("--book-manifest", type=Path, help="time `make book` on this manifest (default: synthetic)")
    rep = sub.add_parser("report", help="rewrite benchmarks/README.md and the plot from a results JSON")
    rep.add_argument("json", nargs="?", type=Path, help="default: the latest full run")
    c = sub.add_parser("child", help=argparse.SUPPRESS)
    c.add_argument("task")
    c.add_argument("args")
    c.add_argument("out")
    a = ap.parse_args(argv)
    if a.cmd == "child":
        return child_main(a.task, a.args, a.out)
    if a.cmd == "report":
        page = refresh_report(main=a.json)
        if page is None:
            print("no results JSON in benchmarks/results/: run `python -m benchmarks` first", file=sys.stderr)
            return 1
        print(page)
        return 0
    run_all("tiny" if a.tiny else "full", sizes=a.sizes, only=a.only, budget_s=a.budget, out_dir=a.out,
            report=not a.no_report and not a.tiny, book_manifest=a.book_manifest)
    return 0


def _demo_epoch(r: dict[str, Any]) -> float | None:
    """Seconds per epoch on the demo profile's full training set, from the measured seconds per training slice."""
    if not r.get("seconds_per_epoch") or not r.get("n_train_slices"):
        return None
    from hcc_utils.config import load_profile

    demo = load_profile("demo")
    vf = float(demo["unet"]["valid_fraction"])
    n_demo_train = int(demo["cohort"]["n_annotated"]) - max(1, round(vf * int(demo["cohort"]["n_annotated"])))
    n_here = max(1, r["annotated_total"] - max(1, round(vf * r["annotated_total"])))
    per_slice = r["seconds_per_epoch"] / r["n_train_slices"]
    return per_slice * r["profile_epoch_train_slices"] / n_here * n_demo_train
