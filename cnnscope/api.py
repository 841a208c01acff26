"""One call per method, mirroring the CLI verbs: ``cnnscope.invert(model, image, layer)`` and so on.

Every call takes the model as a zoo name (``"efficientnet_lite0"``), a :class:`cnnscope.Model`, or any
``torch.nn.Module`` (analysed as a frozen copy: your network is never changed), and images as a path,
``sample:NAME``, a PIL image, a numpy HxWxC array or a tensor [3,H,W]. Each call builds the verb's job and
computes it in this process exactly as the CLI would (same seed, same bytes), and returns the job's typed
result: it shows itself in a notebook, gives ``images`` (PIL) and ``to_json()``, and ``save(folder)`` writes
what the CLI writes for that job. Bad arguments raise :class:`cnnscope.CnnscopeError` (a ``ValueError``)
with the CLI's one-line message.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from . import checks
from .backprop.jobs import (
    COLUMNS,
    SaliencyResult,
    SanityResult,
    SelectivityResult,
)
from .backprop.methods import METHODS
from .backprop.plans import default_rows, plan_saliency, plan_sanity, plan_selectivity
from .data import image_sources, list_folder
from .device import resolve as resolve_device
from .errors import CnnscopeError, unknown
from .features.jobs import HogResult
from .features.plans import plan_hog
from .images import load_image
from .jobs import Job, Result, compute_job, model_for, provide
from .layers import resolve
from .models import DEFAULT_MODEL, Model, ModelSpec, load_model
from .preimage.jobs import (
    ActivationResult,
    CaricatureResult,
    InvertResult,
    StyleResult,
)
from .preimage.plans import (
    Planned,
    plan_accentuate,
    plan_caricature,
    plan_invert,
    plan_maximize,
    plan_style,
    plan_texture,
)
from .preimage.runs import channel_targets, expand_layers, parse_class
from .preimage.solver import check_memory
from .preimage.tasks import settings_for
from .report.atlas import report_settings
from .report.findings import DEFAULT, FINDINGS
from .report.findings import reproduce as reproduce_findings
from .report.site import build_report
from .targets import Target
from .transforms.equivariance import NEIGHBOURHOODS
from .transforms.jobs import CkaResult, EquivarianceResult, StitchResult
from .transforms.plans import plan_cka, plan_equivariance, plan_stitch
from .transforms.transform import Transform


# ------------------------------------------------------------------------------------------------ inputs
def as_model(model, device: str | None = None) -> Model:
    """A zoo name, a `Model` or an ``nn.Module`` as a loaded `Model` the engine knows (loaded once per name).

    Raises
    ------
    CnnscopeError
        An unknown name, or something that is not a model.
    """
    if isinstance(model, Model):
        if device is not None and torch.device(resolve_device(device)) != model.device:
            raise CnnscopeError(f"model {model.name} is on {model.device}, not {device}: load it with "
                                f"load_model(..., device={device!r})")
        loaded = model
    elif isinstance(model, (str, os.PathLike)):
        loaded = model_for(ModelSpec(str(model), device=str(resolve_device(device or "auto"))))
    elif isinstance(model, nn.Module):
        loaded = load_model(model, device=device or "auto")
    else:
        raise CnnscopeError(f"model must be a zoo name, a cnnscope Model or a torch nn.Module, "
                            f"not {type(model).__name__}")
    provide(loaded.job_spec(), loaded)
    return loaded


def _image(image):
    """(what the job records, the picture): a path or sample name stays text, anything else the tensor."""
    picture = load_image(image)
    return (str(image) if isinstance(image, (str, os.PathLike)) else picture), picture


def _layers(model: Model, layer: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(layer, str):
        return tuple(expand_layers(model, layer))
    if not isinstance(layer, Sequence) or not all(isinstance(n, str) for n in layer):
        raise CnnscopeError(f"layer must be a name or a list of names, not {type(layer).__name__}")
    return tuple(expand_layers(model, ",".join(layer)))


def _size(size, model: Model) -> int:
    return model.input_size if size is None else checks.integer(size, "size", 8)


def _solver(task: str, model: Model, layers: Sequence[str], size: int, recipe, iters, seed: int, n: int):
    """(recipe, solver settings, prior) as the CLI reads them from its options (the planner resolves the rest per
    job, for both doors), checked against the memory budget."""
    rec, cfg, _ = settings_for(task, recipe, {"iters": checks.optional_integer(iters, "iters")},
                               seed=checks.integer(seed, "seed", 0), handcrafted=model.profile.handcrafted)
    check_memory(model, list(layers), n, size, cfg.max_memory_gb)
    return rec, cfg, None


def _run(job: Job) -> Result:
    return compute_job(job)[0]


def _results(planned: Sequence[Planned]):
    """The planned jobs' results: one result for one job, else a list in plan order."""
    results = [_run(p.job) for p in planned]
    return results[0] if len(results) == 1 else results


def _class_target(model: Model, target) -> int:
    if model.profile.logits is None:
        raise CnnscopeError(f"{model.name} has no classes")
    if isinstance(target, bool) or not isinstance(target, (int, str)):
        raise CnnscopeError(f"a class is an index or a name, not {type(target).__name__}")
    return parse_class(model, str(target))


# -------------------------------------------------------------------------------------------- pre-images
def invert(model, image, layer: str | Sequence[str], *, size: int | None = None, recipe: str | None = None,
           iters: int | None = None, restarts: int = 1, data_weight: float = 20.0, joint: bool = False, seed: int = 0,
           device: str | None = None) -> InvertResult | list[InvertResult]:
    """Reconstruct `image` from its code at `layer` (Mahendran & Vedaldi): ``cnnscope invert``.

    Parameters
    ----------
    model : str, Model or nn.Module
    image : path, ``sample:NAME``, PIL image, numpy array or tensor
    layer : str or list of str
        A layer name, several (one inversion each, as ``cnnscope invert --layer a,b``), or ``"stages"``.
    size : int, optional
        Picture size in px (default the model's input size).
    recipe : {"mv", "lucid", "maco"}, optional
        Default: the measured best for inversion.
    iters : int, optional
        Solver steps (default the recipe's for the task: `lucid` 256, 192 for `maximize`; `mv` 300).
    restarts : int
        Pictures from different noise (reconstruction ambiguity).
    data_weight : float
        Weight C of the data term.
    joint : bool
        Several layers: one picture whose code matches at all of them (``--joint``) instead of one per layer.
    seed : int
    device : str, optional
        "auto", "cpu", "cuda", … for a model given by name or module.

    Returns
    -------
    InvertResult or list of InvertResult
        One per layer (one result for one layer or a joint inversion): ``images`` / ``tensors`` the pictures;
        ``normalised_error`` ||Φ(x*) − Φ0||² / ||Φ0||² per picture; ``naturalness``; ``judge_top5_overlap``
        (Lite models); ``energy``, ``terms``, ``iterations``.
    """
    model = as_model(model, device)
    source, _ = _image(image)
    layers = _layers(model, layer)
    s = _size(size, model)
    restarts = checks.integer(restarts, "restarts")
    rec, cfg, prior = _solver("invert", model, layers, s, recipe, iters, seed, restarts)
    planned = plan_invert([model], source, lambda m: layers, size=s, recipe=rec, cfg=cfg, prior=prior,
                          data_weight=data_weight, restarts=restarts, joint=bool(joint))
    return _results(planned)


def _unit_targets(model: Model, layer: str, channels, classes, where: str, y=None, x=None) -> list[Target]:
    if classes is not None:
        names = [classes] if isinstance(classes, (int, str)) else list(classes)
        return [Target("class", _class_target(model, c)) for c in names]
    return channel_targets(model, layer, [channels] if isinstance(channels, int) else list(channels), where, y, x)


def maximize(model, layer: str | None = None, channels: int | Sequence[int] = 0, *,
             classes: int | str | Sequence[int | str] | None = None, where: str = "neuron", y: int | None = None,
             x: int | None = None, batch: int = 1, diversity: float = 0.0, diversity_layer: str | None = None,
             size: int | None = None, recipe: str | None = None, iters: int | None = None, data_weight: float = 20.0,
             chunk: int = 8, seed: int = 0, device: str | None = None) -> ActivationResult | list[ActivationResult]:
    """Pictures that excite units (activation maximisation): ``cnnscope maximize``.

    Parameters
    ----------
    model : str, Model or nn.Module
    layer : str, optional
        The units' layer (default the logits when `classes` is given).
    channels : int or list of int
        Channels of `layer`, solved together `chunk` at a time (``--chunk``).
    classes : int, str or list, optional
        Class indices or names instead of channels.
    where : {"neuron", "channel"}
        The centre neuron of each channel, or the channel's spatial mean.
    y, x : int, optional
        The neuron's row and column in feature cells (default the centre; ``--y``, ``--x``).
    batch : int
        Pictures per unit.
    diversity : float
        With ``batch >= 2``: push a unit's pictures apart (Gram diversity, weight relative to the data term;
        try 0.5; ``--diversity``).
    diversity_layer : str, optional
        Where the diversity is measured (default: the maximised layer, or a mid-depth one).
    size, recipe, iters, data_weight, seed, device
        As for `invert` (default recipe: the measured best for visualisation).
    chunk : int
        Units optimised together in one job (default 8, as the CLI).

    Returns
    -------
    ActivationResult or list of ActivationResult
        One per chunk of units (one result when there is one chunk). Per picture ``start_activation`` and
        ``final_activation`` of its unit, ``reference_scale`` (the unit's largest response on natural images),
        ``activation_ratio`` (final / reference), ``naturalness``, ``judge_rank`` (class units: the class's rank
        for the other Lite models).
    """
    model = as_model(model, device)
    if layer is None:
        if classes is None or model.profile.logits is None:
            raise CnnscopeError("give a layer (or classes, for a model with a classifier)")
        layer = model.profile.logits
    layer = _layers(model, layer)[0]
    targets = tuple(_unit_targets(model, layer, channels, classes, where, checks.optional_integer(y, "y", 0),
                                  checks.optional_integer(x, "x", 0)))
    s = _size(size, model)
    batch = checks.integer(batch, "batch")
    chunk = checks.integer(chunk, "chunk")
    diversity = checks.number(diversity, "diversity", 0)
    if diversity and batch < 2:
        raise CnnscopeError("diversity needs batch 2 or more (pictures per unit to tell apart)")
    if diversity_layer is not None:
        resolve(model, diversity_layer)
    rec, cfg, prior = _solver("maximize", model, [layer], s, recipe, iters, seed, min(chunk, len(targets)) * batch)
    planned = plan_maximize([model], lambda m: [layer], lambda m, lay: list(targets), size=s, recipe=rec, cfg=cfg,
                            prior=prior, data_weight=data_weight, chunk=chunk, batch=batch, diversity=diversity,
                            diversity_layer=diversity_layer)
    return _results(planned)


def caricature(model, image, layer: str, *, cosine: float = 0.0, size: int | None = None, recipe: str | None = None,
               iters: int | None = None, data_weight: float = 20.0, seed: int = 0,
               device: str | None = None) -> CaricatureResult:
    """Start at `image` and emphasise what `layer` sees in it (M&V IJCV'16): ``cnnscope caricature``.
    `cosine` P weights the inner product by cos^P (rewards the pattern, not the magnitude; ``--cosine``).

    Returns
    -------
    CaricatureResult
        The picture; ``relative_response`` <Φ(x0), Φ(x)> / ||Φ(x0)||² (1 at the input); ``naturalness``.
    """
    model = as_model(model, device)
    source, _ = _image(image)
    layer = _layers(model, layer)[0]
    s = _size(size, model)
    rec, cfg, prior = _solver("caricature", model, [layer], s, recipe, iters, seed, 1)
    planned = plan_caricature([model], source, lambda m: [layer], size=s, recipe=rec, cfg=cfg, prior=prior,
                              data_weight=data_weight, cosine_power=checks.number(cosine, "cosine", 0))
    return _results(planned)


def accentuate(model, image, layer: str | None = None, channels: int | Sequence[int] = 0, *,
               classes: int | str | Sequence[int | str] | None = None, where: str = "channel",
               anchor_layer: str | None = None, anchor_weight: float = 1.0, size: int | None = None,
               recipe: str | None = None, iters: int | None = None, data_weight: float = 20.0, seed: int = 0,
               device: str | None = None) -> ActivationResult:
    """Feature accentuation (Hamblin et al. 2024): push units up from `image`, staying close to its code at
    `anchor_layer`: ``cnnscope accentuate``.

    Parameters
    ----------
    layer : str, optional
        The units' layer (default the logits when `classes` is given).
    channels, classes, where
        As for `maximize` (default: the channel's spatial mean).
    anchor_layer : str, optional
        Where the picture must stay close to the image's code (default: two rows below `layer`).
    anchor_weight : float
        Weight of staying close, relative to the data term.

    Returns
    -------
    ActivationResult
        One picture per unit; ``start_activation`` (on the image) and ``final_activation``; ``anchor_layer``.
    """
    model = as_model(model, device)
    source, _ = _image(image)
    if layer is None:
        if classes is None or model.profile.logits is None:
            raise CnnscopeError("give a layer (or classes, for a model with a classifier)")
        layer = model.profile.logits
    layer = _layers(model, layer)[0]
    if anchor_layer is not None:
        anchor_layer = _layers(model, anchor_layer)[0]
    targets = _unit_targets(model, layer, channels, classes, where)
    s = _size(size, model)
    rec, cfg, prior = _solver("accentuate", model, [layer], s, recipe, iters, seed, len(targets))
    return _run(plan_accentuate(model, source, layer, targets, size=s, recipe=rec, cfg=cfg, prior=prior,
                                data_weight=data_weight, anchor_layer=anchor_layer,
                                anchor_weight=anchor_weight)[0].job)


def _style_layers(model: Model, layers) -> tuple[str, ...] | None:
    return None if layers is None else _layers(model, layers)


def texture(model, image, *, size: int | None = None, layers: Sequence[str] | None = None,
            iters: int | None = None, seed: int = 0, device: str | None = None) -> StyleResult:
    """Texture synthesis (Gatys et al.): a picture with `image`'s Gram statistics: ``cnnscope texture``.

    Returns
    -------
    StyleResult
        The texture; ``gram_before`` / ``gram_after`` per layer and their totals.
    """
    model = as_model(model, device)
    source, _ = _image(image)
    s = _size(size, model)
    chosen = _style_layers(model, layers)
    _, cfg, prior = settings_for("texture", None, {"iters": checks.optional_integer(iters, "iters")},
                                 seed=checks.integer(seed, "seed", 0))
    return _run(plan_texture(model, source, size=s, layers=chosen, cfg=cfg, prior=prior)[0])


def stylize(model, content, style, *, size: int | None = None, style_layers: Sequence[str] | None = None,
            content_layer: str | None = None, style_weight: float = 10.0, iters: int | None = None, seed: int = 0,
            device: str | None = None) -> StyleResult:
    """Style transfer: `content`'s layout with `style`'s Gram statistics: ``cnnscope style``.

    Returns
    -------
    StyleResult
        The stylised picture; ``gram_before`` / ``gram_after`` per layer and their totals.
    """
    model = as_model(model, device)
    c_source, _ = _image(content)
    s_source, _ = _image(style)
    if content_layer is not None:
        content_layer = _layers(model, content_layer)[0]
    s = _size(size, model)
    _, cfg, prior = settings_for("style", None, {"iters": checks.optional_integer(iters, "iters")},
                                 seed=checks.integer(seed, "seed", 0))
    return _run(plan_style(model, c_source, s_source, size=s, content_layer=content_layer,
                           style_layers=_style_layers(model, style_layers), cfg=cfg, prior=prior,
                           style_weight=style_weight))


# ----------------------------------------------------------------------------------------------- backprop
def saliency(model, image, *, target: int | str | None = None, layer: str | None = None,
             channel: int | None = None, methods: str | Sequence[str] = COLUMNS, device: str | None = None
             ) -> SaliencyResult:
    """DeConvNet / SaliNet / DeSaliNet maps of `image` (the seed's comparison): ``cnnscope saliency``.

    Parameters
    ----------
    target : int or str, optional
        A class (index or name). Default: the seed's two rows (the deepest feature map's code, the top class).
    layer, channel : optional
        Start from `layer`'s code (``channel`` None) or from its centre neuron of `channel` instead.
    methods : str or list of str
        Among "deconvnet", "salinet", "desalinet" (default all three).

    Returns
    -------
    SaliencyResult
        ``maps[(target label, method)]`` raw signed [3,H,W] maps; ``rows`` the targets with captions;
        ``images`` the image and the rendered maps.
    """
    model = as_model(model, device)
    source, picture = _image(image)
    names = [methods] if isinstance(methods, str) else list(methods)
    for m in names:
        if m not in METHODS:
            raise unknown("method", m, METHODS)
    if target is not None:
        rows = [Target("class", _class_target(model, target), layer=model.profile.logits)]
    elif layer is not None:
        resolve(model, layer)
        rows = [Target("features", layer=layer) if channel is None else Target("neuron", channel, layer=layer)]
    else:
        rows = default_rows(model)
    return _run(plan_saliency(model, [source], lambda s: rows, names)[0])


def selectivity(model, layer: str | None = None, *, images: str | None = None, limit: int = 20, neurons: int = 4,
                seed: int = 0, device: str | None = None) -> SelectivityResult:
    """Are backprop maps specific to the neuron they start from? (M&V ECCV'16): ``cnnscope selectivity``.

    Returns
    -------
    SelectivityResult
        ``correlations[method]``: mean correlation of maps from the max neuron vs random neurons, vs a random
        direction, and between random neurons (high = not neuron-selective); ``count`` images used.
    """
    model = as_model(model, device)
    job = plan_selectivity(model, layer, images, limit, neurons, seed)  # (the job checks its numbers)
    image_sources(images, limit)
    return _run(job)


def sanity(model, image, *, target: int | str | None = None, seed: int = 0, device: str | None = None
           ) -> SanityResult:
    """Cascading randomisation (Adebayo et al. 2018): ``cnnscope sanity``.

    Returns
    -------
    SanityResult
        ``blocks`` re-initialised from the top; ``spearman[method]`` the rank correlation of each step's map
        with the trained network's; ``target`` the class label.
    """
    model = as_model(model, device)
    source, picture = _image(image)
    klass = _class_target(model, target) if target is not None and model.profile.logits else None
    return _run(plan_sanity(model, source, picture, klass, seed))


# -------------------------------------------------------------------------------------------- transforms
def equivariance(model, layer: str, transform: str = "vflip", *, images: str | None = None,
                 limit: int | None = None, fit: float = 0.8, ridge: float | None = None, crops: int = 1,
                 epochs: int = 0, neighbourhood: Sequence[int] = NEIGHBOURHOODS, seed: int = 0,
                 device: str | None = None) -> EquivarianceResult:
    """Is Φ(gx) ≈ M_g Φ(x) at `layer`? (Lenc & Vedaldi): ``cnnscope equivariance`` for one layer.

    Parameters
    ----------
    transform : str
        "vflip", "hflip", "rot90", "scale:S", … (see `Transform.parse`).
    images : str, optional
        A folder (with labels.csv for top-1 error); default the bundled samples' crops.
    limit, fit, ridge, crops, epochs, seed
        As the CLI options of the same names.
    neighbourhood : sequence of int
        Candidate supports m of the m x m map M_g (``--neighbourhood``), chosen by the task with the ridge.

    Returns
    -------
    EquivarianceResult
        ``baseline`` (error without the transform, and with it uncompensated); ``row`` the errors with the
        transform compensated spatially, by a permutation and by the learned map, its held-out R², invariant
        channels; ``map`` the learned map's weights; ``metric`` top-1 error or disagreement.
    """
    model = as_model(model, device)
    Transform.parse(transform)
    if model.profile.logits is None:
        raise CnnscopeError(f"{model.name} has no classifier: the equivariance test judges maps by its output")
    layer = _layers(model, layer)[0]
    job = plan_equivariance(model, [layer], transform, images=images, limit=limit, fit=fit, epochs=epochs, ridge=ridge,
                            crops=crops, seed=seed, neighbourhoods=neighbourhood)[0]  # (it checks its numbers)
    if images is not None:
        image_sources(images)
    return _run(job)


def stitch(model_a, layer_a: str, model_b=None, layer_b: str | None = None, *, images: str | None = None,
           limit: int | None = None, fit: float = 0.8, epochs: int = 8, seed: int = 0,
           device: str | None = None) -> StitchResult:
    """Equivalence by stitching: A up to `layer_a`, a learned 1x1 map, B from `layer_b` (Lenc & Vedaldi).

    Parameters
    ----------
    model_a, model_b : str, Model or nn.Module
        B defaults to A (a stitch of a network into itself).
    layer_a, layer_b : str
        `layer_b` defaults to `layer_a`.

    Returns
    -------
    StitchResult
        ``baseline`` A's and B's own errors; ``row`` per stitch (naive, random, permutation, regression, task)
        the error of A's front + stitch + B's rest; ``stitches`` their weights.
    """
    a = as_model(model_a, device)
    b = a if model_b is None else as_model(model_b, device)
    la = _layers(a, layer_a)[0]
    lb = _layers(b, layer_b or la)[0]
    job = plan_stitch(a, b, [(la, lb)], images=images, limit=limit, fit=fit, epochs=epochs, seed=seed)[0]
    if images is not None:
        image_sources(images)
    return _run(job)


def cka(model_a, model_b=None, layers_a: str | Sequence[str] = "stages", layers_b: str | Sequence[str] | None = None,
        *, images: str | None = None, limit: int = 50, debiased: bool = False, seed: int = 0,
        device: str | None = None) -> CkaResult:
    """Linear CKA (Kornblith et al. 2019) between layers of two models (or one with itself): ``cnnscope cka``.

    Returns
    -------
    CkaResult
        ``cka[i][j]`` between ``layers_a[i]`` and ``layers_b[j]`` on ``count`` images.
    """
    a = as_model(model_a, device)
    b = a if model_b is None else as_model(model_b, device)
    la = _layers(a, layers_a)
    lb = _layers(b, layers_b if layers_b is not None else (layers_a if model_b is None else "stages"))
    job = plan_cka(a, b, la, lb, images=images, limit=limit, debiased=bool(debiased), seed=seed)
    if images is not None:
        image_sources(images)
    return _run(job)


# ------------------------------------------------------------------------------------------------ features
def hog(image, *, cell_size: int = 8, orientations: int = 9, bilinear: bool = False, size: int | None = None
        ) -> HogResult:
    """HOG of `image` drawn as glyphs (Dalal & Triggs; VLFeat's variant): ``cnnscope hog``.

    Returns
    -------
    HogResult
        ``features_shape`` [31, H/cell, W/cell]; ``image_shape``; ``images`` the glyph picture.
    """
    source, _ = _image(image)
    return _run(plan_hog(source, cell_size=cell_size, orientations=orientations, bilinear=bool(bilinear), size=size))


# -------------------------------------------------------------------------------------------- whole runs
@dataclass
class FindingsResult(Result):
    """What ``cnnscope reproduce`` wrote: one record per finding (``id``, ``claim``, ``verdict``, numbers)
    and the folder holding findings.json, findings.html and the figures."""

    findings: list[dict]
    folder: str


@dataclass
class ReportResult(Result):
    """What ``cnnscope report`` wrote: the site's ``index`` page, the ``layers`` covered, jobs computed."""

    index: str
    layers: list[str]
    computed: int
    reused: int


def reproduce(model=DEFAULT_MODEL, out: str | Path = "cnnscope-findings", *, images: str | None = None,
              findings: Sequence[str] | None = None, quick: bool = False, seed: int = 0, workers: int = 1,
              device: str | None = None) -> FindingsResult:
    """The seed talk's findings, each measured with a verdict: ``cnnscope reproduce`` (resumable in `out`).

    Parameters
    ----------
    findings : list of str, optional
        Finding ids (default all but hflip and rot90); see ``cnnscope.report.findings.FINDINGS``.
    quick : bool
        Few images and iterations (minutes, for a first look).

    Returns
    -------
    FindingsResult
        ``findings``: per finding its ``id``, ``claim``, ``verdict`` and measured numbers (as findings.json);
        ``folder``.
    """
    ids = DEFAULT if findings is None else tuple(findings)
    for i in ids:
        if i not in FINDINGS:
            raise unknown("finding", i, FINDINGS)
    if images is not None:
        image_sources(images)
        list_folder(images, None)
    loaded = as_model(model, device)
    run, records = reproduce_findings(Path(out), loaded, images, quick, checks.integer(seed, "seed", 0), ids,
                                      workers=checks.integer(workers, "workers"))
    result = FindingsResult(records, str(out))
    result.interrupted = run.interrupted
    return result


def report(model=DEFAULT_MODEL, out: str | Path = "cnnscope-report", *, layers: str | Sequence[str] | None = None,
           quick: bool = False, channels: int | None = None, iters: int | None = None, size: int | None = None,
           images: str | None = None, examples: int | None = None, patch_images: int | None = None,
           equivariance: str | None = None, stitch_with: str | None = None, seed: int = 0, workers: int = 1,
           atlas_batch: int = 1, device: str | None = None) -> ReportResult:
    """A browsable HTML site of a whole model (atlas, inversions, backprop, transforms): ``cnnscope report``.

    The model must be loadable by name in worker processes when `workers` > 1 (a zoo name or
    ``file.py:factory``).

    Parameters
    ----------
    layers : str or list of str, optional
        Layers (or ``"stages"``; default the model's stages, two with `quick`).
    quick : bool
        Two layers, 4 channels, 40 iterations, 96 px (each overridden by its own keyword).
    channels : int, optional
        The first K channels of each layer in the atlas (default all).
    iters, size : int, optional
        Pre-image iterations and size (default: 200 for the inversions and the recipe's for the atlas; the
        model's input size).
    images : str, optional
        A folder of pictures for the patches and examples (default the bundled samples).
    examples, patch_images : int, optional
        Pictures inverted and back-propagated per layer (default 4); searched for top patches (default 100).
    equivariance, stitch_with : str, optional
        Also the equivariance analysis for this transform (e.g. ``"vflip"``); also stitch into this model.

    Returns
    -------
    ReportResult
        ``index`` the site's front page, ``layers`` covered, jobs ``computed`` and ``reused``.
    """
    loaded = as_model(model, device)
    settings = report_settings(
        loaded, loaded.job_spec().name, _layers(loaded, layers) if layers is not None else None, quick=bool(quick),
        channels=checks.optional_integer(channels, "channels"), iters=checks.optional_integer(iters, "iters"),
        size=checks.optional_integer(size, "size", 8), seed=checks.integer(seed, "seed", 0), images=images,
        examples=checks.optional_integer(examples, "examples"),
        patch_images=checks.optional_integer(patch_images, "patch_images"), equivariance=equivariance,
        stitch_with=stitch_with, atlas_batch=checks.integer(atlas_batch, "atlas_batch"))
    _, run = build_report(Path(out), settings, loaded, workers=checks.integer(workers, "workers"), progress=True)
    result = ReportResult(str(Path(out) / "index.html"), list(settings.layers), run.computed, run.reused)
    result.interrupted = run.interrupted
    return result


__all__ = ["FindingsResult", "ReportResult", "accentuate", "as_model", "caricature", "cka", "equivariance", "hog",
           "invert", "maximize", "reproduce", "report", "saliency", "sanity", "selectivity", "stitch", "stylize",
           "texture"]
