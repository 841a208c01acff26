"""Pixels as free variables (Mahendran & Vedaldi): the image itself is optimised, kept inside the
per-pixel norm bound B+ and, by default, the [0, 1] box, by projection after every step."""

from __future__ import annotations

import torch

from ..objectives import B_PLUS, B
from .base import Parametrization


class PixelParam(Parametrization):
    """x = mean + u / 255 with u the free tensor in centred 0-255 units (the units of M&V's priors);
    a learning rate lr means steps of lr * B grey levels."""

    name = "pixel"
    lr_scale = B

    def __init__(self, n: int, size, mean=(0.5, 0.5, 0.5), sd: float = 0.1 * B, seed: int = 0,
                 bound: float | None = B_PLUS, box: bool = True):
        super().__init__(n, size)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        gen = torch.Generator().manual_seed(seed)
        self.u = torch.nn.Parameter(torch.randn(self.shape, generator=gen) * sd)
        self.bound, self.box = bound, box
        self.project()

    def forward(self) -> torch.Tensor:
        return self.mean + self.u / 255.0

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> None:
        self.u.copy_(255.0 * (images.expand(self.shape) - self.mean))
        self.project()

    @torch.no_grad()
    def project(self) -> None:
        u = self.u.data
        if self.box:
            u.clamp_(-255.0 * self.mean, 255.0 * (1.0 - self.mean))
        if self.bound is not None:
            # (torch.linalg.vector_norm over dim 1 of NCHW is ~150x slower than this on CPU, torch 2.13)
            norm = u.square().sum(1, keepdim=True).sqrt_()
            if float(norm.max()) > self.bound:  # usually no pixel is over: skip the rescaling pass
                u.mul_((self.bound / norm.clamp_min_(1e-6)).clamp_(max=1.0))

    def settings(self) -> dict:
        return {"param": self.name, "bound": self.bound, "box": self.box}
