"""Backward rules of the non-linear blocks: the only thing that differs between SaliNet, DeConvNet and
DeSaliNet (Mahendran & Vedaldi ECCV'16). Each rule is the forward op unchanged plus a chosen backward.

Each rule is a small object (zennit's style): `Gradient`, `DeconvNet`, `Guided` for rectifiers,
`Switches`, `Centre`, `Uniform`, `Passthrough` for max-pool; `get_rule` turns a name into one.

Rectifiers (ReLU, ReLU6 = hardtanh(0, 6), LeakyReLU), backward signal g, forward input x:
    "gradient"  (SaliNet):   g * 1[x in the active range]        -- the true derivative
    "deconvnet" (DeConvNet): relu(g)                              -- forward mask ignored, signal rectified
    "guided"    (DeSaliNet): relu(g) * 1[x in the active range]   -- both (= guided backprop)
Max-pool:
    "switches":    g goes to the arg-max of each window (the true derivative)
    "centre":      g goes to the centre of each window (no switches: the "bottleneck information" study)
    "uniform":     g spread evenly over each window (no switches)
    "passthrough": g copied to every position of each window
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from ..errors import CnnscopeError


class Rule:
    """A backward rule: `family` ("rectifier" or "pool"), a `name` (what the CLI and the records say),
    `describe()` for the reversed-network printout, and `backward`. `exact` rules are autograd's own
    derivative, so the forward call is left untouched."""

    name: ClassVar[str]
    family: ClassVar[str]
    exact: ClassVar[bool] = False

    def describe(self) -> str:
        return (self.__doc__ or self.name).strip().splitlines()[0]

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __eq__(self, other) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))


# ---------------------------------------------------------------------------------------------- rectifiers
class RectifierBackward(Rule):
    family = "rectifier"
    needs_input: ClassVar[bool] = True  # whether the forward input is kept for the backward

    def backward(self, g: torch.Tensor, x: torch.Tensor | None, lo: float, hi: float | None,
                 slope: float) -> torch.Tensor:
        raise NotImplementedError


def _derivative(g, x, lo, hi, slope):
    """g times the rectifier's true derivative at x (aten's fused backward kernels: one pass)."""
    if slope:
        return torch.ops.aten.leaky_relu_backward(g, x, slope, False)
    if hi is None:
        return torch.ops.aten.threshold_backward(g, x, lo)
    return torch.ops.aten.hardtanh_backward(g, x, lo, hi)


class Gradient(RectifierBackward):
    """mask by the forward activation pattern (true gradient; SaliNet)"""

    name, exact = "gradient", True

    def backward(self, g, x, lo, hi, slope):
        return _derivative(g, x, lo, hi, slope)


class DeconvNet(RectifierBackward):
    """rectify the backward signal, ignore the forward mask (DeConvNet)"""

    name, needs_input = "deconvnet", False

    def backward(self, g, x, lo, hi, slope):
        return F.leaky_relu(g, slope) if slope else torch.relu(g)


class Guided(RectifierBackward):
    """forward mask AND rectified backward signal (DeSaliNet = guided backprop)"""

    name = "guided"

    def backward(self, g, x, lo, hi, slope):
        return _derivative(g, x, lo, hi, slope).clamp_(min=0)


class RectifierRule(torch.autograd.Function):
    """Forward: the rectifier. Backward: `rule.backward` (a `RectifierBackward`)."""

    @staticmethod
    def forward(ctx, x, lo: float, hi: float | None, slope: float, rule: RectifierBackward):
        if slope:
            y = F.leaky_relu(x, slope)
        elif hi is None:
            y = torch.relu(x)
        else:
            y = torch.clamp(x, lo, hi)
        if rule.needs_input:  # DeConvNet ignores the forward pass: nothing to keep
            ctx.save_for_backward(x)
        ctx.lo, ctx.hi, ctx.slope, ctx.rule = lo, hi, slope, rule
        return y

    @staticmethod
    def backward(ctx, g):
        x = ctx.saved_tensors[0] if ctx.rule.needs_input else None
        return ctx.rule.backward(g, x, ctx.lo, ctx.hi, ctx.slope), None, None, None, None


def _pool_geometry(kernel, stride, padding, dilation):
    pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
    k = pair(kernel)
    s = pair(stride) if stride not in (None, [], ()) else k
    return k, s, pair(padding), pair(dilation)


def _centre_indices(shape_in, shape_out, k, s, p, d, device) -> torch.Tensor:
    """Flat input index of the centre of every pooling window, clipped to the image."""
    h, w = shape_in
    oh, ow = shape_out
    rows = (torch.arange(oh, device=device) * s[0] - p[0] + d[0] * ((k[0] - 1) // 2)).clamp(0, h - 1)
    cols = (torch.arange(ow, device=device) * s[1] - p[1] + d[1] * ((k[1] - 1) // 2)).clamp(0, w - 1)
    return (rows[:, None] * w + cols[None, :]).flatten()


# ---------------------------------------------------------------------------------------------- max-pool
class PoolBackward(Rule):
    family = "pool"

    def backward(self, g, idx, geometry, in_shape, ceil_mode) -> torch.Tensor:
        raise NotImplementedError


def _route(g, idx, n, c, h, w):
    gx = torch.zeros(n, c, h * w, dtype=g.dtype, device=g.device)
    gx.scatter_add_(2, idx.reshape(n, c, -1), g.reshape(n, c, -1))
    return gx.view(n, c, h, w)


def _spread(g, geometry, in_shape, ceil_mode):
    """The adjoint of average pooling over the same windows (no switches)."""
    k, s, p, d = geometry
    n, c = in_shape[:2]
    with torch.enable_grad():
        z = torch.zeros(in_shape, dtype=g.dtype, device=g.device, requires_grad=True)
        if d == (1, 1):
            pooled = F.avg_pool2d(z, k, s, p, ceil_mode, count_include_pad=True)
        else:  # dilated windows: build the mean by unfolding
            cols = F.unfold(z, k, dilation=d, padding=p, stride=s)
            pooled = cols.view(n, c, k[0] * k[1], -1).mean(2).view(g.shape)
        gx, = torch.autograd.grad(pooled, z, g)
    return gx


class Switches(PoolBackward):
    """route each value to the window's arg-max (switches)"""

    name, exact = "switches", True

    def backward(self, g, idx, geometry, in_shape, ceil_mode):
        return _route(g, idx, *in_shape)


class Centre(PoolBackward):
    """route each value to the window centre (no switches)"""

    name = "centre"

    def backward(self, g, idx, geometry, in_shape, ceil_mode):
        n, c, h, w = in_shape
        flat = _centre_indices((h, w), g.shape[-2:], *geometry, g.device)
        return _route(g, flat.view(1, 1, -1).expand(n, c, -1), n, c, h, w)


class Uniform(PoolBackward):
    """spread each value evenly over the window (no switches)"""

    name = "uniform"

    def backward(self, g, idx, geometry, in_shape, ceil_mode):
        return _spread(g, geometry, in_shape, ceil_mode)


class Passthrough(PoolBackward):
    """copy each value to every position of the window"""

    name = "passthrough"

    def backward(self, g, idx, geometry, in_shape, ceil_mode):
        k = geometry[0]
        return _spread(g, geometry, in_shape, ceil_mode) * (k[0] * k[1])


class MaxPoolRule(torch.autograd.Function):
    """Forward: max-pooling. Backward: `rule.backward` (a `PoolBackward`)."""

    @staticmethod
    def forward(ctx, x, kernel, stride, padding, dilation, ceil_mode, rule: PoolBackward):
        k, s, p, d = _pool_geometry(kernel, stride, padding, dilation)
        y, idx = F.max_pool2d(x, k, s, p, d, ceil_mode, return_indices=True)
        ctx.save_for_backward(idx)
        ctx.geom, ctx.ceil_mode, ctx.rule, ctx.in_shape = (k, s, p, d), ceil_mode, rule, x.shape
        return y

    @staticmethod
    def backward(ctx, g):
        idx, = ctx.saved_tensors
        return ctx.rule.backward(g, idx, ctx.geom, ctx.in_shape, ctx.ceil_mode), None, None, None, None, None, None


# ------------------------------------------------------------------------------------------------ by name
RULES: dict[str, Rule] = {r.name: r for r in (Gradient(), DeconvNet(), Guided(), Switches(), Centre(), Uniform(),
                                               Passthrough())}
RECTIFIER_RULES = tuple(n for n, r in RULES.items() if r.family == "rectifier")
POOL_RULES = tuple(n for n, r in RULES.items() if r.family == "pool")


def get_rule(rule: str | Rule) -> Rule:
    """A rule object from its name (strings are for the CLI and records; code passes objects)."""
    if isinstance(rule, Rule):
        return rule
    if rule not in RULES:
        raise CnnscopeError(f"unknown backward rule '{rule}' (rectifiers: {', '.join(RECTIFIER_RULES)}; "
                            f"max-pool: {', '.join(POOL_RULES)})")
    return RULES[rule]
