"""Tumour segmentation per phase with a fastai ``Learner`` (stage 4).

Two architectures sit behind ``profile["unet"]["arch"]``:

``classic``
    The U-Net of the paper's Figure S3: an encoder of ``depth`` levels (two 3x3 conv + BatchNorm + ReLU, then 2x2
    max-pooling), a bottleneck, and a decoder that up-samples with a transposed convolution, concatenates the encoder
    map of the same resolution (skip connection) and applies two conv + BatchNorm + ReLU. Width doubles per level from
    ``base_width``. Blocks are attributes with stable names ``enc1..encN``, ``bottleneck``, ``dec1..decN`` (``dec1`` is
    the first decoder block after the bottleneck, lowest resolution; ``decN`` is at full resolution), which is what
    feature hooks and Grad-CAM address.
``dynamic``
    fastai's ``create_unet_model`` (``DynamicUnet``) on a torchvision ResNet body (``profile["unet"]["resnet"]``) with
    random initialisation (``pretrained=False``: nothing is downloaded). Its middle conv is named ``bottleneck`` and its
    ``UnetBlock`` s ``dec1..decN`` in forward order, so the same feature-layer names work.

Training uses the slices of the development patients with ``seg_train == 1`` only (tumour slices plus context, see
:func:`hcc_utils.preprocess.training_slices`), split at the patient level into training and validation
(``valid_fraction``, seeded). The checkpoint with the best validation Dice (per epoch) is kept, as in the paper.

Runs on CUDA with mixed precision (bf16 where supported, else fp16) when a GPU is present, otherwise on the CPU,
without code changes. On the CPU a run is reproducible for a given seed: all RNGs are seeded, deterministic algorithms
are requested, data loading is single-process and augmentation draws from its own seeded generator.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from hcc_utils import preprocess as pp
from hcc_utils import style
from hcc_utils import training
from hcc_utils.files import file_sha256
from hcc_utils.manifest import safe_name

log = logging.getLogger(__name__)

MAX_THREADS = 2


def torch_threads() -> int:
    """CPU threads for torch: ``$HCC_TORCH_THREADS`` (1 to ``MAX_THREADS``), default 1.

    One thread by default: results do not depend on the thread count (reproducible across machines), and on a shared
    CPU OpenMP's spin-waiting made two threads 5-25x slower per training step than one (measured here under load).
    """
    import os

    n = int(os.environ.get("HCC_TORCH_THREADS", "1"))
    return max(1, min(MAX_THREADS, n))


def set_threads() -> None:
    """Apply :func:`torch_threads` (CPU only; harmless with CUDA)."""
    if torch.get_num_threads() != torch_threads():
        torch.set_num_threads(torch_threads())


# ----------------------------------------------------------------------------------------------------------------------
# device and determinism
# ----------------------------------------------------------------------------------------------------------------------
def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else is passed to :class:`torch.device`."""
    if isinstance(device, torch.device):
        return device
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def seed_everything(seed: int, device: torch.device) -> None:
    """Seed python, numpy and torch; deterministic algorithms on the CPU; CPU threads from :func:`torch_threads`."""
    from fastai.torch_core import set_seed

    set_seed(int(seed), reproducible=True)
    set_threads()
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)


# ----------------------------------------------------------------------------------------------------------------------
# networks
# ----------------------------------------------------------------------------------------------------------------------
class ConvBlock(nn.Sequential):
    """Two 3x3 conv + BatchNorm + ReLU (named ``conv1, bn1, act1, conv2, bn2, act2``)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.act1 = nn.ReLU(inplace=False)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.act2 = nn.ReLU(inplace=False)


class UpBlock(nn.Module):
    """Transposed-conv up-sampling, concatenation with the skip map, then a :class:`ConvBlock`."""

    def __init__(self, c_in: int, c_skip: int, c_out: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(c_in, c_out, 2, stride=2)
        self.block = ConvBlock(c_out + c_skip, c_out)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        if x.shape[-2:] != skip.shape[-2:]:
            x = F.interpolate(x, size=skip.shape[-2:], mode="nearest")
        return self.block(torch.cat([x, skip], 1))


class ClassicUNet(nn.Module):
    """Classic U-Net (paper Fig. S3) with named blocks ``enc1..encN``, ``bottleneck``, ``dec1..decN``.

    Parameters
    ----------
    in_channels : int
    n_classes : int
        2 (background, tumour): the network outputs logits of shape (B, n_classes, H, W).
    base_width : int
        Channels of ``enc1``; doubled per level.
    depth : int
        Number of pooling steps (encoder levels).
    """

    arch = "classic"

    def __init__(self, in_channels: int = 1, n_classes: int = 2, base_width: int = 16, depth: int = 4):
        super().__init__()
        self.depth = int(depth)
        widths = [int(base_width) * 2**i for i in range(self.depth + 1)]
        c = in_channels
        for i in range(self.depth):
            setattr(self, f"enc{i + 1}", ConvBlock(c, widths[i]))
            c = widths[i]
        self.bottleneck = ConvBlock(c, widths[-1])
        c = widths[-1]
        for j in range(self.depth):
            w = widths[self.depth - 1 - j]
            setattr(self, f"dec{j + 1}", UpBlock(c, w, w))
            c = w
        self.head = nn.Conv2d(c, n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i in range(self.depth):
            x = getattr(self, f"enc{i + 1}")(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottleneck(x)
        for j in range(self.depth):
            x = getattr(self, f"dec{j + 1}")(x, skips[self.depth - 1 - j])
        return self.head(x)


def input_multiple(profile) -> int:
    """What the network's input side must be divisible by: ``2**depth`` (classic) or 32 (a ResNet body)."""
    cfg = profile["unet"]
    return 2 ** int(cfg.get("depth", 4)) if cfg.get("arch", "classic") == "classic" else 32


def build_model(profile) -> nn.Module:
    """The segmentation network configured by ``profile["unet"]`` (random initialisation)."""
    cfg = profile["unet"]
    size = int(profile["preprocess"]["size"])
    arch = cfg.get("arch", "classic")
    if arch == "classic":
        depth = int(cfg.get("depth", 4))
        if size % input_multiple(profile):
            raise ValueError(f"preprocess.size={size} must be divisible by 2**unet.depth={2**depth}")
        return ClassicUNet(1, 2, int(cfg.get("base_width", 16)), depth)
    if arch == "dynamic":
        import torchvision.models as tvm
        from fastai.vision.learner import create_unet_model

        body = getattr(tvm, cfg.get("resnet", "resnet18"))
        model = create_unet_model(body, n_out=2, img_size=(size, size), pretrained=False, n_in=1)
        model.arch = "dynamic"
        return model
    raise ValueError(f"unet.arch must be 'classic' or 'dynamic', got {arch!r}")


def feature_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Named blocks of a network for hooks: ``enc*`` (classic only), ``bottleneck``, ``dec1..decN``."""
    if getattr(model, "arch", None) == "classic":
        names = [f"enc{i + 1}" for i in range(model.depth)] + ["bottleneck"]
        names += [f"dec{j + 1}" for j in range(model.depth)]
        return {n: getattr(model, n) for n in names}
    from fastai.vision.models.unet import UnetBlock

    layers = list(model.layers)
    out = {"bottleneck": layers[3]}
    for j, blk in enumerate(b for b in layers if isinstance(b, UnetBlock)):
        out[f"dec{j + 1}"] = blk
    return out


def gradcam_source(model: nn.Module, layer: str) -> nn.Module:
    """Module whose activations Grad-CAM weights for ``layer``: the first conv unit inside that block."""
    blk = feature_modules(model)[layer]
    if getattr(model, "arch", None) == "classic":
        return (blk.block if isinstance(blk, UpBlock) else blk).act1
    if layer == "bottleneck":
        return blk[0]
    return blk.conv1


# ----------------------------------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------------------------------
class SliceDataset(torch.utils.data.Dataset):
    """(image, mask) slices read from memory-mapped cache entries; items are (1 x S x S float32, S x S int64)."""

    def __init__(self, items: list[tuple[pp.CaseCache, int]]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        case, z = self.items[i]
        x = torch.from_numpy(np.asarray(case.image[z], dtype=np.float32))[None]
        y = torch.from_numpy(np.asarray(case.mask[z], dtype=np.int64))
        return x, y


def split_patients(patient_ids, valid_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Seeded patient-level split of the annotated development patients into (train, valid)."""
    ids = sorted(str(p) for p in patient_ids)
    if len(ids) < 2:
        raise ValueError(f"need at least 2 development patients with seg_train == 1 and a mask, found {len(ids)}")
    rng = np.random.default_rng(int(seed))
    perm = [ids[i] for i in rng.permutation(len(ids))]
    n_valid = min(len(ids) - 1, max(1, int(round(valid_fraction * len(ids)))))
    return sorted(perm[n_valid:]), sorted(perm[:n_valid])


def annotated_patients(df: pd.DataFrame, phase: str) -> list[str]:
    """Development patients with ``seg_train == 1`` and a mask for ``phase``."""
    mask_col = pp.PHASE_COLUMNS[phase][2]
    has_mask = df[mask_col].notna() if mask_col in df else pd.Series(False, index=df.index)
    seg = pd.to_numeric(df["seg_train"], errors="coerce").fillna(0).astype(int) == 1
    sel = df[(df["cohort"] == "development") & seg & has_mask]
    return sel["patient_id"].astype(str).tolist()


# ----------------------------------------------------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------------------------------------------------
def phase_dir(profile, phase: str) -> Path:
    d = profile.outputs / "segmentation" / phase
    d.mkdir(parents=True, exist_ok=True)
    return d


def train_phase(manifest, profile, phase: str, seed: int | None = None, device="auto", progress: bool = True,
                out_dir: Path | None = None) -> dict:
    """Train the U-Net of one phase and keep the checkpoint of best validation Dice (mean per validation patient).

    Parameters
    ----------
    manifest : path or DataFrame
    profile : Profile
    phase : {'AP', 'PP'}
    seed : int, optional
        Default ``profile.seed``.
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``...
    out_dir : Path, optional
        Default ``outputs/<profile>/segmentation/<PHASE>/``.

    Returns
    -------
    dict
        The metrics written to ``metrics.json`` (also ``model.pth`` and ``history.csv`` in ``out_dir``).
    """
    import fastai.callback.schedule  # noqa: F401  (patches Learner.fit_one_cycle)
    from fastai.callback.tracker import SaveModelCallback
    from fastai.data.core import DataLoaders
    from fastai.data.load import DataLoader
    from fastai.learner import Learner

    seed = profile.seed if seed is None else int(seed)
    dev = resolve_device(device)
    seed_everything(seed, dev)
    cfg = profile["unet"]
    loss_func = training.loss_function(cfg.get("loss", "dice_ce"))  # an unknown loss or augmentation fails before any work
    crop = training.check_crop(cfg.get("crop"), int(profile["preprocess"]["size"]), input_multiple(profile))
    augment = training.augment_callback(seed, cfg.get("augment", "spatial"), crop)
    for check in (postprocess_mode, tta_mode):  # the inference settings fail before training too
        check(profile)
    out_dir = Path(out_dir) if out_dir else phase_dir(profile, phase)
    out_dir.mkdir(parents=True, exist_ok=True)

    df = pp.load_manifest(manifest)
    ann = annotated_patients(df, phase)
    train_ids, valid_ids = split_patients(ann, float(cfg.get("valid_fraction", 0.2)), seed)
    cases = pp.prepare_cohort(df, profile, phase, patients=ann, progress=progress)
    ctx = int(profile["preprocess"].get("context_slices", 0))
    neg = int(profile["preprocess"].get("negative_slices", 0))

    def items(ids):
        out = [(cases[p], z) for p in ids for z in pp.training_slices(cases[p], ctx, neg, seed)]
        if not out:
            raise ValueError(f"{phase}: no tumour slices among patients {ids[:5]}...; check mask_{phase.lower()}")
        return out

    tr_items, va_items = items(train_ids), items(valid_ids)
    bs = int(cfg.get("batch_size", 16))
    seed_everything(seed, dev)  # the shuffle RNG of fastai's DataLoader is drawn from python's random here
    train_dl = DataLoader(SliceDataset(tr_items), bs=bs, shuffle=True, drop_last=len(tr_items) > bs,
                          num_workers=0, device=dev)
    valid_dl = DataLoader(SliceDataset(va_items), bs=bs, shuffle=False, num_workers=0, device=dev)
    dls = DataLoaders(train_dl, valid_dl, device=dev)

    torch.manual_seed(seed)
    model = build_model(profile).to(memory_format=torch.channels_last)
    timer = training.timer_callback()
    learn = Learner(dls, model, loss_func=loss_func,
                    metrics=[training.patient_dice_metric([c.patient_id for c, _ in va_items])],
                    path=out_dir, model_dir=".",
                    cbs=[augment, training.channels_last_callback(), timer,
                         training.progress_callback(f"U-Net {phase}"),
                         SaveModelCallback(monitor="dice", comp=np.greater, fname="model", with_opt=False)])
    if dev.type == "cuda":
        learn = learn.to_bf16() if torch.cuda.is_bf16_supported() else learn.to_fp16()
    epochs = int(cfg.get("epochs", 1))
    t0 = time.perf_counter()
    if not progress:
        with learn.no_bar(), learn.no_logging():
            learn.fit_one_cycle(epochs, float(cfg.get("lr", 3e-3)))
    else:
        learn.fit_one_cycle(epochs, float(cfg.get("lr", 3e-3)))
    total = time.perf_counter() - t0

    names = [n for n in learn.recorder.metric_names if n not in ("epoch", "time")]
    hist = pd.DataFrame([list(v) for v in learn.recorder.values], columns=names)
    hist.insert(0, "epoch", range(len(hist)))
    hist["seconds"] = timer.times[: len(hist)]
    hist.to_csv(out_dir / "history.csv", index=False)
    best = int(hist["dice"].astype(float).idxmax())
    # SaveModelCallback re-loaded the best weights at the end of fit; store a plain state dict on the CPU
    torch.save({k: v.detach().cpu() for k, v in learn.model.state_dict().items()}, out_dir / "model.pth")
    metrics = {
        "phase": phase, "profile": profile.name, "seed": seed, "device": str(dev), "arch": cfg.get("arch", "classic"),
        "unet": dict(cfg), "size": int(profile["preprocess"]["size"]),
        "best_epoch": best, "best_valid_dice": float(hist.loc[best, "dice"]), "epochs": epochs,
        "train_patients": train_ids, "valid_patients": valid_ids,
        "n_train_slices": len(tr_items), "n_valid_slices": len(va_items),
        "seconds_total": total, "seconds_per_epoch": float(np.mean(timer.times)) if timer.times else None,
        "train_slices_per_s": len(tr_items) * epochs / total if total > 0 else None,
    }
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return metrics


def load_model(profile, phase: str, device="auto", path: Path | None = None) -> nn.Module:
    """The trained network of a phase (``outputs/<profile>/segmentation/<PHASE>/model.pth``), in eval mode."""
    path = Path(path) if path else profile.outputs / "segmentation" / phase / "model.pth"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no trained {phase} model; run notebook 02 (train_phase) first")
    model = build_model(profile)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.to(resolve_device(device), memory_format=torch.channels_last).eval()


# ----------------------------------------------------------------------------------------------------------------------
# inference
# ----------------------------------------------------------------------------------------------------------------------
def _autocast(dev: torch.device):
    if dev.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    import contextlib

    return contextlib.nullcontext()


def inference_batch_size(profile) -> int:
    """Slices per forward pass at inference: 4 x the training batch, between 8 and 128 (no gradients are kept)."""
    return int(min(128, max(8, 4 * int(profile["unet"].get("batch_size", 16)))))


#: The profile's ``unet.tta`` values (test-time augmentation at inference), in the words of chapter 2.
TTA = {"none": "one pass per slice",
       "flip": "each slice and its left-right mirror image, their probabilities averaged"}


def _checked(key: str, mode: str, allowed) -> str:
    if mode not in allowed:
        raise ValueError(f"unet.{key} must be one of {tuple(allowed)}, got {mode!r} (profiles.yaml)")
    return mode


def _tumour_prob(model: nn.Module, x: torch.Tensor, dev: torch.device) -> torch.Tensor:
    with _autocast(dev):
        logits = model(x.contiguous(memory_format=torch.channels_last))
    return torch.as_tensor(logits).float().softmax(1)[:, 1]


@torch.inference_mode()
def predict_volume(model: nn.Module, image: np.ndarray, batch_size: int = 32, device="auto",
                   tta: str = "none") -> np.ndarray:
    """Tumour probability (Z x S x S float32) for every slice of a cached, preprocessed volume.

    ``tta="flip"`` averages the probability of each slice with that of its left-right mirror image (mirrored back),
    the mirroring that nnU-Net uses at inference; the training augmentation flips slices, so both views are ones the
    network has learnt. ``"none"``: one pass.
    """
    _checked("tta", tta, TTA)
    dev = next(model.parameters()).device if device == "auto" else resolve_device(device)
    out = []
    for s in range(0, image.shape[0], batch_size):
        x = torch.from_numpy(np.asarray(image[s:s + batch_size], dtype=np.float32))[:, None].to(dev)
        p = _tumour_prob(model, x, dev)
        if tta == "flip":
            p = (p + _tumour_prob(model, x.flip(-1), dev).flip(-1)) / 2
        out.append(p.cpu().numpy())
    return np.concatenate(out, 0) if out else np.zeros((0,) + image.shape[1:], np.float32)


POSTPROCESS = ("none", "largest_component")


def postprocess_mask(mask: np.ndarray, mode: str = "none") -> np.ndarray:
    """Post-process a predicted binary mask (Z x H x W) of one tumour.

    ``"largest_component"`` keeps the largest 3D connected component (26-connectivity): the cohort has one tumour per
    patient (single HCC), so every smaller component is a false positive. ``"none"`` returns the mask unchanged.
    """
    _checked("postprocess", mode, POSTPROCESS)
    m = np.asarray(mask, dtype=bool)
    if mode == "none" or not m.any():
        return m
    from scipy import ndimage

    lab, n = ndimage.label(m, structure=np.ones((3, 3, 3)))
    if n <= 1:
        return m
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(np.argmax(sizes))


def postprocess_prob(prob: np.ndarray, mode: str = "none") -> np.ndarray:
    """Tumour probabilities (Z x S x S) with every pixel outside :func:`postprocess_mask` of ``prob >= 0.5`` capped
    just below 0.5, so that ``result >= 0.5`` is the post-processed mask and the probabilities stay otherwise."""
    keep = postprocess_mask(prob >= 0.5, mode)
    return np.where(keep, prob, np.minimum(prob, 0.5 - 1e-6)).astype(np.float32)


def predict_tumour(model: nn.Module, image: np.ndarray, batch_size: int = 32, device="auto",
                   postprocess: str = "none", tta: str = "none") -> np.ndarray:
    """The book's predicted tumour: :func:`predict_volume` (with test-time augmentation ``tta``), then
    :func:`postprocess_prob`; ``>= 0.5`` is the mask every chapter uses."""
    return postprocess_prob(predict_volume(model, image, batch_size, device, tta), postprocess)


def postprocess_mode(profile) -> str:
    """The profile's ``unet.postprocess`` (default ``"none"``), checked against :data:`POSTPROCESS`."""
    return _checked("postprocess", str(profile["unet"].get("postprocess", "none")), POSTPROCESS)


def tta_mode(profile) -> str:
    """The profile's ``unet.tta`` (default ``"none"``), checked against :data:`TTA`."""
    return _checked("tta", str(profile["unet"].get("tta", "none")), TTA)


def dice_score(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice similarity coefficient of two binary arrays (NaN when both are empty)."""
    p, t = pred.astype(bool), truth.astype(bool)
    s = p.sum() + t.sum()
    return float(2 * (p & t).sum() / s) if s else float("nan")


def to_image_grid(prob: np.ndarray, meta: dict, threshold: float = 0.5):
    """Binary mask (SimpleITK, uint8) on the original image grid from network-size probabilities."""
    import SimpleITK as sitk

    z, h, w = meta["shape_zyx"]
    m = (pp.upsample_probs(prob, (h, w)) >= threshold).astype(np.uint8)
    img = sitk.GetImageFromArray(m)
    img.SetSpacing(meta["spacing"])
    img.SetOrigin(meta["origin"])
    img.SetDirection(meta["direction"])
    return img


def patient_groups(df: pd.DataFrame, metrics: dict) -> dict[str, str]:
    """patient_id -> group: ``train``, ``held-out annotated``, ``other development``, ``validation``."""
    tr, va = set(metrics.get("train_patients", [])), set(metrics.get("valid_patients", []))
    out = {}
    for _, r in df.iterrows():
        p = str(r["patient_id"])
        if p in tr:
            out[p] = "train"
        elif p in va:
            out[p] = "held-out annotated"
        elif r["cohort"] == "development":
            out[p] = "other development"
        else:
            out[p] = "validation"
    return out


def predict_cohort(manifest, profile, phase: str, device="auto", batch_size: int | None = None,
                   progress: bool = True, out_dir: Path | None = None) -> pd.DataFrame:
    """Predict every patient of the manifest, write ``pred_masks/<pid>.nii.gz`` and ``dsc_per_patient.csv``.

    Also written: ``slice_predictions.parquet`` (patient_id, z, predicted tumour pixels at network size, maximum
    probability) with the checkpoint's SHA-256 in ``metrics.json``, which lets feature extraction visit only the
    slices with predicted tumour.

    Cases are streamed one at a time (cache -> network in batches -> resample to the image grid -> NIfTI), so memory
    does not grow with the cohort. DSC is computed on the image grid against the manifest mask where there is one.

    Returns
    -------
    DataFrame
        patient_id, cohort, group, n_slices, pred_voxels, dsc (NaN without a ground-truth mask).
    """
    import SimpleITK as sitk

    from hcc_utils.imaging import read_image, write_image

    dev = resolve_device(device)
    set_threads()
    out_dir = Path(out_dir) if out_dir else phase_dir(profile, phase)
    model = load_model(profile, phase, dev, out_dir / "model.pth")
    metrics = json.loads((out_dir / "metrics.json").read_text())
    bs = int(batch_size or inference_batch_size(profile))
    post, tta = postprocess_mode(profile), tta_mode(profile)
    df = pp.load_manifest(manifest)
    groups = patient_groups(df, metrics)
    mask_col = pp.PHASE_COLUMNS[phase][2]
    rows, slice_rows, n_slices, t_net = [], [], 0, 0.0
    it = [r for _, r in df.iterrows()]
    for row in pp._progress(it, progress, f"predict {phase}"):
        case = pp.prepare_case(row, phase, profile)
        t0 = time.perf_counter()
        prob = predict_volume(model, case.image, bs, dev, tta)
        t_net += time.perf_counter() - t0
        prob = postprocess_prob(prob, post)
        n_slices += prob.shape[0]
        slice_rows.append(pd.DataFrame({"patient_id": case.patient_id, "z": np.arange(prob.shape[0]),
                                        "pred_px": (prob >= 0.5).reshape(prob.shape[0], -1).sum(1),
                                        "max_prob": prob.reshape(prob.shape[0], -1).max(1)}))
        img = to_image_grid(prob, case.meta)
        write_image(img, out_dir / "pred_masks" / f"{safe_name(case.patient_id)}.nii.gz")
        pred = sitk.GetArrayViewFromImage(img)
        mpath = pp._col(row, mask_col)
        dsc = dice_score(pred, sitk.GetArrayFromImage(read_image(mpath)) > 0) if mpath else float("nan")
        rows.append({"patient_id": case.patient_id, "cohort": row["cohort"], "group": groups[case.patient_id],
                     "n_slices": int(prob.shape[0]), "pred_voxels": int(pred.sum()), "dsc": dsc})
    res = pd.DataFrame(rows)
    res.to_csv(out_dir / "dsc_per_patient.csv", index=False)
    pd.concat(slice_rows, ignore_index=True).to_parquet(out_dir / "slice_predictions.parquet", index=False)
    metrics["inference"] = {"n_patients": len(res), "n_slices": n_slices, "seconds_network": t_net,
                            "model_sha256": file_sha256(out_dir / "model.pth"),
                            "slices_per_s": n_slices / t_net if t_net > 0 else None, "device": str(dev),
                            "tta": tta}
    metrics["dsc_by_group"] = dsc_summary(res).reset_index().to_dict(orient="records")
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return res


def dsc_summary(dsc: pd.DataFrame) -> pd.DataFrame:
    """Mean, SD, median and n of per-patient DSC by group (patients with a ground-truth mask)."""
    d = dsc.dropna(subset=["dsc"])
    g = d.groupby("group")["dsc"]
    return pd.DataFrame({"n": g.size(), "mean": g.mean(), "sd": g.std(), "median": g.median()})


# ----------------------------------------------------------------------------------------------------------------------
# figures (notebook 02)
# ----------------------------------------------------------------------------------------------------------------------
def plot_history(history: pd.DataFrame, path: Path | None = None, title: str = ""):
    """Learning curves: training and validation loss, validation Dice per epoch; the selected epoch marked."""
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3))
    a.plot(history["epoch"], history["train_loss"], "o-", label="training")
    a.plot(history["epoch"], history["valid_loss"], "s-", label="validation")
    a.set_xlabel("epoch")
    a.set_ylabel("Dice + CE loss")
    a.legend()
    b.plot(history["epoch"], history["dice"], "o-", color="C2")
    best = int(history["dice"].astype(float).idxmax())
    b.axvline(history.loc[best, "epoch"], color="grey", ls=":", label="selected")
    b.set_xlabel("epoch")
    b.set_ylabel("validation Dice")
    b.legend()
    fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=150)
    return fig


def plot_overlays(manifest, profile, phase: str, patients, path: Path | None = None):
    """CT slice (largest ground-truth tumour area) with ground truth (solid white) and prediction (dashed orange)
    outlines (:data:`hcc_utils.style.CONTOUR_REFERENCE`, :data:`~hcc_utils.style.CONTOUR_PREDICTION`) and a legend."""
    import matplotlib.pyplot as plt
    import SimpleITK as sitk

    from hcc_utils.imaging import read_image

    df = pp.load_manifest(manifest)
    df = df.set_index(df["patient_id"].astype(str))
    img_col, uid_col, mask_col = pp.PHASE_COLUMNS[phase]
    w = profile["windows"][phase]
    patients = list(patients)
    fig, axes = plt.subplots(1, max(1, len(patients)), figsize=(3 * max(1, len(patients)), 3.2), squeeze=False)
    for ax, pid in zip(axes[0], patients):
        row = df.loc[pid]
        ct = sitk.GetArrayFromImage(read_image(row[img_col], pp._col(row, uid_col)))
        pred = sitk.GetArrayFromImage(read_image(phase_dir(profile, phase) / "pred_masks" / f"{safe_name(pid)}.nii.gz"))
        gt = sitk.GetArrayFromImage(read_image(row[mask_col])) > 0 if pp._col(row, mask_col) else pred > 0
        z = int(np.argmax(gt.reshape(gt.shape[0], -1).sum(1)))
        lo = w["level"] - w["width"] / 2
        ax.imshow(np.clip(ct[z], lo, lo + w["width"]), cmap="gray")
        if gt[z].any():
            ax.contour(gt[z], levels=[0.5], linewidths=1.2, **style.CONTOUR_REFERENCE)
        if pred[z].any():
            ax.contour(pred[z], levels=[0.5], linewidths=1.2, **style.CONTOUR_PREDICTION)
        ax.set_title(f"{pid} z={z}\nDSC {dice_score(pred, gt):.2f}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{phase}: ground truth (solid white) vs prediction (dashed orange)", fontsize=9)
    fig.tight_layout()
    style.contour_legend(fig, "ground truth", "U-Net prediction", loc="lower center", ncol=2,
                         bbox_to_anchor=(0.5, -0.02))
    if path is not None:
        fig.savefig(path, dpi=150)
    return fig
