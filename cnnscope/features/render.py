"""HOG as a picture: each cell drawn as oriented strokes, one per orientation, brightness = its weight.

A stroke is drawn perpendicular to its gradient orientation, i.e. along the edge that produced it.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import torch
from skimage.draw import line


@cache
def hog_glyphs(orientations: int = 9, size: int = 21) -> np.ndarray:
    """[O, size, size] binary stroke images; stroke o runs along the edge of gradient angle o·pi/O."""
    glyphs = np.zeros((orientations, size, size), dtype=np.float32)
    c, r = (size - 1) / 2, (size - 1) / 2
    for o in range(orientations):
        edge = o * math.pi / orientations + math.pi / 2  # image y points down, as the gradient's y
        dx, dy = r * math.cos(edge), r * math.sin(edge)
        rr, cc = line(round(c - dy), round(c - dx), round(c + dy), round(c + dx))
        glyphs[o, rr, cc] = 1
    return glyphs


def render_hog(hog: torch.Tensor | np.ndarray, orientations: int = 9, glyph_size: int = 21) -> np.ndarray:
    """[3·O + 4, h, w] UoCTTI HOG -> [h·g, w·g] image in [0, 1] (the strongest stroke of the map is 1).

    The stroke weight of orientation o sums its two directed bins and its undirected bin. Where strokes cross
    at a cell's centre their sum is clipped to the cell's largest weight, so crossings do not glow.
    """
    f = hog.detach().cpu().numpy() if isinstance(hog, torch.Tensor) else np.asarray(hog)
    if f.ndim == 4:
        f = f[0]
    o = orientations
    weights = f[:o] + f[o:2 * o] + f[2 * o:3 * o]  # [O, h, w]
    g = hog_glyphs(o, glyph_size)
    img = np.einsum("kyx,kab->yxab", weights, g)
    hi = np.maximum(weights.max(0), 0)[..., None, None]
    lo = np.minimum(weights.min(0), 0)[..., None, None]
    img = np.clip(img, lo, hi)
    h, w = weights.shape[1:]
    img = img.transpose(0, 2, 1, 3).reshape(h * glyph_size, w * glyph_size)
    top = img.max()
    return np.clip(img / top, 0, 1) if top > 0 else np.zeros_like(img)
