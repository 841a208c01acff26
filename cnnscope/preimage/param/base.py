"""What every image parametrisation shares: free tensors in, a batch of pixels in [0, 1] out."""

from __future__ import annotations

import torch
from torch import nn


class Parametrization(nn.Module):
    """A batch of images x = f(theta) as a function of free tensors theta (the module's parameters).

    Calling it returns pixels [N,3,H,W]; the solver optimises `parameters()`, then calls `project()`.
    `encode(images)` sets theta so that f(theta) reproduces `images` (a start image for caricatures and
    accentuation) as closely as the parametrisation allows.

    `lr_scale` converts the solver's learning rate (a fraction of a typical step) into this parametrisation's
    units; `name` and `settings()` are recorded in every output's JSON.
    """

    name = "base"
    lr_scale = 1.0

    def __init__(self, n: int, size: int | tuple[int, int]):
        super().__init__()
        self.n = n
        self.height, self.width = (size, size) if isinstance(size, int) else size

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.n, 3, self.height, self.width)

    def forward(self) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> None:
        raise NotImplementedError

    @torch.no_grad()
    def project(self) -> None:
        """Called after every step (the pixel parametrisation enforces its bounds here)."""

    def settings(self) -> dict:
        return {"param": self.name}


def logit(p: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Inverse of the sigmoid, with pixels kept eps away from 0 and 1 (which it maps to +-inf)."""
    p = p.clamp(eps, 1 - eps)
    return torch.log(p) - torch.log1p(-p)
