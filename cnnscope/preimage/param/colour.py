"""Decorrelated colour: optimise three channels that are uncorrelated on natural images, not R, G, B.

Natural images' RGB values are strongly correlated (mostly brightness). A gradient step in RGB therefore
changes colours far more than natural images do; optimising in a whitened colour basis lets brightness and
the two opponent-colour axes move at natural relative rates (Olah et al., Distill 2017).

COLOUR_SQRT is a square root of the colour covariance of natural images (M M^T = cov), measured here on
100 ImageNet validation images at 224 px (eigen-decomposition, columns by decreasing variance: brightness,
red-blue, green-magenta), and divided by its largest column norm so the first axis has unit gain.
"""

from __future__ import annotations

import torch

from .base import Parametrization, logit

COLOUR_SQRT = torch.tensor([[0.5624, 0.2010, 0.0495],
                            [0.5831, 0.0009, -0.0990],
                            [0.5863, -0.1937, 0.0509]])
COLOUR_MEAN = (0.476, 0.451, 0.408)  # mean RGB of the same images


def decorrelated_to_rgb(t: torch.Tensor) -> torch.Tensor:
    """[N,3,H,W] in the decorrelated basis -> [N,3,H,W] RGB offsets (no mean added)."""
    return torch.einsum("ij,njhw->nihw", COLOUR_SQRT.to(t), t)


def rgb_to_decorrelated(t: torch.Tensor) -> torch.Tensor:
    """The exact inverse of `decorrelated_to_rgb`."""
    return torch.einsum("ij,njhw->nihw", torch.linalg.inv(COLOUR_SQRT).to(t), t)


class ColourParam(Parametrization):
    """Pixels in the decorrelated colour basis, squashed into [0, 1] by a sigmoid:
    x = sigmoid(C t), t the free tensor [N,3,H,W]."""

    name = "colour"

    def __init__(self, n: int, size, sd: float = 0.01, seed: int = 0):
        super().__init__(n, size)
        gen = torch.Generator().manual_seed(seed)
        self.t = torch.nn.Parameter(torch.randn(self.shape, generator=gen) * sd)

    def forward(self) -> torch.Tensor:
        return torch.sigmoid(decorrelated_to_rgb(self.t))

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> None:
        self.t.copy_(rgb_to_decorrelated(logit(images.expand(self.shape))))
