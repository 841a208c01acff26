"""HOG (UoCTTI variant, Felzenszwalb et al.) as a differentiable torch module, numerically matching VLFeat's
vl_hog (see tests/test_features.py for the parity check against libvlfeat).

Per pixel (interior pixels only, as VLFeat): central differences in every channel, keep the channel with the
largest gradient; its orientation goes to one of 2·O directed bins (hard: the nearest bin centre; bilinear:
split between the two nearest, M&V's "HOGb"), weighted by the gradient norm, and is spread bilinearly over the
four nearest cell centres. Each cell is then normalised by its four 2×2 blocks of undirected energy, clipped
at 0.2 and averaged: 2·O directed + O undirected + 4 texture channels (31 for O = 9).

Input: [N, C, H, W] images, any offset (gradients ignore it), VLFeat's scale is [0, 1] pixel values.
Output: [N, 3·O + 4, (H + s/2) // s, (W + s/2) // s] for cell size s.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import CnnscopeError
from ..layers import Axis, Geometry

CLIP = 0.2  # block-normalised values are truncated here (Dalal & Triggs)
EPS = 1e-4  # added to each block's squared norm (as the UoCTTI code does)
TEXTURE_SCALE = 1.0 / math.sqrt(18.0)  # a constant in the UoCTTI code, whatever the number of orientations


def cell_binning_matrix(length: int, cell_size: int, cells: int) -> torch.Tensor:
    """[cells, length - 2]: how much interior pixel i + 1 contributes to each cell (bilinear in its distance to
    the two nearest cell centres; cell c is centred at pixel (c + 0.5)·s − 0.5)."""
    x = torch.arange(1, length - 1, dtype=torch.float64)
    h = (x + 0.5) / cell_size - 0.5
    left = torch.floor(h)
    frac = h - left
    m = torch.zeros(cells, length - 2, dtype=torch.float64)
    cols = torch.arange(length - 2)
    for c, w in ((left, 1 - frac), (left + 1, frac)):
        ok = (c >= 0) & (c < cells)
        m[c[ok].long(), cols[ok]] += w[ok]
    return m


class HOG(nn.Module):
    """UoCTTI HOG with `orientations` undirected orientations (VLFeat's numOrientations) and square cells."""

    def __init__(self, cell_size: int = 8, orientations: int = 9, bilinear: bool = False):
        super().__init__()
        if cell_size < 1:
            raise CnnscopeError(f"HOG cell size must be a positive number of pixels, got {cell_size}")
        if orientations < 2:
            raise CnnscopeError(f"HOG needs at least 2 orientations, got {orientations}")
        self.cell_size, self.orientations, self.bilinear = cell_size, orientations, bilinear
        angles = torch.arange(orientations, dtype=torch.float64) * math.pi / orientations
        # float32 bin directions, as VLFeat stores them: they decide which bin wins on exact ties
        self.register_buffer("bin_x", angles.cos().float(), persistent=False)
        self.register_buffer("bin_y", angles.sin().float(), persistent=False)
        self._binning: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def dimension(self) -> int:
        return 3 * self.orientations + 4

    def cells(self, h: int, w: int) -> tuple[int, int]:
        s = self.cell_size
        return (h + s // 2) // s, (w + s // 2) // s

    def extra_repr(self) -> str:
        return f"cell_size={self.cell_size}, orientations={self.orientations}, bilinear={self.bilinear}"

    def output_geometry(self) -> Geometry:
        """Cell c is centred at pixel (c + 0.5)s − 0.5; with block normalisation it reads cells c−1 … c+1, whose
        bilinear supports and the ±1 px gradient stencil reach pixels in (c − 1.5)s − 1.5 … (c + 2.5)s + 0.5."""
        s = self.cell_size
        start = math.floor(-1.5 * s - 0.5) + 1 - 1
        end = math.ceil(2.5 * s - 0.5) - 1 + 1
        return Geometry(Axis(s, start, end), Axis(s, start, end))

    # ------------------------------------------------------------------------------------------ steps
    def gradients(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Central differences at interior pixels, the channel of largest gradient norm: 2 × [N, H−2, W−2]."""
        gx = x[..., 1:-1, 2:] - x[..., 1:-1, :-2]
        gy = x[..., 2:, 1:-1] - x[..., :-2, 1:-1]
        energy = gx.square() + gy.square()
        best_gx, best_gy, best = gx[:, 0], gy[:, 0], energy[:, 0]
        for c in range(1, x.shape[1]):  # strictly larger wins, so ties keep the first channel (as VLFeat)
            # (a loop over channels: torch's argmax over dim 1 of NCHW is ~50x slower on CPU)
            wins = energy[:, c] > best
            best = torch.where(wins, energy[:, c], best)
            best_gx, best_gy = torch.where(wins, gx[:, c], best_gx), torch.where(wins, gy[:, c], best_gy)
        return best_gx, best_gy

    def orientation_maps(self, gx: torch.Tensor, gy: torch.Tensor) -> torch.Tensor:
        """[N, 2·O, H', W']: gradient norm split over the directed orientation bins."""
        o = self.orientations
        g2 = gx.square() + gy.square()
        # sqrt's derivative is infinite at 0: keep zero gradients out of it (they contribute nothing anyway)
        norm = torch.where(g2 > 0, g2.clamp_min(1e-30).sqrt(), torch.zeros_like(g2))
        with torch.no_grad():  # the winning bin, exactly as VLFeat picks it (ties: lowest undirected index)
            best = torch.full_like(gx, -1.0)
            nearest = torch.zeros(gx.shape, dtype=torch.long, device=gx.device)
            for k in range(o):
                score = gx * self.bin_x[k] + gy * self.bin_y[k]
                wins = score.abs() > best
                best = torch.where(wins, score.abs(), best)
                nearest = torch.where(wins, k + o * (score < 0).long(), nearest)
            nearest = nearest.unsqueeze(1)
        if not self.bilinear:
            maps = torch.zeros(gx.shape[0], 2 * o, *gx.shape[1:], dtype=gx.dtype, device=gx.device)
            return maps.scatter(1, nearest, norm.unsqueeze(1))
        # Bilinear: the share of the second-nearest bin grows with the angular distance to the nearest centre.
        step = math.pi / o
        angle = torch.atan2(gy, gx).unsqueeze(1)
        centre = nearest.to(gx.dtype) * step
        delta = torch.remainder(angle - centre + math.pi, 2 * math.pi) - math.pi  # in (−step/2, step/2]
        far = (delta.abs() / step).clamp(max=0.5)
        with torch.no_grad():
            second = torch.remainder(nearest + torch.where(delta >= 0, 1, -1), 2 * o)
        weighted = norm.unsqueeze(1)
        maps = torch.zeros(gx.shape[0], 2 * o, *gx.shape[1:], dtype=gx.dtype, device=gx.device)
        maps = maps.scatter_add(1, nearest, weighted * (1 - far))
        return maps.scatter_add(1, second, weighted * far)

    def histograms(self, maps: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """Spread orientation maps over cells: [N, 2·O, cells_h, cells_w]."""
        ch, cw = self.cells(h, w)
        key = (h, w, maps.dtype, maps.device)
        if key not in self._binning:
            self._binning[key] = (cell_binning_matrix(h, self.cell_size, ch).to(maps.dtype).to(maps.device),
                                  cell_binning_matrix(w, self.cell_size, cw).to(maps.dtype).to(maps.device))
        by, bx = self._binning[key]
        return torch.einsum("yi,noij,xj->noyx", by, maps, bx)

    def normalise(self, hist: torch.Tensor) -> torch.Tensor:
        """UoCTTI block normalisation of directed cell histograms -> [N, 3·O + 4, cells_h, cells_w]."""
        o = self.orientations
        undirected = hist[:, :o] + hist[:, o:]
        energy = undirected.square().sum(1, keepdim=True)
        padded = nn.functional.pad(energy, (1, 1, 1, 1), mode="replicate")  # borders reuse the edge cells
        blocks = padded[..., :-1, :-1] + padded[..., 1:, :-1] + padded[..., :-1, 1:] + padded[..., 1:, 1:]
        factors = (blocks + EPS).rsqrt()
        ch, cw = hist.shape[-2:]
        # the four 2×2 blocks holding each cell: up-left, up-right, down-left, down-right (VLFeat's order)
        corners = [factors[..., dy:dy + ch, dx:dx + cw] for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1))]
        directed = sum((hist * f).clamp(max=CLIP) for f in corners)
        clipped_undirected = [(undirected * f).clamp(max=CLIP) for f in corners]
        texture = torch.cat([u.sum(1, keepdim=True) for u in clipped_undirected], 1) * TEXTURE_SCALE
        return torch.cat([0.5 * directed, 0.5 * sum(clipped_undirected), texture], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise CnnscopeError(f"HOG expects [N, C, H, W] images, got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if min(h, w) < 4 or min(h, w) < self.cell_size:
            raise CnnscopeError(f"HOG needs images of at least max(4, cell size) px a side, got {h}x{w}")
        gx, gy = self.gradients(x)
        return self.normalise(self.histograms(self.orientation_maps(gx, gy), h, w))

    # ------------------------------------------------------------------------------------ symmetries
    def flip_permutation(self, kind: str) -> torch.Tensor:
        """perm with HOG(g x)[:, c] = g(HOG(x))[:, perm[c]] for g in hflip, vflip, rot180 (exact when the image
        side is a multiple of the cell size)."""
        o = self.orientations
        if kind == "hflip":  # angle a -> pi - a
            directed = [(o - k) % (2 * o) for k in range(2 * o)]
            texture = [1, 0, 3, 2]  # left and right blocks swap
        elif kind == "vflip":  # a -> -a
            directed = [(2 * o - k) % (2 * o) for k in range(2 * o)]
            texture = [2, 3, 0, 1]
        elif kind == "rot180":  # a -> a + pi
            directed = [(k + o) % (2 * o) for k in range(2 * o)]
            texture = [3, 2, 1, 0]
        else:
            raise CnnscopeError(f"HOG has an exact channel permutation only for hflip, vflip and rot180, not {kind}")
        undirected = [2 * o + (d % o) for d in directed[:o]]
        return torch.tensor(directed + undirected + [3 * o + t for t in texture])
