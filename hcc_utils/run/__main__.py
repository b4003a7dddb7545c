"""Command line of the book: ``python -m hcc_utils.run {book,assets,steps} ...`` (``--help`` lists the options)."""
from __future__ import annotations

import argparse
import json
import sys

from hcc_utils.config import PROFILES, load_profile
from hcc_utils.run.assets import assets_present, vendor_assets, vendor_dir
from hcc_utils.run.pipeline import run_book
from hcc_utils.run.steps import CODE_ROOT, RunError, plan


def parser() -> argparse.ArgumentParser:
    """The command-line parser (``book``, ``assets``, ``steps``)."""
    ap = argparse.ArgumentParser(prog="python -m hcc_utils.run",
                                 description="Run the notebooks with papermill and build the Jupyter Book.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("book", help="run the notebooks with papermill and build the HTML book")
    b.add_argument("--profile", default="demo", choices=PROFILES)
    b.add_argument("--manifest", default=None, help="your cohort's manifest (default: the synthetic cohort)")
    b.add_argument("--seed", type=int, default=None)
    b.add_argument("--force", action="store_true", help="redo every step even if its inputs did not change")
    b.add_argument("--only", nargs="+", default=None, metavar="STEP", help="run only these steps")
    b.add_argument("--no-build", action="store_true", help="run the notebooks but do not build the HTML")
    b.add_argument("--no-optional", action="store_true", help="leave out the real-data chapters")
    b.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="notebooks run at once (default: $HCC_JOBS, else the CPUs, at most 4); results do not depend on it")
    a = sub.add_parser("assets", help="vendor require.js, the widgets HTML manager and MathJax from npm")
    a.add_argument("--force", action="store_true", help="reinstall even if present")
    s = sub.add_parser("steps", help="list the steps of a profile")
    s.add_argument("--profile", default="demo", choices=PROFILES)
    return ap


def main(argv: list[str] | None = None) -> int:
    """Run the command line; 0 on success, 1 (with the reason on stderr) when a step or an input fails."""
    args = parser().parse_args(argv)
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
                     build=not args.no_build, optional=not args.no_optional, jobs=args.jobs)
    except RunError as exc:
        print(f"\nERROR: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
