"""Layer specs as users write them: names, aliases, ``stages`` and ``depth:F`` fractions, comma-separated."""

from __future__ import annotations

import re

from ..errors import CnnscopeError
from ..models import Model
from ..models.structure import at_depth
from .tracing import get_layer, list_layers, resolve


def expand_layers(model: Model, spec: str, maps_only: bool = False) -> list[str]:
    """Comma-separated layer names; 'stages' (or 'depth') expands to the model's stem-to-logits row (its
    spatial maps only, without logits or pooled vectors, with `maps_only`); 'depth:F[,F…]' picks the feature
    maps at those fractions of the network's depth (0 = first, 1 = last; for networks with hundreds of layers:
    ``depth:0.25,0.5,0.75``)."""
    names: list[str] = []
    fractions: list[float] | None = None
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        if part.startswith("depth:"):
            fractions, part = [], part[len("depth:"):]
        if fractions is not None and re.fullmatch(r"[0-9.]+", part):
            value = float(part) if part.count(".") <= 1 else -1.0
            if not 0 <= value <= 1:
                raise CnnscopeError(f"bad depth fraction '{part}' in '{spec}' (numbers from 0 to 1: depth:0.25,0.5)")
            names += at_depth(model.net, list_layers(model), [value]) or ["<no feature map>"]
            continue
        fractions = None
        if part in ("stages", "depth"):
            names += [n for n in model.profile.depth if not maps_only or get_layer(model, n).has_grid]
        else:
            names.append(part)
    if not names:
        raise CnnscopeError("no layer given (--layer NAME[,NAME…], --layer stages or --layer depth:0.25,0.5)")
    for n in names:
        resolve(model, n)  # fail early with suggestions, before any optimisation
    return names
