"""The transformation analyses as jobs (see `cnnscope.jobs`): equivariance and stitching one layer per job
(each also measures the whole-network baseline, so any job alone is a complete answer), and CKA.

Data: `data.image_store` at model A's input size and a seeded shuffled fit/test split (`data.split`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..data import image_store, split
from ..errors import CnnscopeError
from ..jobs import Job, Outcome, Result
from ..models import Model, ModelSpec
from ..store import load_tensors, save_tensors, write_csv, write_json
from ..viz import cka_heatmap, plot_equivariance, plot_stitch
from .cka import check_cka_fits, cka_of_grams, example_gram
from .equivalence import StitchFit, StreamedFeatures, stitch_experiment
from .equivariance import NEIGHBOURHOODS, EquivarianceFit, equivariance_experiment
from .transform import Transform

MODULES = {"json": False}  # field metadata: fitted maps go to safetensors, not to the record
STITCH_METHODS = ("naive", "random", "permutation", "regression", "task")


def fit_test(model: Model, images: str | None, limit: int | None, fit: float, seed: int):
    """(fit images, test images, fit labels, test labels) — labels None for unlabelled sets."""
    x, labels = image_store(model, images, limit, seed)  # in a file: memory flat in the number of images
    i_fit, i_test = split(len(x), fit, seed)
    if labels is None:
        return x.subset(i_fit), x.subset(i_test), None, None
    return x.subset(i_fit), x.subset(i_test), labels[i_fit], labels[i_test]


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous() for k, v in module.state_dict().items()}


# ------------------------------------------------------------------------------------------ equivariance
@dataclass
class EquivarianceResult(Result):
    """One layer's row: errors with the transform compensated by the spatial inverse only, plus a channel
    permutation, plus the learned m x m map M_g chosen by the task; invariant channels; and the network's
    `baseline` errors without the transform and with it uncompensated. `map` is the learned map's weights."""

    metric: str
    baseline: dict
    row: dict
    map: dict = field(metadata=MODULES)


@dataclass(frozen=True)
class EquivarianceJob(Job):
    """Is Phi(gx) = M_g Phi(x) at `layer`? (Lenc & Vedaldi) Fit on a fraction of the images, test on the rest."""

    key: str
    model: ModelSpec
    transform: str
    layer: str
    images: str | None = None
    limit: int | None = None
    fit: float = 0.8
    epochs: int = 0
    ridge: float | None = None
    crops: int = 1
    seed: int = 0
    neighbourhoods: tuple[int, ...] = NEIGHBOURHOODS  # candidate supports m of the m x m map
    kind = "equivariance"



    def compute(self, model: Model) -> EquivarianceResult:
        data = fit_test(model, self.images, self.limit, self.fit, self.seed)
        how = EquivarianceFit(self.epochs, self.seed, self.ridge, self.crops, self.neighbourhoods, progress=False)
        r = equivariance_experiment(model, [self.layer], Transform.parse(self.transform), *data, how)
        return EquivarianceResult(r["metric"], r["baseline"], r["rows"][0], _state(r["maps"][self.layer]))

    def write(self, out: Path, result: EquivarianceResult) -> list[str]:
        save_tensors(result.map, out / f"{self.key}_map.safetensors", "cnnscope-equivariance-map-1")
        return [f"{self.key}_map.safetensors"]


def write_equivariance(out: Path | None, name: str, outcomes: Sequence[Outcome], transform: str, model_name: str,
                       settings: dict) -> dict:
    """The analysis's table (CSV), figure, JSON and all layers' maps in one safetensors, from its jobs; the
    table (nothing written for `out` None)."""
    first = outcomes[0].results
    rows = [o.results["row"] for o in outcomes]
    result = {"transform": transform, "metric": first["metric"], "baseline": first["baseline"], "rows": rows}
    if out is None:
        return result
    cols = ("spatial_only", "permutation", "learned")
    extra = ("map", "learned_r2", "spatial_r2", "ridge", "refined", "invariant_channels", "null_invariant_channels",
             "channels")
    write_csv(["layer", "no_transform", "uncompensated", *cols, *extra],
              [[r["layer"], first["baseline"]["no_transform"], first["baseline"]["uncompensated"],
                *(r[c] for c in cols + extra)] for r in rows], out / f"{name}.csv")
    plot_equivariance(result, out / f"{name}.png", model_name)
    maps = {}
    for o in outcomes:
        tensors, _ = load_tensors(out / o.files[0], "cnnscope-equivariance-map-1", "map")
        maps.update({f"{o.job.layer}|{k}": v for k, v in tensors.items()})
    save_tensors(maps, out / f"{name}_maps.safetensors", "cnnscope-equivariance-maps-1", settings=json.dumps(settings))
    write_json({"settings": settings, **{k: result[k] for k in ("metric", "baseline", "rows")}}, out / f"{name}.json")
    return result


# ---------------------------------------------------------------------------------------------- stitch
@dataclass
class StitchResult(Result):
    """One layer pair: A's and B's own errors (`baseline`), and per stitch (naive, random, permutation,
    regression, task) the error of front-of-A + stitch + rest-of-B (`row`). `stitches` are their weights."""

    baseline: dict
    row: dict
    stitches: dict = field(metadata=MODULES)


@dataclass(frozen=True)
class StitchJob(Job):
    """Equivalence by stitching one layer pair (Lenc & Vedaldi): A's front, a learned map E, B's rest."""

    key: str
    model: ModelSpec
    other: ModelSpec
    layer_a: str
    layer_b: str
    images: str | None = None
    limit: int | None = None
    fit: float = 0.8
    epochs: int = 8
    resample: bool = True
    kernel: int = 1
    batchnorm: bool = False
    seed: int = 0
    kind = "stitch"



    def models(self) -> tuple[ModelSpec, ...]:
        return (self.model, self.other)

    def compute(self, a: Model, b: Model) -> StitchResult:
        data = fit_test(a, self.images, self.limit, self.fit, self.seed)
        how = StitchFit(self.epochs, self.resample, self.kernel, self.batchnorm, self.seed, progress=False)
        r = stitch_experiment(a, b, [(self.layer_a, self.layer_b)], *data, how)
        row = dict(r["rows"][0])
        stitches = row.pop("_stitches")
        return StitchResult(r["baseline"], row, {f"{m}|{k}": v for m, s in stitches.items()
                                                  for k, v in _state(s).items()})

    def write(self, out: Path, result: StitchResult) -> list[str]:
        save_tensors(result.stitches, out / f"{self.key}_stitches.safetensors", "cnnscope-stitches-1")
        return [f"{self.key}_stitches.safetensors"]


def stitch_table(baseline: dict, rows: Sequence[dict], metric: str) -> list[dict]:
    """Rows of the stitching table: A alone, B alone, then each layer pair's error per method (None: n/a)."""
    table = [{"layer": key + " alone", **{m: baseline[key].get(metric) for m in STITCH_METHODS}} for key in "AB"]
    for r in rows:
        table.append({"layer": r["layer_a"] if r["layer_a"] == r["layer_b"] else f"{r['layer_a']}->{r['layer_b']}",
                      **{m: (r[m].get(metric) if m in r else None) for m in STITCH_METHODS}})
    return table


def format_table(rows: list[dict]) -> str:
    """The stitching table as aligned text."""
    lines = [f"{'layer':<22}" + "".join(f"{m:>13}" for m in STITCH_METHODS)]
    for r in rows:
        if r["layer"].endswith("alone"):
            val = next(v for v in r.values() if isinstance(v, float))
            lines.append(f"{r['layer']:<22}{val:13.3f}")
        else:
            lines.append(f"{r['layer']:<22}" + "".join(f"{'-':>13}" if r[m] is None else f"{r[m]:13.3f}"
                                                      for m in STITCH_METHODS))
    return "\n".join(lines)


def write_stitch(out: Path | None, name: str, outcomes: Sequence[Outcome], metric: str,
                 settings: dict) -> list[dict]:
    """The analysis's table (CSV), figure, JSON and all stitches in one safetensors, from its jobs; the table
    (nothing written for `out` None)."""
    baseline = outcomes[0].results["baseline"]
    rows = [o.results["row"] for o in outcomes]
    table = stitch_table(baseline, rows, metric)
    if out is None:
        return table
    write_csv(["layer", *STITCH_METHODS], table, out / f"{name}.csv")
    tensors = {}
    for o in outcomes:
        part, _ = load_tensors(out / o.files[0], "cnnscope-stitches-1", "stitches")
        tensors.update({f"{o.job.layer_a}|{o.job.layer_b}|{k}": v for k, v in part.items()})
    save_tensors(tensors, out / f"{name}_stitches.safetensors", "cnnscope-stitches-1", settings=json.dumps(settings))
    plot_stitch({"baseline": baseline}, table, metric, out / f"{name}.png", settings)
    write_json({"settings": settings, "metric": metric, "baseline": baseline, "rows": rows, "table": table,
                "files": [f"{name}.csv", f"{name}.png", f"{name}_stitches.safetensors"]}, out / f"{name}.json")
    return table


# ------------------------------------------------------------------------------------------------- CKA
@dataclass
class CkaResult(Result):
    """Linear CKA between every layer of A (rows) and of B (columns) on `count` images."""

    layers_a: list[str]
    layers_b: list[str]
    cka: list[list[float]]
    count: int


@dataclass(frozen=True)
class CkaJob(Job):
    """Linear CKA (Kornblith et al. 2019), biased or debiased, between two models' layers."""

    key: str
    model: ModelSpec
    other: ModelSpec
    layers_a: tuple[str, ...]
    layers_b: tuple[str, ...]
    images: str | None = None
    limit: int = 50
    debiased: bool = False
    seed: int = 0
    kind = "cka"



    def models(self) -> tuple[ModelSpec, ...]:
        return (self.model, self.other)

    def compute(self, a: Model, b: Model) -> CkaResult:
        images, _ = image_store(a, self.images, self.limit, self.seed)
        if len(images) < 4:
            raise CnnscopeError("CKA needs at least 4 images")
        check_cka_fits(a, b, self.layers_a, self.layers_b, len(images))
        # a layer's N x N Gram matrix is all CKA needs: its features are dropped as soon as it is made (all
        # layers' features of 1000 pictures were ~6 GB for two Lite0s)
        ka = {n: example_gram(StreamedFeatures.at(a, n, images)[:]) for n in self.layers_a}
        kb = {n: example_gram(StreamedFeatures.at(b, n, images)[:]) for n in self.layers_b}
        matrix = [[cka_of_grams(ka[x], kb[y], self.debiased) for y in self.layers_b] for x in self.layers_a]
        return CkaResult(list(self.layers_a), list(self.layers_b), matrix, len(images))

    def write(self, out: Path, result: CkaResult) -> list[str]:
        kind = "debiased" if self.debiased else "biased"
        cka_heatmap(result.cka, result.layers_a, result.layers_b,
                    f"linear CKA ({kind}), {result.count} images: {self.model.name} (rows) vs {self.other.name}",
                    out / f"{self.key}.png")
        return [f"{self.key}.png"]
