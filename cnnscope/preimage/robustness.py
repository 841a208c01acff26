"""Transformation robustness: random transforms applied to the image each step, before the network.

A visualisation that only works at one exact pixel alignment is an adversarial pattern, not a feature the
network detects. Asking the objective to hold under small random shifts, scalings and rotations (Olah et
al., Distill 2017; Mahendran & Vedaldi's jitter is the first of them) removes such patterns.

Each transform is a small object `t(x, gen) -> x` on pixels [N,3,H,W] in [0, 1]; one random draw per step
serves the whole batch, from the solver's seeded generator, so the same seed gives the same bytes. A
`Pipeline` chains them and resizes the result back to the size the objective was built for, so data terms
with a fixed target shape (a neuron's position, an inversion's code) keep their meaning. Pad, jitter, scale,
rotation and that resize are affine maps of the canvas, composed into one bilinear resampling (one
`grid_sample` forward and backward per step); a circular shift is applied on its own.

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


# Pad, Jitter, Scale and Rotate are affine maps of the canvas: each gives the map from its output's coordinates
# to its input's (3x3, on (x, y, 1) in pixels with the canvas spanning [0, w] x [0, h]) and its output size, so a
# Pipeline composes a run of them, and the resize back, into one grid_sample: one resampling forward and backward
# per step instead of one per transform (each bilinear pass also blurs the picture and its gradient once more).
Affine = tuple[torch.Tensor, tuple[int, int]]


def _translate(dx: float, dy: float) -> torch.Tensor:
    return torch.tensor([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]], dtype=torch.float64)


def _stretch(h: int, w: int, size: tuple[int, int]) -> Affine:
    """Resize an h x w canvas to `size` (bilinear, align_corners=False geometry)."""
    m = torch.diag(torch.tensor([w / size[1], h / size[0], 1.0], dtype=torch.float64))
    return m, size


@dataclass(frozen=True)
class Pad:
    """Add `width` grey pixels on every side (the network cannot rely on the image border)."""

    width: int

    def affine(self, h: int, w: int, gen: torch.Generator) -> Affine:
        return _translate(-self.width, -self.width), (h + 2 * self.width, w + 2 * self.width)

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return Pipeline((self,))(x, gen)

    def spec(self) -> str:
        return f"pad:{self.width}"


@dataclass(frozen=True)
class Jitter:
    """Crop `d` pixels off, at a random offset in each direction (Lucid's jitter: the image shrinks by d)."""

    d: int

    def affine(self, h: int, w: int, gen: torch.Generator) -> Affine:
        dy, dx = _randint(gen, 0, self.d), _randint(gen, 0, self.d)
        return _translate(dx, dy), (h - self.d, w - self.d)

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return Pipeline((self,))(x, gen)

    def spec(self) -> str:
        return f"jitter:{self.d}"


@dataclass(frozen=True)
class Shift:
    """Roll the image circularly by up to +-d pixels (Mahendran & Vedaldi's jitter; the size is kept).
    Circular, so not an affine map of the canvas: a Pipeline applies it on its own."""

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

    def affine(self, h: int, w: int, gen: torch.Generator) -> Affine:
        f = _uniform(gen, self.lo, self.hi)
        return _stretch(h, w, (max(1, round(h * f)), max(1, round(w * f))))

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return Pipeline((self,))(x, gen)

    def spec(self) -> str:
        return f"scale:{self.lo:g}-{self.hi:g}"


@dataclass(frozen=True)
class Rotate:
    """Rotate about the centre by a random angle in [-degrees, degrees]; corners come in grey."""

    degrees: float

    def affine(self, h: int, w: int, gen: torch.Generator) -> Affine:
        a = math.radians(_uniform(gen, -self.degrees, self.degrees))
        c, s = math.cos(a), math.sin(a)
        rotation = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
        return _translate(w / 2, h / 2) @ rotation @ _translate(-w / 2, -h / 2), (h, w)  # rigid in pixels

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return Pipeline((self,))(x, gen)

    def spec(self) -> str:
        return f"rotate:{self.degrees:g}"


Transform = Pad | Jitter | Shift | Scale | Rotate

PRESETS = {  # pixel amounts for PRESET_SIZE px pictures, scaled with the picture (224 px: pad 21, jitter 14)
    "none": "",
    "standard": "pad:12,jitter:8,scale:0.9-1.1,rotate:10,jitter:4",  # Lucid's standard_transforms
}
PRESET_SIZE = 128  # Lucid's default picture size, which its transform amounts were chosen for


def resample(x: torch.Tensor, to_input: torch.Tensor, size: tuple[int, int],
             window: tuple[int, int, int, int] | None = None) -> torch.Tensor:
    """`x` seen through an affine map: the `size` canvas whose pixel at (x, y) is x's at `to_input` @ (x, y, 1)
    (bilinear; grey outside x); only its `window` (top, left, height, width) when given, with the values the
    whole canvas has there."""
    n, _, h, w = x.shape
    # grid_sample reads [-1, 1] coordinates: from the output pixels to x's normalised coordinates, via pixels
    from_unit = torch.tensor([[size[1] / 2, 0.0, size[1] / 2], [0.0, size[0] / 2, size[0] / 2], [0.0, 0.0, 1.0]],
                             dtype=torch.float64)
    to_unit = torch.tensor([[2 / w, 0.0, -1.0], [0.0, 2 / h, -1.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    theta = (to_unit @ to_input @ from_unit)[:2].to(device=x.device, dtype=x.dtype)
    # the grid as affine_grid makes it, by broadcasting (its batched matmul with an inner size of 3 is ~3x slower)
    ys, xs = (torch.linspace(-1 + 1 / s, 1 - 1 / s, s, device=x.device, dtype=x.dtype) for s in size)
    if window is not None:
        top, left, height, width = window
        ys, xs = ys[top:top + height], xs[left:left + width]
    grid = torch.addcmul(torch.addcmul(theta[:, 2], ys[:, None, None], theta[:, 1]), xs[None, :, None], theta[:, 0])
    grid = grid.expand(n, *grid.shape)
    return F.grid_sample(x - GREY, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + GREY


class Pipeline:
    """Transforms in order, then a resize back to `size` (when the transforms changed it); a run of affine
    transforms and the resize are one resampling."""

    def __init__(self, transforms: tuple[Transform, ...] = ()):
        self.transforms = tuple(transforms)

    def __bool__(self) -> bool:
        return bool(self.transforms)

    def __call__(self, x: torch.Tensor, gen: torch.Generator, size: tuple[int, int] | None = None,
                 window: tuple[int, int, int, int] | None = None) -> torch.Tensor:
        """x through the transforms (resized to `size`); only the `window` (top, left, height, width) of the
        result when given (the same random draws: the window is cut from the same picture)."""
        to_input, canvas = torch.eye(3, dtype=torch.float64), tuple(x.shape[-2:])  # x seen through the run so far
        for t in self.transforms:
            if isinstance(t, Shift):
                x = self._resampled(x, to_input, canvas)
                to_input, canvas = torch.eye(3, dtype=torch.float64), tuple(x.shape[-2:])
                x = t(x, gen)
            else:
                m, canvas = t.affine(*canvas, gen)
                to_input = to_input @ m
        if size is not None and tuple(canvas) != tuple(size):
            m, canvas = _stretch(*canvas, tuple(size))
            to_input = to_input @ m
        return self._resampled(x, to_input, canvas, window)

    @staticmethod
    def _resampled(x: torch.Tensor, to_input: torch.Tensor, canvas: tuple[int, int],
                   window: tuple[int, int, int, int] | None = None) -> torch.Tensor:
        top, left, height, width = window or (0, 0, *canvas)
        linear, (dx, dy) = to_input[:2, :2], to_input[:2, 2].tolist()
        dy, dx = dy + top, dx + left
        h, w = x.shape[-2:]
        if (torch.equal(linear, torch.eye(2, dtype=torch.float64)) and dx == int(dx) and dy == int(dy)
                and 0 <= dy and dy + height <= h and 0 <= dx and dx + width <= w):  # a crop (or nothing)
            return x[..., int(dy):int(dy) + height, int(dx):int(dx) + width]
        return resample(x, to_input, canvas, window)

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
