"""What to look at in a layer's output — one Target for pre-images (what to maximise) and backprop
(where the backward pass starts)."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import torch

from .errors import CnnscopeError, unknown
from .layers import get_layer
from .models import Model

KINDS = ("neuron", "channel", "class", "direction", "features")


@dataclass(frozen=True)
class Target:
    """A unit or direction of a layer's output.

    Parameters
    ----------
    kind : str
        "neuron" (channel at y, x; default the centre), "channel" (the spatial mean of a whole channel),
        "class" (a logit), "direction" (any vector over the layer's output) or "features" (backprop only:
        the layer's own activation, reconstructing from the full code).
    channel : int, optional
        Channel (or class) index.
    y, x : int, optional
        Position of a neuron in feature cells (default: the centre).
    direction : Tensor, optional
        For "direction": weights of the layer's output shape (without batch).
    layer : str, optional
        The layer, when the target carries it (backprop); pre-image jobs hold the layer themselves.
    """

    kind: str
    channel: int | None = None
    y: int | None = None
    x: int | None = None
    direction: torch.Tensor | None = None
    layer: str | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise unknown("target kind", self.kind, KINDS)
        for name in ("channel", "y", "x"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise CnnscopeError(f"a target's {name} must be an integer, not {value!r}")

    def label(self) -> str:
        """A short name: 'neuron3@1,2', 'class980', 'direction'; prefixed by the layer when it has one."""
        if self.kind in ("direction", "features"):
            base = self.kind
        elif self.kind == "class" and self.channel is None:
            base = "top class"  # found per picture (a saliency job's default row)
        else:
            where = f"@{self.y},{self.x}" if self.kind == "neuron" and self.y is not None else ""
            base = f"{self.kind}{self.channel}{where}"
        return base if self.layer is None else f"{self.layer} {base}"

    def weights(self, shape: tuple[int, ...]) -> torch.Tensor:
        """The target as weights w over a layer output of `shape` (no batch): its value is <w, Phi(x)>.

        Raises
        ------
        CnnscopeError
            A channel or position outside the layer, a direction of another shape, or "features" (whose
            weights are the activation itself).
        """
        shape = tuple(shape)
        if self.kind == "features":
            raise CnnscopeError("a 'features' target is the layer's activation: it has no fixed weights")
        if self.kind == "direction":
            if self.direction is None or tuple(self.direction.shape) != shape:
                raise CnnscopeError(f"direction must have the layer's shape {shape}")
            return self.direction.float()
        channels, where = shape[0], self.layer or "the layer"
        if self.channel is None or not 0 <= self.channel < channels:
            raise CnnscopeError(f"channel {self.channel} is out of range: {where} has {channels} channels "
                                f"(0-{channels - 1})")
        w = torch.zeros(shape)
        if len(shape) == 1:
            w[self.channel] = 1.0
        elif self.kind == "channel":
            w[self.channel] = 1.0 / (shape[1] * shape[2])
        else:
            h, wd = shape[1:]
            y = h // 2 if self.y is None else self.y
            x = wd // 2 if self.x is None else self.x
            if not (0 <= y < h and 0 <= x < wd):
                raise CnnscopeError(f"neuron position ({y}, {x}) is outside the {h}x{wd} map of {where}")
            w[self.channel, y, x] = 1.0
        return w


def channel_targets(model: Model, layer: str, channels, where: str, y=None, x=None) -> list[Target]:
    """Targets for channels of `layer` (their centre neuron, or `where="channel"` their spatial mean), checked."""
    if where not in ("neuron", "channel"):
        raise CnnscopeError(f"where must be 'neuron' or 'channel', not {where!r}")
    width = get_layer(model, layer).channels or 1
    for c in channels:
        if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < width:
            raise CnnscopeError(f"channel {c!r} is out of range: {layer} has {width} channels (0-{width - 1})")
    return [Target(where, c, y, x) for c in channels]


def parse_class(model: Model, spec: str) -> int:
    """A class by index or name (case-insensitive), checked against the model's classes."""
    if spec.isdigit():
        k = int(spec)
        if not 0 <= k < len(model.classes):
            raise CnnscopeError(f"class index {k} is out of range (0-{len(model.classes) - 1})")
        return k
    lowered = [c.lower() for c in model.classes]
    if spec.lower() in lowered:
        return lowered.index(spec.lower())
    close = difflib.get_close_matches(spec.lower(), lowered, n=3, cutoff=0.6)
    hint = f"; closest: {', '.join(model.classes[lowered.index(c)] for c in close)}" if close else ""
    raise CnnscopeError(f"unknown class '{spec}'{hint}")


# ----------------------------------------------------------------------------------------------- invert
