"""How good is a picture? Scores written beside every pre-image, so quality is measured, not asserted.

- achieved activation: the unit's response to the picture over its largest response to natural images
  (in `tasks.maximize`'s results);
- judges: other zoo networks that never saw the optimisation. A class visualisation is good when they
  rank its class high; an inversion when their top-5 for it overlaps their top-5 for the original;
  a texture when its Gram matrices, measured by a judge, are close to the source's;
- naturalness: the slope of the radially averaged power spectrum in log-log (natural images: about -2;
  high-frequency noise is flatter) and colour statistics.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache

import torch
import torch.nn.functional as F

from ..errors import CnnscopeError
from ..layers import capture
from ..models import Model, load_model
from .objectives import gram

NATURAL_SLOPE = -2.0  # power ~ 1/f^2 (van der Schaaf & van Hateren 1996)
JUDGE_FAMILY = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


# ------------------------------------------------------------------------------------------- naturalness
def spectrum_slope(images: torch.Tensor) -> list[float]:
    """Per image [N,3,H,W] in [0,1]: the least-squares slope of log power against log frequency, power
    radially averaged over rings of the (Hann-windowed) grey image's spectrum, from 2 cycles per image to
    0.8 of Nyquist."""
    grey = images.float().mean(1)
    n, h, w = grey.shape
    window = torch.outer(torch.hann_window(h, periodic=False), torch.hann_window(w, periodic=False))
    power = torch.fft.fft2((grey - grey.mean((1, 2), keepdim=True)) * window).abs().square()
    fy, fx = torch.fft.fftfreq(h).view(-1, 1) * h, torch.fft.fftfreq(w).view(1, -1) * w
    ring = (fy.square() + fx.square()).sqrt().round().long()
    top = int(0.8 * min(h, w) / 2)
    rings = torch.arange(2, top + 1)
    counts = torch.bincount(ring.flatten(), minlength=top + 1)[rings].float()
    slopes = []
    for p in power:
        mean_power = torch.bincount(ring.flatten(), weights=p.flatten(), minlength=top + 1)[rings] / counts
        x, y = rings.float().log(), mean_power.clamp_min(1e-20).log()
        xc = x - x.mean()
        slopes.append(float((xc * (y - y.mean())).sum() / xc.square().sum()))
    return slopes


def colour_stats(images: torch.Tensor) -> list[dict]:
    """Per image: mean and standard deviation of R, G, B and the mean HSV saturation."""
    out = []
    for im in images.float():
        mx, mn = im.max(0).values, im.min(0).values
        sat = torch.where(mx > 0, (mx - mn) / mx.clamp_min(1e-6), torch.zeros_like(mx))
        out.append({"mean_rgb": [round(float(v), 4) for v in im.mean((1, 2))],
                    "std_rgb": [round(float(v), 4) for v in im.std((1, 2))],
                    "saturation": round(float(sat.mean()), 4)})
    return out


def naturalness(images: torch.Tensor) -> list[dict]:
    return [{"spectrum_slope": round(s, 3), **c} for s, c in zip(spectrum_slope(images), colour_stats(images))]


# ------------------------------------------------------------------------------------------------ judges
@cache
def _judge(name: str) -> Model | None:
    try:
        return load_model(name)
    except CnnscopeError:  # weights not installed (the 'lite' extra): judged by the others
        return None


def judges_for(model: Model) -> list[Model]:
    """The zoo classifiers other than `model` whose weights are available (ImageNet models only)."""
    if model.name not in JUDGE_FAMILY and len(model.classes) != 1000:
        return []
    return [j for j in (_judge(n) for n in JUDGE_FAMILY if n != model.name) if j is not None]


@torch.no_grad()
def _logits(judge: Model, images: torch.Tensor) -> torch.Tensor:
    """The whole picture (no crop) resized to the judge's input size."""
    s = judge.input_size
    x = F.interpolate(images.float(), size=(s, s), mode="bilinear", antialias=True, align_corners=False)
    return judge.net(judge.preprocess.normalize(x))


def class_ranks(judges: Sequence[Model], images: torch.Tensor, classes: Sequence[int]) -> list[dict[str, int]]:
    """Per image, each judge's rank of its target class (0 = the judge's top class)."""
    ranks: list[dict[str, int]] = [{} for _ in classes]
    for judge in judges:
        logits = _logits(judge, images)
        for i, k in enumerate(classes):
            ranks[i][judge.name] = int((logits[i] > logits[i, k]).sum())
    return ranks


def topk_overlap(judges: Sequence[Model], images: torch.Tensor, original: torch.Tensor,
                 k: int = 5) -> list[dict[str, int]]:
    """Per image, for each judge: how many of its top-k classes for the picture are in its top-k for the
    original ([1,3,H,W] or one per image)."""
    out: list[dict[str, int]] = [{} for _ in range(len(images))]
    for judge in judges:
        top = _logits(judge, images).topk(k, dim=1).indices
        ref = _logits(judge, original.expand(len(images), -1, -1, -1)).topk(k, dim=1).indices
        for i in range(len(images)):
            out[i][judge.name] = len(set(top[i].tolist()) & set(ref[i].tolist()))
    return out


@torch.no_grad()
def gram_distance(judge: Model, images: torch.Tensor, source: torch.Tensor, layers: Sequence[str]) -> list[float]:
    """Per image, the mean over `layers` of ||G(x) - G(source)||^2 / ||G(source)||^2 measured by `judge`
    at its own input scale (pictures and source resized so their shorter side is the judge's input size)."""
    def feats(x):
        s = judge.input_size
        h, w = x.shape[-2:]
        size = (s, max(1, round(w * s / h))) if h <= w else (max(1, round(h * s / w)), s)
        x = F.interpolate(x.float(), size=size, mode="bilinear", antialias=True, align_corners=False)
        return capture(judge, judge.preprocess.normalize(x), list(layers))

    fx, fs = feats(images), feats(source[None] if source.dim() == 3 else source)
    totals = torch.zeros(len(images))
    for layer in layers:
        g, g0 = gram(fx[layer]), gram(fs[layer])
        totals += (g - g0).square().flatten(1).sum(1) / g0.square().sum().clamp_min(1e-12)
    return [float(v) / len(layers) for v in totals]


def activation_ratio(final: Sequence[float], reference: Sequence[float]) -> list[float]:
    """Achieved activation over the natural-image maximum (1.0 = as strong as the best natural image)."""
    return [f / r if r and math.isfinite(r) else float("nan") for f, r in zip(final, reference)]
