"""Cost of the data checks on a cohort: ``python benchmarks/data_checks.py [MANIFEST]`` (default: the demo manifest).

Prints seconds for: the integrity check of every image file (read to its end), the plausibility checks of the
images (full pixel read, HU, geometry, mask on image, duplicates), the cohort-level checks, the whole ``validate``,
and the run's change detection (``manifest_digest``, content of every table and image).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from hcc_utils import checks, imaging, run
from hcc_utils.manifest import PHASES, ValidationReport, _patient_table, read_manifest, validate


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    path = Path(argv[0]) if argv else Path(__file__).resolve().parents[1] / "data_manifest.csv"
    df = read_manifest(path)
    files = [Path(v) for c in ("ct_ap", "ct_pp", "mask_ap", "mask_pp") for v in df[c].dropna() if Path(v).is_file()]
    t0 = time.perf_counter()
    bad = [f for f in files if checks.file_integrity(f)]
    t_integrity = time.perf_counter() - t0
    t0 = time.perf_counter()
    report = ValidationReport(str(path))
    for _, row in df.iterrows():
        for ph in PHASES:
            ct, mask = row[f"ct_{ph.lower()}"], row[f"mask_{ph.lower()}"]
            img = imaging.read_image(ct)
            hu = imaging.sitk.GetArrayFromImage(img)
            checks.intensity_problems(hu)
            checks.geometry_problems(img)
            checks.pixel_digest(hu)
            if isinstance(mask, str):
                checks.mask_on_image_problems(hu, imaging.sitk.GetArrayFromImage(imaging.read_image(mask)))
    t_plaus = time.perf_counter() - t0
    t0 = time.perf_counter()
    checks.cohort_checks(_patient_table(df, report), df, report, str(path))
    t_cohort = time.perf_counter() - t0
    t0 = time.perf_counter()
    full = validate(path, progress=False)
    t_validate = time.perf_counter() - t0
    t0 = time.perf_counter()
    run.manifest_digest(path)
    t_digest = time.perf_counter() - t0
    size = sum(f.stat().st_size for f in files) / 1e6
    print(f"{path}: {len(df)} patients, {len(files)} image files, {size:.0f} MB")
    print(f"integrity (every file read to its end): {t_integrity:6.1f} s  ({len(bad)} damaged)")
    print(f"image plausibility (pixels, HU, geometry, mask on image, digests): {t_plaus:6.1f} s")
    print(f"cohort-level checks: {t_cohort:6.2f} s")
    print(f"validate() in all: {t_validate:6.1f} s  ({len(full.errors)} errors, {len(full.warnings)} warnings)")
    print(f"change detection (manifest_digest, content hashes): {t_digest:6.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
