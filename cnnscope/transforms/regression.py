"""Equivariance of a representation without a classifier on top (HOG, DSIFT, any layer): fit M_g by
regularised linear regression so that M_g Phi(x) ≈ Phi(g x) (Lenc & Vedaldi CVPR'15, section 3).

M_g first moves Phi(x)'s cells where g sends them (the spatial part, `Transform.features`), then mixes
channels with a linear map. With structured sparsity each output cell depends only on the m×m
neighbourhood of its back-projected location, and the map is the same at every cell: an m×m convolution
from D to D channels (m = 1: a pure channel map). It is fitted in closed form (ridge regression, by the same
streaming solver as the CNN layers' maps: `ridge.Moments`) on pairs
(Phi(x), Phi(g x)) at the cells whose support lies inside g x's valid region, and judged on held-out images by
the relative error ||M_g Phi(x) − Phi(g x)|| / ||Phi(g x)|| over those cells.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..layers import Geometry
from .ridge import Moments
from .transform import Transform


def cell_grid(geometry: Geometry) -> tuple[float, float]:
    """(stride, offset) of a feature map's cell centres in input pixels (square grids)."""
    ax = geometry.w
    return float(ax.stride), float(ax.centre)


def valid_cells(transform: Transform, geometry: Geometry, image_size: int, shape: tuple[int, int]) -> torch.Tensor:
    """[h, w] bool: cells of Phi(g x) whose whole receptive field lies in g x's valid region, and whose
    back-projected centre lies inside Phi(x)'s grid (so M_g has something to map from)."""
    stride, offset = cell_grid(geometry)
    valid = transform.valid_mask(image_size, image_size).float()[None, None]
    h, w = shape
    ax = geometry.w
    k_lo, k_hi = int(round(ax.start)), int(round(ax.end))
    # a cell is valid when the minimum of the mask over its receptive field is 1 (outside the image counts as
    # valid: that is padding, the same for x and g x)
    pad = max(0, -k_lo), max(0, k_hi)
    padded = F.pad(valid, (pad[0], pad[1], pad[0], pad[1]), value=1.0)
    rows = []
    for i in range(h):
        cols = []
        for j in range(w):
            y0, x0 = int(round(i * stride)) + k_lo + pad[0], int(round(j * stride)) + k_lo + pad[0]
            y1, x1 = y0 + (k_hi - k_lo) + 1, x0 + (k_hi - k_lo) + 1
            cols.append(bool(padded[0, 0, max(0, y0):y1, max(0, x0):x1].min() > 0.999))
        rows.append(cols)
    inside = transform.features(torch.ones(1, 1, h, w), stride, offset, image_size)[0, 0] > 0.999
    return torch.tensor(rows) & inside


def feature_pairs(extractor: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, transform: Transform,
                  geometry: Geometry, batch: int = 16) -> tuple[torch.Tensor, ...]:
    """(Phi(x), g applied spatially to Phi(x), Phi(g x), valid-cell mask) for [N,3,S,S] images."""
    stride, offset = cell_grid(geometry)
    size = images.shape[-1]
    plain, target = [], []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = images[i:i + batch]
            plain.append(extractor(x))
            target.append(extractor(transform.image(x)))
    plain_t, target_t = torch.cat(plain), torch.cat(target)
    moved_t = transform.features(plain_t, stride, offset, size)
    return plain_t, moved_t, target_t, valid_cells(transform, geometry, size, tuple(target_t.shape[-2:]))


def fit_map(moved: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, neighbourhood: int = 3,
            ridge: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """Ridge regression for the m×m map (the shared streaming solver, `ridge.Moments`): returns (weight
    [D, D, m, m], bias [D]). `ridge` is relative to the mean input energy, so it means the same for any feature
    scale; the bias is not shrunk."""
    if neighbourhood < 1 or neighbourhood % 2 == 0:
        raise ValueError(f"neighbourhood must be odd and positive, got {neighbourhood}")
    sums = Moments(moved.shape[1], target.shape[1], neighbourhood).add(moved, target, mask)
    weight, bias = sums.solve(ridge)
    return sums.as_conv(weight).float(), bias.float()


def apply_map(weight: torch.Tensor, bias: torch.Tensor, moved: torch.Tensor) -> torch.Tensor:
    return F.conv2d(moved, weight, bias, padding=weight.shape[-1] // 2)


def relative_error(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> float:
    """||pred − target|| / ||target|| over the valid cells of all images."""
    keep = mask.to(pred.device)[None, None]
    num = ((pred - target) * keep).double().square().sum()
    den = (target * keep).double().square().sum().clamp_min(1e-24)
    return float((num / den).sqrt())


def permutation_map(perm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A known channel permutation as a 1×1 map: out[c] = in[perm[c]]."""
    d = len(perm)
    weight = torch.zeros(d, d, 1, 1)
    weight[torch.arange(d), perm, 0, 0] = 1.0
    return weight, torch.zeros(d)


def regression_experiment(extractor: Callable[[torch.Tensor], torch.Tensor], geometry: Geometry,
                          transform: Transform, fit_images: torch.Tensor, test_images: torch.Tensor,
                          neighbourhoods: tuple[int, ...] = (1, 3), ridge: float = 1e-3,
                          known_permutation: torch.Tensor | None = None) -> dict:
    """Relative error on held-out images of: no compensation (Phi(x) against Phi(g x) as they are), the spatial
    part of g only (M_g = identity on channels: invariance), a known permutation, and learned maps."""
    _, fit_moved, fit_target, mask = feature_pairs(extractor, fit_images, transform, geometry)
    test_plain, test_moved, test_target, _ = feature_pairs(extractor, test_images, transform, geometry)
    rows = {
        "uncompensated": relative_error(test_plain, test_target, mask),
        "spatial_only": relative_error(test_moved, test_target, mask),
    }
    maps = {}
    if known_permutation is not None:
        maps["permutation"] = permutation_map(known_permutation)
        rows["permutation"] = relative_error(apply_map(*maps["permutation"], test_moved), test_target, mask)
    for m in neighbourhoods:
        weight, bias = fit_map(fit_moved, fit_target, mask, m, ridge)
        maps[f"learned_{m}x{m}"] = (weight, bias)
        rows[f"learned_{m}x{m}"] = relative_error(apply_map(weight, bias, test_moved), test_target, mask)
        rows[f"learned_{m}x{m}_fit"] = relative_error(apply_map(weight, bias, fit_moved), fit_target, mask)
    return {"errors": rows, "maps": maps, "valid_cells": int(mask.sum()), "cells": mask.numel(),
            "example": (test_images[:1], test_moved[:1], test_target[:1], mask)}
