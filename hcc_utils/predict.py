"""Apply a study bundle to new patients: masks, DSFR signature, DSFR-C probability, nomogram and a report each.

``python -m hcc_utils.predict --bundle outputs/demo/bundle --manifest NEW.csv --out predictions/`` or
:func:`predict` from a notebook. The manifest has the book's format (:mod:`hcc_utils.manifest`) without the outcome:
``patient_id``, ``ct_ap``, ``ct_pp`` and ``clinical_file`` are required, ``cohort``, ``seg_train``, masks and
``outcome_file`` optional (an outcome table is not read). It is validated first, with the book's checks; nothing is
computed while it has an error or an unaccepted plausibility warning.

Each patient goes through the steps of the book with the bundle's settings and models: the slice cache
(:func:`hcc_utils.preprocess.prepare_case`), the U-Net of each phase on every slice with the single-tumour
post-processing (the predicted masks are written on the image grid), the tumour-pooled deep features on the slices
with predicted tumour (:func:`hcc_utils.features.case_features`), the DSFR and DSFR-C pipelines, and the nomogram
spec (:class:`hcc_utils.stats.NomogramCalculator`) with the clinical values coded by the survival chapter's mapping.

Which kind of value
-------------------
Every value written here comes from the **final models** of the bundle (fitted on all development patients). In the
book, validation patients are predicted by the same final models, so their values agree; development patients'
values in the book are **cross-validated** (each predicted by a model that did not see them) and differ by design.
The ``value_kind`` column says this, and ``book_cohort`` names the book cohort a patient was part of (matched by a
digest of the patient_id stored in the bundle).

Outputs (``--out``): ``predictions.csv`` (one row per patient), ``patients/<name>.json`` (everything of one patient,
points per nomogram input included), ``masks/<PHASE>/<name>.nii.gz``, ``reports/<name>.html``
(:mod:`hcc_utils.patient_report`) and ``run.json`` (bundle, code version, seconds per patient); ``<name>`` is
:func:`hcc_utils.manifest.safe_name` of the patient_id.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from hcc_utils import features as fe
from hcc_utils import preprocess as pp
from hcc_utils import segmentation as seg
from hcc_utils.bundle import Bundle, BundleError, load_bundle
from hcc_utils.classifiers import clinical_variable
from hcc_utils.files import write_json
from hcc_utils.manifest import CLINICAL_VARIABLES, ManifestError, load_patient_table, read_manifest, safe_name, \
    validate

PHASES = ("AP", "PP")
VALUE_KIND = "final model of the bundle (fitted on all development patients)"


def _book_cohort(bundle: Bundle, pid: str) -> str:
    h = hashlib.sha256(pid.encode("utf-8")).hexdigest()
    for cohort, hashes in bundle.summary.get("patient_id_sha256", {}).items():
        if h in hashes:
            return cohort
    return ""


def segment_phase(bundle: Bundle, row: pd.Series, phase: str, profile, cache: Path, device="auto") -> dict:
    """Predicted mask and tumour-pooled features of one phase, by the book's rules.

    As notebook 02, the network runs on every slice (with the run's test-time mirroring) and the largest 3D
    component is kept; as notebook 03, the features are pooled on the slices that hold predicted tumour (the same
    forward passes, so the same numbers).

    Returns
    -------
    dict
        ``case`` (cache entry), ``prob`` (Z x S x S after post-processing), ``mask_image`` (SimpleITK, image grid),
        ``features`` (1-D float32, the patient's vector), ``slices``, ``areas``, ``source``.
    """
    pre = bundle.preprocessing
    model = bundle.network(phase, device)
    case = pp.prepare_case(row, phase, profile, cache_root=cache)
    bs = int(pre["inference_batch_size"])
    post, tta = pre["postprocess"], pre.get("tta", "none")  # bundles written before unet.tta: one pass
    prob = seg.predict_tumour(model, case.image, bs, postprocess=post, tta=tta)
    pred_px = (prob >= 0.5).reshape(prob.shape[0], -1).sum(1)
    visit = [int(z) for z in np.flatnonzero(pred_px > 0)]
    if not visit:
        visit = [int(np.argmax(prob.reshape(prob.shape[0], -1).max(1)))]
    mask_mode = "predicted"  # new patients have no manual mask
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        f, zs, areas, source = fe.case_features(model, case, list(pre["feature_layers"]), mask_mode, bs, "auto",
                                                visit, post, tta=tta)
    return {"case": case, "prob": prob, "mask_image": seg.to_image_grid(prob, case.meta), "features": f.mean(0),
            "slices": zs, "areas": areas, "source": source, "messages": [str(w.message) for w in caught]}


def _clinical_raw(pt: pd.DataFrame, mapping: dict, signature: float) -> pd.DataFrame:
    """One patient's row as the survival chapter reads it (text; binary 0/1 as integers; no outcome)."""
    row = {mapping["id"]: str(pt.index[0]), mapping["time"]: "1", mapping["event"]: "0",
           mapping["signature"]["column"]: repr(float(signature))}
    kinds = {v.name: v.kind for v in CLINICAL_VARIABLES}
    for v in mapping["covariates"]:
        x = pt.iloc[0].get(v["column"], np.nan)
        if x is None or (not isinstance(x, str) and pd.isna(x)):
            row[v["column"]] = ""
        elif kinds.get(v["column"]) == "binary":
            row[v["column"]] = str(int(float(x)))
        elif kinds.get(v["column"]) == "continuous":
            row[v["column"]] = repr(float(x))
        else:
            row[v["column"]] = str(x)
    return pd.DataFrame([row])


def nomogram_prediction(bundle: Bundle, pt: pd.DataFrame, signature: float) -> dict:
    """Nomogram points, total, linear predictor, RFS and ER probability at the landmark, and risk group.

    Returns
    -------
    dict
        :meth:`~hcc_utils.stats.NomogramCalculator.predict` output plus ``values`` (the coded inputs), or
        ``missing`` (inputs without a value) when it cannot be computed.
    """
    from hcc_utils.survival import prepare_table

    landmark = float(bundle.nomogram.spec["landmark"])
    raw = _clinical_raw(pt, bundle.mapping, signature)
    prep = prepare_table(raw, json.loads(json.dumps(bundle.mapping)), landmark=landmark, source="prediction")
    d = prep.data.iloc[0]
    values, missing = {}, []
    for v in bundle.nomogram.variables:
        x = d[v["name"]]
        if pd.isna(x) if not isinstance(x, str) else False:
            missing.append(v["name"])
            continue
        values[v["name"]] = int(x) if v["type"] == "binary" else (float(x) if v["type"] == "continuous" else x)
    if missing:
        return {"missing": missing, "values": values}
    out = bundle.nomogram.predict(values)
    out["values"] = values
    return out


def _outside(name: str, x: float, rng: dict, label: str | None = None) -> str | None:
    if rng.get("n", 0) == 0 or x is None or not np.isfinite(x):
        return None
    if x < rng["min"] or x > rng["max"]:
        return (f"{label or name} = {x:.4g} lies outside the development range [{rng['min']:.4g}, {rng['max']:.4g}]"
                " (the models were not fitted on such values)")
    return None


def range_warnings(bundle: Bundle, pt: pd.DataFrame, phase_feats: dict, result: dict) -> list[str]:
    """Warnings for inputs outside what the development cohort covered, blank inputs, and fallback masks."""
    s = bundle.summary
    out = []
    r = pt.iloc[0]
    labels = {v.name: v.label for v in CLINICAL_VARIABLES}
    # the clinical screen may have left variables out of DSFR-C
    in_c = {v.name for v in map(clinical_variable, bundle.models["DSFR-C"]["features"]) if v is not None}
    in_nomogram = {w["name"] for w in bundle.nomogram.variables}
    for v in CLINICAL_VARIABLES:
        x = r.get(v.name, np.nan)
        if x is None or (not isinstance(x, str) and pd.isna(x)):
            uses = ["DSFR-C uses the development median"] if v.name in in_c else []
            uses += ["the nomogram cannot be computed"] if v.name in in_nomogram else []
            if uses:
                out.append(f"{labels[v.name]} is blank: " + ", ".join(uses))
            continue
        if v.kind == "continuous":
            w = _outside(v.name, float(x), s["clinical_raw"].get(v.name, {}), labels[v.name])
        else:
            seen = s["clinical_levels"].get(v.name, [])
            key = str(int(float(x))) if v.kind == "binary" else str(x)
            w = None if not seen or key in seen else (f"{labels[v.name]} = {key} was not seen in development "
                                                      f"(levels seen: {', '.join(seen)})")
        if w:
            out.append(w)
    deep = [(c, float(phase_feats[c])) for c in bundle.models["DSFR"]["features"] if c in phase_feats]
    far = []
    for c, x in deep:
        rng = s["inputs"].get(c, {})
        if rng.get("n") and (x < rng["min"] or x > rng["max"]):
            sd = rng.get("sd") or 1.0
            far.append((max(rng["min"] - x, x - rng["max"]) / sd, c, x, rng))
    if far:
        far.sort(reverse=True)
        _, c, x, rng = far[0]
        out.append(f"{len(far)} of {len(deep)} deep features lie outside their development range (furthest: {c} = "
                   f"{x:.4g}, range [{rng['min']:.4g}, {rng['max']:.4g}])")
    w = _outside("DSFR signature", result["dsfr_signature"], s.get("signature", {}))
    if w:
        out.append(w)
    if np.isfinite(result.get("nomogram_total_points", np.nan)):
        w = _outside("nomogram total points", result["nomogram_total_points"], s.get("nomogram_total_points", {}))
        if w:
            out.append(w)
    for ph in PHASES:
        if result.get(f"mask_source_{ph}") == "fallback_max_prob":
            out.append(f"{ph}: the network predicts no tumour; features come from the most probable region "
                       "(check the CT and the outline in the report)")
        area = s.get("tumour", {}).get(ph, {}).get("tumour_area_px", {})
        w = _outside(f"{ph} tumour area (network pixels, summed over slices)", result.get(f"tumour_area_px_{ph}"),
                     area)
        if w:
            out.append(w)
    return out


def predict(bundle: str | Path | Bundle, manifest: str | Path, out: str | Path, *, reports: bool = True,
            progress: bool = True, check_images: bool = True, device="auto", check_code: bool = True) -> pd.DataFrame:
    """Predict every patient of a manifest with a study bundle.

    Parameters
    ----------
    bundle : path or Bundle
        A bundle folder (:func:`hcc_utils.bundle.load_bundle` checks it) or a loaded bundle.
    manifest : path
        Manifest of the new patients (outcome columns not needed).
    out : path
        Output folder (created).
    reports : bool
        Write the HTML report of each patient.
    progress : bool
        Show a progress bar.
    check_images : bool
        Run the image checks of the validation.
    device : str
        ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
    check_code : bool
        Refuse a bundle written by other code (see :func:`hcc_utils.bundle.load_bundle`).

    Returns
    -------
    DataFrame
        One row per patient (index ``patient_id``), as ``predictions.csv``.

    Raises
    ------
    ManifestError
        When the manifest has errors or unaccepted plausibility warnings (all listed, each naming patient, file and
        column); nothing is computed then.
    BundleError
        When the bundle fails its checks.
    """
    from tqdm.auto import tqdm

    from hcc_utils import models as md
    from hcc_utils.imaging import write_image

    b = bundle if isinstance(bundle, Bundle) else load_bundle(bundle, check_code=check_code)
    manifest = Path(manifest)
    report = validate(manifest, check_images=check_images, progress=False, purpose="predict")
    if report.blocking:
        raise ManifestError(f"the manifest {manifest} has {len(report.blocking)} problem(s); nothing was predicted:"
                            f"\n{report}", report.blocking)
    df = read_manifest(manifest, purpose="predict")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # blank clinical values are reported per patient below
        pt_all = load_patient_table(df)
    pt_all.index = pt_all.index.astype(str)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    profile = b.profile(out)
    cache = out / "cache"
    seg.set_threads()
    phase = b.models["phase"]
    m_dsfr, m_c = b.models["DSFR"], b.models["DSFR-C"]
    names = {ph: fe.feature_names(b.network(ph, device), b.preprocessing["feature_layers"],
                                  int(b.preprocessing["phases"][ph]["size"])) for ph in PHASES}
    rows, times = [], []
    for _, row in tqdm(list(df.iterrows()), desc="predicting", unit="patient", disable=not progress):
        t0 = time.perf_counter()
        pid = str(row["patient_id"])
        name = safe_name(pid)
        pt = pt_all.loc[[pid]]
        per = {ph: segment_phase(b, row, ph, profile, cache, device) for ph in PHASES}
        feats = {ph: pd.Series(per[ph]["features"], index=names[ph]) for ph in PHASES}
        table = (pd.concat([feats["AP"].add_prefix("AP_"), feats["PP"].add_prefix("PP_")]) if phase == "DP"
                 else feats[phase])
        X = pd.DataFrame([table[m_dsfr["features"]].to_numpy(dtype=float)], columns=m_dsfr["features"], index=[pid])
        sig = float(b.estimator("DSFR").predict_proba(X.to_numpy(dtype=float))[:, 1][0])
        clin = md.clinical_design(pt)
        xc = pd.concat([pd.DataFrame([table.to_numpy(dtype=float)], columns=table.index, index=[pid]), clin], axis=1)
        pc = float(b.estimator("DSFR-C").predict_proba(xc[m_c["features"]].to_numpy(dtype=float))[:, 1][0])
        nomo = nomogram_prediction(b, pt, sig)
        res = {"patient_id": pid, "value_kind": VALUE_KIND, "book_cohort": _book_cohort(b, pid),
               "dsfr_model": m_dsfr["model"], "dsfr_signature": sig, "dsfr_threshold": m_dsfr["threshold"],
               "dsfr_class": "high" if sig >= m_dsfr["threshold"] else "low",
               "dsfrc_er_prob": pc, "dsfrc_threshold": m_c["threshold"],
               "dsfrc_class": "high" if pc >= m_c["threshold"] else "low",
               "nomogram_total_points": nomo.get("total_points", np.nan), "nomogram_lp": nomo.get("lp", np.nan),
               "nomogram_rfs": nomo.get("rfs", np.nan), "nomogram_er_prob": nomo.get("er_prob", np.nan),
               "nomogram_risk_group": nomo.get("risk_group") or "",
               "landmark_months": float(b.nomogram.spec["landmark"])}
        for ph in PHASES:
            mpath = out / "masks" / ph / f"{name}.nii.gz"
            write_image(per[ph]["mask_image"], mpath)
            res[f"mask_{ph}"] = str(mpath.relative_to(out))
            res[f"mask_source_{ph}"] = per[ph]["source"]
            res[f"tumour_slices_{ph}"] = len(per[ph]["slices"])
            res[f"tumour_area_px_{ph}"] = float(np.sum(per[ph]["areas"]))
        warns = range_warnings(b, pt, table, res)
        if res["book_cohort"] == "development":
            warns.append("this patient was in the book's development cohort: the final models were fitted on them, "
                         "so these values are not an independent prediction (the book's development values are "
                         "cross-validated and differ by design)")
        res["warnings"] = warns
        res["n_warnings"] = len(warns)
        detail = {**res, "nomogram_points": nomo.get("points", {}), "nomogram_values": nomo.get("values", {}),
                  "nomogram_missing": nomo.get("missing", [])}
        if reports:
            from hcc_utils import patient_report

            rp = out / "reports" / f"{name}.html"
            patient_report.write_report(detail, b, row, per, rp)
            res["report"] = str(rp.relative_to(out))
        res["seconds"] = time.perf_counter() - t0
        detail["seconds"] = res["seconds"]
        write_json(detail, out / "patients" / f"{name}.json")
        times.append(res["seconds"])
        rows.append(res)
    table = pd.DataFrame(rows).set_index("patient_id")
    table["warnings"] = table["warnings"].map(lambda w: " | ".join(w))
    table.to_csv(out / "predictions.csv")
    write_json({"bundle": str(b.path), "bundle_created": b.meta.get("created"), "code_version": b.code,
                "manifest": str(manifest.resolve()), "n_patients": len(table), "value_kind": VALUE_KIND,
                "seconds_per_patient": times, "mean_seconds_per_patient": float(np.mean(times)) if times else None,
                "device": str(seg.resolve_device(device))}, out / "run.json")
    return table


def main(argv: list[str] | None = None) -> int:
    """Command line (see the module docstring)."""
    ap = argparse.ArgumentParser(prog="python -m hcc_utils.predict", description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", required=True, help="study bundle folder (outputs/<profile>/bundle)")
    ap.add_argument("--manifest", required=True, help="manifest of the new patients (no outcome needed)")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--no-reports", action="store_true", help="do not write the HTML reports")
    ap.add_argument("--no-images-check", action="store_true", help="skip the image checks of the validation")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)
    try:
        t = predict(args.bundle, args.manifest, args.out, reports=not args.no_reports,
                    check_images=not args.no_images_check, device=args.device)
    except (ManifestError, BundleError) as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    cols = ["dsfr_signature", "dsfrc_er_prob", "nomogram_rfs", "nomogram_risk_group", "n_warnings"]
    print(t[cols].to_string())
    print(f"\n{len(t)} patient(s) -> {Path(args.out) / 'predictions.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
