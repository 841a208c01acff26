"""The pre-image tasks as jobs (see `cnnscope.jobs`): one model x layer x variant each.

Each job holds its *resolved* settings (recipe, solver settings and prior as the preset will use them), so
the record says exactly what made the picture, and the same command run again reuses it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..images import load_image, save_image
from ..jobs import Job, Result
from ..models import Model, ModelSpec
from ..targets import Target
from .quality import activation_ratio, class_ranks, judges_for, naturalness, topk_overlap
from .recipes import Recipe
from .solver import PreimageResult, SolverConfig
from .style import stylize, texture
from .tasks import (
    Prior,
    accentuate,
    ambiguity,
    caricature,
    caricature_gain,
    invert,
    maximize,
    reconstruction_error,
    sized_preprocess,
)

PICTURES = {"json": False}  # field metadata: kept out of the JSON record (the pictures are the PNGs)


def png_names(key: str, n: int) -> list[str]:
    """The PNG files of a job with n pictures: key.png, or key_0.png ... key_{n-1}.png."""
    return [f"{key}.png"] if n == 1 else [f"{key}_{i}.png" for i in range(n)]


def _solver_fields(r: PreimageResult) -> dict:
    """The solver's outcome without its timing (records must be byte-identical however they were run)."""
    return {"energy": r.energy, "terms": r.terms, "iterations": r.iterations}


@dataclass
class PictureResult(Result):
    """Pictures found by the solver, with what the solver reports about them.

    Attributes
    ----------
    tensors : Tensor
        [N,3,H,W] in [0,1] (not in the record: they are the PNGs; ``images`` gives them as PIL images).
    energy : list of float
        Final objective per picture.
    terms : dict
        Per objective term (by label), its final value per picture.
    iterations : int
        Steps taken.
    interrupted : bool
        Ctrl-C stopped the solver; the pictures are its best so far.
    notes : list of str
        What a reader must know: an all-zero code or a dead unit (nothing to show); not in the record when empty.
    """

    tensors: torch.Tensor = field(metadata=PICTURES)
    energy: list[float]
    terms: dict
    iterations: int
    interrupted: bool = False
    notes: list[str] = field(default_factory=list, metadata={"omit_empty": True})

    def pictures(self) -> list[tuple[torch.Tensor, str]]:
        return [(t, f"E {e:.4g}") for t, e in zip(self.tensors, self.energy)]


def _pictures(r: PreimageResult) -> dict:
    return {"tensors": r.images, **_solver_fields(r), "interrupted": r.interrupted, "notes": list(r.notes)}


class PictureJob(Job):
    """Base of the jobs whose output is pictures: PNGs named after the key."""

    def write(self, out: Path, result: PictureResult) -> list[str]:
        files = png_names(self.key, len(result.tensors))
        for image, name in zip(result.tensors, files):
            save_image(image, out / name)
        return files


# ---------------------------------------------------------------------------------------------- invert
@dataclass
class InvertResult(PictureResult):
    """An inversion. `normalised_error` is ||Phi(x*) - Phi0||^2 / ||Phi0||^2 per picture; `naturalness` the
    spectrum slope and colour statistics; `judge_top5_overlap` how many of the original's top-5 classes the
    other Lite models still see; `ambiguity` (restarts > 1) the pictures' mutual distances."""

    normalised_error: list[float] = field(default_factory=list)
    naturalness: list[dict] = field(default_factory=list)
    judge_top5_overlap: list[dict] | None = None
    ambiguity: dict | None = None

    def pictures(self) -> list[tuple[torch.Tensor, str]]:
        return [(t, f"error {e:.3f}") for t, e in zip(self.tensors, self.normalised_error)]


@dataclass(frozen=True)
class InvertJob(PictureJob):
    """Reconstruct `image` from its code at `layers` (M&V), `restarts` pictures from different noise."""

    key: str
    model: ModelSpec
    image: str
    layers: tuple[str, ...]
    size: int
    recipe: Recipe
    solver: SolverConfig
    prior: Prior
    data_weight: float = 20.0
    restarts: int = 1
    window: tuple[int, int, int, int] | None = None
    judge: bool = True
    kind = "invert"



    @property
    def layer(self) -> str:
        """The first (usually the only) inverted layer."""
        return self.layers[0]

    def compute(self, model: Model) -> InvertResult:
        img = load_image(self.image)
        r = invert(model, img, list(self.layers), size=self.size, prior=self.prior, data_weight=self.data_weight,
                   restarts=self.restarts, window=self.window, config=self.solver, recipe=self.recipe)
        original = sized_preprocess(model, self.size).geometry(img)
        judges = judges_for(model) if self.judge else []
        return InvertResult(**_pictures(r), normalised_error=reconstruction_error(r, self.data_weight),
                            naturalness=naturalness(r.images),
                            judge_top5_overlap=topk_overlap(judges, r.images, original) if judges else None,
                            ambiguity=ambiguity(r, original) if self.restarts > 1 else None)


# -------------------------------------------------------------------------------------------- maximize
@dataclass
class ActivationResult(PictureResult):
    """Pictures that push targets up. Per picture: the target's response before (`start_activation`) and
    after (`final_activation`), its natural-image scale, their ratio, naturalness scores, and for class
    targets the rank of the class for each judge network."""

    reference_scale: list[float] = field(default_factory=list)
    start_activation: list[float] = field(default_factory=list)
    final_activation: list[float] = field(default_factory=list)
    activation_ratio: list[float] = field(default_factory=list)
    naturalness: list[dict] = field(default_factory=list)
    judge_rank: list[dict] | None = None
    anchor_layer: str | None = None

    def pictures(self) -> list[tuple[torch.Tensor, str]]:
        return [(t, f"{r:.3g}x natural max") for t, r in zip(self.tensors, self.activation_ratio)]


def _activation_result(model: Model, r: PreimageResult, info: dict, targets, batch: int, judge: bool):
    ranks = None
    judges = judges_for(model) if judge and all(t.kind == "class" for t in targets) else []
    if judges:
        ranks = class_ranks(judges, r.images, [t.channel for t in targets for _ in range(batch)])
    dead = sorted({t.label() for t, s, f in zip((t for t in targets for _ in range(batch)), info["start_activation"],
                                                 info["final_activation"]) if s == f})
    r.notes += [f"{label}: its response never changed (zero gradient for every picture tried: a dead unit), so there "
                "is nothing to show" for label in dead]
    return ActivationResult(**_pictures(r), reference_scale=info["reference_scale"],
                            start_activation=info["start_activation"], final_activation=info["final_activation"],
                            activation_ratio=activation_ratio(info["final_activation"], info["reference_scale"]),
                            naturalness=naturalness(r.images), judge_rank=ranks,
                            anchor_layer=info.get("anchor_layer"))


@dataclass(frozen=True)
class MaximizeJob(PictureJob):
    """Activation maximisation of `targets` at `layer`, solved together; `batch` pictures per target."""

    key: str
    model: ModelSpec
    layer: str
    targets: tuple[Target, ...]
    size: int
    recipe: Recipe
    solver: SolverConfig
    prior: Prior
    data_weight: float = 20.0
    batch: int = 1
    diversity: float = 0.0
    diversity_layer: str | None = None
    judge: bool = True
    kind = "maximize"



    def compute(self, model: Model) -> ActivationResult:
        r, info = maximize(model, self.layer, list(self.targets), size=self.size, prior=self.prior,
                           data_weight=self.data_weight, config=self.solver, recipe=self.recipe, batch=self.batch,
                           diversity=self.diversity, diversity_layer=self.diversity_layer)
        return _activation_result(model, r, info, self.targets, self.batch, self.judge)


# ------------------------------------------------------------------------------------------ accentuate
@dataclass(frozen=True)
class AccentuateJob(PictureJob):
    """Feature accentuation (Hamblin et al. 2024): `image` pushed towards each target, anchored below."""

    key: str
    model: ModelSpec
    image: str
    layer: str
    targets: tuple[Target, ...]
    size: int
    recipe: Recipe
    solver: SolverConfig
    prior: Prior
    data_weight: float = 20.0
    anchor_layer: str | None = None
    anchor_weight: float = 1.0
    kind = "accentuate"



    def compute(self, model: Model) -> ActivationResult:
        r, info = accentuate(model, load_image(self.image), self.layer, list(self.targets),
                             anchor_layer=self.anchor_layer, anchor_weight=self.anchor_weight, size=self.size,
                             prior=self.prior, data_weight=self.data_weight, config=self.solver, recipe=self.recipe)
        return _activation_result(model, r, info, self.targets, 1, True)


# ------------------------------------------------------------------------------------------ caricature
@dataclass
class CaricatureResult(PictureResult):
    """A caricature; `relative_response` is <Phi(x0), Phi(x)> / ||Phi(x0)||^2 (1 at the input)."""

    relative_response: float = 0.0
    naturalness: list[dict] = field(default_factory=list)

    def pictures(self) -> list[tuple[torch.Tensor, str]]:
        return [(t, f"response x{self.relative_response:.2f}") for t in self.tensors]


@dataclass(frozen=True)
class CaricatureJob(PictureJob):
    """Start at `image` and emphasise what `layer` sees in it (M&V IJCV'16)."""

    key: str
    model: ModelSpec
    image: str
    layer: str
    size: int
    recipe: Recipe
    solver: SolverConfig
    prior: Prior
    data_weight: float = 20.0
    cosine_power: float = 0.0
    kind = "caricature"



    def compute(self, model: Model) -> CaricatureResult:
        r = caricature(model, load_image(self.image), self.layer, size=self.size, prior=self.prior,
                       data_weight=self.data_weight, cosine_power=self.cosine_power, config=self.solver,
                       recipe=self.recipe)
        return CaricatureResult(**_pictures(r), relative_response=caricature_gain(r, self.data_weight)[0],
                                naturalness=naturalness(r.images))


# ------------------------------------------------------------------------------------ texture and style
@dataclass
class StyleResult(PictureResult):
    """A texture or a stylised image; `gram_before` / `gram_after` are the Gram losses per layer at the
    start and the end (their totals too), the rest as for every picture."""

    gram_before: dict = field(default_factory=dict)
    gram_after: dict = field(default_factory=dict)
    gram_total_before: float = 0.0
    gram_total_after: float = 0.0

    def pictures(self) -> list[tuple[torch.Tensor, str]]:
        return [(t, f"Gram {self.gram_total_after:.3g}") for t in self.tensors]


def _style_result(r: PreimageResult, info: dict) -> StyleResult:
    return StyleResult(**_pictures(r), gram_before=info["gram_before"], gram_after=info["gram_after"],
                       gram_total_before=sum(info["gram_before"].values()),
                       gram_total_after=sum(info["gram_after"].values()))


@dataclass(frozen=True)
class TextureJob(PictureJob):
    """Texture synthesis (Gatys et al.): the Gram statistics of `image` at `layers`, from noise."""

    key: str
    model: ModelSpec
    image: str
    size: int
    layers: tuple[str, ...] | None
    solver: SolverConfig
    prior: Prior
    temperature: float | None = None
    scales: int = 1
    style_size: int | None = None
    param: str = "fourier"
    kind = "texture"



    def compute(self, model: Model) -> StyleResult:
        r, info = texture(model, load_image(self.image), size=self.size, layers=self.layers,
                          temperature=self.temperature, prior=self.prior, scales=self.scales, config=self.solver,
                          style_size=self.style_size, param=self.param)
        return _style_result(r, info)


@dataclass(frozen=True)
class StyleJob(PictureJob):
    """Style transfer: the content of `content` at `content_layer`, the Gram statistics of `style`."""

    key: str
    model: ModelSpec
    content: str
    style: str
    size: int
    content_layer: str | None
    style_layers: tuple[str, ...] | None
    solver: SolverConfig
    prior: Prior
    style_weight: float = 10.0
    content_weight: float = 1.0
    init: str = "content"
    temperature: float | None = None
    kind = "style"



    def compute(self, model: Model) -> StyleResult:
        r, info = stylize(model, load_image(self.content), load_image(self.style), content_layer=self.content_layer,
                          style_layers=self.style_layers, style_weight=self.style_weight,
                          content_weight=self.content_weight, init=self.init, temperature=self.temperature,
                          prior=self.prior, size=self.size, config=self.solver)
        return _style_result(r, info)
