"""Stability of the demo book's results across synthetic cohorts: ``make stability`` (not part of ``make test``).

For each generator seed, the whole demo book runs in its own ``$HCC_ROOT`` (``outputs/bench/stability-<seed>/``, a
copy of ``profiles.yaml`` whose ``demo.cohort.seed`` is that seed), so the user's outputs are never touched. Then
every Table 2 AUC, every Table 4 C-index and tdAUC, the held-out and validation-centre Dice per phase, and the
signature's Spearman correlation with the latent are collected, and their mean and range over the seeds written to
``benchmarks/results/stability-<stamp>.json`` and printed as a table. ``--ablation`` adds the development and
validation AUCs of the book's ablation chapter (:mod:`hcc_utils.ablation`). ``--finished SEED=ROOT`` takes a seed's
figures from a book already run in ``ROOT`` on that seed's cohort (``make bench-book`` leaves the default seed's in
``outputs/bench/book-demo``) instead of running it again.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
SEEDS = (2022, 2023, 2024)


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
    t4 = out / "survival" / "synthetic" / "table4_discrimination.csv"
    if t4.exists():
        for r in pd.read_csv(t4).itertuples():
            res[f"Table 4 C-index | {r.model} | {r.cohort}"] = float(r.c_index)
            if hasattr(r, "tdauc"):
                res[f"Table 4 tdAUC | {r.model} | {r.cohort}"] = float(r.tdauc)
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
    t0 = time.perf_counter()
    done = dict(finished_outputs(f, a.profile) for f in a.finished)
    a.seeds = list(dict.fromkeys(a.seeds + list(done)))
    per_seed = {}
    for s in a.seeds:
        out = done[s] if s in done else run_seed(s, a.profile, a.force)
        per_seed[s] = collect(out, a.ablation)
    table = summarise(per_seed)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    dest = ROOT / "benchmarks" / "results" / f"stability-{stamp}.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps({"profile": a.profile, "seeds": a.seeds, "ablation": a.ablation,
                                "finished": {str(k): str(v) for k, v in done.items()},
                                "seconds": time.perf_counter() - t0,
                                "figures": table.reset_index(names="figure").to_dict(orient="records")}, indent=1))
    with pd.option_context("display.width", 200, "display.max_rows", 500, "display.max_colwidth", 70):
        print(table.round(3).to_string())
    print(f"written: {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
