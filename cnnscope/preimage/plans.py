"""The pre-image verbs' jobs, planned in one place: the CLI (`runs`, `cli.style`), the Python API, the report
and the demo build their InvertJob, MaximizeJob, CaricatureJob, AccentuateJob, TextureJob and StyleJob here and
nowhere else, so a job's key and settings cannot differ between the doors.

What several layers mean is decided here too: ``invert`` at ``stage2,stage4`` is one inversion per layer (the
seed's inversion-across-depth figure), in the CLI and in the API alike; the joint code of several layers (one
picture whose features match at all of them, M&V's objective summed over layers) is ``joint=True`` /
``--joint``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..images import source_stem
from ..jobs import spec_of
from ..models import Model, ModelSpec
from ..store import slug
from ..targets import Target
from .jobs import AccentuateJob, CaricatureJob, InvertJob, MaximizeJob, StyleJob, TextureJob
from .recipes import Recipe
from .solver import SolverConfig
from .tasks import Prior, auto_jitter, settings_for


@dataclass(frozen=True)
class Planned:
    """A job and how a figure captions it."""

    job: object
    title: str


PRIOR_VARIANTS = {"noprior": ("no prior", Prior.none()), "tv1": ("TV β=1", Prior(beta=1.0)),
                  "tv2": ("TV β=2", Prior(beta=2.0))}


def invert_job(model: Model, key: str, image, layers: Sequence[str], size: int, *, recipe: Recipe | str | None,
               cfg: SolverConfig | None, prior: Prior | None, data_weight: float = 20.0, restarts: int = 1,
               window=None, judge: bool = True, spec: ModelSpec | None = None) -> InvertJob:
    """The one place an InvertJob is made: unset settings resolved from the recipe, M&V's jitter for its layers."""
    rec, ucfg, uprior = settings_for("invert", recipe, config=cfg, prior=prior,
                                     auto=auto_jitter(model, list(layers), size), handcrafted=model.profile.handcrafted)
    return InvertJob(key, spec or spec_of(model), image, tuple(layers), size, rec, ucfg, uprior, data_weight, restarts,
                     window, judge=judge)


def maximize_job(model: Model, key: str, layer: str, targets: Sequence[Target], size: int, *,
                 recipe: Recipe | str | None, cfg: SolverConfig | None, prior: Prior | None, data_weight: float = 20.0,
                 batch: int = 1, diversity: float = 0.0, diversity_layer: str | None = None,
                 judge: bool = True, spec: ModelSpec | None = None) -> MaximizeJob:
    """The one place a MaximizeJob is made (unset settings resolved from the recipe)."""
    rec, ucfg, uprior = settings_for("maximize", recipe, config=cfg, prior=prior, auto=4)
    return MaximizeJob(key, spec or spec_of(model), layer, tuple(targets), size, rec, ucfg, uprior, data_weight, batch,
                       diversity, diversity_layer, judge=judge)


def plan_invert(models: Sequence[Model], image, layers_of, *, size: int | None, recipe: Recipe | str | None,
                cfg: SolverConfig | None, prior: Prior | None, data_weight: float, restarts: int = 1, window=None,
                compare_priors: bool = False, joint: bool = False) -> list[Planned]:
    """One InvertJob per model x layer (x prior variant), or per model for the `joint` code of all its layers.

    `image` is what the job records (a path or ``sample:NAME``, or an in-memory tensor); `layers_of(model)`
    gives a model's layers (already expanded and checked)."""
    variants = [(name, *PRIOR_VARIANTS[name]) for name in PRIOR_VARIANTS] if compare_priors else [("", "", prior)]
    planned = []
    for model in models:
        layers = list(layers_of(model))
        s = size or model.input_size
        groups = [tuple(layers)] if joint else [(layer,) for layer in layers]
        for group in groups:
            for vname, caption, vprior in variants:
                key = slug(f"invert_{model.name}_{source_stem(image)}_{'+'.join(group)}"
                           + (f"_{vname}" if vname else ""))
                title = "+".join(group)
                title = f"{model.name}\n{title}" if len(models) > 1 else title
                planned.append(Planned(invert_job(model, key, image, group, s, recipe=recipe, cfg=cfg, prior=vprior,
                                                  data_weight=data_weight, restarts=restarts, window=window),
                                       title + (f" ({caption})" if caption else "")))
    return planned


def plan_maximize(models: Sequence[Model], layers_of, targets_for, *, size: int | None,
                  recipe: Recipe | str | None, cfg: SolverConfig | None, prior: Prior | None, data_weight: float,
                  chunk: int = 8, batch: int = 1, diversity: float = 0.0,
                  diversity_layer: str | None = None) -> list[Planned]:
    """One MaximizeJob per `chunk` targets of each model's layer (solved together), `batch` pictures each."""
    planned = []
    for model in models:
        s = size or model.input_size
        for layer in layers_of(model):
            targets = targets_for(model, layer)
            for start in range(0, len(targets), chunk):
                part = tuple(targets[start:start + chunk])
                labels = [t.label() for t in part]
                key = slug(f"maximize_{model.name}_{layer}_{labels[0]}" + (f"-{labels[-1]}" if len(part) > 1 else ""))
                planned.append(Planned(maximize_job(model, key, layer, part, s, recipe=recipe, cfg=cfg, prior=prior,
                                                    data_weight=data_weight, batch=batch, diversity=diversity,
                                                    diversity_layer=diversity_layer),
                                       f"{model.name} {layer}" if len(models) > 1 else layer))
    return planned


def plan_caricature(models: Sequence[Model], image, layers_of, *, size: int | None, recipe: Recipe | str | None,
                    cfg: SolverConfig | None, prior: Prior | None, data_weight: float,
                    cosine_power: float = 0.0) -> list[Planned]:
    """One CaricatureJob per model x layer."""
    planned = []
    for model in models:
        s = size or model.input_size
        for layer in layers_of(model):
            key = slug(f"caricature_{model.name}_{source_stem(image)}_{layer}")
            rec, ucfg, uprior = settings_for("caricature", recipe, config=cfg, prior=prior,
                                             auto=auto_jitter(model, [layer], s), handcrafted=model.profile.handcrafted)
            planned.append(Planned(CaricatureJob(key, spec_of(model), image, layer, s, rec, ucfg, uprior,
                                                 data_weight, cosine_power),
                                   f"{model.name} {layer}" if len(models) > 1 else layer))
    return planned


def plan_accentuate(model: Model, image, layer: str, targets: Sequence[Target], *, size: int | None,
                    recipe: Recipe | str | None, cfg: SolverConfig | None, prior: Prior | None, data_weight: float,
                    anchor_layer: str | None, anchor_weight: float) -> list[Planned]:
    """One AccentuateJob: the image pushed towards each target, anchored below."""
    s = size or model.input_size
    labels = [t.label() for t in targets]
    rec, ucfg, uprior = settings_for("accentuate", recipe, config=cfg, prior=prior, auto=auto_jitter(model, [layer], s))
    key = slug(f"accentuate_{model.name}_{source_stem(image)}_{layer}_{labels[0]}"
               + (f"-{labels[-1]}" if len(labels) > 1 else ""))
    return [Planned(AccentuateJob(key, spec_of(model), image, layer, tuple(targets), s, rec, ucfg, uprior,
                                  data_weight, anchor_layer, anchor_weight), layer)]


def plan_texture(model: Model, image, *, size: int | None, layers: Sequence[str] | None, cfg: SolverConfig,
                 prior: Prior, temperatures: Sequence[float | None] = (None,), scales: int = 1,
                 style_size: int | None = None, param: str = "fourier", key: str | None = None) -> list[TextureJob]:
    """One TextureJob per Gram temperature (None: plain Gram); keys ``texture_MODEL_IMAGE`` (``_i`` when several)."""
    stem = key or slug(f"texture_{model.name}_{source_stem(image)}")
    return [TextureJob(stem if len(temperatures) == 1 else f"{stem}_{i}", spec_of(model), image,
                       size or model.input_size, None if layers is None else tuple(layers), cfg, prior, t, scales,
                       style_size, param) for i, t in enumerate(temperatures)]


def plan_style(model: Model, content, style, *, size: int | None, content_layer: str | None,
               style_layers: Sequence[str] | None, cfg: SolverConfig, prior: Prior, style_weight: float = 10.0,
               content_weight: float = 1.0, init: str = "content", temperature: float | None = None,
               key: str | None = None) -> StyleJob:
    """Style transfer: `content`'s layout with `style`'s Gram statistics; key ``style_MODEL_CONTENT_STYLE``."""
    stem = key or slug(f"style_{model.name}_{source_stem(content)}_{source_stem(style)}")
    return StyleJob(stem, spec_of(model), content, style, size or model.input_size, content_layer,
                    None if style_layers is None else tuple(style_layers), cfg, prior, style_weight, content_weight,
                    init, temperature)
