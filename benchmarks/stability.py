"""Stability of the demo book's results across synthetic cohorts: ``make stability`` (not part of ``make test``).

For each generator seed, the whole demo book runs in its own ``$HCC_ROOT`` (``outputs/bench/stability-<seed>/``, a
copy of ``profiles.yaml`` whose ``demo.cohort.seed`` is that seed), so the user's outputs are never touched. Then
every Table 2 AUC, every Table 4 C-index and tdAUC, the held-out and validation-centre Dice per phase, and the
signature's Spearman correlation with the latent are collected, and their mean and range over the seeds written to
``benchmarks/results/stability-<stamp>.json`` and printed as a table. ``--ablation`` adds the development and
validation AUCs of the book's ablation chapter (:mod:`hcc_utils.ablation`). ``--finished SEED=ROOT`` takes a seed's
figures from a book already run in ``ROOT`` on that seed's cohort (``make bench-book`` leaves the default seed's in
``outputs/bench/book-demo``) instead of running it again.

Beside each seed's book figures it records what that seed's planted truth allows (:func:`benchmarks.planted.
seed_figures`: the nested procedure on the visual reads and on the true image phenotype, tables only), so the
DSFR - Visual margin can be read against the room the sample leaves; and the machine (CPU, vector instructions,
1-thread matmul throughput) and commit, because the U-Net's results move between CPUs. The newest run of each profile
and kind of CPU (:func:`machine_kind`) is kept as ``benchmarks/stability/<profile>-<kind>.json`` (committed) and shown
on the results page (:mod:`benchmarks.report`), beside the runs of other kinds of CPU on the seeds they share.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

from benchmarks.core import ROOT, SEEDS, git_info, machine_info, timestamp

#: The newest run of each profile and kind of CPU, kept beside the results page (committed).
KEPT = ROOT / "benchmarks" / "stability"


def machine_kind(machine: dict) -> str:
    """The widest vector instructions of a machine (:func:`benchmarks.core.machine_info`): what sets the U-Net's
    floating-point path on a CPU (``avx512``, ``avx2`` or ``other``)."""
    simd = machine.get("simd") or []
    return "avx512" if "avx512f" in simd else ("avx2" if "avx2" in simd else "other")


def seed_root(seed: int, profile: str = "demo") -> Path:
    return ROOT / "outputs" / "bench" / f"stability-{profile}-{seed}"


def run_seed(seed: int, profile: str = "demo", force: bool = False) -> Path:
    """Run the book of ``profile`` on the cohort of generator seed ``seed`` in its own root; return the outputs."""
    root = seed_root(seed, profile)
    root.mkdir(parents=True, exist_ok=True)
    prof = yaml.safe_load((ROOT / "profiles.yaml").read_text())
    prof[profile]["cohort"] = {**prof["defaults"]["cohort"], **prof[profile].get("cohort", {}), "seed": int(seed)}
    (root / "profiles.yaml").write_text(yaml.safe_dump(prof, sort_keys=False))
    env = {**os.environ, "HCC_ROOT": str(root), "TQDM_DISABLE": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "hcc_utils.run", "book", "--profile", profile] + (["--force"] if force else [])
    log = root / "book.log"
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = "\n  ".join(log.read_text().strip().splitlines()[-10:])
        raise RuntimeError(f"seed {seed}: the book failed (exit {proc.returncode}); log {log}:\n  {tail}")
    print(f"seed {seed}: book in {time.perf_counter() - t0:.0f} s ({root})", flush=True)
    return root / "outputs" / profile


def collect(out: Path, ablation: bool = False) -> dict[str, float]:
    """The figures of one run (name -> value) from its stored outputs; with ``ablation``, its ablation's AUCs."""
    res: dict[str, float] = {}
    t2 = pd.read_csv(out / "models" / "table2.csv")
    for r in t2.itertuples():
        res[f"Table 2 AUC | {r.model} | {r.cohort}"] = float(r.auc)
    dsfr = json.loads((out / "models" / "results.json").read_text())["dsfr_model"]
    for r in t2[t2.model == dsfr].itertuples():
        res[f"Table 2 AUC | DSFR (the phase chosen by development CV) | {r.cohort}"] = float(r.auc)
    res["DSFR phase chosen is PP (1) or not (0)"] = float(dsfr == "DSFR-PP")
    vis = t2[(t2.model == "Visual") & (t2.cohort == "development")]
    chosen = t2[(t2.model == dsfr) & (t2.cohort == "development")]
    if len(vis) == 1 and len(chosen) == 1:
        res["Table 2 AUC | DSFR - Visual | development"] = float(chosen.auc.iloc[0] - vis.auc.iloc[0])
    t4 = out / "survival" / "synthetic" / "table4_discrimination.csv"
    if t4.exists():
        for r in pd.read_csv(t4).itertuples():
            res[f"Table 4 C-index | {r.model} | {r.cohort}"] = float(r.c_index)
            if hasattr(r, "tdauc"):
                res[f"Table 4 tdAUC | {r.model} | {r.cohort}"] = float(r.tdauc)
    sr = out / "survival" / "synthetic" / "results.json"
    if sr.exists():
        surv = json.loads(sr.read_text())
        for cohort, c in surv.get("cohorts", {}).items():
            if c.get("logrank_p") is not None:
                res[f"Survival | KM log-rank p | {cohort}"] = float(c["logrank_p"])
        final = surv.get("signature_hr_final")  # the signature in the final multivariable Cox model (Table 3)
        if final:
            res["Survival | signature in the final Cox model: HR | development"] = float(final["hr"])
            res["Survival | signature in the final Cox model: p | development"] = float(final["p"])
    for ph in ("AP", "PP"):
        m = json.loads((out / "segmentation" / ph / "metrics.json").read_text())
        for g in m.get("dsc_by_group", []):
            res[f"Dice | {ph} | {g['group']}"] = float(g["mean"])
    gt = out / "models" / "ground_truth.json"
    if gt.exists():
        for c, v in json.loads(gt.read_text()).get("spearman", {}).items():
            res[f"Spearman signature vs latent | {c}"] = float(v["rho"])
    if ablation:
        for r in pd.read_csv(out / "models" / "ablation.csv").itertuples():
            for c in ("development", "validation"):
                res[f"Ablation AUC | {r.variant} | {r.phase} | {c}"] = float(getattr(r, c))
    return res


def finished_outputs(spec: str, profile: str = "demo") -> tuple[int, Path]:
    """``SEED=ROOT`` -> (seed, ``ROOT/outputs/<profile>``) of a finished book whose cohort was generated with that
    seed (its ``stamp.json`` says so) and whose run summary lists no failed step."""
    seed_text, _, root_text = spec.partition("=")
    if not root_text or not seed_text.strip().isdigit():
        raise SystemExit(f"--finished {spec!r}: expected SEED=ROOT, e.g. 2022=outputs/bench/book-{profile}")
    seed, root = int(seed_text), Path(root_text).resolve()
    stamps = sorted(root.glob("data/*/stamp.json"))
    found = {json.loads(f.read_text()).get("spec", {}).get("seed") for f in stamps}  # hcc_utils.synthetic's stamp
    if found != {seed}:
        raise SystemExit(f"--finished {spec!r}: the cohort under {root / 'data'} was generated with seed(s) "
                         f"{sorted(found) or 'none'}, not {seed}")
    out = root / "outputs" / profile
    summary = out / "run_summary.json"
    if not summary.exists():
        raise SystemExit(f"--finished {spec!r}: {summary} is missing (no finished book of profile {profile!r})")
    steps = json.loads(summary.read_text())["steps"]
    bad = [s["step"] for s in steps if s["status"] not in ("ran", "skipped", "unavailable")]
    if bad:
        raise SystemExit(f"--finished {spec!r}: the book's steps {bad} did not finish")
    return seed, out


def planted_figures(seed: int, profile: str = "demo") -> dict[str, float]:
    """What the cohort of generator ``seed`` allows (:func:`benchmarks.planted.seed_figures`), as stability figures."""
    from benchmarks.planted import seed_figures
    from hcc_utils.config import load_profile

    f = seed_figures(seed, load_profile(profile))
    return {"Planted (tables only) | Visual | development": f["visual"],
            "Planted (tables only) | image phenotype | development": f["image phenotype"],
            "Planted (tables only) | image phenotype - Visual | development": f["gap"]}


def summarise(per_seed: dict[int, dict[str, float]]) -> pd.DataFrame:
    """Mean, min, max and the per-seed values of every figure."""
    df = pd.DataFrame(per_seed)
    df.columns = [f"seed {s}" for s in df.columns]
    out = pd.DataFrame({"mean": df.mean(1), "min": df.min(1), "max": df.max(1)}).join(df)
    return out.sort_index()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.stability", description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    ap.add_argument("--profile", default="demo")
    ap.add_argument("--force", action="store_true", help="rerun every step (default: unchanged steps are skipped)")
    ap.add_argument("--ablation", action="store_true", help="also report the ablation's AUCs")
    ap.add_argument("--finished", action="append", default=[], metavar="SEED=ROOT",
                    help="take this seed's figures from a book already run in ROOT (e.g. 2022=outputs/bench/book-demo)")
    a = ap.parse_args(argv)
    from benchmarks.tasks import cpu_peak

    t0 = time.perf_counter()
    machine = {**machine_info(), **cpu_peak()}  # before the books: an idle CPU
    git = git_info()  # the code the books run with
    done = dict(finished_outputs(f, a.profile) for f in a.finished)
    a.seeds = list(dict.fromkeys(a.seeds + list(done)))
    per_seed = {}
    for s in a.seeds:
        out = done[s] if s in done else run_seed(s, a.profile, a.force)
        per_seed[s] = {**collect(out, a.ablation), **planted_figures(s, a.profile)}
    table = summarise(per_seed)
    stamp = timestamp()
    dest = ROOT / "benchmarks" / "results" / f"stability-{stamp}.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"profile": a.profile, "seeds": a.seeds, "ablation": a.ablation, "timestamp": stamp,
                       "machine": machine, "git": git,
                       "finished": {str(k): str(Path(v).relative_to(ROOT)) if Path(v).is_relative_to(ROOT) else str(v)
                                    for k, v in done.items()},
                       "seconds": time.perf_counter() - t0,
                       "figures": table.reset_index(names="figure").to_dict(orient="records")}, indent=1)
    dest.write_text(text)
    kept = KEPT / f"{a.profile}-{machine_kind(machine)}.json"
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_text(text)
    with pd.option_context("display.width", 200, "display.max_rows", 500, "display.max_colwidth", 70):
        print(table.round(3).to_string())
    print(f"written: {dest} (kept as {kept.relative_to(ROOT)})")
    from benchmarks.runner import refresh_report

    page = refresh_report()
    if page is not None:
        print(f"results page rewritten: {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
