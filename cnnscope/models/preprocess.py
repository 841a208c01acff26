"""Model input preparation and its exact inverse (for showing what the network saw)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from ..memory import check_bytes

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


WHOLE_RESIZE = 4  # resize the whole picture when that is at most this many crops' worth of pixels


def _span(n_in: int, n_out: int, start: int, length: int) -> tuple[int, int, int, int]:
    """The source slice [a, b) whose resize to `n` px holds output pixels [start, start + length) of the whole
    resize n_in -> n_out at offset `at`: (a, b, n, at). a and b are multiples of n_in / gcd(n_in, n_out), so the
    slice's resize has exactly the whole one's scale and pixel grid; a margin keeps the filter off its edges."""
    g = math.gcd(n_in, n_out)
    step_in, step_out = n_in // g, n_out // g  # a whole number of source pixels <-> of output pixels
    margin = 2 + math.ceil(n_out / n_in) + math.ceil(2 * n_in / n_out)  # the antialiasing filter's reach, in px out
    a = max(0, (start - margin) // step_out) * step_in
    b = min(n_in, -(-(start + length + margin) // step_out) * step_in)
    return a, b, (b - a) // step_in * step_out, start - a // step_in * step_out


@dataclass(frozen=True)
class Preprocess:
    """Resize the shorter side to `resize`, centre-crop `input_size`, then (x - mean) / std.

    mean/std are in [0, 1] pixel units. TF-style (x*255 - 127)/128 is mean=127/255, std=128/255.
    """

    input_size: int = 224
    resize: int | None = 256
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def geometry(self, image: torch.Tensor) -> torch.Tensor:
        """[3,H,W] or [N,3,H,W] in [0,1] -> [N,3,S,S] in [0,1] (resize + centre crop).

        The crop box is found in the source picture's coordinates and only that region (with the resampling
        filter's margin) is resized, so memory is bounded by the input size whatever the aspect ratio: an
        8x20000 px strip is not first made 256x640000 px (2 GB). Pictures whose whole resize is small take
        the whole resize (the same bytes as ever)."""
        x = image.unsqueeze(0) if image.dim() == 3 else image
        short = self.resize or self.input_size
        h, w = x.shape[-2:]
        s = self.input_size
        if min(h, w) == short:
            top, left = int(round((h - s) / 2.0)), int(round((w - s) / 2.0))
            return x[..., top:top + s, left:left + s].clamp(0, 1)
        scale = short / min(h, w)
        size = (max(short, round(h * scale)), max(short, round(w * scale)))
        top, left = int(round((size[0] - s) / 2.0)), int(round((size[1] - s) / 2.0))
        if size[0] * size[1] <= WHOLE_RESIZE * s * s:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
            return x[..., top:top + s, left:left + s].clamp(0, 1)
        (y0, y1, ny, ty), (x0, x1, nx, tx) = _span(h, size[0], top, s), _span(w, size[1], left, s)
        check_bytes(4.0 * x.shape[0] * x.shape[1] * ny * nx, f"resizing the centre of a {w}x{h} image to "
                    f"{nx}x{ny} px", "crop it first")
        region = F.interpolate(x[..., y0:y1, x0:x1], size=(ny, nx), mode="bilinear", align_corners=False,
                               antialias=True)
        return region[..., ty:ty + s, tx:tx + s].clamp(0, 1)

    def _stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return mean, std

    def normalize(self, x01: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(x01)
        return (x01 - mean) / std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Exact inverse of `normalize` (no clipping, so it round-trips)."""
        mean, std = self._stats(x)
        return x * std + mean

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return self.normalize(self.geometry(image))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d


def tf_preprocess(input_size: int) -> Preprocess:
    """EfficientNet-Lite style: (x*255 - 127) / 128, resize to input_size/0.875 then centre crop."""
    return Preprocess(
        input_size=input_size,
        resize=int(input_size / 0.875),
        mean=(127 / 255,) * 3,
        std=(128 / 255,) * 3,
    )
