"""Backward rules of the non-linear blocks: the only thing that differs between SaliNet, DeConvNet and
DeSaliNet (Mahendran & Vedaldi ECCV'16). Each rule is the forward op unchanged plus a chosen backward.

Each rule is a small object (zennit's style): `Gradient`, `DeconvNet`, `Guided` for pointwise
nonlinearities, `Switches`, `Centre`, `Uniform`, `Passthrough` for max-pool; `get_rule` turns a name into one.

Pointwise nonlinearities y = f(x) (every op of `ACTIVATIONS`: ReLU, ReLU6/hardtanh, LeakyReLU, PReLU, ELU,
CELU, SELU, GELU (both approximations), SiLU, Mish, Softplus, Hardswish, Hardsigmoid, sigmoid, tanh), with
backward signal g and forward input x:
    "gradient"  (SaliNet):   g * f'(x)                       -- the true derivative
    "deconvnet" (DeConvNet): r_f(g)                          -- the forward ignored, the signal rectified
    "guided"    (DeSaliNet): relu(g) * max(f'(x), 0)         -- both (= guided backprop)
For ReLU these are exactly Zeiler & Fergus's deconvnet (the reversed net rectifies the signal) and
Springenberg et al. 2015's guided backprop (the forward mask and the rectified signal). The generalisation:
- f'(x), the local gain, replaces ReLU's mask 1[x > 0] (computed by autograd from the call's own forward, so
  GELU's approximation, ELU's alpha, Softplus's beta or PReLU's weights are honoured).
- r_f is the activation's *rectifier form*, the piecewise-linear map its forward approaches away from the
  origin: gain * relu(g) + negative * min(g, 0). ReLU, ReLU6, GELU, SiLU, Mish, Softplus, ELU, CELU and
  Hardswish -> relu(g); SELU -> 1.0507 * relu(g) (its scale); LeakyReLU and PReLU keep their negative slope.
  Bounded gates (sigmoid, hardsigmoid, tanh, hardtanh) have no rectifier asymptote: the gain of their
  linear regime at the origin (1/4, 1/6, 1, 1) times relu(g). DeConvNet's map thus never depends on x.
- Non-monotone activations (GELU, SiLU, Mish, Hardswish dip below zero for x < 0, so f'(x) < 0 there):
  DeSaliNet clips the gain at zero. A negative gain would flip a positive signal's sign and let negative
  evidence through, which is what guided backprop's rectification exists to stop; clipped, the rule still
  "lets through what the forward let through" (f' > 0) and keeps the output rectified. Monotone
  activations (f' >= 0 everywhere) are unaffected by the clip.
Max-pool:
    "switches":    g goes to the arg-max of each window (the true derivative)
    "centre":      g goes to the centre of each window (no switches: the "bottleneck information" study)
    "uniform":     g spread evenly over each window (no switches)
    "passthrough": g copied to every position of each window
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
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

    def __eq__(self, other) -> bool:  # by value: the same rule with the same settings
        return type(self) is type(other) and vars(self) == vars(other)

    def __hash__(self) -> int:
        return hash((type(self), tuple(sorted(vars(self).items()))))


# ------------------------------------------------------------------------------- pointwise nonlinearities
@dataclass(frozen=True)
class ActivationOp:
    """How to read one nonlinearity's call: its out-of-place function, its arguments after the input
    (name, default), and its rectifier form (the `gain` of the linear regime, the `negative` slope argument)."""

    fn: Callable
    params: tuple[tuple[str, object], ...] = ()
    gain: float = 1.0
    negative: str | None = None  # the argument holding the slope for negative signals (LeakyReLU, PReLU)


SELU_SCALE = 1.0507009873554804934193349852946
ACTIVATIONS: dict[str, ActivationOp] = {
    "relu": ActivationOp(F.relu),
    "relu6": ActivationOp(F.relu6),
    "hardtanh": ActivationOp(F.hardtanh, (("min_val", -1.0), ("max_val", 1.0))),
    "leaky_relu": ActivationOp(F.leaky_relu, (("negative_slope", 0.01),), negative="negative_slope"),
    "prelu": ActivationOp(F.prelu, (("weight", None),), negative="weight"),
    "elu": ActivationOp(F.elu, (("alpha", 1.0),)),
    "celu": ActivationOp(F.celu, (("alpha", 1.0),)),
    "selu": ActivationOp(F.selu, gain=SELU_SCALE),
    "gelu": ActivationOp(F.gelu, (("approximate", "none"),)),
    "silu": ActivationOp(F.silu),
    "mish": ActivationOp(F.mish),
    "softplus": ActivationOp(F.softplus, (("beta", 1.0), ("threshold", 20.0))),
    "hardswish": ActivationOp(F.hardswish),
    "hardsigmoid": ActivationOp(F.hardsigmoid, gain=1 / 6),
    "sigmoid": ActivationOp(torch.sigmoid, gain=0.25),
    "tanh": ActivationOp(torch.tanh),
}


@dataclass
class Activation:
    """One call of a pointwise nonlinearity: `op` (a key of `ACTIVATIONS`), `fn` (x -> f(x) with the call's
    own arguments), the `gain` and `negative` slope of its rectifier form."""

    op: str
    fn: Callable[[torch.Tensor], torch.Tensor]
    gain: float = 1.0
    negative: float | torch.Tensor = 0.0

    @classmethod
    def of_call(cls, op: str, args: tuple, kwargs: dict) -> Activation:
        """The activation a call `op(x, *args[1:], **kwargs)` computes (in-place requests made out of place)."""
        spec = ACTIVATIONS[op]
        params = {}
        for i, (name, default) in enumerate(spec.params, start=1):
            params[name] = args[i] if len(args) > i else kwargs.get(name, default)
        fn = spec.fn if not params else (lambda t, _f=spec.fn, _p=params: _f(t, **_p))
        negative = params.get(spec.negative, 0.0) if spec.negative else 0.0
        if isinstance(negative, torch.Tensor) and negative.numel() == 1:
            negative = float(negative)
        return cls(op, fn, spec.gain, negative if isinstance(negative, torch.Tensor) else float(negative))

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        """f'(x), elementwise (autograd of the call's own forward: every variant's exact derivative)."""
        with torch.enable_grad():
            xx = x.detach().requires_grad_(True)
            y = self.fn(xx)
            d, = torch.autograd.grad(y, xx, torch.ones_like(y))
        return d

    def rectified(self, g: torch.Tensor) -> torch.Tensor:
        """r_f(g): the rectifier form applied to the signal, gain * relu(g) + negative * min(g, 0)."""
        out = torch.relu(g) if self.gain == 1.0 else self.gain * torch.relu(g)
        negative = self.negative
        if isinstance(negative, torch.Tensor):  # PReLU: one slope per channel (dimension 1)
            negative = negative.to(g).view(1, -1, *([1] * (g.dim() - 2))) if g.dim() > 1 else negative.to(g)
            return out + negative * g.clamp(max=0)
        return out + negative * g.clamp(max=0) if negative else out


class RectifierBackward(Rule):
    family = "rectifier"
    needs_input: ClassVar[bool] = True  # whether the forward input is kept for the backward

    def backward(self, g: torch.Tensor, x: torch.Tensor | None, act: Activation) -> torch.Tensor:
        raise NotImplementedError

    def from_gradient(self, g: torch.Tensor, grad: torch.Tensor, act: Activation) -> torch.Tensor:
        """The same rule given g and the true backward's result g * f'(x) instead of x (for an activation
        inside a custom autograd.Function, whose input the rules never see)."""
        raise NotImplementedError


class Gradient(RectifierBackward):
    """multiply by the local derivative f'(x) (true gradient; SaliNet)"""

    name, exact = "gradient", True

    def backward(self, g, x, act):
        return g * act.derivative(x)

    def from_gradient(self, g, grad, act):
        return grad


class DeconvNet(RectifierBackward):
    """rectify the backward signal, ignore the forward pass (DeConvNet)"""

    name, needs_input = "deconvnet", False

    def backward(self, g, x, act):
        return act.rectified(g)

    def from_gradient(self, g, grad, act):
        return act.rectified(g)


class Guided(RectifierBackward):
    """forward gain max(f'(x), 0) AND rectified backward signal (DeSaliNet = guided backprop)"""

    name = "guided"

    def backward(self, g, x, act):
        return torch.relu(g) * act.derivative(x).clamp_(min=0)

    def from_gradient(self, g, grad, act):  # relu(g) * max(f', 0) = relu(g * f') where g > 0, else 0
        return torch.relu(grad) * (g > 0)


class ActivationRule(torch.autograd.Function):
    """Forward: the activation `act` unchanged. Backward: `rule.backward` (a `RectifierBackward`)."""

    @staticmethod
    def forward(ctx, x, act: Activation, rule: RectifierBackward):
        y = act.fn(x)
        if rule.needs_input:  # DeConvNet ignores the forward pass: nothing to keep
            ctx.save_for_backward(x)
        ctx.act, ctx.rule = act, rule
        return y

    @staticmethod
    def backward(ctx, g):
        x = ctx.saved_tensors[0] if ctx.rule.needs_input else None
        return ctx.rule.backward(g, x, ctx.act), None, None


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
