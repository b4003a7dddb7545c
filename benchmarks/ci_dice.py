"""How reliably the ci profile's U-Net learns, cohort by cohort: ``python -m benchmarks.ci_dice`` (not part of ``make test``).

For each generator seed the ci cohort of that seed is generated under ``outputs/bench/ci-dice/<seed>/`` and the PP
network trained (training seed = generator seed, or ``--train-seeds``) and applied to every patient. The figure is
the one ``tests/test_features.py::test_ci_cohort_end_to_end`` requires to be >= 0.6: the mean Dice of the patients
the network never trained on whose tumour a 6-mm grid resolves (:func:`resolved_unseen_dice`). ``--unet KEY=VALUE``
overrides the profile's ``unet`` settings (e.g. ``loss=dice_ce``), to compare settings on the same cohorts. About a
minute a seed on 2 CPUs; the figures go to ``benchmarks/results/ci-dice-<stamp>.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import pandas as pd
import yaml

from benchmarks.core import ROOT, timestamp

#: The tumours a 6-mm grid resolves: at least this diameter (mm), washing out in the portal phase.
RESOLVED_MM = 30


def _unseen(dsc: pd.DataFrame) -> pd.DataFrame:
    """The rows of patients outside the training group that have a manual mask (a Dice)."""
    return dsc[(dsc["group"] != "train") & dsc["dsc"].notna()]


def resolved_unseen_dice(dsc: pd.DataFrame, truth: pd.DataFrame) -> float:
    """Mean Dice of the patients outside the training group with a manual mask and a resolved tumour.

    ``dsc``: :func:`hcc_utils.segmentation.predict_cohort`'s table; ``truth``: the cohort's ``truth.csv`` indexed by
    ``patient_id`` (evaluation only; no model reads it).
    """
    unseen = _unseen(dsc).set_index("patient_id").join(truth[["diameter_mm", "washout"]])
    return float(unseen.loc[(unseen["diameter_mm"] >= RESOLVED_MM) & (unseen["washout"] == 1), "dsc"].mean())


def run(seed: int, train_seed: int, unet: dict) -> dict:
    """Generate the ci cohort of ``seed``, train and apply its PP network; the figures of the run."""
    from hcc_utils import segmentation as seg
    from hcc_utils import synthetic
    from hcc_utils.config import load_profile

    root = ROOT / "outputs" / "bench" / "ci-dice" / str(seed)
    tag = "-".join(f"{k}={v}" for k, v in sorted(unet.items())) or "profile"
    prof = load_profile("ci", overrides={
        "outputs": str(root / f"train{train_seed}-{tag}"), "cache": str(root / "cache"),
        "cohort": {"seed": seed, "root": str(root / "data"), "manifest": str(root / "data" / "data_manifest.csv")},
        "unet": unet})
    manifest = synthetic.generate_cohort(prof, progress=False)
    truth = pd.read_csv(manifest.parent / "truth.csv", dtype={"patient_id": str}).set_index("patient_id")
    t0 = time.perf_counter()
    seg.train_phase(manifest, prof, "PP", seed=train_seed, progress=False)
    dsc = seg.predict_cohort(manifest, prof, "PP", progress=False)
    unseen = _unseen(dsc)
    return {"seed": seed, "train_seed": train_seed, "unet": unet, "loss": prof["unet"].get("loss", "dice_ce"),
            "resolved_unseen_dice": resolved_unseen_dice(dsc, truth),
            "unseen_dice": float(unseen["dsc"].mean()), "n_unseen": len(unseen),
            "seconds_train_predict": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.ci_dice", description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(2022, 2028)), help="generator seeds")
    ap.add_argument("--train-seeds", type=int, nargs="+", help="training seeds (default: each generator seed)")
    ap.add_argument("--unet", action="append", default=[], metavar="KEY=VALUE", help="a ci unet setting to override")
    a = ap.parse_args(argv)
    unet = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in a.unet)}
    pairs = [(s, t) for s in a.seeds for t in (a.train_seeds or [s])]
    rows = []
    for s, t in pairs:
        rows.append(run(s, t, unet))
        print(json.dumps(rows[-1]), flush=True)
    df = pd.DataFrame(rows)
    dest = ROOT / "benchmarks" / "results" / f"ci-dice-{timestamp()}.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps({"runs": rows, "mean": float(df["resolved_unseen_dice"].mean()),
                                "min": float(df["resolved_unseen_dice"].min())}, indent=1))
    print(df[["seed", "train_seed", "loss", "resolved_unseen_dice", "unseen_dice", "seconds_train_predict"]]
          .round(3).to_string(index=False))
    print(f"written: {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
