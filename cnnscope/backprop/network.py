"""The reversed ("backpropagation") network as a declarative map from layers to backward rules.

    rules = BackpropRules(rectifier=DeconvNet(), pool=Switches(), layers={"stage1": Gradient()})
    with rules.applied(model):
        out = model(x); out.backward(...)          # x.grad is now the DeConvNet reconstruction

Rules are found per call, most specific first: the layer's name (or alias), the module's type, the
functional op ("relu", "gelu", "silu", "max_pool2d"…), then the family default. The calls are caught with a
torch function mode while the context is active, so every pointwise nonlinearity of `rules.ACTIVATIONS` is
covered however it is called: modules, functional calls (F.gelu, x.relu(), torch.sigmoid), in-place
variants, modules called several times, and SiLU written out as ``x * torch.sigmoid(x)``. Nothing global is
touched: outside the context every gradient is the ordinary one. What the mode cannot see (a custom
``autograd.Function``, a TorchScript or compiled graph) is found afterwards in the autograd graph and
reported by `coverage`.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..errors import CnnscopeError
from ..layers import CallTracker, list_layers, op_name, resolve, unwrap
from .rules import ACTIVATIONS, Activation, ActivationRule, Gradient, MaxPoolRule, Rule, Switches, get_rule

RECTIFIER_OPS = tuple(ACTIVATIONS)  # every pointwise nonlinearity the rules replace
POOL_OPS = ("max_pool2d",)
_MUL = "mul"  # watched for SiLU written out: x * torch.sigmoid(x)


@dataclass
class BackpropRules:
    """Which backward rule each rectifier and max-pool uses: a composite as data (zennit's style).

    Parameters
    ----------
    rectifier, pool : Rule or str
        The family defaults (`rules.Gradient()`, `rules.Switches()`: plain autograd); names are accepted
        and turned into rule objects.
    layers : dict
        More specific choices: a layer name or alias, an nn.Module type, or an op name ("relu",
        "max_pool2d") -> a rule (or its name).
    """

    rectifier: Rule | str = Gradient()
    pool: Rule | str = Switches()
    layers: dict = field(default_factory=dict)

    def __post_init__(self):
        self.rectifier, self.pool = get_rule(self.rectifier), get_rule(self.pool)
        self.layers = {k: get_rule(v) for k, v in self.layers.items()}
        if self.rectifier.family != "rectifier":
            raise CnnscopeError(f"'{self.rectifier.name}' is not a rectifier rule")
        if self.pool.family != "pool":
            raise CnnscopeError(f"'{self.pool.name}' is not a max-pool rule")

    def rule_for(self, name: str | None, module: nn.Module | None, op: str, resolved: dict[str, Rule]) -> Rule:
        """The rule of one call: its layer's, its module type's, its op's, else the family default."""
        family = "pool" if op in POOL_OPS else "rectifier"
        candidates = [resolved.get(name)] if name else []
        if module is not None:
            candidates += [self.layers.get(t) for t in type(module).__mro__ if isinstance(t, type)]
        candidates.append(self.layers.get(op))
        for rule in candidates:
            if rule is not None and rule.family == family:
                return rule
        return self.pool if family == "pool" else self.rectifier

    @contextlib.contextmanager
    def applied(self, model, track: bool | None = None) -> Iterator[RuleLog]:
        """Apply the rules while the block runs. `track` names every call (needed for rules keyed by
        layer name or module type, and for the log); a map of family defaults and op names skips it."""
        net, _, _ = unwrap(model)
        resolved = {resolve(model, k): v for k, v in self.layers.items() if isinstance(k, str)
                    and k not in RECTIFIER_OPS + POOL_OPS}
        if track is None:
            track = any(not (isinstance(k, str) and k in RECTIFIER_OPS + POOL_OPS) for k in self.layers)
        tracker = CallTracker(net) if track else None
        log = RuleLog()
        handles = []
        if tracker is not None:
            def start(m, a):
                if m is net and not tracker.stack:  # a new forward pass: restart call numbering
                    tracker.counts.clear()
                    log.calls.clear()

            handles = [net.register_forward_pre_hook(start, prepend=True)]
            handles += tracker.hooks(lambda m, name, out: None)
        mode = _RuleMode(self, tracker, resolved, log)
        try:
            with mode:
                yield log
        finally:
            for h in handles:
                h.remove()


@dataclass
class RuleLog:
    calls: list[tuple[str, str, str]] = field(default_factory=list)  # (layer, op, rule) of the last forward


_OPS: dict = {}  # func -> op name if it is an activation, a max-pool or a product, else None (cached)


def _op_of(func) -> str | None:
    raw = op_name(func)
    if raw in ("mul", "rmul"):
        return _MUL
    name = raw.rstrip("_")
    return name if name in ACTIVATIONS or name in POOL_OPS else None


class _RuleMode(TorchFunctionMode):
    def __init__(self, rules: BackpropRules, tracker: CallTracker | None, resolved: dict[str, str], log: RuleLog):
        super().__init__()
        self.rules, self.tracker, self.resolved, self.log = rules, tracker, resolved, log
        self.sigmoids: dict[int, tuple] = {}  # id(sigmoid output) -> (weakref to it, weakref to its input)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        op = _OPS.get(func, False)
        if op is False:
            op = _OPS[func] = _op_of(func)
        kwargs = kwargs or {}
        # without grad (torch.no_grad, or inside a custom autograd.Function's forward) a rule has no effect
        if op is None or not torch.is_grad_enabled():
            return func(*args, **kwargs)
        x, act = (args[0] if args else kwargs.get("input")), None
        if op == _MUL:
            x = self._swish_input(args, kwargs)
            if x is None:
                return func(*args, **kwargs)
            op, act = "silu", Activation("silu", torch.nn.functional.silu)
        rule = self._rule(op)
        if op in POOL_OPS:
            if rule.exact or kwargs.get("return_indices") or (len(args) > 6 and args[6]):
                return func(*args, **kwargs)  # the true derivative: leave autograd's own
            kernel = args[1] if len(args) > 1 else kwargs["kernel_size"]
            stride = args[2] if len(args) > 2 else kwargs.get("stride")
            padding = args[3] if len(args) > 3 else kwargs.get("padding", 0)
            dilation = args[4] if len(args) > 4 else kwargs.get("dilation", 1)
            ceil_mode = args[5] if len(args) > 5 else kwargs.get("ceil_mode", False)
            return MaxPoolRule.apply(x, kernel, stride, padding, dilation, ceil_mode, rule)
        if act is None:
            act = Activation.of_call(op, args, kwargs)
        if rule.exact:
            out = func(*args, **kwargs)  # SaliNet is exactly autograd
        else:
            out = ActivationRule.apply(x, act, rule)  # (in-place requests are served out of place)
        if op == "sigmoid" and isinstance(x, torch.Tensor):
            self.sigmoids[id(out)] = (weakref.ref(out), weakref.ref(x))
        return out

    def _rule(self, op: str) -> Rule:
        if self.tracker is None:
            module, name = None, None
        else:
            inner = self.tracker.innermost()
            builtin = inner is not None and type(inner[0]).__module__.startswith("torch.nn")
            if builtin and inner[0] is not self.tracker.net:
                module, name = inner
            else:
                module, name = None, self.tracker.functional_name(op)
        rule = self.rules.rule_for(name, module, op, self.resolved)
        if self.tracker is not None:
            self.log.calls.append((name or "?", op, rule.name))
        return rule

    def _swish_input(self, args, kwargs) -> torch.Tensor | None:
        """x when the product is x * sigmoid(x) (either order), else None."""
        pair = list(args[:2]) if len(args) >= 2 else [kwargs.get("input"), kwargs.get("other")]
        if kwargs.get("out") is not None or not all(isinstance(t, torch.Tensor) for t in pair):
            return None
        for a, b in (pair, pair[::-1]):
            refs = self.sigmoids.get(id(b))
            if refs is not None and refs[0]() is b and refs[1]() is a:
                return a
        return None


# --------------------------------------------------------------------------------------------- explain
_TRANSPOSED = {
    "Conv2d": "convolution transposed (same filters)",
    "Conv2dSame": "convolution transposed (same filters), padding cropped",
    "Linear": "multiply by W^T",
    "BatchNorm2d": "per-channel scale gamma/sigma (frozen statistics)",
    "AdaptiveAvgPool2d": "spread evenly over each pooling region",
    "AvgPool2d": "spread evenly over each window",
    "Dropout": "identity (eval mode)",
    "Flatten": "reshape back",
    "Identity": "identity",
}


def explain(model, rules: BackpropRules) -> list[dict]:
    """Forward blocks in reverse order, each with its transposed block and the rule it uses."""
    net, _, size = unwrap(model)
    table = {r.name: r for r in list_layers(model)}
    param = next(iter(net.parameters()), None)
    x = torch.zeros(1, 3, size, size, dtype=param.dtype if param is not None else torch.float32,
                    device=param.device if param is not None else None)
    with torch.enable_grad(), rules.applied(model, track=True) as log:  # rules act (and log) only with grad on
        net(x)
    by_layer = {name: (op, rule) for name, op, rule in log.calls}
    children = {name for name, m in net.named_modules() if any(True for _ in m.children())}
    rows = []
    for name, info in reversed(table.items()):
        base = name.split("#")[0]
        if base in children or name == "output":
            continue
        if name in by_layer:
            op, rule = by_layer[name]
            text = f"{rule}: {get_rule(rule).describe()}"
        else:
            text = _TRANSPOSED.get(info.kind, "autograd's own backward")
        rows.append({"layer": name, "alias": info.alias, "type": info.kind, "backward": text})
    return rows
