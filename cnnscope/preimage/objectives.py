"""Objective terms for the pre-image optimiser, composable like numbers.

An `Objective` is a weighted sum of `Term`s. Terms add, subtract and scale:

    obj = 2.0 * Representation("stage3", phi0) + TV(beta=2) + AlphaNorm(alpha=6)

Every term maps a `Context` (the image being optimised and the activations the forward produced) to one
value per image of the batch, so a batch of independent problems (restarts, one channel per image) is one
optimisation. Image values are in *centred 0-255 units*: x = 255 * (pixel - mean), as in Mahendran &
Vedaldi (IJCV'16); their normalisations make every term O(1) on a natural image.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

# Mahendran & Vedaldi IJCV'16 defaults (0-255 units).
B = 80.0  # typical pixel norm of a natural image (mean-subtracted)
B_PLUS = 160.0  # hard bound on each pixel's norm
ALPHA = 6.0
BETA = 2.0
V = B / 6.5  # typical variation between neighbouring pixels


class Context:
    """What terms read: ``x`` [N,3,H,W] the image in centred 0-255 units (not jittered) and ``features``,
    layer -> activation of the (jittered) image. ``x`` may be given as a function, computed on first use
    (most visualisation objectives have no image prior: the solver's step then skips it)."""

    def __init__(self, x: torch.Tensor | Callable[[], torch.Tensor], features: dict[str, torch.Tensor]):
        self._x, self.features = x, features

    @property
    def x(self) -> torch.Tensor:
        if callable(self._x):
            self._x = self._x()
        return self._x


class Objective:
    """A weighted sum of terms. Calling it gives the total per image; `breakdown` gives each term."""

    def __init__(self, parts: Sequence[tuple[float, Term]]):
        self.parts = list(parts)

    # -- algebra
    def __add__(self, other) -> Objective:
        if isinstance(other, (int, float)) and other == 0:
            return self
        return Objective(self.parts + _as_objective(other).parts)

    __radd__ = __add__

    def __mul__(self, k: float) -> Objective:
        return Objective([(w * float(k), t) for w, t in self.parts])

    __rmul__ = __mul__

    def __truediv__(self, k: float) -> Objective:
        return self * (1.0 / k)

    def __neg__(self) -> Objective:
        return self * -1.0

    def __sub__(self, other) -> Objective:
        return self + (-_as_objective(other))

    # -- evaluation
    @property
    def layers(self) -> list[str]:
        seen: dict[str, None] = {}
        for _, t in self.parts:
            for name in t.layers:
                seen[name] = None
        return list(seen)

    def by_term(self, ctx: Context) -> dict[Term, torch.Tensor]:
        """Weighted value of each term object, per image ({term: [N]}; a term used twice is summed)."""
        out: dict[Term, torch.Tensor] = {}
        for w, t in self.parts:
            out[t] = out.get(t, 0) + w * t.value(ctx)
        return out

    def breakdown(self, ctx: Context) -> dict[str, torch.Tensor]:
        """Weighted value of each term, per image, by label ({label: [N]}): what records show."""
        out: dict[str, torch.Tensor] = {}
        for t, value in self.by_term(ctx).items():
            label = t.label
            i = 2
            while label in out:
                label, i = f"{t.label}#{i}", i + 1
            out[label] = value
        return out

    def __call__(self, ctx: Context) -> torch.Tensor:
        values = [w * t.value(ctx) for w, t in self.parts]
        return torch.stack(values).sum(0)

    def __repr__(self) -> str:
        return " + ".join(f"{w:g}*{t!r}" for w, t in self.parts)

    # -- the cells read (the solver runs the network on the input window they depend on, `preimage.window`)
    def cells_read(self) -> dict[str, Box] | None:
        """Per layer, the box of feature-map cells (y0, y1, x0, x1) the objective reads; None when a term reads
        a whole map (or a map without rows and columns)"""
        boxes: dict[str, Box] = {}
        for _, t in self.parts:
            for layer in t.layers:
                box = t.cells_of(layer)
                if box is None:
                    return None
                old = boxes.get(layer, box)
                boxes[layer] = (min(old[0], box[0]), max(old[1], box[1]), min(old[2], box[2]), max(old[3], box[3]))
        return boxes or None

    def windowed(self, cells: dict[str, tuple[int, int, int, int]]) -> Objective:
        """The same objective on maps computed from a window of the input: `cells` gives, per layer, the
        window's first cell in the whole map and the window map's height and width (oy, ox, h, w)."""
        done: dict[int, Term] = {}
        for _, t in self.parts:
            if id(t) not in done:
                done[id(t)] = t.windowed(cells)
        return Objective([(w, done[id(t)]) for w, t in self.parts])

    def to(self, device: torch.device) -> Objective:
        """Move every term's tensors (targets, directions, norms) to `device`, in place; returns self."""
        for _, t in self.parts:
            for k, v in vars(t).items():
                if isinstance(v, torch.Tensor) and v.device != device:
                    setattr(t, k, v.to(device))
        return self


def _as_objective(obj) -> Objective:
    if isinstance(obj, Objective):
        return obj
    raise TypeError(f"cannot combine an Objective with {type(obj).__name__}")


class Term(Objective):
    """One term; subclasses implement `value(ctx) -> [N]`."""

    label = "term"
    layers: tuple[str, ...] = ()

    def __init__(self):
        super().__init__([(1.0, self)])

    def value(self, ctx: Context) -> torch.Tensor:
        raise NotImplementedError

    def cells_of(self, layer: str) -> Box | None:
        """The cells of `layer` this term reads (y0, y1, x0, x1); None: all of them."""
        return None

    def windowed(self, cells: dict[str, tuple[int, int, int, int]]) -> Term:
        """This term on maps computed from an input window (`Objective.windowed`); terms that read no layer
        (image priors) are unchanged."""
        if self.layers:
            raise ValueError(f"{self.label} reads whole maps: it cannot run on a window")
        return self

    def __repr__(self) -> str:
        return self.label


Box = tuple[int, int, int, int]  # (y0, y1, x0, x1) in feature-map cells


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1)


def _window(t: torch.Tensor, window: tuple[int, int, int, int] | None) -> torch.Tensor:
    if window is None:
        return t
    if t.dim() != 4:
        raise ValueError("a spatial window needs a convolutional layer (N,C,H,W)")
    y0, y1, x0, x1 = window
    return t[:, :, y0:y1, x0:x1]


# --------------------------------------------------------------------------------------------- data terms
class Representation(Term):
    """||Phi_L(x) - Phi0||^2 / ||Phi0||^2 (Mahendran & Vedaldi's normalised reconstruction loss).

    target: [1 or N, ...] activation to reproduce; window: (y0, y1, x0, x1) in feature-map cells.
    """

    def __init__(self, layer: str, target: torch.Tensor, window: tuple[int, int, int, int] | None = None):
        super().__init__()
        self.layer, self.layers, self.window = layer, (layer,), window
        self.label = f"representation[{layer}]"
        self.target = _flat(_window(target.detach(), window))
        self.norm = (self.target ** 2).sum(1).clamp_min(1e-12)

    def value(self, ctx: Context) -> torch.Tensor:
        phi = _flat(_window(ctx.features[self.layer], self.window))
        return ((phi - self.target) ** 2).sum(1) / self.norm


class InnerProduct(Term):
    """-<w, Phi_L(x)> / scale, with one direction w per image (or one shared by all).

    direction: [1 or N, *feature shape]. The presets below build the usual directions.
    """

    def __init__(self, layer: str, direction: torch.Tensor, scale: float | torch.Tensor = 1.0,
                 label: str | None = None):
        super().__init__()
        self.layer, self.layers = layer, (layer,)
        direction = direction.detach()
        # a unit's direction (one neuron, one channel) lives on a few channels: read only those, so a step at a
        # wide early layer does not stream the whole feature map through the product and its backward
        used = direction.reshape(*direction.shape[:2], -1).ne(0).any(2).any(0) if direction.dim() >= 3 else None
        self.channels = None if used is None or bool(used.all()) else torch.nonzero(used).flatten()
        direction = direction if self.channels is None else direction[:, self.channels]
        self.spatial = tuple(direction.shape[2:]) if direction.dim() == 4 else None  # (H, W) of a conv map
        self.box = None
        if self.spatial is not None:  # the cells the direction touches
            rows, cols = (torch.nonzero(direction.ne(0).any(0).any(0).any(d)).flatten() for d in (1, 0))
            if len(rows):
                self.box = (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)
        self.direction = _flat(direction)
        self.scale = scale
        self.label = label or f"inner[{layer}]"

    def cells_of(self, layer: str) -> Box | None:
        return self.box

    def windowed(self, cells: dict[str, tuple[int, int, int, int]]) -> InnerProduct:
        oy, ox, h, w = cells[self.layer]
        direction = self.direction.reshape(self.direction.shape[0], -1, *self.spatial)[..., oy:oy + h, ox:ox + w]
        if tuple(direction.shape[2:]) != (h, w):
            raise ValueError(f"{self.label}: the window's map ({h}x{w} at {oy},{ox}) leaves the layer's map")
        term = copy.copy(self)
        term.parts = [(1.0, term)]
        term.direction, term.spatial = _flat(direction), (h, w)
        term.box = None if self.box is None else (self.box[0] - oy, self.box[1] - oy, self.box[2] - ox,
                                                  self.box[3] - ox)
        return term

    def value(self, ctx: Context) -> torch.Tensor:
        f = ctx.features[self.layer]
        if self.channels is not None:
            f = SelectChannels.apply(f, self.channels.to(f.device))
        return -(_flat(f) * self.direction).sum(1) / self.scale


class SelectChannels(torch.autograd.Function):
    """``f[:, channels]`` whose gradient is laid out like `f`. ``index_select`` first copies a channels-last map
    whole into the contiguous layout and hands the network a contiguous gradient to convert back: 1.4 ms of a
    10 ms step at Lite0's stem."""

    @staticmethod
    def forward(ctx, f: torch.Tensor, channels: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(f, channels)  # f only for its shape and layout
        return f[:, channels]

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        f, channels = ctx.saved_tensors
        out = torch.zeros_like(f)
        out[:, channels] = grad
        return out, None


def unit_direction(shape: Sequence[int], channels: Sequence[int], where: str = "neuron",
                   y: int | None = None, x: int | None = None) -> torch.Tensor:
    """One direction per channel index: a single neuron (channel at (y, x), default the centre) or the
    spatial mean of a whole channel. shape is the activation shape without batch: (C,H,W) or (C,)."""
    n = len(channels)
    w = torch.zeros(n, *shape)
    for i, k in enumerate(channels):
        if len(shape) == 1:
            w[i, k] = 1.0
        elif where == "channel":
            w[i, k] = 1.0 / (shape[1] * shape[2])
        else:
            w[i, k, shape[1] // 2 if y is None else y, shape[2] // 2 if x is None else x] = 1.0
    return w


class Caricature(Term):
    """-<Phi0, Phi(x)> / ||Phi0||^2: emphasise what the layer sees in x0 (cosine-weighted if power > 0:
    multiplied by max(cos(Phi0, Phi), eps)^power, which rewards the pattern, not just the magnitude)."""

    def __init__(self, layer: str, target: torch.Tensor, cosine_power: float = 0.0):
        super().__init__()
        self.layer, self.layers, self.power = layer, (layer,), cosine_power
        self.target = _flat(target.detach())
        self.norm = (self.target ** 2).sum(1).clamp_min(1e-12)
        self.label = f"caricature[{layer}]" if cosine_power == 0 else f"caricature_cos{cosine_power:g}[{layer}]"

    def value(self, ctx: Context) -> torch.Tensor:
        phi = _flat(ctx.features[self.layer])
        dot = (phi * self.target).sum(1)
        out = -dot / self.norm
        if self.power:
            cos = dot / (phi.norm(dim=1) * self.norm.sqrt()).clamp_min(1e-12)
            out = out * cos.clamp_min(1e-3) ** self.power
        return out


def gram(features: torch.Tensor) -> torch.Tensor:
    """F F^T / HW per image ([N,C,H,W] -> [N,C,C]); a [N,C] vector gives its outer product."""
    f = features.flatten(2) if features.dim() > 2 else features.unsqueeze(2)
    return f @ f.transpose(1, 2) / f.shape[2]


class Diversity(Term):
    """Mean cosine similarity between an image's Gram matrix at `layer` and those of the other images of its
    group (consecutive runs of `group` images: the visualisations of one unit). Adding it with a positive
    weight pushes the group's pictures apart in style, not just in position (Lucid's diversity term)."""

    def __init__(self, layer: str, group: int):
        super().__init__()
        if group < 2:
            raise ValueError("diversity needs groups of at least 2 images")
        self.layer, self.layers, self.group = layer, (layer,), group
        self.label = f"diversity[{layer}]"

    def value(self, ctx: Context) -> torch.Tensor:
        g = F.normalize(gram(ctx.features[self.layer]).flatten(1), dim=1)
        n = g.shape[0]
        if n % self.group:
            raise ValueError(f"diversity: a batch of {n} is not made of groups of {self.group}")
        g = g.view(n // self.group, self.group, -1)
        sim = g @ g.transpose(1, 2)  # [groups, group, group], 1 on the diagonal
        return ((sim.sum(2) - 1.0) / (self.group - 1)).flatten()


# ------------------------------------------------------------------------------------------- regularisers
class TV(Term):
    """R_TV^beta: mean over pixels of ((d_h x)^2 + (d_w x)^2 summed over channels / V^2)^(beta/2).

    Forward differences, zero past the last row/column. beta=2 is smooth; beta=1 allows sharper edges.
    """

    def __init__(self, beta: float = BETA, v: float = V):
        super().__init__()
        self.beta, self.v = beta, v
        self.label = f"tv{beta:g}"

    def value(self, ctx: Context) -> torch.Tensor:
        x = ctx.x
        n, _, h, w = x.shape
        dh = x[:, :, 1:, :] - x[:, :, :-1, :]
        dw = x[:, :, :, 1:] - x[:, :, :, :-1]
        if self.beta == 2:  # per-pixel terms need no alignment: sum all squared differences
            total = (dh * dh).flatten(1).sum(1) + (dw * dw).flatten(1).sum(1)
            return total / (self.v * self.v * h * w)
        sq = F.pad((dh * dh).sum(1), (0, 0, 0, 1)) + F.pad((dw * dw).sum(1), (0, 1))
        # the small epsilon keeps the gradient finite where the image is flat (beta < 2)
        per_pixel = (sq / (self.v * self.v) + 1e-8) ** (self.beta / 2)
        return per_pixel.flatten(1).mean(1)


class AlphaNorm(Term):
    """R_alpha: mean over pixels of (||x(u)|| / B)^alpha, ||.|| over colour channels; keeps values in range."""

    def __init__(self, alpha: float = ALPHA, b: float = B):
        super().__init__()
        self.alpha, self.b = alpha, b
        self.label = f"alpha{alpha:g}"

    def value(self, ctx: Context) -> torch.Tensor:
        sq = (ctx.x * ctx.x).sum(1) / (self.b * self.b)
        return (sq ** (self.alpha / 2)).flatten(1).mean(1)
