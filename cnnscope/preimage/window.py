"""Run the network only on the part of its input that the objective reads.

A neuron at an early layer depends on a few pixels: Lite0's stem neuron sees 3 x 3 of a 224 x 224 input, a
stage2 neuron 19 x 19. The receptive-field geometry (`layers.geometry`) says which input pixels the cells an
objective reads depend on; the solver then samples only that window of the transformed picture and runs the
network on it. The read cells get the same values (checked once per solve, on a random input, against the
whole input's forward) and the picture the same gradient, for a fraction of the work. Objectives that read
whole maps (a channel's mean, an inversion), global layers and layers of unknown geometry run on the whole
input, as before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import CnnscopeError
from ..layers import Capture, get_layer
from .objectives import Box, Objective

USEFUL = 0.9  # a window covering more of the input than this is not worth a second forward at setup


@dataclass(frozen=True)
class Window:
    """Input rows top..top+height and columns left..left+width; `cells` per layer: the window map's first cell
    in the whole map and the window map's size (oy, ox, h, w); `objective`: the objective on the window's maps."""

    top: int
    left: int
    height: int
    width: int
    cells: dict[str, tuple[int, int, int, int]]
    objective: Objective

    @property
    def box(self) -> tuple[int, int, int, int]:
        return self.top, self.left, self.height, self.width

    def crop(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., self.top:self.top + self.height, self.left:self.left + self.width]


def _span(axis, first: int, stop: int) -> tuple[float, float]:
    """Input pixels (first, last) seen by cells first..stop-1 along one axis."""
    return axis.start + first * axis.stride, axis.end + (stop - 1) * axis.stride


def _aligned(first: float, last: float, step: int, size: int) -> tuple[int, int]:
    """[begin, end) covering first..last inside [0, size), on multiples of `step` (so every strided layer
    samples the window on the same grid as the whole input)."""
    begin = max(0, math.floor(max(first, 0) / step) * step)
    end = min(size, math.ceil((min(last, size - 1) + 1) / step) * step)
    return begin, end


def plan_window(model, phi: Capture, objective: Objective, size: tuple[int, int]) -> Window | None:
    """The input window the cells `objective` reads depend on, for a network input of `size` (h, w); None when
    the whole input is needed (or nearly), or when a forward on the window does not reproduce those cells."""
    boxes = objective.cells_read()
    if not boxes:
        return None
    spans, layer_strides = [], {}
    for layer, box in boxes.items():
        g = get_layer(model, layer).geometry
        if g is None or g.h is None or g.w is None or g.is_global or not g.exact or g.channels_last:
            return None
        if any(float(a.stride) != int(a.stride) for a in (g.h, g.w)):
            return None
        layer_strides[layer] = (int(g.h.stride), int(g.w.stride))
        spans.append((*_span(g.h, box[0], box[1]), *_span(g.w, box[2], box[3])))
    step = math.lcm(*(s for pair in layer_strides.values() for s in pair))  # every layer's grid
    top, bottom = _aligned(min(s[0] for s in spans), max(s[1] for s in spans), step, size[0])
    left, right = _aligned(min(s[2] for s in spans), max(s[3] for s in spans), step, size[1])
    if bottom <= top or right <= left or (bottom - top) * (right - left) > USEFUL * size[0] * size[1]:
        return None
    box = (top, left, bottom - top, right - left)
    firsts = {layer: (top // sh, left // sw) for layer, (sh, sw) in layer_strides.items()}
    cells = _checked(phi, boxes, box, firsts, size, getattr(model, "device", torch.device("cpu")))
    if cells is None:
        return None
    try:
        return Window(*box, cells, objective.windowed(cells))
    except ValueError:  # a read map the window does not cover the way the whole input does
        return None


def _checked(phi: Capture, boxes: dict[str, Box], box: tuple[int, int, int, int],
             firsts: dict[str, tuple[int, int]], size: tuple[int, int],
             device: torch.device) -> dict[str, tuple[int, int, int, int]] | None:
    """Per layer (first cell row, column, window map height, width), if a forward on the input `box`
    (top, left, height, width) gives the read cells the whole input's values (padding that depends on the
    input's size, or an operation the geometry does not follow, would shift or change them); else None."""
    top, left, height, width = box
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0)).to(device)
    try:
        with torch.no_grad():
            whole = phi(x)
            part = phi(x[..., top:top + height, left:left + width])
    except (RuntimeError, CnnscopeError):  # a layer that needs more input than the window has
        return None
    cells = {}
    for layer, (y0, y1, x0, x1) in boxes.items():
        full, small = whole[layer].float(), part[layer].float()
        if full.dim() != 4 or small.dim() != 4:
            return None
        oy, ox = firsts[layer]
        a = full[:, :, y0:y1, x0:x1]
        b = small[:, :, y0 - oy:y1 - oy, x0 - ox:x1 - ox] if y0 >= oy and x0 >= ox else small[:, :, :0]
        if a.shape != b.shape or not torch.allclose(a, b, rtol=1e-4, atol=1e-5 * float(a.abs().max()) + 1e-7):
            return None
        cells[layer] = (oy, ox, small.shape[2], small.shape[3])
    return cells
