"""A backpropagation run and its table: saliency jobs run (planned in `plans`), the selectivity table."""

from __future__ import annotations

from pathlib import Path

from ..jobs import Run, execute
from ..models import Model
from .jobs import COLUMNS
from .methods import METHODS
from .plans import deepest_map, default_rows, plan_saliency


def run_saliency(model: Model, sources: list[str], rows_for, methods: list[str], out: Path,
                 pool: str | None = None, mode: str = "signed", workers: int = 1, ray: str | None = None) -> Run:
    """One `SaliencyJob` per image (`rows_for(source)` gives its targets): maps, grid and raw maps each."""
    return execute(plan_saliency(model, sources, rows_for, methods, pool, mode), out, workers=workers, ray=ray,
                   desc="saliency")


def selectivity_table(result: dict) -> str:
    keys = ("max_vs_random_neuron", "max_vs_random_direction", "random_vs_random")
    lines = [f"{'method':<10} " + " ".join(f"{k:>24}" for k in keys)]
    for method in METHODS:
        if method in result:
            lines.append(f"{method:<10} " + " ".join(f"{result[method][k]:24.3f}" for k in keys))
    return "\n".join(lines)


__all__ = ["COLUMNS", "deepest_map", "default_rows", "run_saliency", "selectivity_table"]
