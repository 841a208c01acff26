"""The backpropagation verbs' jobs, planned in one place for the CLI, the Python API and the report:
defaults (the deepest feature map, the top class) and checks are made here once, and each job's key and
settings with them."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ..errors import CnnscopeError
from ..images import source_stem
from ..jobs import spec_of
from ..layers import get_layer, resolve
from ..models import Model
from ..store import slug
from ..targets import Target
from .jobs import COLUMNS, SaliencyJob, SanityJob, SelectivityJob


def deepest_map(model: Model) -> str | None:
    """The deepest layer of the depth row with a spatial feature map (where the seed's backprop rows start)."""
    return next((n for n in reversed(model.profile.conv_layers) if len(get_layer(model, n).shape) == 3), None)


def default_rows(model: Model) -> list[Target]:
    """The seed's two rows: the full code of the last convolutional stage, and the top class (a class target
    without an index: each job finds its picture's top class, so planning a folder decodes nothing)."""
    conv = deepest_map(model)
    rows = [Target("features", layer=conv)] if conv else []
    if model.profile.logits is not None:
        rows.append(Target("class", layer=model.profile.logits))
    return rows


def plan_saliency(model: Model, sources: Sequence, rows_for: Callable[[object], Sequence[Target]],
                  methods: Sequence[str] = COLUMNS, pool: str | None = None,
                  render: str = "signed") -> list[SaliencyJob]:
    """One SaliencyJob per image (`rows_for(source)` gives its targets)."""
    spec = spec_of(model)
    return [SaliencyJob(slug(f"saliency_{source_stem(s)}"), spec, s, tuple(rows_for(s)), tuple(methods), pool, render)
            for s in sources]


def plan_selectivity(model: Model, layer: str | None, images: str | None, limit: int, neurons: int,
                     seed: int) -> SelectivityJob:
    """The ECCV'16 selectivity protocol at `layer` (default: the deepest feature map)."""
    layer = layer or deepest_map(model)
    if layer is None:
        raise CnnscopeError(f"give a layer for {model.name}")
    resolve(model, layer)
    return SelectivityJob("selectivity", spec_of(model), layer, images, limit, neurons, seed)


def plan_sanity(model: Model, image, picture: torch.Tensor, klass: int | None, seed: int) -> SanityJob:
    """Cascading randomisation from a class logit (default: the network's top class for the picture)."""
    if model.profile.logits is None:
        raise CnnscopeError(f"{model.name} has no classes: the sanity check starts from a class logit")
    k = klass if klass is not None else model.predict(picture, k=1)[0][0].index
    return SanityJob("sanity", spec_of(model), image, Target("class", k, layer=model.profile.logits), seed)
