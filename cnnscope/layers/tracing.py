"""Naming the layers of one forward pass (module calls, functional activations) and their table."""

from __future__ import annotations

import difflib
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..errors import CnnscopeError
from .geometry import PIXEL, Geometry, first_tensor, op_name, propagate

OUTPUT = "output"

# Functional calls that are reported as layers when a model's own forward makes them.
FUNCTIONAL_LAYERS = {
    "relu", "relu6", "leaky_relu", "elu", "selu", "celu", "gelu", "silu", "mish", "sigmoid", "tanh",
    "hardtanh", "hardswish", "hardsigmoid", "softplus", "prelu", "softmax", "log_softmax",
    "max_pool2d", "max_pool2d_with_indices", "avg_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d",
}


# ---------------------------------------------------------------------------------------------- tracing
@dataclass(frozen=True)
class LayerInfo:
    name: str
    alias: str | None
    kind: str  # module class, or F.<op> for functional calls
    shape: tuple[int, ...]  # output shape without the batch dimension
    geometry: Geometry | None

    @property
    def channels(self) -> int | None:
        return self.shape[0] if self.shape else None

    @property
    def is_global(self) -> bool:
        return self.geometry is not None and self.geometry.is_global and self.geometry.h is None

    @property
    def rf(self) -> tuple[float, float] | None:
        g = self.geometry
        return (g.h.size, g.w.size) if g is not None and g.h is not None else None

    @property
    def has_grid(self) -> bool:
        """A spatial map (C, H, W), what equivariance and stitching work on (not a pooled vector or logits)."""
        return len(self.shape) == 3

    @property
    def stride(self) -> tuple[float, float] | None:
        g = self.geometry
        return (g.h.stride, g.w.stride) if g is not None and g.h is not None else None

    @property
    def offset(self) -> tuple[float, float] | None:
        """Input-pixel coordinates (y, x) of the centre of output unit (0, 0)'s receptive field."""
        g = self.geometry
        return (g.h.centre, g.w.centre) if g is not None and g.h is not None else None

    def to_dict(self) -> dict:
        return {
            "name": self.name, "alias": self.alias, "type": self.kind, "shape": list(self.shape),
            "channels": self.channels, "receptive_field": _num(self.rf), "stride": _num(self.stride),
            "offset": _num(self.offset), "global": self.is_global,
            "exact": self.geometry.exact if self.geometry is not None else None,
        }


def _num(pair):
    if pair is None:
        return None
    vals = [int(v) if float(v).is_integer() else round(float(v), 3) for v in pair]
    return vals[0] if vals[0] == vals[1] else vals


class Stop(Exception):
    """Raised inside the forward once every requested activation is in hand."""


class CallTracker:
    """Names module calls (path, path#2…) and functional-layer calls (parent.relu()…) during one forward.

    Names are given when a call starts, so code running inside a call (a backward rule, say) knows
    which layer it belongs to."""

    def __init__(self, net: nn.Module):
        self.net = net
        self.paths = {m: ("" if n == "" else n) for n, m in net.named_modules()}
        self.stack: list[tuple[nn.Module, str]] = []
        self.counts: dict[str, int] = {}

    def reset(self) -> None:
        self.stack.clear()
        self.counts.clear()

    def module_name(self, module: nn.Module) -> str:
        base = self.paths[module] or OUTPUT
        return self._numbered(base)

    def innermost(self) -> tuple[nn.Module, str] | None:
        return self.stack[-1] if self.stack else None

    def functional_name(self, op: str) -> str | None:
        """Name of a functional call, or None if it happens inside a torch.nn built-in module."""
        parent = self.stack[-1][0] if self.stack else self.net
        if parent is not self.net and type(parent).__module__.startswith("torch.nn"):
            return None  # e.g. nn.ReLU calling F.relu: the module itself is the layer
        path = self.paths.get(parent, "")
        return self._numbered(f"{path}.{op}()" if path else f"{op}()")

    def _numbered(self, base: str) -> str:
        n = self.counts.get(base, 0) + 1
        self.counts[base] = n
        return base if n == 1 else f"{base}#{n}"

    def hooks(self, on_output) -> list:
        """Track the module stack; on_output(module, name, output) runs when each call ends."""
        handles = []
        for module in self.paths:
            if isinstance(module, torch.jit.ScriptModule):  # compiled code: hooks cannot be attached
                continue
            handles.append(module.register_forward_pre_hook(
                lambda m, a: self.stack.append((m, self.module_name(m)))))

            def post(m, a, out, _cb=on_output):
                _, name = self.stack.pop()
                _cb(m, name, out)

            handles.append(module.register_forward_hook(post))
        return handles


class FunctionalMode(TorchFunctionMode):
    """Sees every torch function call of the forward: propagates geometry and names functional layers."""

    def __init__(self, tracker: CallTracker, on_functional, geometry: dict | None):
        super().__init__()
        self.tracker, self.on_functional, self.geometry = tracker, on_functional, geometry
        self._keep: list[torch.Tensor] = []  # keeps ids unique while the trace runs

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        out_t = first_tensor(out) if isinstance(out, tuple) else out
        if not isinstance(out_t, torch.Tensor):
            return out
        op = op_name(func)
        if self.geometry is not None and (isinstance(out, torch.Tensor) or op.startswith("max_pool")):
            g = propagate(op.rstrip("_"), args, kwargs, out_t, lambda t: self.geometry.get(id(t)))
            if g is not None or id(out_t) not in self.geometry:
                self.geometry[id(out_t)] = g
                self._keep.append(out_t)
        if op.rstrip("_") in FUNCTIONAL_LAYERS:
            name = self.tracker.functional_name(op.rstrip("_"))
            if name is not None:
                self.on_functional(name, op.rstrip("_"), out_t)
        return out


def unwrap(model) -> tuple[nn.Module, dict[str, str], int]:
    if hasattr(model, "net") and hasattr(model, "aliases"):  # a cnnscope Model (duck-typed: models imports us)
        return model.net, model.aliases, model.input_size
    if isinstance(model, nn.Module):
        aliases = model.layer_aliases() if hasattr(model, "layer_aliases") else {}
        return model, aliases, int(getattr(model, "input_size", 224))  # a bare module may declare its size
    raise TypeError(f"expected a cnnscope Model or an nn.Module, got {type(model).__name__}")


_TABLES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def list_layers(model, input_size: int | None = None, cache: bool = True) -> list[LayerInfo]:
    """Every layer (module call or functional layer) in execution order, with shape and geometry,
    for a [1, 3, S, S] input (S = the model's input size unless given). `cache=False` neither reads nor keeps
    the table (for a network whose aliases are not known yet)."""
    net, aliases, default_size = unwrap(model)
    size = input_size or default_size
    cached = _TABLES.get(net, {}).get(size) if cache else None
    if cached is not None:
        return cached
    reverse = {v: k for k, v in aliases.items() if k != "logits"}
    reverse.update({v: k for k, v in aliases.items() if v not in reverse})
    tracker = CallTracker(net)
    geometry: dict[int, Geometry | None] = {}
    rows: list[LayerInfo] = []

    def record(name: str, kind: str, out, module: nn.Module | None = None) -> None:
        t = first_tensor(out)
        if t is None:
            return
        if module is not None and hasattr(module, "output_geometry"):  # e.g. HOG: its ops are not conv/pool
            geometry[id(t)] = module.output_geometry()
            mode._keep.append(t)
        rows.append(LayerInfo(name, reverse.get(name), kind, tuple(t.shape[1:]), geometry.get(id(t))))

    param = next(iter(net.parameters()), None)
    x = torch.zeros(1, 3, size, size, dtype=param.dtype if param is not None else torch.float32,
                    device=param.device if param is not None else "cpu")
    geometry[id(x)] = PIXEL
    def kind_of(m: nn.Module) -> str:  # the root of a model whose logits are picked from its output says which
        return type(m).__name__ + (getattr(type(m), "logits_field", "") if m is net else "")

    handles = tracker.hooks(lambda m, name, out: record(name, kind_of(m), out, m))
    mode = FunctionalMode(tracker, lambda name, op, t: record(name, f"F.{op}", t), geometry)
    try:
        with torch.no_grad(), mode:
            out = net(x)
    except Stop:  # pragma: no cover - never raised here
        raise
    except Exception as err:
        raise CnnscopeError(
            f"model forward failed on a 1x3x{size}x{size} input ({type(err).__name__}: {err})"
        ) from None
    finally:
        for h in handles:
            h.remove()
    if not any(r.name == OUTPUT for r in rows):  # TorchScript: hooks do not fire inside compiled code
        t = first_tensor(out)
        rows.append(LayerInfo(OUTPUT, reverse.get(OUTPUT), type(net).__name__, tuple(t.shape[1:]),
                              geometry.get(id(t))))
    if cache:
        _TABLES.setdefault(net, {})[size] = rows
    return rows


def layer_names(model) -> list[str]:
    return [r.name for r in list_layers(model)]


def resolve(model, name: str) -> str:
    """Canonical layer name for `name` (a layer name or an alias); unknown names suggest the closest."""
    net, aliases, _ = unwrap(model)
    names = layer_names(model)
    if name in names:
        return name
    base, sep, call = name.partition("#")
    if base in aliases:
        canonical = aliases[base] + sep + call
        if canonical in names:
            return canonical
    candidates = names + list(aliases)
    close = difflib.get_close_matches(name, candidates, n=4, cutoff=0.5)
    hint = f"; closest: {', '.join(close)}" if close else ""
    label = getattr(model, "name", type(net).__name__)
    extra = ""
    if getattr(model, "torchscript", False):
        extra = " (TorchScript models expose only 'output'; give a .py factory to address inner layers)"
    raise CnnscopeError(f"unknown layer '{name}' for {label}{hint}{extra}")


def get_layer(model, name: str) -> LayerInfo:
    """The table row of one layer (by name or alias): shape, receptive field, stride, offset, channels."""
    canonical = resolve(model, name)
    return next(r for r in list_layers(model) if r.name == canonical)


def format_table(rows: Sequence[LayerInfo]) -> str:
    """Plain-text layer table."""

    def fmt(v):
        if v is None:
            return "-"
        return "x".join(str(i) for i in v) if isinstance(v, list) else str(v)

    header = ("layer", "alias", "type", "output", "rf", "stride", "offset")
    lines = [header]
    for r in rows:
        d = r.to_dict()
        rf = "all" if r.is_global else fmt(d["receptive_field"])
        if r.geometry is not None and not r.geometry.exact:
            rf += "~"
        lines.append((r.name, r.alias or "", r.kind, "x".join(map(str, r.shape)), rf, fmt(d["stride"]),
                      fmt(d["offset"])))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)
