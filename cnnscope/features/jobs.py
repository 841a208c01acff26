"""HOG drawn as glyphs, as a job (see `cnnscope.jobs`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..images import load_image, save_image
from ..jobs import Job, Result
from ..memory import check_bytes
from ..models import ModelSpec
from .hog import HOG
from .render import render_hog


@dataclass
class HogResult(Result):
    """HOG of one image: `features_shape` [C, H/cell, W/cell] and `image_shape` [H, W] after the resize;
    `glyphs` the oriented strokes per cell (a picture, not in the record)."""

    features_shape: list[int]
    image_shape: list[int]
    glyphs: np.ndarray = field(metadata={"json": False})

    def pictures(self) -> list[tuple[torch.Tensor, str]]:
        glyphs = torch.from_numpy(np.asarray(self.glyphs, dtype=np.float32))
        return [(glyphs.expand(3, -1, -1), f"HOG {self.features_shape[1]}x{self.features_shape[2]} cells")]


@dataclass(frozen=True)
class HogJob(Job):
    """HOG (Dalal & Triggs; VLFeat's variant, or bilinear binning) of `image`, drawn as glyphs."""

    key: str
    image: str
    cell_size: int = 8
    orientations: int = 9
    bilinear: bool = False
    size: int | None = None
    glyph: int = 15
    kind = "hog"



    def models(self) -> tuple[ModelSpec, ...]:
        return ()

    def compute(self) -> HogResult:
        image = load_image(self.image)
        if self.size:
            h, w = image.shape[-2:]
            scale = self.size / min(h, w)
            # gradients, orientation histograms and 31 feature channels: ~48 floats a pixel
            check_bytes(4.0 * 48 * round(h * scale) * round(w * scale), f"HOG of a {self.size} px image",
                        "a smaller --size")
            image = F.interpolate(image[None], size=(round(h * scale), round(w * scale)), mode="bilinear",
                                  antialias=True, align_corners=False)[0].clamp(0, 1)
        with torch.no_grad():
            features = HOG(self.cell_size, self.orientations, self.bilinear)(image[None])
        cells = features.shape[-2] * features.shape[-1]
        check_bytes(4.0 * 2 * cells * self.glyph ** 2, f"{cells} HOG glyphs of {self.glyph} px", "a smaller --glyph")
        glyphs = render_hog(features, self.orientations, self.glyph)
        return HogResult(list(features.shape[1:]), list(image.shape[1:]), glyphs)

    def write(self, out: Path, result: HogResult) -> list[str]:
        save_image((np.stack([result.glyphs] * 3, -1) * 255).round().astype(np.uint8), out / f"{self.key}.png")
        return [f"{self.key}.png"]
