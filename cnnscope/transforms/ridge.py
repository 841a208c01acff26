"""One streaming ridge solver for every linear map between feature maps: the equivariance maps M_g (m x m
convolutions after the spatial inverse), the stitching maps E between networks and the hand-crafted
representations' maps. Only sums are kept (`Moments`), so features are added a chunk at a time and never
stored; every ridge strength, R^2 and correlation follows from the sums in closed form."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..errors import CnnscopeError


def _neighbourhoods(f: torch.Tensor, idx: torch.Tensor, m: int) -> torch.Tensor:
    """[N,P,C m^2]: the m x m neighbourhood (zero outside the map) of each of the P cells `idx` [N,P] (flat indices
    into H x W) of each feature map of f [N,C,H,W], channel-major as conv weights (and F.unfold) lay it out. Only
    the cells asked for are gathered: sampling a few cells of a wide grid costs no unfolding of all of it."""
    n, c, h, w = f.shape
    if m == 1:
        return f.flatten(2).gather(2, idx[:, None].expand(-1, c, -1)).transpose(1, 2)
    p = m // 2
    padded = F.pad(f, (p, p, p, p)).flatten(2)
    row, col, width = idx // w, idx % w, w + 2 * p
    out = f.new_empty(n, c, m * m, idx.shape[1])
    for t in range(m * m):  # one tap at a time: no list of copies beside the result
        out[:, :, t] = padded.gather(2, ((row + t // m) * width + col + t % m)[:, None].expand(-1, c, -1))
    return out.reshape(n, c * m * m, -1).transpose(1, 2)


class Moments:
    """Sums over positions that a linear map Phi_B(u) ~ W Phi_A(N_m(u)) + b needs, where N_m(u) is the m x m
    neighbourhood of position u in A (m = 1: the position alone; zero outside the map): sum of [a;1][a;1]^T, of
    [a;1] b^T and of b^2 per channel. Ridge solutions at any strength, per-channel R^2 and channel correlations
    follow in closed form, and features never have to be kept: chunks are added as they come. The map is an
    m x m convolution from C_in to C_out channels; its Gram matrix has (C_in m^2 + 1)^2 entries (`nbytes`).

    A wide layer's m x m map may be *reduced* (`basis`, [C_in, K] with orthonormal columns, K < C_in): the centre
    tap keeps all C_in channels, and each of the other m^2 - 1 taps reads only the K directions of `basis` (the
    layer's principal directions), so the Gram matrix has (C_in + (m^2 - 1) K + 1)^2 entries instead. Every map
    the analyses compare — the identity and any 1 x 1 map at the centre tap, and the reduced solution itself — lies
    in that span, so weights go in and out in the full [C_out, C_in m^2] layout and their errors are exact. With
    K = C_in the reduced solution is the dense one (the ridge penalty is rotation invariant).

    Parameters
    ----------
    c_in, c_out : int
        Channels of A and B.
    kernel : int
        m, odd: the spatial support of the map.
    basis : Tensor, optional
        [C_in, K]: the directions the off-centre taps read (None: all channels, the dense map).
    """

    def __init__(self, c_in: int, c_out: int, kernel: int = 1, basis: torch.Tensor | None = None):
        if kernel < 1 or kernel % 2 == 0:
            raise CnnscopeError(f"a map's spatial support must be odd (1, 3, 5…), got {kernel}")
        self.kernel, self.c_in = kernel, c_in
        self.basis = None if basis is None or kernel == 1 else basis.double()
        d = self.inputs
        self.xx = torch.zeros(d + 1, d + 1, dtype=torch.float64)
        self.xy = torch.zeros(d + 1, c_out, dtype=torch.float64)
        self.yy = torch.zeros(c_out, dtype=torch.float64)
        # first and second moments of every full-layout input, for its variance (the reduced sums lack them)
        self.x1 = torch.zeros(c_in * kernel * kernel, dtype=torch.float64) if self.basis is not None else None
        self.x2 = torch.zeros_like(self.x1) if self.x1 is not None else None

    @property
    def inputs(self) -> int:
        """Inputs of the map as the sums hold them: C_in m^2, or C_in + (m^2 - 1) K when reduced."""
        taps = self.kernel * self.kernel
        return self.c_in * taps if self.basis is None else self.c_in + (taps - 1) * self.basis.shape[1]

    @staticmethod
    def nbytes(c_in: int, c_out: int, kernel: int = 1, reduced: int | None = None) -> int:
        """Memory of the sums (float64), before any is allocated (`reduced`: K of a reduced map)."""
        taps = kernel * kernel
        d = (c_in * taps if reduced is None or kernel == 1 else c_in + (taps - 1) * reduced) + 1
        return 8 * (d * d + d * c_out + c_out)

    def centre(self) -> torch.Tensor:
        """Indices, among the C_in m^2 inputs, of each input channel's centre tap (F.unfold's channel-major order)."""
        m = self.kernel
        return torch.arange(self.c_in) * m * m + (m // 2) * m + m // 2

    def _centre_rows(self) -> torch.Tensor:
        """The centre taps' rows in the sums (the first C_in rows of a reduced map)."""
        return self.centre() if self.basis is None else torch.arange(self.c_in)

    def _reduce(self, x: torch.Tensor) -> torch.Tensor:
        """Full-layout inputs [..., C_in m^2] in the sums' layout (centre tap, then K directions per other tap)."""
        if self.basis is None:
            return x
        taps, mid = self.kernel * self.kernel, self.kernel * self.kernel // 2
        x = x.reshape(*x.shape[:-1], self.c_in, taps)
        others = torch.cat([x[..., :mid], x[..., mid + 1:]], -1)
        off = torch.einsum("...dt,dk->...tk", others, self.basis.to(x.device, x.dtype))
        return torch.cat([x[..., mid], off.flatten(-2)], -1)

    def _expand(self, w: torch.Tensor) -> torch.Tensor:
        """Sums-layout weights [C_out, inputs] back in the full layout [C_out, C_in m^2]."""
        if self.basis is None:
            return w
        taps, mid = self.kernel * self.kernel, self.kernel * self.kernel // 2
        k = self.basis.shape[1]
        off = torch.einsum("otk,dk->odt", w[:, self.c_in:].reshape(len(w), taps - 1, k), self.basis.to(w.device))
        return torch.cat([off[..., :mid], w[:, :self.c_in, None], off[..., mid:]], -1).reshape(len(w), -1)

    def add(self, fa: torch.Tensor, fb: torch.Tensor, mask: torch.Tensor | None = None, positions: int | None = None,
            gen: torch.Generator | None = None) -> Moments:
        """Add [N,C,H,W] pairs; `mask` [H,W] keeps valid cells; `positions` samples that many cells per image."""
        n, c, h, w = fa.shape
        if self.xx.device != fa.device:  # the sums live where the features are
            self.xx, self.xy, self.yy = self.xx.to(fa.device), self.xy.to(fa.device), self.yy.to(fa.device)
            if self.x1 is not None:
                self.x1, self.x2 = self.x1.to(fa.device), self.x2.to(fa.device)
        d = c * self.kernel * self.kernel
        # which positions: decided on the CPU from the seeded generator, so every device samples the same ones
        valid = torch.ones(h * w, dtype=torch.bool) if mask is None else mask.reshape(-1).cpu()
        keep = valid.nonzero().flatten()
        if positions is not None and positions < len(keep):
            score = torch.rand(n, h * w, generator=gen).masked_fill(~valid, -1.0)
            idx = score.topk(positions, dim=1).indices.to(fa.device)
        else:
            idx = keep.to(fa.device).expand(n, -1)
        x, y = _neighbourhoods(fa, idx, self.kernel), _neighbourhoods(fb, idx, 1)
        x = x.reshape(-1, d).double()
        y = y.reshape(-1, fb.shape[1]).double()
        if self.x1 is not None:
            self.x1 += x.sum(0)
            self.x2 += (x * x).sum(0)
        x = self._reduce(x)
        x1 = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype, device=x.device)], 1)
        self.xx.addmm_(x1.T, x1)  # in place: a wide Gram matrix gets no temporary copy
        self.xy.addmm_(x1.T, y)
        self.yy += (y * y).sum(0)
        return self

    def _empty(self) -> Moments:
        return Moments(self.c_in, self.xy.shape[1], self.kernel, self.basis)

    def copy(self) -> Moments:
        return self._empty().absorb(self)

    def __add__(self, other: Moments) -> Moments:
        return self._empty().absorb(self).absorb(other)

    def absorb(self, other: Moments) -> Moments:
        """Add another set of sums into these, in place (no third copy of a wide Gram matrix)."""
        self.xx += other.xx
        self.xy += other.xy
        self.yy += other.yy
        if self.x1 is not None:
            self.x1 += other.x1
            self.x2 += other.x2
        return self

    @property
    def count(self) -> int:
        return int(self.xx[-1, -1])

    def solve(self, ridge: float, towards_identity: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Ridge least squares: (W [C_out, C_in m^2], b [C_out]; `as_conv` makes W a conv weight). The penalty,
        ridge x the mean input energy, pulls W to 0 or (equal widths, `towards_identity`) to the identity at
        the centre tap and zero elsewhere — the right prior for M_g; b is not shrunk."""
        d = self.xx.shape[0] - 1
        scale = float(torch.diagonal(self.xx)[:-1].mean()) if d else 1.0
        system = self.xx.clone()  # one copy, and the factorisation's: no dense identity beside it
        system.diagonal()[:-1] += ridge * scale
        rhs = self.xy.clone()
        if towards_identity:
            if self.c_in != self.xy.shape[1]:
                raise CnnscopeError("a ridge towards the identity needs equal widths")
            rhs[self._centre_rows().to(rhs.device), torch.arange(self.c_in, device=rhs.device)] += ridge * scale
        sol = torch.linalg.solve(system, rhs)
        del system
        return self._expand(sol[:-1].T), sol[-1]

    def identity(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(W, b) of the identity map (centre tap), in `solve`'s layout: the spatial inverse alone."""
        w = torch.zeros(self.xy.shape[1], self.c_in * self.kernel ** 2, dtype=torch.float64)
        w[torch.arange(self.c_in), self.centre()] = 1.0
        return w, torch.zeros(self.xy.shape[1], dtype=torch.float64)

    def as_conv(self, weight: torch.Tensor) -> torch.Tensor:
        """W [C_out, C_in m^2] as a conv weight [C_out, C_in, m, m]."""
        return weight.reshape(weight.shape[0], self.c_in, self.kernel, self.kernel)

    def squared_error(self, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """Per output channel, the sum of squared residuals of y ~ W x + b over the added positions (W in the
        full layout; for a reduced map, exact for maps in its span)."""
        w = self._reduce(weight.double().to(self.xx.device))
        w1 = torch.cat([w.T, bias.double().to(self.xx.device)[None]], 0)  # [inputs + 1, C_out]
        return ((w1 * (self.xx @ w1)).sum(0) - 2 * (w1 * self.xy).sum(0) + self.yy).clamp_min(0)

    def output_variance(self) -> torch.Tensor:
        mean = self.xy[-1] / self.count
        return (self.yy / self.count - mean ** 2).clamp_min(1e-12)

    def input_mean(self) -> torch.Tensor:
        """Per input (channel x tap, the full layout) mean."""
        return (self.xx[-1, :-1] if self.x1 is None else self.x1) / self.count

    def input_variance(self) -> torch.Tensor:
        """Per input (channel x tap, the full layout) variance."""
        second = torch.diagonal(self.xx)[:-1] if self.x2 is None else self.x2
        return (second / self.count - self.input_mean() ** 2).clamp_min(1e-12)

    def r2(self, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """Per output channel, the fraction of its variance the map explains (1 - SSE / SST)."""
        return 1 - self.squared_error(weight, bias) / self.count / self.output_variance()

    def pooled_r2(self, weight: torch.Tensor, bias: torch.Tensor) -> float:
        """The fraction of the total variance (all channels together) the map explains: unlike a mean of
        per-channel R^2, not thrown by nearly constant channels."""
        return float(1 - self.squared_error(weight, bias).sum() / (self.count * self.output_variance().sum()))

    def correlation(self) -> torch.Tensor:
        """[C_out, C_in] Pearson correlation of every output channel with every input channel (centre taps)."""
        n = self.count
        rows = self._centre_rows().to(self.xx.device)
        mx, my = self.xx[-1, rows] / n, self.xy[-1] / n
        cov = self.xy[rows] / n - mx[:, None] * my[None]  # [C_in, C_out]
        var = self.input_variance()[self.centre().to(self.xx.device)]
        return (cov / (var.sqrt()[:, None] * self.output_variance().sqrt()[None])).T


RIDGES = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)


def choose_ridge(fit: Moments, held_out: Moments, towards_identity: bool = False,
                 ridges: Sequence[float] = RIDGES) -> float:
    """The ridge strength whose map, fitted on `fit`, leaves the least squared error on `held_out`."""
    errors = [float(held_out.squared_error(*fit.solve(r, towards_identity)).sum()) for r in ridges]
    return ridges[min(range(len(ridges)), key=errors.__getitem__)]


