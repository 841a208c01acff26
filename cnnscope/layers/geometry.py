"""Receptive-field geometry of feature maps, propagated through every tensor operation of a forward pass."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

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


PIXEL = Geometry(Axis(1, 0, 0), Axis(1, 0, 0))
GLOBAL = Geometry(None, None, is_global=True)


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
        return GLOBAL if any(g.is_global for g in geoms) else None
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


def tensors_in(obj) -> Iterable[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            yield from tensors_in(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from tensors_in(o)


def first_tensor(obj) -> torch.Tensor | None:
    return next(iter(tensors_in(obj)), None)


def op_name(func) -> str:
    name = getattr(func, "__name__", "")
    return name.strip("_") if name.startswith("__") else name.lstrip("_")


def propagate(op: str, args, kwargs, out: torch.Tensor, geom_of) -> Geometry | None:
    """Geometry of `out` from the geometry of the op's inputs."""
    x = first_tensor(args)
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
            return GLOBAL
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
    ins = [t for t in tensors_in((args, kwargs)) if geom_of(t) is not None]
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
        return GLOBAL
    return GLOBAL if out.dim() < 4 else None
