"""Results page: ``benchmarks/README.md`` and ``benchmarks/scaling.png`` generated from a results JSON.

Every number on the page is read from the JSON; the prose around it only says what was measured and how.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.core import ROOT

README = ROOT / "benchmarks" / "README.md"
PLOT = ROOT / "benchmarks" / "scaling.png"
GPU_DIR = ROOT / "benchmarks" / "gpu_results"
LATEST = ROOT / "benchmarks" / "latest.json"
LATEST_BOOK = ROOT / "benchmarks" / "latest-book.json"
STABILITY_DIR = ROOT / "benchmarks" / "stability"


def _fmt(v, unit: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    a = abs(v)
    if unit == "x":
        return f"{v:.3g}" if a < 10 else f"{v:,.0f}"
    if a == 0:
        return "0"
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 0.01:
        return f"{v:.3g}"
    return f"{v:.2e}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def scaling_frame(data: dict[str, Any]):
    import pandas as pd

    rows = [{"n": f["extra"]["n"], "stage": f["stage"], "metric": f["metric"], "value": f["value"],
             "rss": f["extra"].get("rss_high_water_mb")} for f in data["figures"] if f["group"] == "scaling"]
    return pd.DataFrame(rows)


def plot_scaling(data: dict[str, Any], path: Path = PLOT) -> Path | None:
    """Time per stage and peak memory against the number of patients."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = scaling_frame(data)
    if df.empty:
        return None
    t = df[df.metric == "wall time"].pivot_table(index="n", columns="stage", values="value")
    mem = df[(df.stage == "all stages") & (df.metric == "peak RSS")].set_index("n")["value"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for col in t.columns:
        style = "k-o" if col == "all stages" else "-o"
        a.plot(t.index, t[col], style, label=col, lw=2 if col == "all stages" else 1)
    ns = t.index.to_numpy()
    if len(ns) >= 1 and "all stages" in t:
        n0, t0 = ns[0], t["all stages"].iloc[0]
        a.plot(ns, t0 * ns / n0, "k:", lw=1, label=f"linear from n = {n0}")
    a.set_xlabel("patients")
    a.set_ylabel("wall time (s)")
    a.set_title("Time per stage")
    a.legend(fontsize=7)
    b.plot(mem.index, mem.values, "o-", color="C3")
    b.set_ylim(0, max(mem.max() * 1.3, 1))
    b.set_xlabel("patients")
    b.set_ylabel("peak RSS (MiB)")
    b.set_title("Peak memory (process and its workers)")
    fig.suptitle(f"Scaling with cohort size ({data['profile']} profile settings, "
                 f"{data['machine'].get('usable_cpus')} CPUs)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _gpu_section() -> str:
    files = sorted(GPU_DIR.glob("*.json")) if GPU_DIR.exists() else []
    if not files:
        return ("No GPU run is recorded yet. `benchmarks/gpu.sh` is ready for one short run on a lent GPU (see the "
                "section below); it writes `benchmarks/gpu_results/gpu-<timestamp>.json`, and "
                "`python -m benchmarks report` adds its table here.\n")
    d = json.loads(files[-1].read_text())
    rows = []
    for r in d.get("rows", []):
        rows.append([r["model"], r["mode"], str(r["batch"]), _fmt(r.get("train_slices_per_s")),
                     _fmt(r.get("infer_slices_per_s")), _fmt(r.get("peak_mem_gb")), _fmt(r.get("gflop_train_step")),
                     _fmt(100 * r["fraction_of_bf16_peak"]) + " %" if r.get("fraction_of_bf16_peak") is not None
                     else "-"])
    head = (f"Run {files[-1].name} on {d.get('device')} (torch {d.get('torch')}, bf16 peak assumed "
            f"{d.get('bf16_peak_tflops')} TFLOP/s).\n\n")
    return head + _table(["model", "mode", "batch", "training slices/s", "inference slices/s", "GPU memory (GB)",
                          "GFLOP per training slice", "fraction of bf16 peak"], rows) + "\n"


#: Figures compared across machines (when stored runs of more than one kind of CPU share seeds).
MACHINE_FIGURES = ("Table 2 AUC | DSFR (the phase chosen by development CV) | development",
                   "Table 2 AUC | DSFR (the phase chosen by development CV) | validation",
                   "Table 2 AUC | DSFR-PP | development", "Table 2 AUC | DSFR-PP | validation",
                   "Table 2 AUC | Visual | development", "Dice | PP | held-out annotated", "Dice | PP | validation",
                   "Dice | AP | held-out annotated", "Spearman signature vs latent | development")


def stability_runs(folder: Path = STABILITY_DIR) -> list[Path]:
    """The stored ``make stability`` runs, one per profile and kind of CPU (:func:`benchmarks.stability.main`)."""
    return sorted(Path(folder).glob("*.json")) if Path(folder).is_dir() else []


def _stab_value(v, name: str) -> str:
    if v is None or v != v:
        return "-"
    if "chosen is PP" in name:
        return "yes" if v == 1 else ("no" if v == 0 else f"{v:.2f}")
    return f"{v:.2e}" if " p " in name else f"{v:.3f}"  # p-values in scientific notation


def _figure_text(name: str) -> str:
    """A stability figure's name for a markdown table cell: ``Dice | PP | validation`` -> ``Dice: PP, validation``."""
    head, *rest = name.split(" | ")
    return f"{head}: {', '.join(rest)}" if rest else head


def _machine_text(m: dict) -> str:
    gflops = m.get("gflops_sgemm")
    return (f"{m.get('cpu')} ({', '.join(m.get('simd', [])) or 'no AVX'}; {m.get('usable_cpus')} usable CPUs"
            + (f"; 1-thread fp32 matmul {gflops:.0f} GFLOP/s" if gflops else "") + ")")


def stability_section(paths: list[Path] | None = None) -> list[str]:
    """The results page's lines for the stored ``make stability`` runs (default :func:`stability_runs`): for each,
    every figure but the ablation's (mean, range, per seed) and the machine it ran on; then, for the seeds that runs
    on different machines share, the same figures side by side. None without a stored run."""
    runs = [(Path(p), json.loads(Path(p).read_text())) for p in (stability_runs() if paths is None else paths)
            if Path(p).is_file()]
    if not runs:
        return []
    lines = ["## Stability across synthetic cohorts and machines", "",
             "`make stability` builds the book on the cohorts of several generator seeds, each in its own root, and "
             "keeps its newest run per profile and kind of CPU in `benchmarks/stability/`. On one machine the U-Net "
             "trains bit-reproducibly; on another kind of CPU the vector instructions change the order of the "
             "floating-point sums in its convolutions, so the same commit and seed train other networks and the "
             "Dice, the features and every AUC built on them move. The cohort's tables are the same on every machine, "
             "and the visual and planted rows use no network. The planted rows fit the book's nested procedure on the "
             "visual reads and on the true image phenotype (what a perfect reader of the images knows; cohort "
             "tables only): their difference is the room each sample leaves for the DSFR - Visual margin.", ""]
    for path, d in runs:
        figs = [f for f in d["figures"] if not f["figure"].startswith("Ablation AUC")]
        seeds = [f"seed {s}" for s in d["seeds"]]
        rows = [[_figure_text(f["figure"])] + [_stab_value(f.get(k), f["figure"]) for k in ("mean", "min", "max",
                                                                                          *seeds)] for f in figs]
        commit = (d.get("git") or {}).get("commit") or "unknown"
        finished = d.get("finished") or {}
        lines += [f"### {d.get('profile')} book on {_machine_text(d.get('machine', {}))}", "",
                  f"From `benchmarks/stability/{path.name}` (`make stability`, {d.get('timestamp', '')}, commit "
                  f"`{commit[:10]}`): generator seeds {', '.join(map(str, d['seeds']))}"
                  + (f" (seed {', '.join(finished)} from a `make bench-book` run)" if finished else "") + ".", "",
                  _table(["figure", "mean", "min", "max", *seeds], rows), ""]
    by_profile: dict[str, list] = {}
    for path, d in runs:
        by_profile.setdefault(d.get("profile"), []).append((path, d))
    for prof, rs in by_profile.items():
        common = sorted(set.intersection(*(set(d["seeds"]) for _, d in rs))) if len(rs) > 1 else []
        if not common:
            continue
        vals = [{f["figure"]: f for f in d["figures"]} for _, d in rs]
        heads = [f"{d.get('machine', {}).get('cpu')} ({', '.join(d.get('machine', {}).get('simd', [])) or 'no AVX'})"
                 for _, d in rs]
        rows = []
        for name in MACHINE_FIGURES:
            if not all(name in v for v in vals):
                continue
            for s in common:
                xs = [v[name].get(f"seed {s}") for v in vals]
                ok = [x for x in xs if x is not None and x == x]
                rows.append([_figure_text(name), str(s)] + [_stab_value(x, name) for x in xs]
                            + [f"{max(ok) - min(ok):.3f}" if len(ok) > 1 else "-"])
        if rows:
            lines += [f"### The {prof} book across machines", "",
                      f"The same figures on the seeds that the stored runs share ({', '.join(map(str, common))}); "
                      "the last column is the largest difference between the machines.", "",
                      _table(["figure", "seed", *heads, "difference"], rows), ""]
    return lines


def _derived_compute(data: dict[str, Any], st: list[dict]) -> list[dict]:
    """Achieved GFLOP/s and fraction of the measured matmul limit, from throughput x counted FLOPs per slice
    (only where the run did not record them itself)."""
    if any(f["metric"] == "achieved compute" for f in st):
        return []
    peak = next((f["value"] for f in st if f["group"] == "machine" and "matmul" in f["metric"]), None)
    fl = {(f["extra"].get("arch"), f["metric"]): f["value"] for f in data["figures"]
          if f["group"] == "flops" and f["extra"].get("profile") == data["profile"]}
    out = []
    if not peak:
        return out
    for f in st:
        arch = "dynamic" if "(dynamic)" in f["stage"] else "classic"
        if f["metric"] == "training throughput" and (arch, "training step per slice") in fl:
            g = f["value"] * fl[(arch, "training step per slice")]
        elif f["metric"] == "network throughput" and ("classic", "forward per slice") in fl:
            g = f["value"] * fl[("classic", "forward per slice")]
        else:
            continue
        out.append({"group": "stage", "stage": f["stage"], "metric": "achieved compute (derived)", "value": g,
                    "unit": "GFLOP/s", "note": f"{100 * g / peak:.1f} % of the measured fp32 matmul limit "
                    f"({peak:.0f} GFLOP/s); throughput x counted FLOPs per slice", "extra": {}})
    return out


def write_report(json_path: Path, readme: Path = README, plot: Path = PLOT, book_json: Path | None = None,
                 intro: str | None = None, stability: list[Path] | None = None) -> Path:
    """Rewrite the results page from one results JSON (and, when it has no ``make book`` figures, those of
    ``book_json``, the latest ``make bench-book`` run; and the stored ``make stability`` runs, ``stability``
    (default: :func:`stability_runs`)).

    ``intro`` replaces the paragraph under the title (which says how the README is generated), e.g. for the page of
    the HTML book (:func:`hcc_utils.run.book.write_benchmarks_page`)."""
    data = json.loads(Path(json_path).read_text())
    figs = data["figures"]
    m = data["machine"]
    v = data["versions"]
    g = data["git"]
    plot_path = plot_scaling(data, plot)
    book_src = f"`{Path(json_path).name}`"
    if not any(f["group"] == "book" for f in figs) and book_json is not None:
        # `make bench-book` writes its own JSON: show the latest one beside this run's figures
        bdata = json.loads(Path(book_json).read_text())
        figs = figs + [f for f in bdata["figures"] if f["group"] == "book"]
        bm = bdata["machine"]
        book_src = (f"`{Path(book_json).name}` (a separate `make bench-book` run on {bm.get('cpu')} "
                    f"({', '.join(bm.get('simd') or []) or 'no AVX'}), "
                    f"{bm.get('usable_cpus')} usable CPUs, load average at start "
                    + ", ".join(f"{x:.1f}" for x in (bm.get("load_average_at_start") or [])) + ")")
        if readme == README:
            LATEST_BOOK.write_text(json.dumps(bdata, indent=1))
    if readme == README:  # the page's numbers stay checkable: its JSON is kept beside it (committed)
        LATEST.write_text(json.dumps(data, indent=1))
    lines = ["# Benchmarks", "",
             "Generated by `python -m benchmarks report` from "
             f"`benchmarks/results/{Path(json_path).name}`, kept as `benchmarks/latest.json` (run `make bench` to "
             "measure again; other results files are not committed). Do not edit by hand." if intro is None
             else intro, "",
             "## Machine and run", "",
             _table(["", ""], [
                 ["CPU", f"{m.get('cpu')} ({m.get('usable_cpus')} usable CPUs, {', '.join(m.get('simd', []))})"],
                 ["memory", f"{m.get('memory_gb')} GB"], ["GPU", m.get("gpu", "none")],
                 ["load average at start", ", ".join(f"{x:.1f}" for x in (m.get("load_average_at_start") or []))],
                 ["software", ", ".join(f"{k} {val}" for k, val in v.items() if val)],
                 ["git commit", f"{g.get('commit')}" + (" (tracked files modified)" if g.get("dirty_tracked_files")
                                                         else "")],
                 ["profile / mode", f"{data['profile']} / {data['mode']}"],
                 ["timestamp (UTC)", data["timestamp"]], ["total run time", f"{data.get('total_s', 0):.0f} s"]]),
             "", "The CPU is shared: a high load average at start means other work competed for it and every time "
             "below is an upper bound.", ""]

    st = [f for f in figs if f["group"] in ("stage", "machine")]
    st = st + _derived_compute(data, st)
    if st:
        lines += ["## Stages of the book", "",
                  "Each stage runs in its own process on a benchmark copy of the profile (cohort under "
                  "`data/bench/`, outputs under `outputs/bench/`); peak RSS is that process's, or its largest "
                  "worker's.", "",
                  _table(["stage", "figure", "value", "unit", "note"],
                         [[f["stage"], f["metric"], _fmt(f["value"], f["unit"]), f["unit"], f["note"]] for f in st]),
                  ""]
        sc = scaling_frame(data)
        sc = sc[(sc.metric == "wall time") & (sc.stage != "all stages")] if not sc.empty else sc
        if not sc.empty:
            big = sc[sc.n == sc.n.max()]
            slow = big.loc[big.value.idxmax()]
            lines += [f"Slowest stage measured: **{slow['stage']}** at {int(slow['n'])} patients "
                      f"({_fmt(slow['value'])} s of {_fmt(big.value.sum())} s for all per-patient stages).", ""]

    bk = [f for f in figs if f["group"] == "book"]
    if bk:
        whole = [f for f in bk if f["stage"].startswith("make book") or f["stage"] == "machine"]
        parts = [f for f in bk if f not in whole]
        cold = next((f["value"] for f in whole if f["stage"].endswith("(cold)") and f["metric"] == "wall time"), None)
        lines += ["## The whole book: `make book`, cold and warm", "",
                  f"From {book_src}. `make book` in an isolated `$HCC_ROOT` under `outputs/bench/` (the book's own cohort, outputs and "
                  "HTML are not touched). Cold starts from an empty root: the synthetic cohort is generated, every "
                  "notebook runs with papermill and the HTML is built (only the LiTS volume, a one-time registry "
                  "download, is linked from `data/lits`). Warm is the same command again with nothing changed.", "",
                  _table(["run", "figure", "value", "unit", "note"],
                         [[f["stage"], f["metric"], _fmt(f["value"], f["unit"]), f["unit"], f["note"]]
                          for f in whole]), ""]
        if parts:
            rows = [[f["stage"], _fmt(f["value"]), f"{100 * (f['value'] or 0) / cold:.0f} %" if cold else "-",
                     f["note"]] for f in parts]
            lines += ["Where the cold run's time goes (share: of the cold wall time; notebooks that run at once "
                      "overlap, so the shares add up to more than 100 %):", "",
                      _table(["part of the cold run", "seconds", "share", "note"], rows), ""]
            slow = max([f for f in parts if f["stage"].startswith(("notebook ", "jupyter-book"))] or parts,
                       key=lambda f: f["value"] or 0)
            lines += [f"Slowest part of the cold book: **{slow['stage']}** ({_fmt(slow['value'])} s).", ""]

    df = scaling_frame(data)
    if not df.empty:
        t = df[df.metric == "wall time"].pivot_table(index="stage", columns="n", values="value", sort=False)
        rss = df[(df.stage == "all stages") & (df.metric == "peak RSS")].set_index("n")["value"]
        ns = list(t.columns)
        rows = [[s] + [_fmt(t.loc[s, n]) for n in ns] for s in t.index]
        rows.append(["peak RSS, largest stage (MiB)"] + [_fmt(rss.get(n)) for n in ns])
        heap = df[df.metric == "peak Python heap (tracemalloc)"]
        for st_name, g in heap.groupby("stage", sort=False):
            v = g.set_index("n")["value"]
            rows.append([f"{st_name}: peak Python heap (MiB)"] + [_fmt(v.get(n)) for n in ns])
        tot = t.loc["all stages"] if "all stages" in t.index else None
        if tot is not None:
            rows.append(["seconds per patient (all stages)"] + [_fmt(tot[n] / n) for n in ns])
        lines += ["## Scaling with the cohort", "",
                  "Per-patient stages at each size (seconds), each stage in its own fresh process (inference and "
                  "features with the classic U-Net trained in the stage run above; training itself does not grow "
                  "with the cohort). Peak RSS counts torch and the pages of the memory-mapped slice cache a stage "
                  "has read; the Python heap is what the stage itself holds.",
                  "", _table(["stage \\ patients"] + [str(n) for n in ns], rows), ""]
        if plot_path:
            lines += [f"![Wall time of each stage and peak memory against the number of patients]({plot_path.name})",
                      ""]
    sk = [s for s in data.get("skipped", [])]
    if sk:
        lines += ["Skipped: " + "; ".join(f"{s['what']} ({s['reason']})" for s in sk), ""]

    rt = [f for f in figs if f["group"] == "ratio"]
    if rt:
        rows = []
        for f in rt:
            e = f["extra"]
            a = f"{e['a']} {_fmt(e['a_s'])} s" if "a_s" in e else "-"
            b = f"{e['b']} {_fmt(e['b_s'])} s" if "b_s" in e else "-"
            rows.append([f["stage"], a, b, _fmt(f["value"], f["unit"]) + (" x" if f["unit"] == "x" else
                                                                           f" {f['unit']}"), f["note"]])
        lines += ["## Side-by-side ratios", "", _table(["comparison", "A", "B", "A / B", "note"], rows), ""]

    fl = [f for f in figs if f["group"] == "flops"]
    if fl:
        by: dict[str, dict] = {}
        for f in fl:
            by.setdefault(f["stage"], {"params": f["extra"].get("params_m")})[f["metric"]] = f["value"]
        rows = [[k, _fmt(x["params"]), _fmt(x.get("forward per slice")), _fmt(x.get("training step per slice"))]
                for k, x in by.items()]
        lines += ["## U-Net FLOPs per slice", "",
                  "Counted with `torch.utils.flop_counter.FlopCounterMode` (convolutions and matrix products; a "
                  "training step is forward + backward of the Dice + CE loss; optimiser arithmetic not counted).", "",
                  _table(["network", "parameters (M)", "GFLOP forward", "GFLOP training step"], rows), ""]

    lines += stability_section(stability)
    lines += ["## GPU", "", _gpu_section(), "",
              "## How to run", "",
              "```", "make bench                          # or: python -m benchmarks  (demo profile, < 20 min on 2 CPUs)",
              "make bench-book                     # `make book` cold and warm on the demo profile (22-35 min)",
              "make stability                      # the demo book on three generator seeds (section above)",
              "python -m benchmarks --tiny            # smoke run on the ci profile (what the test-suite checks)",
              "python -m benchmarks --sizes 50,100    # other scaling sizes",
              "python -m benchmarks report            # rewrite this page from the latest results JSON",
              "bash benchmarks/gpu.sh                 # one short run on a GPU machine (see benchmarks/gpu_bench.py)",
              "```", ""]
    readme.write_text("\n".join(lines))
    return readme
