"""GPU benchmark of the book's U-Net: fp32 vs bf16 autocast vs bf16 + channels_last, training and inference.

Meant for one short run on a lent GPU machine (``bash benchmarks/gpu.sh``; nothing can be downloaded there, fastai
travels as wheels, see ``../shared/GPU.md``). The networks are the book's own (``hcc_utils.segmentation.build_model``
with the ``paper`` profile: classic U-Net, base width 64, depth 4, 256 px; optionally fastai's DynamicUnet on a
ResNet-34 body), trained with the book's ``DiceCELoss``. Data are random slices already on the device, so the figures
are the network's, not the data pipeline's.

For each model and mode it records training slices/s (AdamW step included; fused on CUDA), inference slices/s, peak
GPU memory, GFLOP per slice (``FlopCounterMode``) and the fraction of the GPU's dense bf16 peak reached
(slices/s x FLOP per training slice / peak). With ``--tiny`` it runs the same code on the CPU at a toy size: that
is what the test-suite and ``make bench`` hosts without a GPU check.

Output: ``<out>/gpu-<timestamp>.json`` (one row per model and mode), and a table on stdout.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import sys
import time
from pathlib import Path

#: dense (no sparsity) BF16 tensor-core peaks from NVIDIA's datasheets, TFLOP/s; matched on the device name
BF16_PEAK_TFLOPS = [("H200", 989.0), ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0), ("A100", 312.0),
                    ("L40S", 362.0), ("L4", 121.0), ("A10", 125.0)]


def bf16_peak(name: str) -> float | None:
    for key, v in BF16_PEAK_TFLOPS:
        if key in name:
            return v
    return None


def _sync(dev):
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize()


def _autocast(dev, mode: str):
    import torch

    if mode.startswith("bf16") or mode.startswith("fastai"):
        return torch.autocast(dev.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def count_flops(model, size: int, dev) -> tuple[float, float]:
    """GFLOP per slice, (forward, training step), counted on a batch of 2."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from hcc_utils.training import DiceCELoss

    x = torch.randn(2, 1, size, size, device=dev)
    y = torch.randint(0, 2, (2, size, size), device=dev)
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(x)
    model.train()
    with FlopCounterMode(display=False) as fc2:
        DiceCELoss()(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    return fc.get_total_flops() / 2e9, fc2.get_total_flops() / 2e9


def bench_mode(make_model, mode: str, size: int, batch: int, steps: int, warmup: int, dev, compile_: bool = False):
    """Training and inference throughput of one model in one precision / memory-format mode."""
    import torch

    from hcc_utils.training import DiceCELoss

    torch.manual_seed(0)
    model = make_model().to(dev)
    cl = "cl" in mode.split("_")
    fmt = torch.channels_last if cl else torch.contiguous_format
    model = model.to(memory_format=fmt)
    x = torch.randn(batch, 1, size, size, device=dev).to(memory_format=fmt)
    y = torch.randint(0, 2, (batch, size, size), device=dev)
    crit = DiceCELoss()
    net = torch.compile(model) if compile_ else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=dev.type == "cuda")
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    model.train()

    def step():
        opt.zero_grad(set_to_none=True)
        with _autocast(dev, mode):
            loss = crit(net(x), y)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    _sync(dev)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(dev)
    t_train = time.perf_counter() - t0
    mem_train = torch.cuda.max_memory_allocated() / 1e9 if dev.type == "cuda" else None
    model.eval()
    xi = torch.randn(2 * batch, 1, size, size, device=dev).to(memory_format=fmt)
    with torch.inference_mode():
        for _ in range(warmup):
            with _autocast(dev, mode):
                net(xi)
        _sync(dev)
        t0 = time.perf_counter()
        for _ in range(steps):
            with _autocast(dev, mode):
                net(xi)
        _sync(dev)
        t_inf = time.perf_counter() - t0
    mem = torch.cuda.max_memory_allocated() / 1e9 if dev.type == "cuda" else None
    del model, net, opt
    return {"train_slices_per_s": batch * steps / t_train, "infer_slices_per_s": 2 * batch * steps / t_inf,
            "peak_mem_gb": mem, "peak_mem_train_gb": mem_train}


def bench_fastai(make_model, size: int, batch: int, steps: int, dev) -> dict:
    """fastai ``Learner.fit`` with bf16 mixed precision, data already on the device (the book's training loop)."""
    import torch
    from fastai.callback.fp16 import MixedPrecision  # noqa: F401
    from fastai.data.core import DataLoaders
    from fastai.data.load import DataLoader
    from fastai.learner import Learner

    from hcc_utils.training import DiceCELoss

    torch.manual_seed(0)
    n = batch * steps
    x = torch.randn(n, 1, size, size, device=dev)
    y = torch.randint(0, 2, (n, size, size), device=dev)
    ds = list(zip(x, y))
    dls = DataLoaders(DataLoader(ds, bs=batch, shuffle=False, drop_last=True, device=dev),
                      DataLoader(ds[:batch], bs=batch, device=dev), device=dev)
    learn = Learner(dls, make_model().to(dev), loss_func=DiceCELoss())
    if dev.type == "cuda":
        learn = learn.to_bf16()
    import fastai.callback.progress  # noqa: F401

    with learn.no_bar(), learn.no_logging():
        learn.fit(1, 1e-3)  # warm-up epoch
        _sync(dev)
        t0 = time.perf_counter()
        learn.fit(1, 1e-3)
        _sync(dev)
    t = time.perf_counter() - t0
    return {"train_slices_per_s": n / t, "infer_slices_per_s": None,
            "peak_mem_gb": torch.cuda.max_memory_allocated() / 1e9 if dev.type == "cuda" else None,
            "note": "one epoch of Learner.fit incl. a one-batch validation pass"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/gpu_results"))
    ap.add_argument("--tiny", action="store_true", help="toy size on the CPU (tests the code path)")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--models", default="classic,dynamic", help="classic (paper U-Net), dynamic (resnet34 body)")
    ap.add_argument("--modes", default="fp32,bf16,bf16_cl")
    ap.add_argument("--fastai", action="store_true", help="also time fastai Learner.fit (bf16) for the classic net")
    ap.add_argument("--compile", action="store_true", help="also bf16_cl with torch.compile (classic only)")
    ap.add_argument("--bf16-peak-tflops", type=float, help="override the datasheet peak")
    a = ap.parse_args(argv)

    import torch

    from hcc_utils.config import load_profile
    from hcc_utils import segmentation as seg

    dev = torch.device("cuda" if torch.cuda.is_available() and not a.tiny else "cpu")
    if a.tiny:
        a.size, a.batch, a.steps, a.warmup = 64, 2, 2, 1
        torch.set_num_threads(min(2, torch.get_num_threads()))
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name(0) if dev.type == "cuda" else "CPU"
    peak = a.bf16_peak_tflops or (bf16_peak(name) if dev.type == "cuda" else None)
    prof = load_profile("paper", overrides={"preprocess": {"size": a.size}})
    makers = {}
    for mname in a.models.split(","):
        if mname == "classic":
            ov = {"base_width": 8, "depth": 3} if a.tiny else {}
            makers["classic U-Net (paper: base %d, depth %d)" % (ov.get("base_width", prof["unet"]["base_width"]),
                                                               ov.get("depth", prof["unet"]["depth"]))] = (
                lambda ov=ov: seg.build_model(load_profile("paper", overrides={
                    "preprocess": {"size": a.size}, "unet": {"arch": "classic", **ov}})), "classic")
        elif mname == "dynamic":
            try:
                import fastai  # noqa: F401
            except ImportError:
                print("fastai is not importable: DynamicUnet skipped (carry the wheels, see GPU.md)", file=sys.stderr)
                continue
            body = "resnet18" if a.tiny else prof["unet"]["resnet"]
            makers[f"fastai DynamicUnet ({body} body)"] = (
                lambda body=body: seg.build_model(load_profile("paper", overrides={
                    "preprocess": {"size": a.size}, "unet": {"arch": "dynamic", "resnet": body}})), "dynamic")
    rows = []
    for label, (mk, kind) in makers.items():
        m = mk().to(dev)
        fwd, trn = count_flops(m, a.size, dev)
        del m
        modes = a.modes.split(",") + (["bf16_cl_compile"] if a.compile and kind == "classic" else [])
        for mode in modes:
            t0 = time.perf_counter()
            try:
                r = bench_mode(mk, mode.replace("_compile", ""), a.size, a.batch, a.steps, a.warmup, dev,
                               compile_=mode.endswith("_compile"))
            except Exception as exc:  # noqa: BLE001 - record and go on (e.g. OOM, compile failure)
                r = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
            r.update({"model": label, "mode": mode, "batch": a.batch, "size": a.size, "gflop_forward": fwd,
                      "gflop_train_step": trn, "seconds": time.perf_counter() - t0})
            if peak and r.get("train_slices_per_s"):
                r["train_tflops"] = r["train_slices_per_s"] * trn / 1e3
                r["fraction_of_bf16_peak"] = r["train_tflops"] / peak
                r["infer_tflops"] = r["infer_slices_per_s"] * fwd / 1e3
            rows.append(r)
            print(json.dumps(r), flush=True)
            if dev.type == "cuda":
                torch.cuda.empty_cache()
        if a.fastai and kind == "classic":
            try:
                r = bench_fastai(mk, a.size, a.batch, max(4, a.steps), dev)
            except Exception as exc:  # noqa: BLE001
                r = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
            r.update({"model": label, "mode": "fastai Learner.fit bf16", "batch": a.batch, "size": a.size,
                      "gflop_forward": fwd, "gflop_train_step": trn})
            if peak and r.get("train_slices_per_s"):
                r["fraction_of_bf16_peak"] = r["train_slices_per_s"] * trn / 1e3 / peak
            rows.append(r)
            print(json.dumps(r), flush=True)
    out = {"device": name, "torch": torch.__version__, "cuda": torch.version.cuda, "bf16_peak_tflops": peak,
           "bf16_peak_source": "--bf16-peak-tflops" if a.bf16_peak_tflops else "NVIDIA datasheet, dense BF16",
           "tiny": a.tiny, "size": a.size, "batch": a.batch, "steps": a.steps, "warmup": a.warmup,
           "data": "random slices already on the device", "rows": rows,
           "timestamp": dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")}
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / f"gpu-{out['timestamp']}{'-tiny' if a.tiny else ''}.json"
    path.write_text(json.dumps(out, indent=1))
    print(f"{'model':46} {'mode':24} {'train/s':>9} {'infer/s':>9} {'mem GB':>7} {'%bf16':>6}")
    for r in rows:
        f = r.get("fraction_of_bf16_peak")
        print(f"{r['model'][:46]:46} {r['mode'][:24]:24} {r.get('train_slices_per_s') or 0:9.1f} "
              f"{r.get('infer_slices_per_s') or 0:9.1f} {r.get('peak_mem_gb') or 0:7.2f} "
              f"{(100 * f if f else 0):6.1f}" + (f"  ERROR {r['error']}" if "error" in r else ""))
    print(f"written {path}")
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
