"""Benchmark tasks. Each runs inside a child process (:func:`benchmarks.core.run_child`) and returns a dict of numbers.

Every task calls the book's own public functions (``hcc_utils.synthetic``, ``preprocess``, ``segmentation``,
``features``, ``models``, ``survival``, ``stats``, ``run``) on a benchmark copy of a profile whose cohort, cache and
outputs live under ``data/bench/<tag>``, ``.cache/bench/<tag>`` and ``outputs/bench/<tag>`` (all git-ignored), so a
benchmark never touches the book's own cohort or results.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.core import ROOT, peak_rss_mb

# ----------------------------------------------------------------------------------------------------------------------
# profiles and folders
# ----------------------------------------------------------------------------------------------------------------------
def sizes_for(n: int, cohort: dict) -> tuple[int, int, int]:
    """Development, validation and annotated counts for a cohort of ``n`` in the proportions of ``cohort``
    (a profile's ``cohort`` block; demo: 180 + 28 patients, 60 annotated)."""
    total = int(cohort["n_development"]) + int(cohort["n_validation"])
    nd = max(4, int(round(n * int(cohort["n_development"]) / total)))
    nv = max(2, n - nd)
    na = max(3, min(nd, int(round(n * int(cohort["n_annotated"]) / total))))
    return nd, nv, na


def bench_profile(base: str, tag: str, n: int | None = None, overrides: dict | None = None):
    """Profile ``base`` redirected to the benchmark folders of ``tag``; ``n`` sets the cohort size."""
    from hcc_utils.config import _merge, load_profile

    prof0 = load_profile(base)
    cohort = dict(prof0["cohort"])
    if n is not None:
        cohort["n_development"], cohort["n_validation"], cohort["n_annotated"] = sizes_for(int(n), prof0["cohort"])
    cohort["root"] = f"data/bench/{tag}"
    cohort["manifest"] = f"data/bench/{tag}/data_manifest.csv"
    ov = {"outputs": f"outputs/bench/{tag}", "cache": f".cache/bench/{tag}", "cohort": cohort}
    return load_profile(base, overrides=_merge(ov, overrides or {}))


def _du_mb(path: Path) -> float:
    path = Path(path)
    if not path.exists():
        return 0.0
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def _threads():
    """The book's torch thread count (``segmentation.set_threads``: ``$HCC_TORCH_THREADS``, default 1)."""
    from hcc_utils.segmentation import set_threads

    set_threads()


# ----------------------------------------------------------------------------------------------------------------------
# pipeline stages
# ----------------------------------------------------------------------------------------------------------------------
def generate(base: str, tag: str, n: int | None = None, workers: int = 2) -> dict[str, Any]:
    """Cold generation of the synthetic cohort (the folder is removed first)."""
    from hcc_utils import synthetic

    prof = bench_profile(base, tag, n)
    shutil.rmtree(prof.cohort_root, ignore_errors=True)
    t0 = time.perf_counter()
    man = synthetic.generate_cohort(prof, force=True, root=prof.cohort_root, manifest=prof.manifest,
                                    workers=workers, progress=False)
    s = time.perf_counter() - t0
    c = prof["cohort"]
    n_pat = int(c["n_development"]) + int(c["n_validation"])
    return {"seconds": s, "n_patients": n_pat, "patients_per_s": n_pat / s, "disk_mb": _du_mb(prof.cohort_root),
            "manifest": str(man), "workers": workers}


def cache(base: str, tag: str, n: int | None = None, phases=("AP", "PP")) -> dict[str, Any]:
    """Cold build of the slice cache (window, normalise, resize every slice) for each phase."""
    from hcc_utils import preprocess as pp

    prof = bench_profile(base, tag, n)
    shutil.rmtree(prof.cache, ignore_errors=True)
    out: dict[str, Any] = {"phases": list(phases)}
    total, n_slices, n_vol = 0.0, 0, 0
    for ph in phases:
        t0 = time.perf_counter()
        cases = pp.prepare_cohort(prof.manifest, prof, ph, progress=False)
        s = time.perf_counter() - t0
        total += s
        n_vol += len(cases)
        n_slices += sum(c.n_slices for c in cases.values())
        out[f"seconds_{ph}"] = s
    out.update({"seconds": total, "volumes": n_vol, "slices": n_slices, "slices_per_s": n_slices / total,
                "volumes_per_s": n_vol / total, "disk_mb": _du_mb(prof.cache)})
    return out


def _limit_annotated(df, phase: str, max_patients: int | None):
    from hcc_utils import segmentation as seg

    ann = seg.annotated_patients(df, phase)
    if max_patients is None or len(ann) <= max_patients:
        return df, ann
    keep = set(sorted(ann)[: int(max_patients)])
    df = df.copy()
    df.loc[df["patient_id"].astype(str).isin(set(ann) - keep), "seg_train"] = 0
    return df, sorted(keep)


def train(base: str, tag: str, arch: str, epochs: int, n: int | None = None, max_patients: int | None = None,
          phase: str = "PP", unet: dict | None = None) -> dict[str, Any]:
    """U-Net training through ``segmentation.train_phase`` (fastai Learner, augmentation, best-Dice checkpoint).

    ``max_patients`` restricts the annotated patients (slow architectures): the full-epoch time of the profile is
    then extrapolated from the measured slices/s.
    """
    from hcc_utils import preprocess as pp
    from hcc_utils import segmentation as seg

    _threads()
    prof = bench_profile(base, tag, n, {"unet": {"arch": arch, "epochs": int(epochs), **(unet or {})}})
    df = pp.load_manifest(prof.manifest)
    full_ann = seg.annotated_patients(df, phase)
    cases = pp.prepare_cohort(df, prof, phase, patients=full_ann, progress=False)
    ctx = int(prof["preprocess"].get("context_slices", 0))
    tr_full, va_full = seg.split_patients(full_ann, float(prof["unet"].get("valid_fraction", 0.2)), prof.seed)
    full_train_slices = sum(len(pp.training_slices(cases[p], ctx)) for p in tr_full)
    full_valid_slices = sum(len(pp.training_slices(cases[p], ctx)) for p in va_full)
    df2, used = _limit_annotated(df, phase, max_patients)
    out_dir = prof.outputs / f"train_{arch}"
    shutil.rmtree(out_dir, ignore_errors=True)
    t0 = time.perf_counter()
    m = seg.train_phase(df2, prof, phase, progress=False, out_dir=out_dir)
    s = time.perf_counter() - t0
    hist = __import__("pandas").read_csv(out_dir / "history.csv")
    sps = float(m["train_slices_per_s"])
    return {
        "arch": arch, "unet": dict(prof["unet"]), "size": int(prof["preprocess"]["size"]), "epochs": int(epochs),
        "seconds": s, "seconds_fit": m["seconds_total"], "seconds_per_epoch": m["seconds_per_epoch"],
        "seconds_per_epoch_each": hist["seconds"].tolist(), "train_slices_per_s": sps,
        "n_train_slices": m["n_train_slices"], "n_valid_slices": m["n_valid_slices"],
        "annotated_used": len(used), "annotated_total": len(full_ann),
        "profile_epoch_train_slices": full_train_slices, "profile_epoch_valid_slices": full_valid_slices,
        "best_valid_dice": m["best_valid_dice"], "model_dir": str(out_dir),
        # slices/s counts training slices over the fit wall time (validation passes included), as train_phase does
        "profile_seconds_per_epoch_extrapolated": (full_train_slices * (m["seconds_per_epoch"] or 0)
                                                   / max(1, m["n_train_slices"])),
    }


def _install_model(prof, model_from: str, phase: str = "PP") -> None:
    from hcc_utils import segmentation as seg

    src = Path(model_from)
    dst = seg.phase_dir(prof, phase)
    shutil.copy2(src / "model.pth", dst / "model.pth")
    meta = json.loads((src / "metrics.json").read_text())
    meta["train_patients"], meta["valid_patients"] = [], []  # another cohort: its patient ids mean nothing here
    (dst / "metrics.json").write_text(json.dumps(meta, indent=1))


def infer(base: str, tag: str, model_from: str, n: int | None = None, phase: str = "PP") -> dict[str, Any]:
    """Segment every patient (``segmentation.predict_cohort``: cache -> network -> NIfTI on the image grid -> DSC)."""
    from hcc_utils import segmentation as seg

    _threads()
    prof = bench_profile(base, tag, n)
    _install_model(prof, model_from, phase)
    t0 = time.perf_counter()
    res = seg.predict_cohort(prof.manifest, prof, phase, progress=False)
    s = time.perf_counter() - t0
    m = json.loads((seg.phase_dir(prof, phase) / "metrics.json").read_text())["inference"]
    return {"seconds": s, "n_patients": len(res), "n_slices": m["n_slices"], "network_slices_per_s": m["slices_per_s"],
            "seconds_network": m["seconds_network"], "slices_per_s_end_to_end": m["n_slices"] / s,
            "patients_per_s": len(res) / s, "mean_dsc": float(res["dsc"].mean())}


def features(base: str, tag: str, n: int | None = None, phase: str = "PP") -> dict[str, Any]:
    """Tumour-pooled deep features of every patient (``features.extract_phase``, predicted masks)."""
    from hcc_utils import features as feat

    _threads()
    prof = bench_profile(base, tag, n)
    t0 = time.perf_counter()
    tab = feat.extract_phase(prof.manifest, prof, phase, progress=False)
    s = time.perf_counter() - t0
    info = json.loads((prof.outputs / "features" / f"{phase}_info.json").read_text())
    return {"seconds": s, "n_patients": len(tab), "n_features": tab.shape[1], "patients_per_s": len(tab) / s,
            "n_fallback": info.get("n_fallback"), "peak_python_heap_mb": info.get("peak_python_heap_mb")}


def models(base: str, tag: str, n: int | None = None, phases=("PP",)) -> dict[str, Any]:
    """DSFR / clinical / visual models with the profile's nested grid search (``models.run_comparison``)."""
    from hcc_utils import features as feat
    from hcc_utils import models as mdl
    from hcc_utils.manifest import load_patient_table

    prof = bench_profile(base, tag, n)
    patients = load_patient_table(prof.manifest)
    feats = {ph: feat.load_features(prof, ph) for ph in phases}
    grid = prof["models"]["grid"]
    folds = int(prof["models"]["cv_folds"])
    t0 = time.perf_counter()
    n_jobs = int(prof["models"].get("n_jobs", 1))
    comp = mdl.run_comparison(patients, feats, grid, folds, prof.seed, progress=False, n_jobs=n_jobs)
    s = time.perf_counter() - t0
    mdl.save_comparison(comp, prof.outputs / "models", prof.seed, grid)
    n_grid = int(np.prod([len(v) for v in grid.values()]))
    return {"seconds": s, "n_models": len(comp.fits), "grid_points": n_grid, "cv_folds": folds, "n_jobs": n_jobs,
            "n_patients": len(patients), "n_features": int(sum(f.shape[1] for f in feats.values())),
            "dsfr": comp.dsfr}


def survival(base: str, tag: str, n: int | None = None) -> dict[str, Any]:
    """Notebook 05's computation on the benchmark cohort (needs ``models/signature.csv`` from :func:`models`)."""
    from hcc_utils import survival as sv

    prof = bench_profile(base, tag, n)
    nb = int(prof["stats"]["n_bootstrap"])
    t0 = time.perf_counter()
    raw, mapping = sv.load_input(prof, prof.manifest)
    prep = sv.prepare_table(raw, mapping, landmark=float(prof["stats"]["landmark_months"]))
    prep = sv.split_cohorts(prep, None, seed=prof.seed, raw=raw)
    sv.run_survival(prep, landmark=float(prof["stats"]["landmark_months"]), n_bootstrap=nb, seed=prof.seed,
                    screen_p=float(prof["stats"]["cox_screen_p"]), progress=False)
    s = time.perf_counter() - t0
    return {"seconds": s, "n_patients": len(prep.data), "n_bootstrap": nb}


def survival_gse14520(base: str) -> dict[str, Any]:
    """Notebook 05's computation on the real GSE14520 table (242 patients), when the shared data are present."""
    from hcc_utils import survival as sv
    from hcc_utils.config import load_profile

    prof = load_profile(base)
    par = sv.gse14520_parameters()
    if not Path(par["table_path"]).exists():
        return {"skipped": f"{par['table_path']} is not present"}
    nb = int(prof["stats"]["n_bootstrap"])
    t0 = time.perf_counter()
    raw, mapping = sv.load_input(prof, None, par["table_path"], par["column_map"])
    prep = sv.prepare_table(raw, mapping, landmark=float(par.get("landmark", 24)))
    prep = sv.split_cohorts(prep, par.get("split"), seed=prof.seed, raw=raw)
    sv.run_survival(prep, landmark=float(par.get("landmark", 24)), n_bootstrap=nb, seed=prof.seed,
                    screen_p=float(prof["stats"]["cox_screen_p"]), progress=False)
    return {"seconds": time.perf_counter() - t0, "n_patients": len(prep.data), "n_bootstrap": nb}


def book_build() -> dict[str, Any]:
    """``jupyter-book build`` (via ``hcc_utils.run.build_book``) of a copy of the book sources as they are now.

    Executed notebooks already present under ``book/executed/`` are built as they are (no notebook is run).
    """
    import tempfile

    from hcc_utils import run as hrun

    with tempfile.TemporaryDirectory(prefix="bench-book-") as tmp:
        t = Path(tmp)
        for f in ("_config.yml", "_toc.yml"):
            shutil.copy2(ROOT / f, t / f)
        shutil.copytree(ROOT / "book", t / "book", ignore=shutil.ignore_patterns("_build"))
        executed = t / "book" / "executed"
        n_exec = len(list(executed.glob("*.ipynb"))) + len(list(executed.glob("*.md"))) if executed.exists() else 0
        t0 = time.perf_counter()
        html = hrun.build_book(t, log=lambda *_: None)
        s = time.perf_counter() - t0
        pages = len(list(html.parent.rglob("*.html")))
    return {"seconds": s, "html_pages": pages, "executed_pages_present": n_exec}


def pipeline(base: str, tag: str, n: int, model_from: str, workers: int = 2) -> dict[str, Any]:
    """All per-patient stages for a cohort of ``n`` in one process: time per stage and the memory high-water mark."""
    out: dict[str, Any] = {"n": n, "stages": {}}
    steps = [("cohort generation", lambda: generate(base, tag, n, workers)),
             ("slice cache (AP+PP)", lambda: cache(base, tag, n)),
             ("inference (PP)", lambda: infer(base, tag, model_from, n)),
             ("feature extraction (PP)", lambda: features(base, tag, n)),
             ("model grid search", lambda: models(base, tag, n)),
             ("survival statistics", lambda: survival(base, tag, n))]
    for name, fn in steps:
        t0 = time.perf_counter()
        r = fn()
        r["stage_seconds"] = time.perf_counter() - t0
        pk = peak_rss_mb()
        r["rss_high_water_self_mb"], r["rss_high_water_children_mb"] = pk["self"], pk["children"]
        out["stages"][name] = r
    return out


# ----------------------------------------------------------------------------------------------------------------------
# side-by-side ratios
# ----------------------------------------------------------------------------------------------------------------------
def _training_items(prof, phase: str, max_slices: int):
    from hcc_utils import preprocess as pp
    from hcc_utils import segmentation as seg

    df = pp.load_manifest(prof.manifest)
    ann = seg.annotated_patients(df, phase)
    cases = pp.prepare_cohort(df, prof, phase, patients=ann, progress=False)
    ctx = int(prof["preprocess"].get("context_slices", 0))
    items = [(cases[p], z) for p in sorted(ann) for z in pp.training_slices(cases[p], ctx)]
    return items[:max_slices], df


def ratio_fastai_vs_plain(base: str, tag: str, n_slices: int = 256, epochs: int = 2) -> dict[str, Any]:
    """Training-loop overhead: fastai ``Learner.fit`` vs a plain PyTorch loop, same model, data, loss, optimiser.

    Both use the book's ``ClassicUNet`` (profile settings), ``SliceDataset`` over the slice cache, ``DiceCELoss``,
    Adam with the profile's learning rate, batch size of the profile, no augmentation. Only the training passes are
    timed (a fastai callback brackets ``before_train``/``after_train``), epoch 1 is a warm-up, epochs 2.. are timed.
    """
    import copy

    import fastai.callback.progress  # noqa: F401  (Learner.no_bar)
    import torch
    from fastai.callback.core import Callback
    from fastai.data.core import DataLoaders
    from fastai.data.load import DataLoader as FDL
    from fastai.learner import Learner
    from fastai.optimizer import Adam

    from hcc_utils import segmentation as seg
    from hcc_utils import training

    _threads()
    prof = bench_profile(base, tag)
    items, _ = _training_items(prof, "PP", n_slices)
    bs = int(prof["unet"]["batch_size"])
    lr = float(prof["unet"]["lr"])
    items = items[: (len(items) // bs) * bs]
    torch.manual_seed(0)
    m0 = seg.build_model(prof)
    m_fa, m_pl = copy.deepcopy(m0), copy.deepcopy(m0)

    class TrainTimer(Callback):
        order = -100

        def before_fit(self):
            self.times = []

        def before_train(self):
            self.t = time.perf_counter()

        def after_train(self):
            self.times.append(time.perf_counter() - self.t)

    ds = seg.SliceDataset(items)
    torch.manual_seed(1)
    dls = DataLoaders(FDL(ds, bs=bs, shuffle=True, drop_last=True, num_workers=0),
                      FDL(seg.SliceDataset(items[:bs]), bs=bs, num_workers=0), device=torch.device("cpu"))
    timer = TrainTimer()
    learn = Learner(dls, m_fa, loss_func=training.DiceCELoss(), opt_func=Adam, lr=lr, cbs=[timer])
    with learn.no_bar(), learn.no_logging():
        learn.fit(epochs, lr)
    fa = timer.times[1:]

    crit = training.DiceCELoss()
    opt = torch.optim.Adam(m_pl.parameters(), lr=lr, betas=(0.9, 0.99), eps=1e-5)  # fastai's Adam defaults
    g = torch.Generator().manual_seed(1)
    dl = torch.utils.data.DataLoader(ds, batch_size=bs, shuffle=True, drop_last=True, num_workers=0, generator=g)
    pl = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        m_pl.train()
        for x, y in dl:
            opt.zero_grad()
            loss = crit(m_pl(x), y)
            loss.backward()
            opt.step()
        pl.append(time.perf_counter() - t0)
    pl = pl[1:]
    n = len(items)
    return {"n_slices": n, "batch_size": bs, "epochs_timed": len(fa),
            "fastai_s_per_epoch": float(np.mean(fa)), "plain_s_per_epoch": float(np.mean(pl)),
            "fastai_slices_per_s": n / float(np.mean(fa)), "plain_slices_per_s": n / float(np.mean(pl)),
            "ratio_fastai_over_plain": float(np.mean(fa) / np.mean(pl))}


def ratio_cache_vs_nifti(base: str, tag: str, n_slices: int = 512, epochs: int = 2) -> dict[str, Any]:
    """Data loading per epoch: the memory-mapped slice cache vs re-reading and preprocessing the NIfTI each epoch.

    The re-reading alternative is given its best form: each case's NIfTI (CT and mask) is read once per epoch with
    SimpleITK, windowed, normalised and resized (``preprocess.window_normalise`` / ``resize_slices``), then its
    training slices are taken; a per-slice ``__getitem__`` that reads the whole volume would be far slower.
    """
    import SimpleITK as sitk
    import torch

    from hcc_utils import preprocess as pp
    from hcc_utils import segmentation as seg
    from hcc_utils.imaging import read_image

    _threads()
    prof = bench_profile(base, tag)
    items, df = _training_items(prof, "PP", n_slices)
    bs = int(prof["unet"]["batch_size"])
    st = pp.preprocess_settings(prof, "PP")
    rows = df.set_index(df["patient_id"].astype(str))
    by_case: dict[str, list[int]] = {}
    for case, z in items:
        by_case.setdefault(case.patient_id, []).append(z)

    def cached_epoch():
        dl = torch.utils.data.DataLoader(seg.SliceDataset(items), batch_size=bs, shuffle=False, num_workers=0)
        k = 0
        for x, y in dl:
            k += x.shape[0]
        return k

    def nifti_epoch():
        k = 0
        for pid, zs in by_case.items():
            r = rows.loc[pid]
            hu = sitk.GetArrayFromImage(read_image(r["ct_pp"]))
            m = sitk.GetArrayFromImage(read_image(r["mask_pp"]))
            x = pp.resize_slices(pp.window_normalise(hu[zs], st["level"], st["width"]), st["size"])
            y = pp.resize_slices((m[zs] > 0).astype(np.uint8), st["size"], is_mask=True)
            xb, yb = torch.from_numpy(x)[:, None], torch.from_numpy(y.astype(np.int64))
            k += xb.shape[0] + 0 * int(yb.shape[0])
        return k

    out = {"n_slices": len(items), "n_cases": len(by_case)}
    for name, fn in (("cached", cached_epoch), ("nifti", nifti_epoch)):
        fn()  # warm-up (page cache, allocator)
        ts = []
        for _ in range(epochs):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        out[f"{name}_s_per_epoch"] = float(np.mean(ts))
        out[f"{name}_slices_per_s"] = len(items) / float(np.mean(ts))
    out["ratio_nifti_over_cached"] = out["nifti_s_per_epoch"] / out["cached_s_per_epoch"]
    return out


def _quadratic_delong(y, a, b, budget_s: float = 20.0, chunk: int = 512) -> dict[str, Any]:
    """DeLong's test in its O(n^2) placement form (all case x control comparisons, numpy, in row chunks).

    When the measured rate says the full computation would exceed ``budget_s``, only the first row chunks are
    computed and the time is extrapolated linearly (the work per case row is the same).
    """
    pos = np.asarray(y) == 1
    res = {}
    t_all = 0.0
    rows_done = None
    for name, s in (("a", a), ("b", b)):
        X, Y = s[pos], s[~pos]
        m = len(X)
        v10 = np.empty(m)
        v01 = np.zeros(len(Y))
        t0 = time.perf_counter()
        done = 0
        for c0 in range(0, m, chunk):
            blk = (X[c0:c0 + chunk, None] > Y[None, :]).astype(np.float32)
            blk += 0.5 * (X[c0:c0 + chunk, None] == Y[None, :])
            v10[c0:c0 + chunk] = blk.mean(1, dtype=np.float64)
            v01 += blk.sum(0, dtype=np.float64)
            done = min(m, c0 + chunk)
            el = time.perf_counter() - t0
            if el > budget_s / 2 and done < m:  # extrapolate the rest
                break
        el = time.perf_counter() - t0
        t_all += el * m / done
        rows_done = done / m
        res[name] = (v10[:done], v01 / done, done == m)
    out = {"seconds": t_all, "fraction_computed": rows_done, "extrapolated": rows_done < 1}
    if res["a"][2] and res["b"][2]:
        v10a, v01a, _ = res["a"]
        v10b, v01b, _ = res["b"]
        auc_a, auc_b = v10a.mean(), v10b.mean()
        s10 = np.cov(np.vstack([v10a, v10b]))
        s01 = np.cov(np.vstack([v01a, v01b]))
        var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / len(v10a) + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / len(v01a)
        out.update({"auc_a": float(auc_a), "auc_b": float(auc_b), "z": float((auc_a - auc_b) / np.sqrt(var))})
    return out


def ratio_delong(ns=(1000, 10000, 100000), fast_only=(1000000,), budget_s: float = 20.0) -> dict[str, Any]:
    """Fast DeLong (``stats.delong_test``, Sun & Xu 2014) vs the O(n^2) placement form, same data (with ties)."""
    from hcc_utils import stats

    out = {"rows": []}
    for n in list(ns) + list(fast_only):
        rng = np.random.default_rng(n)
        y = (rng.random(n) < 0.4).astype(int)
        a = np.round(0.9 * y + rng.normal(size=n), 2)  # rounding gives ties, as real scores have
        b = np.round(0.6 * y + rng.normal(size=n), 2)
        reps = 3 if n <= 100000 else 1
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            r = stats.delong_test(y, a, b)
            ts.append(time.perf_counter() - t0)
        row = {"n": n, "fast_s": min(ts), "fast_auc_a": r.auc_a, "fast_auc_b": r.auc_b, "fast_z": r.z}
        if n in ns:
            q = _quadratic_delong(y, a, b, budget_s)
            row.update({"quadratic_s": q["seconds"], "quadratic_extrapolated": q["extrapolated"],
                        "quadratic_fraction_computed": q["fraction_computed"],
                        "speedup": q["seconds"] / min(ts)})
            if "z" in q:
                row["max_abs_diff_auc"] = max(abs(q["auc_a"] - r.auc_a), abs(q["auc_b"] - r.auc_b))
                row["abs_diff_z"] = abs(q["z"] - r.z)
        out["rows"].append(row)
    return out


def ratio_bootstrap(n_jobs: int = 2, n_auc: int = 2000, n_boot_auc: int = 2000, n_c: int = 400,
                    n_boot_c: int = 200) -> dict[str, Any]:
    """Bootstrap CIs, serial (n_jobs=1) vs parallel (joblib, ``n_jobs``): AUC and Harrell's C; results must agree."""
    from hcc_utils import stats

    rng = np.random.default_rng(7)
    y = (rng.random(n_auc) < 0.4).astype(int)
    s = 0.8 * y + rng.normal(size=n_auc)
    t = rng.exponential(20, n_c)
    e = (rng.random(n_c) < 0.7).astype(int)
    risk = -np.log(t) + rng.normal(size=n_c)
    out = {"n_jobs": n_jobs}
    for name, fn in (("auc", lambda j: stats.bootstrap_auc_ci(y, s, n_boot=n_boot_auc, seed=1, n_jobs=j)),
                     ("c_index", lambda j: stats.bootstrap_c_index_ci(t, e, risk, n_boot=n_boot_c, seed=1,
                                                                      n_jobs=j))):
        res = {}
        for key, j in (("serial", 1), ("parallel_cold", n_jobs), ("parallel_warm", n_jobs)):
            t0 = time.perf_counter()
            r = fn(j)
            res[key] = (time.perf_counter() - t0, r)
        lo1, hi1 = _ci_of(res["serial"][1])
        loj, hij = _ci_of(res["parallel_cold"][1])
        out[name] = {"serial_s": res["serial"][0], "parallel_s": res["parallel_cold"][0],
                     "parallel_warm_s": res["parallel_warm"][0],
                     "speedup": res["serial"][0] / res["parallel_cold"][0],
                     "speedup_warm": res["serial"][0] / res["parallel_warm"][0],
                     "identical": bool(lo1 == loj and hi1 == hij), "ci": [lo1, hi1],
                     "n": n_auc if name == "auc" else n_c, "n_boot": n_boot_auc if name == "auc" else n_boot_c}
    return out


def _ci_of(r):
    for lo, hi in (("lower", "upper"), ("lo", "hi"), ("ci_lower", "ci_upper")):
        if hasattr(r, lo):
            return float(getattr(r, lo)), float(getattr(r, hi))
    if isinstance(r, (tuple, list)):
        return float(r[-2]), float(r[-1])
    raise TypeError(f"cannot read a CI from {type(r).__name__}")


# ----------------------------------------------------------------------------------------------------------------------
# FLOPs and the machine's limit
# ----------------------------------------------------------------------------------------------------------------------
def flops(configs: list[dict]) -> dict[str, Any]:
    """FLOPs per slice (forward, training step) with ``torch.utils.flop_counter.FlopCounterMode``.

    Each config: ``profile``, optional ``unet``/``size`` overrides and ``name`` (default: built from the settings). The count covers convolutions and
    matrix products (what the counter counts); a training step is forward + backward of ``DiceCELoss`` (optimizer
    arithmetic, elementwise, is not counted). Counted on a batch of 2 and divided by 2.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from hcc_utils import segmentation as seg
    from hcc_utils import training
    from hcc_utils.config import load_profile

    _threads()
    rows = []
    for c in configs:
        ov = {"unet": c.get("unet", {})}
        if c.get("size"):
            ov["preprocess"] = {"size": int(c["size"])}
        prof = load_profile(c["profile"], overrides=ov)
        size = int(prof["preprocess"]["size"])
        torch.manual_seed(0)
        model = seg.build_model(prof)
        x = torch.randn(2, 1, size, size)
        y = torch.randint(0, 2, (2, size, size))
        model.eval()
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            model(x)
        fwd = fc.get_total_flops() / 2
        model.train()
        crit = training.DiceCELoss()
        with FlopCounterMode(display=False) as fc2:
            loss = crit(model(x), y)
            loss.backward()
        step = fc2.get_total_flops() / 2
        u = prof["unet"]
        body = (f"fastai DynamicUnet, {u.get('resnet')} body" if u["arch"] == "dynamic"
                else f"classic, base {u.get('base_width')}, depth {u.get('depth')}")
        rows.append({"name": c.get("name") or f"{body}; {c['profile']} profile, {size} px", "profile": c["profile"],
                     "arch": prof["unet"]["arch"], "size": size,
                     "base_width": prof["unet"].get("base_width"), "depth": prof["unet"].get("depth"),
                     "resnet": prof["unet"].get("resnet") if prof["unet"]["arch"] == "dynamic" else None,
                     "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
                     "gflop_forward": fwd / 1e9, "gflop_train_step": step / 1e9})
    return {"rows": rows}


def cpu_peak(n: int = 2048, reps: int = 5) -> dict[str, Any]:
    """Measured fp32 matrix-multiply throughput (GFLOP/s): with the book's thread count (the practical limit of the
    stages, which run with it) and with every usable CPU (``segmentation.MAX_THREADS``)."""
    import torch

    from hcc_utils.segmentation import MAX_THREADS

    a, b = torch.randn(n, n), torch.randn(n, n)

    def rate(threads: int) -> float:
        torch.set_num_threads(threads)
        torch.mm(a, b)
        best = float("inf")
        for _ in range(reps):
            t0 = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - t0)
        return 2 * n**3 / best / 1e9

    all_threads = rate(MAX_THREADS)
    _threads()
    return {"gflops_sgemm": rate(torch.get_num_threads()), "threads": torch.get_num_threads(), "n": n,
            "gflops_sgemm_all": all_threads, "threads_all": MAX_THREADS}


# ----------------------------------------------------------------------------------------------------------------------
# the whole book
# ----------------------------------------------------------------------------------------------------------------------
def book_root(profile: str) -> Path:
    """The isolated ``$HCC_ROOT`` of the benchmark's ``make book`` runs (git-ignored; the book's own outputs,
    cohort and HTML are never touched)."""
    return ROOT / "outputs" / "bench" / f"book-{profile}"


def make_book(profile: str, cold: bool, manifest: str | None = None) -> dict[str, Any]:
    """``make book PROFILE=<profile> [MANIFEST=...]`` in an isolated ``$HCC_ROOT`` (:func:`book_root`), cold or warm.

    Cold: the root is emptied first, so the synthetic cohort is generated (or the given manifest is read), every
    notebook runs and the HTML is built, as on a fresh clone whose environment exists. Each run's log and
    ``run_summary.json`` are kept in the root as ``make_book_<cold|warm>.log`` and ``run_summary_<cold|warm>.json``. Only the LiTS volume, a one-time registry download, is
    linked from ``data/lits`` when present (``data/lits`` of the checkout). Warm: the same command again with nothing
    changed (every step should be skipped). Peak RSS is the largest of all processes the run started (papermill
    kernels included: ``RUSAGE_CHILDREN`` of this child).
    """
    import os
    import subprocess

    root = book_root(profile)
    if cold:
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        lits = ROOT / "data" / "lits"
        if lits.exists():
            (root / "data").mkdir()
            (root / "data" / "lits").symlink_to(lits, target_is_directory=True)
    elif not (root / "outputs" / profile / "run_summary.json").exists():
        raise RuntimeError(f"warm make book: no earlier run in {root} (run the cold one first)")
    # a benchmark started from make (``make test ARGS=...``) must not pass that make's variables to this one
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKEOVERRIDES", "MAKELEVEL")}
    env.update({"HCC_ROOT": str(root), "TQDM_DISABLE": "1", "PYTHONUNBUFFERED": "1",
                "HCC_SHARED_DATA": os.environ.get("HCC_SHARED_DATA", str(ROOT.parent / "shared" / "data"))})
    log = root / f"make_book_{'cold' if cold else 'warm'}.log"
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.run(["make", "book", f"PROFILE={profile}", "ARGS=", f"MANIFEST={manifest or ''}"],
                              cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
    s = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = "\n  ".join(log.read_text().strip().splitlines()[-8:])
        raise RuntimeError(f"make book failed (exit {proc.returncode}); log {log}:\n  {tail}")
    summary_file = root / "outputs" / profile / "run_summary.json"
    shutil.copy2(summary_file, root / f"run_summary_{'cold' if cold else 'warm'}.json")
    summ = json.loads(summary_file.read_text())
    steps = [{"step": r["step"], "status": r["status"], "seconds": r["seconds"]} for r in summ["steps"]]
    html = root / "book" / "_build" / "html"
    return {"seconds": s, "cold": cold, "steps": steps, "book_seconds": summ.get("book_seconds"),
            "run_seconds": summ.get("total_seconds"), "prepare_seconds": summ.get("prepare_seconds"),
            "notebooks_seconds": summ.get("notebooks_seconds"), "jobs": summ.get("jobs", 1),
            "n_run": sum(r["status"] == "ran" for r in steps),
            "n_skipped": sum(r["status"] == "skipped" for r in steps),
            "html_pages": len(list(html.rglob("*.html"))) if html.exists() else 0,
            "cohort_disk_mb": _du_mb(root / "data" / "synthetic"), "log": str(log)}


def ratio_cpu_inference_modes(base: str, tag: str, n_patients: int = 25) -> dict[str, Any]:
    """What would make inference faster on this CPU: the book's setting (fp32, contiguous NCHW, the book's thread
    count) against channels_last, bf16 autocast and every CPU thread, on the same slices and the same network.

    Also reports whether the alternatives give the same tumour masks (probability >= 0.5) as the book's setting.
    """
    import torch

    from hcc_utils import preprocess as pp
    from hcc_utils import segmentation as seg
    from hcc_utils.segmentation import MAX_THREADS

    _threads()
    book_threads = torch.get_num_threads()
    prof = bench_profile(base, tag)
    model = seg.load_model(prof, "PP", "cpu")
    df = pp.load_manifest(prof.manifest)
    cases = pp.prepare_cohort(df, prof, "PP", progress=False)
    imgs = [np.asarray(c.image, dtype=np.float32) for c in list(cases.values())[:n_patients]]
    n = sum(len(i) for i in imgs)
    bs = seg.inference_batch_size(prof)

    def run(bf16=False, cl=False):
        m = model.to(memory_format=torch.channels_last if cl else torch.contiguous_format)
        masks = []
        t0 = time.perf_counter()
        with torch.inference_mode():
            for im in imgs:
                for s in range(0, len(im), bs):
                    x = torch.from_numpy(im[s:s + bs])[:, None]
                    if cl:
                        x = x.contiguous(memory_format=torch.channels_last)
                    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                        y = m(x)
                    masks.append((y.float().softmax(1)[:, 1] >= 0.5).numpy())
        return n / (time.perf_counter() - t0), np.concatenate(masks)

    out: dict[str, Any] = {"n_slices": n, "book_threads": book_threads, "all_threads": MAX_THREADS, "rows": []}
    ref = None
    for threads in dict.fromkeys([book_threads, MAX_THREADS]):
        torch.set_num_threads(threads)
        run()  # warm-up
        for name, kw in (("fp32", {}), ("fp32 channels_last", {"cl": True}), ("bf16 autocast", {"bf16": True})):
            rate, mk = run(**kw)
            if ref is None:
                ref = mk
            out["rows"].append({"mode": name, "threads": threads, "slices_per_s": rate,
                                "mask_pixels_differing": int((mk != ref).sum()), "mask_pixels": int(ref.size)})
    base_rate = out["rows"][0]["slices_per_s"]
    for r in out["rows"]:
        r["speedup"] = r["slices_per_s"] / base_rate
    return out


def radiomics(manifest: str, base: str = "demo", tag: str = "radiomics", n: int = 5, phases=("AP", "PP"),
              mask_dir: str | None = None, workers: int = 1) -> dict[str, Any]:
    """Handcrafted radiomics features of the first ``n`` patients of a manifest (``handcrafted.extract_phase``),
    from a cold cache, then again from the warm cache; ``mask_dir`` holds the predicted masks (``{phase}`` is
    replaced by the phase; default the benchmark profile's own)."""
    from hcc_utils import handcrafted as hc
    from hcc_utils.preprocess import load_manifest

    prof = bench_profile(base, tag)
    shutil.rmtree(prof.cache / "radiomics", ignore_errors=True)
    df = load_manifest(manifest).head(int(n))
    out: dict[str, Any] = {"n_patients": len(df), "workers": workers}
    for ph in phases:
        md = mask_dir.format(phase=ph) if mask_dir else None
        t0 = time.perf_counter()
        tab = hc.extract_phase(df, prof, ph, mask_dir=md, workers=workers, progress=False)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        hc.extract_phase(df, prof, ph, mask_dir=md, workers=workers, progress=False)
        warm = time.perf_counter() - t0
        info = json.loads((prof.outputs / "radiomics" / f"{ph}_info.json").read_text())
        out.update({f"{ph}_seconds_per_patient": cold / len(tab), f"{ph}_seconds_per_patient_cached": warm / len(tab),
                    f"{ph}_extraction_seconds_per_patient": info["seconds_per_patient_extraction"],
                    f"{ph}_n_features": tab.shape[1]})
    return out
