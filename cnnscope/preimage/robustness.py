"""Transformation robustness: random transforms applied to the image each step, before the network.

A visualisation that only works at one exact pixel alignment is an adversarial pattern, not a feature the
network detects. Asking the objective to hold under small random shifts, scalings and rotations (Olah et
al., Distill 2017; Mahendran & Vedaldi's jitter is the first of them) removes such patterns.

Each transform is a small object on pixels [N,3,H,W] in [0, 1]; one random draw per step serves the whole
batch, from the solver's seeded generator, so the same seed gives the same bytes. A `Pipeline` chains them and
resizes the result back to the size the objective was built for, so data terms with a fixed target shape (a
neuron's position, an inversion's code) keep their meaning.

Pad, jitter (a crop), scale and rotation are all affine maps of the picture's coordinates: each `draw`s its
random parameters as a 3x3 matrix (output pixel coordinates -> input ones) and the canvas it leaves, and the
pipeline multiplies them with the resize back into ONE map, sampled by one `grid_sample` per step (one
bilinear interpolation instead of five, one small autograd graph; the picture is also blurred once, not at
every stage). M&V's circular shift is not affine on a bounded canvas: it stays a `torch.roll`.

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


def _translation(dx: float, dy: float) -> torch.Tensor:
    """(u, v) -> (u + dx, v + dy) in homogeneous pixel coordinates (float64: a step's maps compose exactly)."""
    return torch.tensor([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]], dtype=torch.float64)


def _scaling(fx: float, fy: float) -> torch.Tensor:
    return torch.tensor([[fx, 0.0, 0.0], [0.0, fy, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)


def affine_sample(x: torch.Tensor, matrix: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """x [N,3,h,w] sampled on a `size` canvas whose pixel coordinates `matrix` maps to x's (continuous pixel
    coordinates: pixel i covers [i, i+1)); grey outside x. One bilinear `grid_sample`, differentiable in x."""
    n, _, h, w = x.shape
    H, W = size
    # grid_sample's [-1, 1] coordinates (align_corners=False): u_norm = 2u/w - 1, for input and output alike
    to_norm = torch.tensor([[2.0 / w, 0.0, -1.0], [0.0, 2.0 / h, -1.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    from_norm = torch.tensor([[W / 2, 0.0, W / 2], [0.0, H / 2, H / 2], [0.0, 0.0, 1.0]], dtype=torch.float64)
    (a, b, c), (d, e, f) = (to_norm @ matrix @ from_norm)[:2].tolist()
    # the sampling grid at output pixel centres (what affine_grid gives, without its batched matmul)
    xs = torch.linspace(-1 + 1 / W, 1 - 1 / W, W, device=x.device, dtype=x.dtype)
    ys = torch.linspace(-1 + 1 / H, 1 - 1 / H, H, device=x.device, dtype=x.dtype)[:, None]
    grid = torch.stack([xs * a + (ys * b + c), xs * d + (ys * e + f)], dim=-1)
    return F.grid_sample(x - GREY, grid.expand(n, H, W, 2), mode="bilinear", padding_mode="zeros",
                         align_corners=False) + GREY


class _Affine:
    """An affine transform alone, applied to a picture (pipelines compose several before sampling)."""

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return Pipeline((self,))(x, gen)


@dataclass(frozen=True)
class Pad(_Affine):
    """Add `width` grey pixels on every side (the network cannot rely on the image border)."""

    width: int

    def draw(self, gen: torch.Generator, canvas: tuple[int, int]) -> tuple[torch.Tensor, tuple[int, int]]:
        return _translation(-self.width, -self.width), (canvas[0] + 2 * self.width, canvas[1] + 2 * self.width)

    def spec(self) -> str:
        return f"pad:{self.width}"


@dataclass(frozen=True)
class Jitter(_Affine):
    """Crop `d` pixels off, at a random offset in each direction (Lucid's jitter: the image shrinks by d)."""

    d: int

    def draw(self, gen: torch.Generator, canvas: tuple[int, int]) -> tuple[torch.Tensor, tuple[int, int]]:
        dy, dx = _randint(gen, 0, self.d), _randint(gen, 0, self.d)
        return _translation(dx, dy), (max(1, canvas[0] - self.d), max(1, canvas[1] - self.d))

    def spec(self) -> str:
        return f"jitter:{self.d}"


@dataclass(frozen=True)
class Shift:
    """Roll the image circularly by up to +-d pixels (Mahendran & Vedaldi's jitter; the size is kept)."""

    d: int

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        dy, dx = _randint(gen, -self.d, self.d), _randint(gen, -self.d, self.d)
        return torch.roll(x, shifts=(dy, dx), dims=(2, 3)) if dy or dx else x

    def spec(self) -> str:
        return f"shift:{self.d}"


@dataclass(frozen=True)
class Scale(_Affine):
    """Resize by a random factor in [lo, hi] (bilinear)."""

    lo: float
    hi: float

    def draw(self, gen: torch.Generator, canvas: tuple[int, int]) -> tuple[torch.Tensor, tuple[int, int]]:
        f = _uniform(gen, self.lo, self.hi)
        h, w = canvas
        size = (max(1, round(h * f)), max(1, round(w * f)))
        return _scaling(w / size[1], h / size[0]), size

    def spec(self) -> str:
        return f"scale:{self.lo:g}-{self.hi:g}"


@dataclass(frozen=True)
class Rotate(_Affine):
    """Rotate about the centre by a random angle in [-degrees, degrees]; corners come in grey."""

    degrees: float

    def draw(self, gen: torch.Generator, canvas: tuple[int, int]) -> tuple[torch.Tensor, tuple[int, int]]:
        a = math.radians(_uniform(gen, -self.degrees, self.degrees))
        c, s = math.cos(a), math.sin(a)
        cy, cx = canvas[0] / 2, canvas[1] / 2  # rigid, in pixels, about the canvas's centre
        rotation = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
        return _translation(cx, cy) @ rotation @ _translation(-cx, -cy), canvas

    def spec(self) -> str:
        return f"rotate:{self.degrees:g}"


Transform = Pad | Jitter | Shift | Scale | Rotate

PRESETS = {  # pixel amounts for PRESET_SIZE px pictures, scaled with the picture (224 px: pad 21, jitter 14)
    "none": "",
    "standard": "pad:12,jitter:8,scale:0.9-1.1,rotate:10,jitter:4",  # Lucid's standard_transforms
}
PRESET_SIZE = 128  # Lucid's default picture size, which its transform amounts were chosen for


class Pipeline:
    """Transforms in order, then a resize back to `size`: the affine ones and the resize as one map, sampled
    once (`affine_sample`); a circular shift applies what came before it and rolls."""

    def __init__(self, transforms: tuple[Transform, ...] = ()):
        self.transforms = tuple(transforms)

    def __bool__(self) -> bool:
        return bool(self.transforms)

    def __call__(self, x: torch.Tensor, gen: torch.Generator, size: tuple[int, int] | None = None) -> torch.Tensor:
        matrix, canvas = torch.eye(3, dtype=torch.float64), tuple(x.shape[-2:])
        for t in self.transforms:
            if isinstance(t, Shift):
                x = self._sample(x, matrix, canvas)
                matrix, canvas = torch.eye(3, dtype=torch.float64), tuple(x.shape[-2:])
                x = t(x, gen)
            else:
                step, canvas = t.draw(gen, canvas)
                matrix = matrix @ step
        if size is not None and tuple(canvas) != tuple(size):
            matrix = matrix @ _scaling(canvas[1] / size[1], canvas[0] / size[0])
            canvas = tuple(size)
        return self._sample(x, matrix, canvas)

    @staticmethod
    def _sample(x: torch.Tensor, matrix: torch.Tensor, canvas: tuple[int, int]) -> torch.Tensor:
        if tuple(canvas) == tuple(x.shape[-2:]) and torch.equal(matrix, torch.eye(3, dtype=torch.float64)):
            return x  # nothing moved: no resampling (and no blur)
        return affine_sample(x, matrix, canvas)

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
