"""What the U-Net's fastai training is made of: the loss, the augmentation, the per-patient Dice metric and the
callbacks (channels-last batches, epoch timer, progress lines). :func:`hcc_utils.segmentation.train_phase` puts them
together; the profile's ``unet.loss`` and ``unet.augment`` choose among :data:`LOSSES` and :data:`AUGMENTS`.
"""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hcc_utils import preprocess as pp
from hcc_utils.progress import report as report_progress


class DiceCELoss(nn.Module):
    """Soft Dice (tumour class) + cross-entropy.

    Why both: tumour pixels are a small fraction of a slice, so cross-entropy alone is dominated by background and
    tends to under-segment; Dice optimises the overlap measure used for model selection and is insensitive to the
    class imbalance, but its gradient is noisy on slices with little or no tumour. Cross-entropy keeps a stable,
    per-pixel gradient (and teaches context slices to be empty); the sum is the usual robust choice (nnU-Net's
    default loss).

    Parameters
    ----------
    smooth : float
        Added to the Dice numerator and denominator.
    per_slice : bool
        False (``loss: dice_ce``): one Dice over every pixel of the batch, in which the slices of large tumours
        dominate. True (``loss: dice_ce_slice``): the mean of the Dice of each slice that holds tumour, so a small
        tumour's slice weighs as much as a large one's (the batch Dice when no slice holds tumour).
    """

    def __init__(self, smooth: float = 1.0, per_slice: bool = False):
        super().__init__()
        self.smooth = smooth
        self.per_slice = per_slice

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        target = target.long()
        ce = F.cross_entropy(logits, target)
        p = logits.softmax(1)[:, 1]
        t = (target == 1).float()
        if self.per_slice:
            t_sum = t.flatten(1).sum(1)
            has = t_sum > 0
            if bool(has.any()):
                inter, den = (p * t).flatten(1).sum(1)[has], p.flatten(1).sum(1)[has] + t_sum[has]
                return ce + (1 - ((2 * inter + self.smooth) / (den + self.smooth)).mean())
        # summed in this order, the batch Dice of every earlier run, bit for bit
        dice = (2 * (p * t).sum() + self.smooth) / (p.sum() + t.sum() + self.smooth)
        return ce + (1 - dice)

    def activation(self, x):
        return F.softmax(x, dim=1)

    def decodes(self, x):
        return x.argmax(dim=1)


#: The profile's ``unet.loss`` values.
LOSSES = {"dice_ce": {}, "dice_ce_slice": {"per_slice": True}}

#: What each ``unet.loss`` and ``unet.augment`` does, in the words of the book's training page.
DESCRIPTIONS = {
    "dice_ce": "cross-entropy plus one soft Dice over every pixel of a batch",
    "dice_ce_slice": "cross-entropy plus the mean soft Dice of the batch's tumour slices",
    "spatial": "flips and a small affine transform",
    "spatial_intensity": ("flips and a small affine transform, then per slice a calibration offset, a contrast "
                          "scale, a softer kernel and added noise (another scanner)"),
}


def loss_function(name: str) -> DiceCELoss:
    """The training loss named by a profile's ``unet.loss`` (:data:`LOSSES`)."""
    if name not in LOSSES:
        raise ValueError(f"unet.loss {name!r} is not one of {', '.join(LOSSES)} (profiles.yaml)")
    return DiceCELoss(**LOSSES[name])


#: The profile's ``unet.augment`` values.
AUGMENTS = ("spatial", "spatial_intensity")

#: Ranges of the intensity augmentation, in units of the phase's window width (PP 200 HU: 0.1 = 20 HU).
INTENSITY_AUGMENT = {"shift": 0.10, "contrast": 0.15, "noise": 0.08, "blur_p": 0.3, "blur_sigma": (0.3, 1.0)}


def check_crop(crop, size: int, multiple: int = 1) -> int | None:
    """The profile's ``unet.crop`` as an int (None: whole slices); fails on a value the network cannot take."""
    if crop in (None, 0, False):
        return None
    try:
        c = int(crop)
    except (TypeError, ValueError):
        raise ValueError(f"unet.crop must be a number of pixels or null, got {crop!r} (profiles.yaml)") from None
    if not 0 < c <= int(size) or c % int(multiple):
        raise ValueError(f"unet.crop={c} must be between 1 and preprocess.size={size} and divisible by {multiple} "
                         "(profiles.yaml)")
    return None if c == int(size) else c


def crop_text(crop, size: int) -> str:
    """What ``unet.crop`` did, in the words of the book's training page."""
    crop = check_crop(crop, size)
    if crop is None:
        return f"the network trained on whole {int(size)}-pixel slices"
    return (f"the network trained on a {crop}-pixel window of each {int(size)}-pixel slice at a random "
            "position, and validated and predicted on whole slices")


def random_crop(x: torch.Tensor, y: torch.Tensor, crop: int, gen: torch.Generator):
    """A ``crop`` x ``crop`` window of each slice and its mask, at a position drawn per slice from ``gen``."""
    b, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    oy = (torch.rand(b, generator=gen) * (h - crop + 1)).long().tolist()
    ox = (torch.rand(b, generator=gen) * (w - crop + 1)).long().tolist()
    xs = torch.stack([x[i, :, a:a + crop, c:c + crop] for i, (a, c) in enumerate(zip(oy, ox))])
    ys = torch.stack([y[i, a:a + crop, c:c + crop] for i, (a, c) in enumerate(zip(oy, ox))])
    return xs, ys


def augment_callback(seed: int, mode: str = "spatial", crop: int | None = None):
    from fastai.callback.core import Callback

    if mode not in AUGMENTS:
        raise ValueError(f"unet.augment {mode!r} is not one of {', '.join(AUGMENTS)} (profiles.yaml)")

    class Augment(Callback):
        """Augmentation on the batch (training only).

        ``spatial``: left-right and up-down flips (p=0.5 each), rotation within +/-10 degrees, scale 0.9-1.1, shift
        within 5%. CT: bilinear with border padding; mask: nearest. ``spatial_intensity`` adds, per slice and after
        the spatial transform, what another scanner changes (:func:`intensity_augment`). With ``crop`` the network
        then trains on a ``crop``-pixel window of each slice at a random position (:func:`random_crop`). Random
        numbers come from seeded CPU generators (one per kind, so the spatial draws are the same in every mode):
        runs are reproducible and identical on CPU and GPU.
        """

        order = 1

        def __init__(self):
            self.gen = torch.Generator().manual_seed(int(seed))
            self.gen_intensity = torch.Generator().manual_seed(int(seed) + 1)
            self.gen_crop = torch.Generator().manual_seed(int(seed) + 2)

        def before_batch(self):
            if not self.training:
                return
            x, y = self.xb[0], self.yb[0]
            b = x.shape[0]
            g = self.gen
            flip_lr = torch.rand(b, generator=g) < 0.5
            flip_ud = torch.rand(b, generator=g) < 0.5
            ang = (torch.rand(b, generator=g) * 2 - 1) * (10 * np.pi / 180)
            scale = 0.9 + 0.2 * torch.rand(b, generator=g)
            shift = (torch.rand(b, 2, generator=g) * 2 - 1) * 0.05
            sx = torch.where(flip_lr, -1.0, 1.0) / scale
            sy = torch.where(flip_ud, -1.0, 1.0) / scale
            cos, sin = torch.cos(ang), torch.sin(ang)
            theta = torch.stack([torch.stack([cos * sx, -sin * sy, shift[:, 0]], 1),
                                 torch.stack([sin * sx, cos * sy, shift[:, 1]], 1)], 1)
            theta = theta.to(device=x.device, dtype=torch.float32)
            grid = F.affine_grid(theta, list(x.shape), align_corners=False)
            xa = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
            ya = F.grid_sample(y[:, None].float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)
            if mode == "spatial_intensity":
                xa = intensity_augment(xa, self.gen_intensity)
            ya = ya[:, 0].round().long()
            if crop:
                xa, ya = random_crop(xa, ya, crop, self.gen_crop)
            self.learn.xb = (xa.to(x.dtype),)
            self.learn.yb = (ya,)

    return Augment()


def intensity_augment(x: torch.Tensor, gen: torch.Generator, ranges: dict | None = None) -> torch.Tensor:
    """What another scanner changes in a windowed slice, drawn per slice (:data:`INTENSITY_AUGMENT`).

    A calibration offset (uniform within +/- ``shift`` window widths), a contrast scale about the slice mean
    (1 +/- ``contrast``), a Gaussian blur of a softer kernel (probability ``blur_p``, sigma in pixels uniform in
    ``blur_sigma``) and added white noise (SD uniform in 0..``noise`` window widths). Centre 2 of the synthetic
    cohort has 4 HU more noise and a softer kernel than centre 1, centre 3 a 12 HU offset.

    Parameters
    ----------
    x : Tensor
        Batch of normalised slices, B x 1 x H x W (:func:`hcc_utils.preprocess.window_normalise`).
    gen : torch.Generator
        CPU generator of the draws.
    ranges : dict, optional
        Default :data:`INTENSITY_AUGMENT`.

    Returns
    -------
    Tensor
        Same shape, float32.
    """
    r = {**INTENSITY_AUGMENT, **(ranges or {})}
    b = x.shape[0]
    unit = 1.0 / pp.NORM_STD  # one window width in normalised units

    def draw(*shape):
        return torch.rand(*shape, generator=gen).to(x.device)

    offset = (draw(b) * 2 - 1) * r["shift"] * unit
    gain = 1 + (draw(b) * 2 - 1) * r["contrast"]
    blur = draw(b) < r["blur_p"]
    lo, hi = r["blur_sigma"]
    sigma = lo + (hi - lo) * draw(b)
    noise_sd = draw(b) * r["noise"] * unit
    noise = torch.randn(x.shape, generator=gen).to(x.device)
    x = x.float()
    if bool(blur.any()):
        k = torch.arange(-2, 3, dtype=torch.float32, device=x.device)
        w = torch.exp(-0.5 * (k[None] / sigma[:, None]) ** 2)
        w = w / w.sum(1, keepdim=True)  # B x 5 separable kernels
        xb = F.pad(x, (2, 2, 2, 2), mode="replicate").transpose(0, 1)  # 1 x B x H+4 x W+4
        xb = F.conv2d(xb, w[:, None, None, :], groups=b)
        xb = F.conv2d(xb, w[:, None, :, None], groups=b).transpose(0, 1)
        x = torch.where(blur[:, None, None, None], xb, x)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = mean + (x - mean) * gain[:, None, None, None] + offset[:, None, None, None]
    return x + noise * noise_sd[:, None, None, None]


def patient_dice_metric(patient_of_item: list[str]):
    from fastai.metrics import Metric

    class PatientDice(Metric):
        """Validation Dice per patient (pooled over that patient's slices), averaged over the patients.

        The paper reports DSC per case; a Dice pooled over all validation slices would let one large tumour decide
        which epoch is kept. Items arrive in the order of ``patient_of_item`` (the validation loader is not
        shuffled).
        """

        def __init__(self):
            self.pids = np.asarray(patient_of_item)

        def reset(self):
            self.i, self.inter, self.total = 0, {}, {}

        def accumulate(self, learn):
            pred = learn.pred.argmax(1) == 1
            targ = learn.yb[0] == 1
            n = pred.shape[0]
            inter = (pred & targ).flatten(1).sum(1).tolist()
            total = (pred.flatten(1).sum(1) + targ.flatten(1).sum(1)).tolist()
            for p, a, b in zip(self.pids[self.i:self.i + n], inter, total):
                self.inter[p] = self.inter.get(p, 0) + a
                self.total[p] = self.total.get(p, 0) + b
            self.i += n

        @property
        def value(self):
            d = [2 * self.inter[p] / self.total[p] for p in self.total if self.total[p] > 0]
            return float(np.mean(d)) if d else 0.0

        @property
        def name(self):
            return "dice"

    return PatientDice()


def channels_last_callback():
    from fastai.callback.core import Callback

    class ChannelsLast(Callback):
        """Batches in channels-last memory order (after augmentation): about 1.8x faster convolutions on CPU."""

        order = 2

        def before_batch(self):
            self.learn.xb = tuple(x.contiguous(memory_format=torch.channels_last) for x in self.xb)

    return ChannelsLast()


def timer_callback():
    from fastai.callback.core import Callback

    class EpochTimer(Callback):
        order = 0

        def before_fit(self):
            self.times = []

        def before_epoch(self):
            self.t0 = time.perf_counter()

        def after_epoch(self):
            self.times.append(time.perf_counter() - self.t0)

    return EpochTimer()


def progress_callback(task: str):
    """One progress line per finished epoch (loss, validation loss, Dice) for the terminal of a book run."""
    from fastai.callback.core import Callback

    class EpochProgress(Callback):
        order = 90  # after the Recorder has logged the epoch

        def before_epoch(self):
            self.t0 = time.perf_counter()

        def after_epoch(self):
            names = [n for n in self.recorder.metric_names[1:] if n != "time"]
            values = {n: float(v) for n, v in zip(names, self.recorder.values[-1])}
            report_progress(task, self.epoch + 1, self.n_epoch, unit="epoch", **values,
                            seconds=time.perf_counter() - self.t0)

    return EpochProgress()
