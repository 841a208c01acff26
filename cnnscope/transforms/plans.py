"""The transformation-analysis verbs' jobs, planned in one place for the CLI, the Python API, the report, the
demo and `reproduce`: one EquivarianceJob per layer and one StitchJob per layer pair, filed under one folder per
analysis (``equivariance_MODEL_TRANSFORM/LAYER``, ``stitch_A_B/LA-LB``), one FeatureEquivarianceJob for a
hand-crafted representation, and one CkaJob per pair of models."""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import CnnscopeError
from ..jobs import spec_of
from ..layers import get_layer
from ..models import Model, ModelSpec
from ..store import slug
from .equivariance import NEIGHBOURHOODS, require_grid
from .handcrafted import FeatureEquivarianceJob
from .jobs import CkaJob, EquivarianceJob, StitchJob
from .transform import Transform


def equivariance_name(model: Model, transform: str) -> str:
    return slug(f"equivariance_{model.name}_{Transform.parse(transform).label}")


def plan_equivariance(model: Model, layers: Sequence[str], transform: str, *, images: str | None = None,
                      limit: int | None = None, fit: float = 0.8, epochs: int = 0, ridge: float | None = None,
                      crops: int = 1, seed: int = 0, name: str | None = None, spec: ModelSpec | None = None,
                      neighbourhoods: Sequence[int] = NEIGHBOURHOODS) -> list[EquivarianceJob]:
    """One job per layer, filed under `name` (default ``equivariance_MODEL_TRANSFORM``); M_g's support chosen
    among `neighbourhoods` by the task."""
    name = name or equivariance_name(model, transform)
    spec = spec or spec_of(model)
    for layer in layers:  # before any job runs: a run must not fail at its last layer
        require_grid(model, layer)
    return [EquivarianceJob(f"{name}/{slug(layer)}", spec, transform, layer, images, limit, fit, epochs, ridge, crops,
                            seed, tuple(neighbourhoods)) for layer in dict.fromkeys(layers)]


def stitch_name(a: Model, b: Model) -> str:
    return slug(f"stitch_{a.name}_{b.name}")


def plan_stitch(a: Model, b: Model, pairs: Sequence[tuple[str, str]], *, images: str | None = None,
                limit: int | None = None, fit: float = 0.8, epochs: int = 8, resample: bool = True, kernel: int = 1,
                batchnorm: bool = False, seed: int = 0, name: str | None = None, spec_a: ModelSpec | None = None,
                spec_b: ModelSpec | None = None, by_layer: bool = False) -> list[StitchJob]:
    """One job per (layer of A, layer of B), filed under `name` (default ``stitch_A_B``) as ``LA-LB`` (or ``LA``
    alone with `by_layer`, the report's one-layer-per-page layout)."""
    name = name or stitch_name(a, b)
    spec_a, spec_b = spec_a or spec_of(a), spec_b or spec_of(b)
    for la, lb in pairs:  # before any job runs
        if not (get_layer(a, la).has_grid and get_layer(b, lb).has_grid):
            raise CnnscopeError(f"stitching needs convolutional layers (C, H, W maps) on both sides, not {la}:{lb} "
                                f"({a.name} {get_layer(a, la).shape}, {b.name} {get_layer(b, lb).shape})")
    return [StitchJob(f"{name}/{slug(la)}" if by_layer else f"{name}/{slug(la)}-{slug(lb)}", spec_a, spec_b, la, lb,
                      images, limit, fit, epochs, resample, kernel, batchnorm, seed) for la, lb in pairs]


def plan_cka(a: Model, b: Model, layers_a: Sequence[str], layers_b: Sequence[str], *, images: str | None = None,
             limit: int = 50, debiased: bool = False, seed: int = 0, key: str | None = None) -> CkaJob:
    """Linear CKA between every layer of A's row and every layer of B's."""
    return CkaJob(key or slug(f"cka_{a.name}_{b.name}"), spec_of(a), spec_of(b), tuple(layers_a), tuple(layers_b),
                  images, limit, debiased, seed)


def plan_feature_equivariance(model: Model | ModelSpec, transform: str, *, images: str | None = None,
                              limit: int | None = None, fit: float = 0.8, ridge: float = 1e-4,
                              neighbourhoods: Sequence[int] = (1, 3), seed: int = 0,
                              key: str | None = None) -> FeatureEquivarianceJob:
    """M_g for a hand-crafted representation's one layer (HOG, DSIFT), each support in `neighbourhoods` reported;
    key ``equivariance_MODEL_TRANSFORM``."""
    spec = model if isinstance(model, ModelSpec) else spec_of(model)
    key = key or slug(f"equivariance_{spec.name}_{Transform.parse(transform).label}")
    return FeatureEquivarianceJob(key, spec, transform, images, limit, fit, ridge, tuple(neighbourhoods), seed)
