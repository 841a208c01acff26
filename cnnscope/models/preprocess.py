"""Model input preparation and its exact inverse (for showing what the network saw)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from ..memory import check_bytes

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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
        """[3,H,W] or [N,3,H,W] in [0,1] -> [N,3,S,S] in [0,1] (resize + centre crop)."""
        x = image.unsqueeze(0) if image.dim() == 3 else image
        short = self.resize or self.input_size
        h, w = x.shape[-2:]
        if min(h, w) != short:
            scale = short / min(h, w)
            size = (max(short, round(h * scale)), max(short, round(w * scale)))
            # a thin image grows along its long side: 8x20000 px becomes 256x640000 (2 GB)
            check_bytes(4.0 * x.shape[0] * x.shape[1] * size[0] * size[1],
                        f"resizing a {w}x{h} image to {size[1]}x{size[0]} px", "crop it first")
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        h, w = x.shape[-2:]
        s = self.input_size
        top, left = int(round((h - s) / 2.0)), int(round((w - s) / 2.0))
        return x[..., top:top + s, left:left + s].clamp(0, 1)

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
