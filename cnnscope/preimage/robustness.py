"""Transformation robustness: random transforms applied to the image each step, before the network.

A visualisation that only works at one exact pixel alignment is an adversarial pattern, not a feature the
network detects. Asking the objective to hold under small random shifts, scalings and rotations (Olah et
al., Distill 2017; Mahendran & Vedaldi's jitter is the first of them) removes such patterns.

Each transform is a small object `t(x, gen) -> x` on pixels [N,3,H,W] in [0, 1]; one random draw per step
serves the whole batch, from the solver's seeded generator, so the same seed gives the same bytes. A
`Pipeline` chains them and resizes the result back to the size the objective was built for, so data terms
with a fixed target shape (a neuron's position, an inversion's code) keep their meaning.

Written as a spec string, which is also how settings are recorded:
    "pad:12,jitter:8,scale:0.9-1.1,rotate:10,jitter:4"   (= the preset "standard" at 128 px, Lucid's set)
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import CnnscopeError

GREY = 0.5  # what a pad or a rotation brings in from outside the image


def _uniform(gen: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=gen))


def _randint(gen: torch.Generator, lo: int, hi: int) -> int:
    """Uniform in lo..hi inclusive."""
    return int(torch.randint(lo, hi + 1, (), generator=gen))


@dataclass(frozen=True)
class Pad:
    """Add `width` grey pixels on every side (the network cannot rely on the image border)."""

    width: int

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return F.pad(x, [self.width] * 4, value=GREY)

    def spec(self) -> str:
        return f"pad:{self.width}"


@dataclass(frozen=True)
class Jitter:
    """Crop `d` pixels off, at a random offset in each direction (Lucid's jitter: the image shrinks by d)."""

    d: int

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        h, w = x.shape[-2:]
        dy, dx = _randint(gen, 0, self.d), _randint(gen, 0, self.d)
        return x[..., dy:h - self.d + dy, dx:w - self.d + dx]

    def spec(self) -> str:
        return f"jitter:{self.d}"


@dataclass(frozen=True)
class Shift:
    """Roll the image circularly by up to +-d pixels (Mahendran & Vedaldi's jitter; the size is kept)."""

    d: int

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        dy, dx = _randint(gen, -self.d, self.d), _randint(gen, -self.d, self.d)
        return torch.roll(x, shifts=(dy, dx), dims=(2, 3))

    def spec(self) -> str:
        return f"shift:{self.d}"


@dataclass(frozen=True)
class Scale:
    """Resize by a random factor in [lo, hi] (bilinear)."""

    lo: float
    hi: float

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        f = _uniform(gen, self.lo, self.hi)
        h, w = x.shape[-2:]
        size = (max(1, round(h * f)), max(1, round(w * f)))
        return x if size == (h, w) else F.interpolate(x, size=size, mode="bilinear", align_corners=False)

    def spec(self) -> str:
        return f"scale:{self.lo:g}-{self.hi:g}"


@dataclass(frozen=True)
class Rotate:
    """Rotate about the centre by a random angle in [-degrees, degrees]; corners come in grey."""

    degrees: float

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        a = math.radians(_uniform(gen, -self.degrees, self.degrees))
        if a == 0.0:
            return x
        n, _, h, w = x.shape
        c, s = math.cos(a), math.sin(a)
        # affine_grid works in [-1, 1] coordinates; the aspect ratio keeps the rotation rigid on non-square images
        theta = torch.tensor([[c, -s * h / w, 0.0], [s * w / h, c, 0.0]], dtype=x.dtype,
                             device=x.device).expand(n, 2, 3)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x - GREY, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + GREY

    def spec(self) -> str:
        return f"rotate:{self.degrees:g}"


Transform = Pad | Jitter | Shift | Scale | Rotate

PRESETS = {  # pixel amounts for PRESET_SIZE px pictures, scaled with the picture (224 px: pad 21, jitter 14)
    "none": "",
    "standard": "pad:12,jitter:8,scale:0.9-1.1,rotate:10,jitter:4",  # Lucid's standard_transforms
}
PRESET_SIZE = 128  # Lucid's default picture size, which its transform amounts were chosen for


class Pipeline:
    """Transforms in order, then a bilinear resize back to `size` (when the transforms changed it)."""

    def __init__(self, transforms: tuple[Transform, ...] = ()):
        self.transforms = tuple(transforms)

    def __bool__(self) -> bool:
        return bool(self.transforms)

    def __call__(self, x: torch.Tensor, gen: torch.Generator, size: tuple[int, int] | None = None) -> torch.Tensor:
        for t in self.transforms:
            x = t(x, gen)
        if size is not None and tuple(x.shape[-2:]) != tuple(size):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return x

    def spec(self) -> str:
        return ",".join(t.spec() for t in self.transforms)

    def __add__(self, other: Pipeline) -> Pipeline:
        return Pipeline(self.transforms + other.transforms)


def _number(text: str, what: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise CnnscopeError(f"transform '{what}': '{text}' is not a number") from None
    if not math.isfinite(v):
        raise CnnscopeError(f"transform '{what}': {text} is not a finite number")
    return v


def _whole(text: str, what: str, lo: int, hi: int) -> int:
    v = _number(text, what)
    if v != int(v) or not lo <= v <= hi:
        raise CnnscopeError(f"transform '{what}': expected a whole number of pixels in {lo}-{hi}, got {text}")
    return int(v)


def parse_transforms(spec: str | None, size: int | None = None) -> Pipeline:
    """'standard', 'none', or comma-separated pad:W, jitter:D, shift:D, scale:LO-HI, rotate:DEG (pixels).
    A preset's pixel amounts are scaled by size / PRESET_SIZE when `size` is given."""
    spec = (spec or "").strip()
    factor = 1.0
    if spec in PRESETS:
        spec, factor = PRESETS[spec], (size / PRESET_SIZE if size else 1.0)
    out: list[Transform] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        name, _, arg = part.partition(":")
        if name in ("pad", "jitter", "shift"):
            n = _whole(arg, part, 0, 512)
            n = max(1, round(n * factor)) if n else 0
            out.append({"pad": Pad, "jitter": Jitter, "shift": Shift}[name](n))
        elif name == "scale":
            m = re.fullmatch(r"([^-]+)-(.+)", arg)
            lo, hi = (_number(m.group(1), part), _number(m.group(2), part)) if m else (_number(arg, part),) * 2
            if not 0.1 <= lo <= hi <= 4.0:
                raise CnnscopeError(f"transform '{part}': scale range must satisfy 0.1 <= lo <= hi <= 4")
            out.append(Scale(lo, hi))
        elif name == "rotate":
            deg = _number(arg, part)
            if not 0 <= deg <= 180:
                raise CnnscopeError(f"transform '{part}': rotation must be 0-180 degrees")
            out.append(Rotate(deg))
        else:
            raise CnnscopeError(f"unknown transform '{name}' in '{spec}' (pad, jitter, shift, scale, rotate; "
                                f"presets: {', '.join(PRESETS)})")
    return Pipeline(tuple(out))
