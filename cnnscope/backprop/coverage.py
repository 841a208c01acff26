"""Which nonlinearities below a layer the backward rules reach, read off the autograd graph.

DeConvNet and DeSaliNet differ from SaliNet only where a rule replaces a nonlinearity's backward. A rule
can only act on what the rule mode sees as one call; a custom ``autograd.Function``, a TorchScript or
``torch.compile`` graph run where it cannot reach, and there the map would silently keep the true
derivative. The autograd graph of one forward under the rules tells the two apart: every rule leaves an
``ActivationRuleBackward`` node, every nonlinearity it missed leaves its own node (``GeluBackward0`` from
compiled code, ``SwishImplementationBackward`` from a custom Function).

A custom Function of one tensor whose forward *is* a known activation (efficientnet_pytorch's
memory-efficient Swish is SiLU: `identify` compares its forward with every activation on a grid of values)
is covered after all: a hook on its graph node rewrites the true backward's result into the rule's
(`RectifierBackward.from_gradient` needs g and g * f'(x), not x).
"""

from __future__ import annotations

import contextlib
import re
from collections import Counter
from dataclasses import dataclass, field

import torch

from ..device import of as device_of
from ..layers import Capture
from .network import BackpropRules
from .rules import ACTIVATIONS, Activation, ActivationRule, DeconvNet, MaxPoolRule, RectifierBackward, Switches

# autograd's own node names (without "Backward0") of the nonlinearities the rules know
_NATIVE = {op.replace("_", ""): op for op in ACTIVATIONS} | {"prelukernel": "prelu"}
_POOLS = {"maxpool2dwithindices", "maxpool2d"}
_OPAQUE = {"DifferentiableGraphBackward": "TorchScript graph"}  # a scripted region: what runs inside is unseen
_OURS = {f"{ActivationRule.__name__}Backward", f"{MaxPoolRule.__name__}Backward"}


@dataclass(frozen=True)
class Coverage:
    """What the backward rules reach below one layer (for one input).

    Attributes
    ----------
    covered : dict
        Activation op ("relu", "gelu", "silu"…) -> calls a rule replaces.
    uncovered : dict
        Name -> nonlinear steps no rule can reach: a custom ``autograd.Function`` by its class name, a
        nonlinearity inside compiled code by its op.
    max_pools : int
        Max-pool operations (where switches act).
    """

    covered: dict = field(default_factory=dict)
    uncovered: dict = field(default_factory=dict)
    max_pools: int = 0
    identified: dict = field(default_factory=dict)  # custom Function class name -> the activation it computes

    @property
    def total(self) -> int:
        return sum(self.covered.values()) + sum(self.uncovered.values())

    @property
    def complete(self) -> bool:
        return not self.uncovered

    @property
    def blind(self) -> bool:
        """Nonlinearities exist but no rule reaches any: DeConvNet/DeSaliNet would be the gradient."""
        return bool(self.uncovered) and not self.covered

    def summary(self) -> str:
        """"3 of 16 nonlinearities covered (relu x3); not covered: SwishImplementation x13"."""
        def listed(counts):
            return ", ".join(f"{k} x{v}" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
        n = sum(self.covered.values())
        text = f"{n} of {self.total} nonlinearities covered" + (f" ({listed(self.covered)})" if n else "")
        if self.identified:
            text += "; " + ", ".join(f"{k} read as {v}" for k, v in sorted(self.identified.items()))
        return text + (f"; not covered: {listed(self.uncovered)}" if self.uncovered else "")

    def to_json(self) -> dict:
        out = {"covered": dict(sorted(self.covered.items())), "uncovered": dict(sorted(self.uncovered.items())),
               "max_pools": self.max_pools}
        return out | ({"identified": dict(sorted(self.identified.items()))} if self.identified else {})


_IDENTIFIED: dict = {}  # custom Function class -> the activation op its forward computes, or None (probed once)
_PROBE = torch.linspace(-6, 6, 121).view(1, 121)


def identify(function: type) -> str | None:
    """The activation of `ACTIVATIONS` (default arguments) that a custom autograd.Function of one tensor computes,
    from its forward on a grid of values in [-6, 6]; None when it takes other arguments or matches none."""
    if function not in _IDENTIFIED:
        found = None
        try:
            with torch.no_grad():
                y = function.apply(_PROBE.clone())
            if isinstance(y, torch.Tensor) and y.shape == _PROBE.shape:
                found = next((op for op, spec in ACTIVATIONS.items() if op != "prelu" and
                              torch.allclose(spec.fn(_PROBE), y, atol=1e-5, rtol=1e-4)), None)
        except Exception:  # needs other arguments (or shapes): not a plain activation
            found = None
        _IDENTIFIED[function] = found
    return _IDENTIFIED[function]


def _hook(rule: RectifierBackward, act: Activation):
    def rewrite(grad_inputs, grad_outputs):
        if grad_inputs[0] is None or grad_outputs[0] is None:
            return None
        return (rule.from_gradient(grad_outputs[0], grad_inputs[0], act), *grad_inputs[1:])
    return rewrite


def graph_coverage(output: torch.Tensor, rule: RectifierBackward | None = None) -> Coverage:
    """Walk the autograd graph that produced `output` (a forward under non-exact rules) and count. With a
    `rule`, custom Functions identified as activations get a hook applying it (so they are covered)."""
    covered, uncovered, identified, pools = Counter(), Counter(), {}, 0
    seen, stack = set(), [output.grad_fn] if output.grad_fn is not None else []
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        stack.extend(n for n, _ in node.next_functions)
        kind = type(node).__name__
        if isinstance(node, torch.autograd.function.BackwardCFunction):
            if kind == f"{ActivationRule.__name__}Backward":
                covered[node.act.op] += 1
            elif kind == f"{MaxPoolRule.__name__}Backward":
                pools += 1
            else:  # a custom autograd.Function (or a compiled region): its backward is its own
                name = kind[:-len("Backward")] if kind.endswith("Backward") else kind
                op = identify(node._forward_cls) if hasattr(node, "_forward_cls") else None
                if op is None:
                    uncovered[name] += 1
                    continue
                covered[op] += 1
                identified[name] = op
                if rule is not None and not rule.exact:
                    node.register_hook(_hook(rule, Activation(op, ACTIVATIONS[op].fn, ACTIVATIONS[op].gain)))
            continue
        if kind in _OPAQUE:
            uncovered[_OPAQUE[kind]] += 1
            continue
        base = re.sub(r"Backward\d*$", "", kind).lower()
        if base in _NATIVE:
            uncovered[_NATIVE[base]] += 1
        elif base in _POOLS:
            pools += 1
    return Coverage(dict(covered), dict(uncovered), pools, identified)


def coverage(model, images: torch.Tensor, layer: str) -> Coverage:
    """The nonlinearities below `layer` that the backward rules reach, for preprocessed `images` [N,3,H,W]
    (one truncated forward with gradients under the DeConvNet rules)."""
    rules = BackpropRules(rectifier=DeconvNet(), pool=Switches())
    x = images[:1].detach().to(device_of(model)).requires_grad_(True)
    with torch.enable_grad(), rules.applied(model), Capture(model, [layer]) as phi:
        with getattr(model, "autocast", contextlib.nullcontext)():
            feat = phi(x)[layer]
        return graph_coverage(feat)
