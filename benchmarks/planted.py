"""What the synthetic cohort's planted truth lets the book find, seed by seed: ``make planted`` (tables only).

For each generator seed, :func:`hcc_utils.synthetic.cohort_tables` gives the tables ``make cohort`` writes for that
seed (no images are made). On the development patients, the book's nested procedure (the profile's grid, folds and
seed, :func:`hcc_utils.classifiers.fit_nested`) is fitted on

- the eight consensus visual reads: the book's Visual model of Table 2, the same fit on the same data;
- the true image phenotype (:data:`hcc_utils.synthetic.IMAGE_PHENOTYPE`, log diameter): chapter 4's ceiling, what a
  perfect reader of the images could reach by that procedure on that sample.

Their development AUCs and the gap between them are written per seed to ``benchmarks/results/planted-<stamp>.json``
with the mean and standard deviation over the seeds, and the mean over the stability seeds
(:data:`benchmarks.core.SEEDS`) beside them. The gap is what a perfect image model fitted alike would gain
over the visual reads on that sample: the room each cohort leaves for Table 2's DSFR - Visual margin. A few minutes
for 50 seeds.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import sys
import time

import numpy as np
import pandas as pd

from benchmarks.core import ROOT, SEEDS


def seed_figures(seed: int, profile) -> dict[str, float]:
    """Development nested-CV AUC of the visual reads and of the image phenotype on the cohort of generator ``seed``."""
    from sklearn.metrics import roc_auc_score

    from hcc_utils.classifiers import fit_nested, visual_design
    from hcc_utils.manifest import early_recurrence
    from hcc_utils.models import phenotype_design
    from hcc_utils.synthetic import IMAGE_PHENOTYPE, LANDMARK, cohort_spec, cohort_tables

    t = cohort_tables(dataclasses.replace(cohort_spec(profile)[0], seed=int(seed)))
    dev = t[t["cohort"] == "development"]
    y = pd.Series(np.asarray(early_recurrence(dev["rfs_months"], dev["recurrence"], LANDMARK), dtype=int),
                  index=dev.index)
    m = profile["models"]
    grid, folds, fseed, jobs = m["grid"], int(m["cv_folds"]), profile.seed, int(m.get("n_jobs") or 1)
    out = {"er_rate": float(y.mean())}
    for name, X in (("visual", visual_design(dev)), ("image phenotype", phenotype_design(dev, IMAGE_PHENOTYPE))):
        f = fit_nested(name, X, y, None, grid, folds, fseed, n_jobs=jobs)
        out[name] = float(roc_auc_score(y, f.cv_prob.loc[y.index]))
    out["gap"] = out["image phenotype"] - out["visual"]
    return out


def main(argv: list[str] | None = None) -> int:
    from tqdm.auto import tqdm

    from hcc_utils.config import load_profile

    ap = argparse.ArgumentParser(prog="python -m benchmarks.planted", description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", help="generator seeds (default: 50 from 2022)")
    ap.add_argument("--profile", default="demo")
    a = ap.parse_args(argv)
    seeds = a.seeds or list(range(2022, 2072))
    profile = load_profile(a.profile)
    t0 = time.perf_counter()
    per_seed = {s: seed_figures(s, profile) for s in tqdm(seeds, desc="seeds")}
    df = pd.DataFrame(per_seed).T
    summary = pd.DataFrame({"mean": df.mean(), "sd": df.std(ddof=1), "min": df.min(), "max": df.max()})
    stab = [s for s in SEEDS if s in per_seed]
    if stab:
        summary[f"mean of seeds {', '.join(map(str, stab))}"] = df.loc[stab].mean()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    dest = ROOT / "benchmarks" / "results" / f"planted-{stamp}.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps({"profile": a.profile, "seeds": seeds, "seconds": time.perf_counter() - t0,
                                "per_seed": {str(s): v for s, v in per_seed.items()},
                                "summary": summary.to_dict(orient="index")}, indent=1))
    with pd.option_context("display.width", 200):
        print(df.loc[stab].round(3).to_string() if stab else "")
        print(summary.round(3).to_string())
    print(f"written: {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
