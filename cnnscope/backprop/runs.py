"""The backpropagation verbs' defaults and runs (jobs in `jobs`, composed here)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..images import source_stem
from ..jobs import Run, execute, provide
from ..layers import get_layer
from ..models import Model
from ..preimage.runs import slug
from ..targets import Target
from .jobs import COLUMNS, SaliencyJob
from .methods import METHODS


def deepest_map(model: Model) -> str | None:
    """The deepest layer of the depth row with a spatial feature map (where the seed's backprop rows start)."""
    return next((n for n in reversed(model.profile.conv_layers) if len(get_layer(model, n).shape) == 3), None)


def default_rows(model: Model, image: torch.Tensor) -> list[Target]:
    """The seed's two rows: the full code of the last convolutional stage, and the top class."""
    conv = deepest_map(model)
    rows = [Target("features", layer=conv)] if conv else []
    if model.profile.logits is not None:
        rows.append(Target("class", model.predict(image, k=1)[0][0].index, layer=model.profile.logits))
    return rows


def run_saliency(model: Model, sources: list[str], rows_for, methods: list[str], out: Path,
                 pool: str | None = None, mode: str = "signed", workers: int = 1, ray: str | None = None) -> Run:
    """One `SaliencyJob` per image (`rows_for(source)` gives its targets): maps, grid and raw maps each."""
    spec = model.job_spec()
    provide(spec, model)
    jobs = [SaliencyJob(slug(f"saliency_{source_stem(s)}"), spec, s, tuple(rows_for(s)), tuple(methods),
                        pool, mode) for s in sources]
    return execute(jobs, out, workers=workers, ray=ray, desc="saliency")


def selectivity_table(result: dict) -> str:
    keys = ("max_vs_random_neuron", "max_vs_random_direction", "random_vs_random")
    lines = [f"{'method':<10} " + " ".join(f"{k:>24}" for k in keys)]
    for method in METHODS:
        if method in result:
            lines.append(f"{method:<10} " + " ".join(f"{result[method][k]:24.3f}" for k in keys))
    return "\n".join(lines)


__all__ = ["COLUMNS", "default_rows", "run_saliency", "selectivity_table"]
