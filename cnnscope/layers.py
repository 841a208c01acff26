"""Address any layer of any model by name: list, capture, truncate.

A *layer* is one call of a module during the forward pass, named by its module path (``features.3``,
``_blocks.4``) or a friendly alias (``conv2``, ``stage3``). A module called several times is addressed
per call (``relu``, ``relu#2``…). Activations computed by functional calls inside a model's own
``forward`` (``F.relu(x)``, ``x.relu()``, ``F.max_pool2d``…) are layers too, named ``<parent>.relu()``.
The model's final output is the layer ``output``.

Geometry (receptive field, effective stride, offset) is computed exactly by following every tensor
operation of one forward pass with a torch function mode (no global monkey-patching), so it works for
any nn.Module, residual branches and padding calls included.

Capturing stops the forward as soon as the deepest requested layer has been computed.
"""

from __future__ import annotations

import difflib
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from .device import of as device_of
from .errors import CnnscopeError

OUTPUT = "output"

# Functional calls that are reported as layers when a model's own forward makes them.
FUNCTIONAL_LAYERS = {
    "relu", "relu6", "leaky_relu", "elu", "selu", "celu", "gelu", "silu", "mish", "sigmoid", "tanh",
    "hardtanh", "hardswish", "hardsigmoid", "softplus", "prelu", "softmax", "log_softmax",
    "max_pool2d", "max_pool2d_with_indices", "avg_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d",
}
_REDUCTIONS = {"mean", "sum", "amax", "amin", "max", "min", "std", "var", "logsumexp", "norm", "nansum"}


# ----------------------------------------------------------------------------------------------- geometry
@dataclass(frozen=True)
class Axis:
    """Along one spatial axis: output unit i sees input pixels [start + i*stride, end + i*stride]."""

    stride: float
    start: float
    end: float

    @property
    def size(self) -> float:
        return self.end - self.start + 1

    @property
    def centre(self) -> float:
        return (self.start + self.end) / 2


@dataclass(frozen=True)
class Geometry:
    h: Axis | None
    w: Axis | None
    is_global: bool = False  # depends on the whole input (after a global pool, flatten, linear…)
    exact: bool = True
    channels_last: bool = False  # [N, H, W, C] (ConvNeXt's blocks permute to apply LayerNorm and Linear per pixel)

    def spatial_dims(self, t: torch.Tensor) -> tuple[int, ...]:
        """(H, W) of a tensor laid out as this geometry says."""
        return tuple(t.shape[1:3]) if self.channels_last else tuple(t.shape[-2:])


_PIXEL = Geometry(Axis(1, 0, 0), Axis(1, 0, 0))
_GLOBAL = Geometry(None, None, is_global=True)


def _pair(v) -> tuple:
    if isinstance(v, (list, tuple)):
        return (v[0], v[0]) if len(v) == 1 else (v[0], v[1])
    return (v, v)


def _window(ax: Axis, k: int, s: int, p: int, d: int) -> Axis:
    # Output unit 0 reads input units -p .. -p + d*(k-1).
    return Axis(ax.stride * s, ax.start - p * ax.stride, ax.end + (d * (k - 1) - p) * ax.stride)


def _union(geoms: list[Geometry]) -> Geometry | None:
    spatial = [g for g in geoms if g.h is not None]
    if not spatial:
        return _GLOBAL if any(g.is_global for g in geoms) else None
    exact = all(g.exact for g in spatial)
    axes = []
    for attr in ("h", "w"):
        a = [getattr(g, attr) for g in spatial]
        if len({x.stride for x in a}) > 1:
            exact = False
        axes.append(Axis(max(x.stride for x in a), min(x.start for x in a), max(x.end for x in a)))
    return Geometry(axes[0], axes[1], any(g.is_global for g in geoms), exact, spatial[0].channels_last)


def _arg(args, kwargs, i, name, default):
    if len(args) > i:
        return args[i]
    return kwargs.get(name, default)


def _tensors(obj) -> Iterable[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            yield from _tensors(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _tensors(o)


def _first_tensor(obj) -> torch.Tensor | None:
    return next(iter(_tensors(obj)), None)


def _op_name(func) -> str:
    name = getattr(func, "__name__", "")
    return name.strip("_") if name.startswith("__") else name.lstrip("_")


def _propagate(op: str, args, kwargs, out: torch.Tensor, geom_of) -> Geometry | None:
    """Geometry of `out` from the geometry of the op's inputs."""
    x = _first_tensor(args)
    g = geom_of(x) if x is not None else None
    if op in ("conv2d", "max_pool2d", "max_pool2d_with_indices", "avg_pool2d") and g is not None:
        if g.h is None:
            return g
        if op == "conv2d":
            k = tuple(args[1].shape[-2:])
            s = _pair(_arg(args, kwargs, 3, "stride", 1))
            p = _arg(args, kwargs, 4, "padding", 0)
            d = _pair(_arg(args, kwargs, 5, "dilation", 1))
            if p == "valid":
                p = (0, 0)
            elif p == "same":
                p = tuple((di * (ki - 1)) // 2 for ki, di in zip(k, d))
            p = _pair(p)
        else:
            k = _pair(_arg(args, kwargs, 1, "kernel_size", 1))
            s = _arg(args, kwargs, 2, "stride", None)
            s = _pair(s if s not in (None, [], ()) else k)
            p = _pair(_arg(args, kwargs, 3, "padding", 0))
            d = _pair(_arg(args, kwargs, 4, "dilation", 1)) if op.startswith("max") else (1, 1)
        return Geometry(_window(g.h, k[0], s[0], p[0], d[0]), _window(g.w, k[1], s[1], p[1], d[1]),
                        g.is_global, g.exact)
    if op in ("adaptive_avg_pool2d", "adaptive_max_pool2d") and g is not None and g.h is not None:
        (ih, iw), (oh, ow) = x.shape[-2:], out.shape[-2:]
        if oh == 1 and ow == 1:
            return _GLOBAL
        axes, exact = [], g.exact
        for ax, i, o in ((g.h, ih, oh), (g.w, iw, ow)):
            exact &= i % o == 0
            k = -(-i // o)  # widest bin
            axes.append(Axis(ax.stride * i / o, ax.start, ax.end + (k - 1) * ax.stride))
        return Geometry(axes[0], axes[1], g.is_global, exact)
    if op == "pad" and g is not None and g.h is not None:
        pad = list(_arg(args, kwargs, 1, "pad", ())) + [0, 0, 0, 0]
        left, top = pad[0], pad[2]
        return Geometry(Axis(g.h.stride, g.h.start - top * g.h.stride, g.h.end - top * g.h.stride),
                        Axis(g.w.stride, g.w.start - left * g.w.stride, g.w.end - left * g.w.stride),
                        g.is_global, g.exact)
    if (op in ("interpolate", "upsample", "upsample_nearest", "upsample_bilinear")
            and g is not None and g.h is not None and out.dim() == 4):
        (ih, iw), (oh, ow) = x.shape[-2:], out.shape[-2:]
        return Geometry(Axis(g.h.stride * ih / oh, g.h.start, g.h.end),
                        Axis(g.w.stride * iw / ow, g.w.start, g.w.end), g.is_global, False)
    if op == "permute" and g is not None and g.h is not None and x.dim() == 4:
        dims = tuple(_arg(args, kwargs, 1, "dims", ())) if len(args) == 2 or "dims" in kwargs else tuple(args[1:])
        layouts = {(0, 2, 3, 1): (False, True), (0, 3, 1, 2): (True, False)}  # NCHW <-> NHWC
        if dims in layouts and layouts[dims][0] == g.channels_last:
            return Geometry(g.h, g.w, g.is_global, g.exact, layouts[dims][1])
        return None
    # Anything else: shape-preserving ops keep (the union of) their inputs' geometry (in their layout, so a
    # Linear or LayerNorm over the channels of an NHWC tensor keeps it); ops that remove the spatial layout
    # (flatten, linear, global reductions) make the output depend on everything.
    ins = [t for t in _tensors((args, kwargs)) if geom_of(t) is not None]
    if not ins:
        return None

    def hw(t, like):
        return like.spatial_dims(t) if t.dim() >= 3 else None

    same = [geom_of(t) for t in ins if t.dim() >= 3 and out.dim() >= 3 and hw(t, geom_of(t)) == hw(out, geom_of(t))]
    if op in ("conv_transpose2d", "conv_transpose1d", "fold", "unfold", "pixel_shuffle", "pixel_unshuffle"):
        return None  # geometry we do not model exactly: report unknown rather than wrong
    if same and out.dim() == 4:
        return _union(same + [geom_of(t) for t in ins if geom_of(t).is_global])
    if op in ("linear", "flatten", "view", "reshape", "matmul", "mm", "addmm") or op in _REDUCTIONS:
        return _GLOBAL
    return _GLOBAL if out.dim() < 4 else None


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


class _Stop(Exception):
    """Raised inside the forward once every requested activation is in hand."""


class _CallTracker:
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


class _FunctionalMode(TorchFunctionMode):
    """Sees every torch function call of the forward: propagates geometry and names functional layers."""

    def __init__(self, tracker: _CallTracker, on_functional, geometry: dict | None):
        super().__init__()
        self.tracker, self.on_functional, self.geometry = tracker, on_functional, geometry
        self._keep: list[torch.Tensor] = []  # keeps ids unique while the trace runs

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        out_t = _first_tensor(out) if isinstance(out, tuple) else out
        if not isinstance(out_t, torch.Tensor):
            return out
        op = _op_name(func)
        if self.geometry is not None and (isinstance(out, torch.Tensor) or op.startswith("max_pool")):
            g = _propagate(op.rstrip("_"), args, kwargs, out_t, lambda t: self.geometry.get(id(t)))
            if g is not None or id(out_t) not in self.geometry:
                self.geometry[id(out_t)] = g
                self._keep.append(out_t)
        if op.rstrip("_") in FUNCTIONAL_LAYERS:
            name = self.tracker.functional_name(op.rstrip("_"))
            if name is not None:
                self.on_functional(name, op.rstrip("_"), out_t)
        return out


def _unwrap(model) -> tuple[nn.Module, dict[str, str], int]:
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
    net, aliases, default_size = _unwrap(model)
    size = input_size or default_size
    cached = _TABLES.get(net, {}).get(size) if cache else None
    if cached is not None:
        return cached
    reverse = {v: k for k, v in aliases.items() if k != "logits"}
    reverse.update({v: k for k, v in aliases.items() if v not in reverse})
    tracker = _CallTracker(net)
    geometry: dict[int, Geometry | None] = {}
    rows: list[LayerInfo] = []

    def record(name: str, kind: str, out, module: nn.Module | None = None) -> None:
        t = _first_tensor(out)
        if t is None:
            return
        if module is not None and hasattr(module, "output_geometry"):  # e.g. HOG: its ops are not conv/pool
            geometry[id(t)] = module.output_geometry()
            mode._keep.append(t)
        rows.append(LayerInfo(name, reverse.get(name), kind, tuple(t.shape[1:]), geometry.get(id(t))))

    param = next(iter(net.parameters()), None)
    x = torch.zeros(1, 3, size, size, dtype=param.dtype if param is not None else torch.float32,
                    device=param.device if param is not None else "cpu")
    geometry[id(x)] = _PIXEL
    def kind_of(m: nn.Module) -> str:  # the root of a model whose logits are picked from its output says which
        return type(m).__name__ + (getattr(type(m), "logits_field", "") if m is net else "")

    handles = tracker.hooks(lambda m, name, out: record(name, kind_of(m), out, m))
    mode = _FunctionalMode(tracker, lambda name, op, t: record(name, f"F.{op}", t), geometry)
    try:
        with torch.no_grad(), mode:
            out = net(x)
    except _Stop:  # pragma: no cover - never raised here
        raise
    except Exception as err:
        raise CnnscopeError(
            f"model forward failed on a 1x3x{size}x{size} input ({type(err).__name__}: {err})"
        ) from None
    finally:
        for h in handles:
            h.remove()
    if not any(r.name == OUTPUT for r in rows):  # TorchScript: hooks do not fire inside compiled code
        t = _first_tensor(out)
        rows.append(LayerInfo(OUTPUT, reverse.get(OUTPUT), type(net).__name__, tuple(t.shape[1:]),
                              geometry.get(id(t))))
    if cache:
        _TABLES.setdefault(net, {})[size] = rows
    return rows


def layer_names(model) -> list[str]:
    return [r.name for r in list_layers(model)]


def resolve(model, name: str) -> str:
    """Canonical layer name for `name` (a layer name or an alias); unknown names suggest the closest."""
    net, aliases, _ = _unwrap(model)
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


# ---------------------------------------------------------------------------------------------- capture
class Capture:
    """Callable that returns {name: activation} for the requested layers, running the forward only as far
    as the deepest of them. Keeps its hooks until `close()` (or the end of a `with` block), so it is cheap to
    call in an optimisation loop. Gradients flow: use it under torch.no_grad() only when you want none.

    >>> with Capture(model, ["conv3", "fc8"]) as phi:
    ...     feats = phi(x)      # x preprocessed, [N,3,S,S]
    """

    def __init__(self, model, layers: Sequence[str] | str):
        self.net, _, _ = _unwrap(model)
        requested = [layers] if isinstance(layers, str) else list(layers)
        if not requested:
            raise CnnscopeError("no layers requested")
        self.requested = requested
        self.targets = {resolve(model, n): n for n in requested}  # canonical -> requested name
        self.functional = any(t.endswith(")") or ")#" in t for t in self.targets)
        self.tracker = _CallTracker(self.net)
        self.store: dict[str, torch.Tensor] = {}
        self.active = False
        self.handles: list = []
        if self.functional:
            self.handles = self.tracker.hooks(lambda m, name, out: self._seen(name, out))
        else:
            modules = {}
            for canonical in self.targets:
                path = canonical.split("#")[0]
                modules[self.net if path == OUTPUT else self.net.get_submodule(path)] = True
            for module in modules:
                if isinstance(module, torch.jit.ScriptModule):
                    continue  # only the TorchScript root ('output') can be targeted; read from the return value
                self.handles.append(module.register_forward_hook(self._module_hook))

    def _module_hook(self, module, args, out):
        if self.active:
            self._seen(self.tracker.module_name(module), out)

    def _seen(self, name: str, out) -> None:
        if not self.active or name not in self.targets:
            return
        t = _first_tensor(out)
        done = len(self.store) + 1 == len(self.targets)
        # Later in-place ops (ReLU(inplace=True)) would overwrite a kept tensor: clone unless we stop here.
        self.store[name] = t if done else t.clone()
        if done:
            raise _Stop

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = x.to(device_of(self.net))  # inputs follow the network (a no-op when already there)
        self.store = {}
        self.tracker.reset()
        self.active = True
        try:
            if self.functional:
                with _FunctionalMode(self.tracker, lambda name, op, t: self._seen(name, t), None):
                    out = self.net(x)
            else:
                out = self.net(x)
            if OUTPUT in self.targets and OUTPUT not in self.store:  # TorchScript root
                self.store[OUTPUT] = _first_tensor(out)
        except _Stop:
            pass
        finally:
            self.active = False
        missing = [n for n in self.targets if n not in self.store]
        if missing:
            raise CnnscopeError(f"layers not reached in this forward: {', '.join(missing)}")
        return {requested: self.store[canonical] for canonical, requested in self.targets.items()}

    def close(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def capture(model, x: torch.Tensor, layers: Sequence[str] | str) -> dict[str, torch.Tensor]:
    """Activations of `layers` for a preprocessed batch (the forward stops at the deepest one).

    Parameters
    ----------
    model : Model or nn.Module
    x : Tensor
        [N,3,S,S] preprocessed (``model.prepare``).
    layers : str or sequence of str
        Layer names or aliases (`list_layers`).

    Returns
    -------
    dict
        Layer name -> activation [N, ...] (gradients flow through it).
    """
    with Capture(model, layers) as phi:
        return phi(x)


class Truncated(nn.Module):
    """The model cut after one layer: ``Truncated(model, "conv3")(x)`` is that layer's activation."""

    def __init__(self, model, layer: str):
        super().__init__()
        self._capture = Capture(model, [layer])
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._capture(x)[self.layer]


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
