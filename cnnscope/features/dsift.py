"""Dense SIFT as a differentiable torch module (Lowe's descriptor on a regular grid, as VLFeat's vl_dsift with
a flat window).

Gradients of the grey image (central differences), their orientation split bilinearly over 8 bins of 2π/8,
each orientation map pooled by a triangular window of half-width `bin_size` (bilinear spatial binning), a
4×4 grid of such bins per descriptor (bin centres `bin_size` apart) sampled every `step` pixels; each
128-dimensional descriptor is L2-normalised, clipped at 0.2 and normalised again.

Output: [N, 16·8, frames_h, frames_w]; channel (i·4 + j)·8 + o is spatial bin (row i, column j), orientation o.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CnnscopeError
from ..layers import Axis, Geometry

LUMA = (0.299, 0.587, 0.114)


class DenseSIFT(nn.Module):
    def __init__(self, bin_size: int = 8, step: int = 4, orientations: int = 8, spatial_bins: int = 4,
                 clip: float = 0.2):
        super().__init__()
        if bin_size < 1 or step < 1:
            raise CnnscopeError(f"DSIFT bin size and step must be positive, got {bin_size} and {step}")
        self.bin_size, self.step, self.orientations, self.spatial_bins, self.clip = (
            bin_size, step, orientations, spatial_bins, clip)
        b = bin_size
        tri = 1 - (torch.arange(2 * b - 1, dtype=torch.float32) - (b - 1)).abs() / b
        self.register_buffer("window", tri, persistent=False)

    @property
    def dimension(self) -> int:
        return self.spatial_bins ** 2 * self.orientations

    @property
    def extent(self) -> int:
        """Pixels spanned by one descriptor's pooling windows (before the gradient stencil)."""
        return (self.spatial_bins + 1) * self.bin_size - 1

    def extra_repr(self) -> str:
        return f"bin_size={self.bin_size}, step={self.step}, orientations={self.orientations}"

    def output_geometry(self) -> Geometry:
        axis = Axis(self.step, -1, self.extent)  # +-1 px of gradient stencil around the pooled pixels
        return Geometry(axis, axis)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise CnnscopeError(f"DSIFT expects [N, C, H, W] images, got shape {tuple(x.shape)}")
        if min(x.shape[-2:]) < self.extent:
            raise CnnscopeError(f"DSIFT with bin size {self.bin_size} needs images of at least {self.extent} px "
                                f"a side, got {x.shape[-2]}x{x.shape[-1]}")
        if x.shape[1] == 3:
            grey = sum(w * x[:, i:i + 1] for i, w in enumerate(LUMA))
        else:
            grey = x.mean(1, keepdim=True)
        p = F.pad(grey, (1, 1, 1, 1), mode="replicate")
        gx = (p[..., 1:-1, 2:] - p[..., 1:-1, :-2]) / 2
        gy = (p[..., 2:, 1:-1] - p[..., :-2, 1:-1]) / 2
        g2 = gx.square() + gy.square()
        norm = torch.where(g2 > 0, g2.clamp_min(1e-30).sqrt(), torch.zeros_like(g2))
        o = self.orientations
        pos = torch.remainder(torch.atan2(gy, gx), 2 * math.pi) / (2 * math.pi / o)
        with torch.no_grad():
            low = pos.floor().clamp(max=o - 1)
        frac = pos - low
        maps = torch.zeros(x.shape[0], o, *x.shape[-2:], dtype=x.dtype, device=x.device)
        maps = maps.scatter_add(1, low.long(), norm * (1 - frac))
        maps = maps.scatter_add(1, torch.remainder(low.long() + 1, o), norm * frac)
        # bilinear spatial binning == pooling with a separable triangular window
        k = self.window.to(x.dtype)
        maps = F.conv2d(maps, k.view(1, 1, 1, -1).expand(o, 1, 1, -1), groups=o)
        maps = F.conv2d(maps, k.view(1, 1, -1, 1).expand(o, 1, -1, 1), groups=o)
        b, s, nb = self.bin_size, self.step, self.spatial_bins
        span = (nb - 1) * b
        fh = (maps.shape[-2] - span - 1) // s + 1
        fw = (maps.shape[-1] - span - 1) // s + 1
        bins = [maps[..., i * b: i * b + (fh - 1) * s + 1: s, j * b: j * b + (fw - 1) * s + 1: s]
                for i in range(nb) for j in range(nb)]
        d = torch.cat(bins, 1)
        d = d / (d.square().sum(1, keepdim=True) + 1e-12).sqrt()
        d = d.clamp(max=self.clip)
        return d / (d.square().sum(1, keepdim=True) + 1e-12).sqrt()
