"""The study bundle: everything needed to apply a finished run to new patients, in one checked folder.

:func:`write_bundle` copies from ``outputs/<profile>/`` into ``outputs/<profile>/bundle/``:

==============================  ==================================================================================
file                            what
==============================  ==================================================================================
``bundle.json``                 format, creation time, profile, the chosen DSFR model and phase, the file list
``code_version.json``           package version, git commit (when known), SHA-256 of the computing sources
``settings.json``               the resolved profile settings of the run (windows, network input, U-Net, features)
``preprocessing.json``          window, size, normalisation per phase; post-processing, mirroring, layers, mask rule
``segmentation/<PH>/model.pth`` the selected U-Net checkpoint of each phase (with its ``metrics.json``)
``models/models.joblib``        the fitted pipelines (imputer, scaler, logistic regression) of every model
``models/models.json``          DSFR and DSFR-C as numbers: features, medians, means, SDs, coefficients, threshold
``models/dsfr_weights.csv``     the DSFR model's standardised weights (Grad-CAM picks its top features from it)
``survival/nomogram.json``      the nomogram spec the calculators read (:class:`hcc_utils.stats.NomogramCalculator`)
``survival/mapping.json``       how the clinical table is coded for the nomogram (the survival chapter's mapping)
``training_summary.json``       development cohort: sizes, events, and the range of every model input seen
``checksums.json``              SHA-256 of every other file
==============================  ==================================================================================

:func:`load_bundle` checks every checksum and the code version before anything is unpickled, and refuses a bundle
that does not match with a :class:`BundleError` naming the file or the version.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

import hcc_utils as _package
from hcc_utils.config import Profile
from hcc_utils.files import file_sha256, write_json

BUNDLE_FORMAT = "hcc-dsfr-bundle"
BUNDLE_VERSION = 1
PACKAGE = Path(__file__).resolve().parent
#: Modules whose code decides the numbers a bundle gives (a package folder counts as a whole); their content digest
#: is the bundle's code version. A name that is not in this checkout is skipped.
COMPUTE_MODULES = ("config", "files", "imaging", "tables", "stats", "checks", "manifest", "preprocess",
                   "segmentation", "features", "models", "survival")
#: Outputs of the run a bundle is made from (relative to ``outputs/<profile>/``).
REQUIRED_OUTPUTS = ("segmentation/AP/model.pth", "segmentation/PP/model.pth", "models/models.joblib",
                    "models/results.json", "models/signature.csv", "models/dsfr_weights.csv",
                    "features/AP.parquet", "features/PP.parquet", "survival/synthetic/nomogram.json",
                    "survival/synthetic/predictions.csv")
BUNDLED_MODELS = ("DSFR", "DSFR-C")


class BundleError(RuntimeError):
    """A bundle is incomplete, altered, or made by other code; the message says which file or version."""


# ----------------------------------------------------------------------------------------------------------------
# code version
# ----------------------------------------------------------------------------------------------------------------
def source_digest(package: Path = PACKAGE, modules=COMPUTE_MODULES) -> str:
    """SHA-256 over the sources of ``modules`` (file names and contents, in sorted order).

    Parameters
    ----------
    package : Path
        The ``hcc_utils`` folder.
    modules : sequence of str
        Module or subpackage names.

    Returns
    -------
    str
    """
    h = hashlib.sha256()
    files = []
    for m in modules:
        f, d = package / f"{m}.py", package / m
        if f.is_file():
            files.append(f)
        elif d.is_dir():
            files += [p for p in d.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                      and p.suffix not in (".pyc", ".pyo")]
    for p in sorted(files):
        h.update(str(p.relative_to(package)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def git_commit(folder: Path = PACKAGE.parent) -> dict:
    """``{"commit": sha or None, "dirty": bool or None}`` of the checkout holding the package (None without git)."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return {"commit": None, "dirty": None}
        st = subprocess.run(["git", "status", "--porcelain", "--", "hcc_utils"], cwd=folder, capture_output=True,
                            text=True, timeout=10)
        return {"commit": sha.stdout.strip(), "dirty": bool(st.stdout.strip()) if st.returncode == 0 else None}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def code_version() -> dict:
    """The code version recorded in a bundle: package version, git commit and the digest of the computing sources."""
    return {"package": "hcc_utils", "package_version": _package.__version__, **git_commit(),
            "source_digest": source_digest(), "source_modules": list(COMPUTE_MODULES)}


# ----------------------------------------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------------------------------------
def pipeline_numbers(estimator, features: list[str]) -> dict:
    """A fitted imputer + scaler + logistic pipeline as plain numbers.

    ``p = 1 / (1 + exp(-(intercept + sum_j coef_j * (x_j - mean_j) / scale_j)))`` with a blank ``x_j`` replaced by
    ``median_j`` first.
    """
    imp, sc, clf = (estimator.named_steps[k] for k in ("impute", "scale", "clf"))
    return {"features": list(features), "median": [float(v) for v in imp.statistics_],
            "mean": [float(v) for v in sc.mean_], "scale": [float(v) for v in sc.scale_],
            "coef": [float(v) for v in clf.coef_.ravel()], "intercept": float(clf.intercept_[0]),
            "params": {"C": float(clf.C), "max_iter": int(clf.max_iter), "tol": float(clf.tol)},
            "formula": "p = 1 / (1 + exp(-(intercept + sum(coef * (x - mean) / scale)))), blank x -> median"}


def _range(s: pd.Series) -> dict:
    x = pd.to_numeric(s, errors="coerce").dropna().astype(float)
    if x.empty:
        return {"n": 0}
    return {"n": int(len(x)), "min": float(x.min()), "max": float(x.max()), "p01": float(x.quantile(0.01)),
            "p99": float(x.quantile(0.99)), "mean": float(x.mean()), "sd": float(x.std(ddof=1)) if len(x) > 1 else 0.0}


def _id_hash(pid) -> str:
    return hashlib.sha256(str(pid).encode("utf-8")).hexdigest()


def training_summary(profile: Profile, manifest: Path, models_meta: dict) -> dict:
    """Sizes, events and the range of every input of the bundled models in the development cohort.

    Parameters
    ----------
    profile : Profile
    manifest : Path
        The manifest the run read.
    models_meta : dict
        ``models.json`` content (feature lists).

    Returns
    -------
    dict
        ``cohorts`` (n, early recurrences), ``inputs`` (per model input: n, min, max, 1st/99th percentile, mean, SD;
        categorical inputs: the levels seen), ``signature``, ``nomogram_total_points``, ``tumour`` (per phase:
        tumour slices and area at network size), and SHA-256 digests of the development and validation
        ``patient_id``s (to say which kind a book value is; the ids themselves are not stored).
    """
    from hcc_utils import models as md
    from hcc_utils.manifest import CLINICAL_VARIABLES, load_patient_table

    out_root = profile.outputs
    res = json.loads((out_root / "models" / "results.json").read_text())
    pt = load_patient_table(manifest)
    pt.index = pt.index.astype(str)
    dev_ids = pt.index[pt["cohort"] == "development"]
    feats = md.load_features(out_root / "features")
    clin = md.clinical_design(pt)
    inputs: dict[str, dict] = {}
    for name in BUNDLED_MODELS:
        for col in models_meta[name]["features"]:
            if col in inputs:
                continue
            if col in clin.columns:
                s = clin.loc[dev_ids, col]
            else:
                ph = models_meta["phase"]
                s = feats[ph].loc[dev_ids, col]
            inputs[col] = _range(s)
    levels = {v.name: sorted(pt.loc[dev_ids, v.name].dropna().astype(str).unique().tolist())
              for v in CLINICAL_VARIABLES if v.kind != "continuous"}
    raw = {v.name: _range(pt.loc[dev_ids, v.name]) for v in CLINICAL_VARIABLES if v.kind == "continuous"}
    sig = pd.read_csv(out_root / "models" / "signature.csv", dtype={"patient_id": str})
    sv = pd.read_csv(out_root / "survival" / "synthetic" / "predictions.csv", dtype={"patient_id": str})
    tumour = {}
    for ph in ("AP", "PP"):
        q = out_root / "features" / f"{ph}_qc.csv"
        if q.exists():
            qc = pd.read_csv(q, dtype={"patient_id": str}).set_index("patient_id")
            qc = qc.loc[qc.index.intersection(dev_ids)]
            tumour[ph] = {"n_tumour_slices": _range(qc["n_tumour_slices"]),
                          "tumour_area_px": _range(qc["tumour_area_px"])}
    return {
        "range_of": "development cohort (the patients every bundled model was fitted on)",
        "cohorts": {c: {"n": res["n"][c], "n_er": res["n_er"][c]} for c in res["n"]},
        "inputs": inputs,
        "clinical_raw": raw,
        "clinical_levels": levels,
        "signature": _range(sig.loc[sig["cohort"] == "development", "dsfr_signature"]),
        "nomogram_total_points": _range(sv.loc[sv["cohort"] == "development", "nomogram_total_points"]),
        "tumour": tumour,
        "patient_id_sha256": {c: sorted(_id_hash(p) for p in pt.index[pt["cohort"] == c])
                              for c in pt["cohort"].dropna().unique()},
    }


def _run_manifest(profile: Profile) -> Path:
    f = profile.outputs / "run_summary.json"
    if f.exists():
        try:
            m = json.loads(f.read_text()).get("manifest")
            if m and Path(m).exists():
                return Path(m)
        except (ValueError, OSError):
            pass
    return profile.manifest


def missing_outputs(profile: Profile) -> list[str]:
    """Outputs of the run that a bundle needs and that do not exist (empty when a bundle can be written)."""
    return [r for r in REQUIRED_OUTPUTS if not (profile.outputs / r).exists()]


def write_bundle(profile: Profile, manifest: str | Path | None = None, out: str | Path | None = None) -> Path:
    """Write the study bundle of a finished run.

    Parameters
    ----------
    profile : Profile
        The run's profile (its ``outputs/<profile>/`` holds the trained networks, models and nomogram).
    manifest : path, optional
        The manifest the run read (default: the one in ``run_summary.json``, else the profile's).
    out : path, optional
        Destination folder (default ``outputs/<profile>/bundle``); replaced as a whole when it exists.

    Returns
    -------
    Path
        The bundle folder.

    Raises
    ------
    BundleError
        When an output of the run is missing (naming it and the notebook that writes it).
    """
    import joblib

    from hcc_utils import preprocess as pp
    from hcc_utils import segmentation as seg
    from hcc_utils import survival as sv

    src = profile.outputs
    missing = missing_outputs(profile)
    if missing:
        raise BundleError(f"cannot write the study bundle: {', '.join(str(src / m) for m in missing)} missing; "
                          "run the whole book first (`make book`)")
    manifest = Path(manifest) if manifest else _run_manifest(profile)
    dest = Path(out) if out else src / "bundle"
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)

    for ph in ("AP", "PP"):
        d = tmp / "segmentation" / ph
        d.mkdir(parents=True)
        shutil.copy2(src / "segmentation" / ph / "model.pth", d / "model.pth")
        m = src / "segmentation" / ph / "metrics.json"
        if m.exists():
            shutil.copy2(m, d / "metrics.json")
    prep = {ph: pp.preprocess_settings(profile, ph) for ph in ("AP", "PP")}
    write_json({"phases": prep, "postprocess": seg.postprocess_mode(profile), "tta": seg.tta_mode(profile),
                "feature_layers": list(profile["features"]["layers"]),
                "feature_mask": profile["features"].get("mask", "predicted"),
                "inference_batch_size": seg.inference_batch_size(profile),
                "probability_threshold": 0.5}, tmp / "preprocessing.json")
    write_json({"profile": profile.name, "seed": profile.seed, "settings": profile.settings}, tmp / "settings.json")

    (tmp / "models").mkdir()
    shutil.copy2(src / "models" / "models.joblib", tmp / "models" / "models.joblib")
    shutil.copy2(src / "models" / "dsfr_weights.csv", tmp / "models" / "dsfr_weights.csv")
    stored = joblib.load(src / "models" / "models.joblib")
    res = json.loads((src / "models" / "results.json").read_text())
    dsfr = stored["dsfr_model"]
    meta: dict[str, Any] = {"dsfr_model": dsfr, "phase": res["chosen_phase"], "landmark_months":
                            float(profile["stats"]["landmark_months"])}
    for key, name in (("DSFR", dsfr), ("DSFR-C", "DSFR-C")):
        m = stored["models"][name]
        meta[key] = {"model": name, "threshold": float(m["threshold"]),
                     "threshold_rule": "Youden threshold of the development cross-validated probabilities",
                     **pipeline_numbers(m["estimator"], m["features"])}
    write_json(meta, tmp / "models" / "models.json")

    (tmp / "survival").mkdir()
    shutil.copy2(src / "survival" / "synthetic" / "nomogram.json", tmp / "survival" / "nomogram.json")
    write_json(sv.synthetic_mapping(), tmp / "survival" / "mapping.json")
    write_json(training_summary(profile, manifest, meta), tmp / "training_summary.json")
    write_json(code_version(), tmp / "code_version.json")
    files = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file())
    write_json({"format": BUNDLE_FORMAT, "version": BUNDLE_VERSION,
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "profile": profile.name, "dsfr_model": dsfr, "phase": res["chosen_phase"],
                "files": files + ["bundle.json"]}, tmp / "bundle.json")
    sums = {str(p.relative_to(tmp)): file_sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
    write_json({"algorithm": "sha256", "files": sums}, tmp / "checksums.json")
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)
    return dest


def bundle_after_run(profile: Profile, manifest: str | Path | None = None,
                     log: Callable[[str], None] = print) -> Path | None:
    """Write the bundle at the end of a run when its outputs are all there (otherwise say why not and return None).

    Parameters
    ----------
    profile : Profile
    manifest : path, optional
        The manifest this run read (default: as :func:`write_bundle`).
    log : callable
        Receives one line.

    Returns
    -------
    Path or None
    """
    missing = missing_outputs(profile)
    if missing:
        log(f"study bundle not written: {', '.join(missing)} missing under {profile.outputs}")
        return None
    path = write_bundle(profile, manifest)
    log(f"study bundle: {path} ({bundle_size(path) / 2**20:.1f} MiB)")
    return path


def bundle_size(path: str | Path) -> int:
    """Bytes of all files of a bundle."""
    return int(sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file()))


# ----------------------------------------------------------------------------------------------------------------
# loading
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class Bundle:
    """A checked study bundle (see :func:`load_bundle`).

    Attributes
    ----------
    path : Path
    meta : dict
        ``bundle.json``.
    code : dict
        ``code_version.json``.
    settings : dict
        ``settings.json`` (``profile``, ``seed``, ``settings``).
    preprocessing : dict
    models : dict
        ``models.json`` (numbers of DSFR and DSFR-C).
    estimators : dict
        Model name -> fitted pipeline (from ``models.joblib``).
    nomogram : hcc_utils.stats.NomogramCalculator
    mapping : dict
        Coding of the clinical table for the nomogram.
    summary : dict
        ``training_summary.json``.
    """

    path: Path
    meta: dict
    code: dict
    settings: dict
    preprocessing: dict
    models: dict
    estimators: dict
    nomogram: Any
    mapping: dict
    summary: dict
    _networks: dict = field(default_factory=dict, repr=False)

    def profile(self, root: str | Path) -> Profile:
        """The run's settings as a :class:`~hcc_utils.config.Profile` rooted at ``root`` (for the slice cache)."""
        return Profile(name=self.settings["profile"], settings=json.loads(json.dumps(self.settings["settings"])),
                       root=Path(root))

    def network(self, phase: str, device="auto"):
        """The U-Net of a phase, in eval mode (loaded once)."""
        if phase not in self._networks:
            from hcc_utils import segmentation as seg

            self._networks[phase] = seg.load_model(self.profile(self.path), phase, device,
                                                   self.path / "segmentation" / phase / "model.pth")
        return self._networks[phase]

    def estimator(self, key: str):
        """The fitted pipeline of ``DSFR`` (the chosen phase's model) or ``DSFR-C``."""
        return self.estimators[self.models[key]["model"]]

    def weights(self) -> pd.DataFrame:
        """``models/dsfr_weights.csv``: the DSFR model's features and standardised weights."""
        return pd.read_csv(self.path / "models" / "dsfr_weights.csv")


def verify_checksums(path: str | Path) -> dict:
    """Check every file of a bundle against ``checksums.json``.

    Returns
    -------
    dict
        The checksums.

    Raises
    ------
    BundleError
        A missing ``checksums.json``, a listed file that is missing or differs, or a file that is not listed.
    """
    path = Path(path)
    f = path / "checksums.json"
    if not f.is_file():
        raise BundleError(f"{path} is not a study bundle: {f.name} is missing")
    sums = json.loads(f.read_text()).get("files", {})
    for rel, sha in sums.items():
        p = path / rel
        if not p.is_file():
            raise BundleError(f"bundle {path}: file {rel} is listed in checksums.json but missing")
        got = file_sha256(p)
        if got != sha:
            raise BundleError(f"bundle {path}: file {rel} has been changed (SHA-256 {got[:12]}..., "
                              f"checksums.json says {sha[:12]}...); rewrite the bundle with `make bundle`")
    extra = sorted(str(p.relative_to(path)) for p in path.rglob("*")
                   if p.is_file() and p.name != "checksums.json" and str(p.relative_to(path)) not in sums)
    if extra:
        raise BundleError(f"bundle {path}: file {extra[0]} is not listed in checksums.json"
                          + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""))
    return sums


def check_code_version(recorded: dict, path: str | Path = "") -> None:
    """Refuse a bundle made by other code.

    Raises
    ------
    BundleError
        When the package version or the digest of the computing sources differs (both named).
    """
    now = code_version()
    if recorded.get("package_version") != now["package_version"]:
        raise BundleError(f"bundle {path} was written by hcc_utils {recorded.get('package_version')}, this is "
                          f"{now['package_version']}")
    if recorded.get("source_digest") != now["source_digest"]:
        raise BundleError(
            f"bundle {path} was written by other code: source digest {str(recorded.get('source_digest'))[:12]}... "
            f"(commit {recorded.get('git_commit') or recorded.get('commit')}) against {now['source_digest'][:12]}... "
            f"(commit {now['commit']}) of the modules {', '.join(recorded.get('source_modules', []))}; rerun the "
            "book with this code or pass check_code=False to use it anyway")


def load_bundle(path: str | Path, check_code: bool = True) -> Bundle:
    """Read a study bundle after checking its checksums and code version.

    Parameters
    ----------
    path : str or Path
        The bundle folder (``outputs/<profile>/bundle``).
    check_code : bool
        Refuse a bundle written by other code (package version or source digest); False only warns.

    Returns
    -------
    Bundle

    Raises
    ------
    BundleError
        On any mismatch, naming the file or the version.
    """
    import warnings

    import joblib

    from hcc_utils.stats import NomogramCalculator

    path = Path(path)
    verify_checksums(path)
    meta = json.loads((path / "bundle.json").read_text())
    if meta.get("format") != BUNDLE_FORMAT or int(meta.get("version", 0)) != BUNDLE_VERSION:
        raise BundleError(f"bundle {path}: format {meta.get('format')!r} version {meta.get('version')}, expected "
                          f"{BUNDLE_FORMAT!r} version {BUNDLE_VERSION}")
    code = json.loads((path / "code_version.json").read_text())
    try:
        check_code_version(code, path)
    except BundleError as exc:
        if check_code:
            raise
        warnings.warn(str(exc), UserWarning, stacklevel=2)
    stored = joblib.load(path / "models" / "models.joblib")
    read = lambda rel: json.loads((path / rel).read_text())  # noqa: E731
    return Bundle(path=path, meta=meta, code=code, settings=read("settings.json"),
                  preprocessing=read("preprocessing.json"), models=read("models/models.json"),
                  estimators={n: m["estimator"] for n, m in stored["models"].items()},
                  nomogram=NomogramCalculator.from_dict(read("survival/nomogram.json")),
                  mapping=read("survival/mapping.json"), summary=read("training_summary.json"))


def main(argv: list[str] | None = None) -> int:
    """``python -m hcc_utils.bundle write --profile ci`` / ``check DIR``."""
    import argparse
    import sys

    from hcc_utils.config import PROFILES, load_profile

    ap = argparse.ArgumentParser(prog="python -m hcc_utils.bundle", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write", help="write outputs/<profile>/bundle from a finished run")
    w.add_argument("--profile", default="demo", choices=PROFILES)
    c = sub.add_parser("check", help="check a bundle's checksums and code version")
    c.add_argument("bundle")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "write":
            p = write_bundle(load_profile(args.profile))
            print(f"study bundle: {p} ({bundle_size(p) / 2**20:.2f} MiB)")
        else:
            b = load_bundle(args.bundle)
            print(f"bundle {b.path}: {len(b.meta['files'])} files, checksums and code version match")
    except BundleError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
