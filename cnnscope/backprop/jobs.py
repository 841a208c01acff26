"""The backpropagation verbs as jobs (see `cnnscope.jobs`): saliency maps of one image, the report's
four-panel strip, the selectivity measurement and the randomisation sanity check."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from ..data import stream_images
from ..images import load_image, save_image
from ..jobs import Job, Result
from ..layers import capture
from ..models import Model, ModelSpec
from ..store import save_tensors
from ..targets import Target
from ..viz import image_grid, plot_sanity
from .analysis import cascading_randomisation, selectivity
from .coverage import coverage
from .methods import METHODS, backprop_maps, coverage_notes, render

COLUMNS = ("deconvnet", "salinet", "desalinet")  # the seed's order: Image | DeConvNet | SaliNet | DeSaliNet
MAPS = {"json": False}  # field metadata: tensors that go to files, not to the record


def applicable(model: Model, x: torch.Tensor, layer: str, methods) -> tuple[tuple[str, ...], list[str], dict]:
    """The methods that apply below `layer` (DeConvNet and DeSaliNet not where no rule reaches any nonlinearity),
    the notes a reader needs, and the coverage record."""
    cov = coverage(model, x, layer)
    notes = coverage_notes(cov, model.name, layer, methods, None)
    if cov.blind:
        dropped = [m for m in methods if not METHODS[m].gradient]
        methods = tuple(m for m in methods if METHODS[m].gradient)
        notes.append(f"{' and '.join(dropped)} left out: no backward rule reaches a nonlinearity of {model.name} "
                     f"below {layer}, so they would be the gradient")
    return tuple(methods), notes, cov.to_json() | {"summary": cov.summary()}


def _silent(model: Model, x: torch.Tensor, target: Target, gradient: torch.Tensor | None) -> bool:
    """Whether `target`'s value and its gradient (SaliNet's map) are both zero for the image."""
    with torch.no_grad():
        feat = capture(model, x, [target.layer])[target.layer][0]
    seed = feat if target.kind == "features" else target.weights(tuple(feat.shape)).to(feat)
    if bool((seed * feat).sum() != 0):
        return False
    if gradient is None:
        gradient = backprop_maps(model, x, [target], "salinet")[0, 0]
    return not bool(gradient.any())


def map_slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "_.-" else "_" for c in text).strip("_")


def _class_caption(model: Model, k: int) -> str:
    """"class 282 tiger cat"; just "class 3" when the name says no more (a user model's "class 3")."""
    name = model.class_name(k)
    return name if name == f"class {k}" else f"class {k} {name}"


@dataclass
class SaliencyResult(Result):
    """Maps of one image. `maps[(target label, method)]` is [3,H,W] (raw, signed); `shown` the image as the
    network saw it; `rows` per target its label and caption; `top_class` the class the network predicts."""

    maps: dict = field(metadata=MAPS)
    shown: torch.Tensor = field(metadata=MAPS)
    rows: list[dict] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    coverage: dict = field(default_factory=dict)  # the nonlinearities below the target the rules reach

    def pictures(self) -> list[tuple[torch.Tensor, str]]:
        """Per target: the image as the network saw it, then each method's map (rendered as the job says)."""
        style = self.job.render if self.job is not None else "signed"
        out = []
        for row in self.rows:
            out.append((self.shown, row["caption"]))
            out += [(render(self.maps[(row["target"], m)], style), m) for m in self.methods]
        return out

    def columns(self) -> int:
        return 1 + len(self.methods)  # a row per target: the image, then each method's map


@dataclass(frozen=True)
class SaliencyJob(Job):
    """SaliNet / DeConvNet / DeSaliNet maps of `image` for each target (the seed's comparison figure)."""

    key: str
    model: ModelSpec
    image: str
    targets: tuple[Target, ...]
    methods: tuple[str, ...] = COLUMNS
    pool_rule: str | None = None
    render: str = "signed"
    kind = "saliency"

    def compute(self, model: Model) -> SaliencyResult:
        image = load_image(self.image)
        x = model.prepare(image)
        # a class target without an index is the picture's top class
        targets = [replace(t, channel=model.predict(image, k=1)[0][0].index)
                   if t.kind == "class" and t.channel is None else t for t in self.targets]
        maps = {(t.label(), m): backprop_maps(model, x, [t], m, self.pool_rule)[0, 0]
                for t in targets for m in self.methods}
        rows = [{"target": t.label(), "caption": f"image\n{_class_caption(model, t.channel)}"
                 if t.kind == "class" else f"image\n{t.label()}"} for t in targets]
        cov = coverage(model, x, targets[0].layer)
        notes = coverage_notes(cov, model.name, targets[0].layer, self.methods, self.pool_rule)
        notes += [f"{t.label()}: the target's value and its gradient are zero for this image (a dead unit or an "
                  "all-zero code), so there is nothing to show" + (" (DeConvNet ignores the forward pass: its map is "
                                                                    "the filters' pattern, not this image's)"
                                                                    if "deconvnet" in self.methods else "")
                  for t in targets if _silent(model, x, t, maps.get((t.label(), "salinet")))]
        return SaliencyResult(maps, model.preprocess.geometry(image)[0], rows, list(self.methods), notes,
                              cov.to_json() | {"summary": cov.summary()})

    def write(self, out: Path, result: SaliencyResult) -> list[str]:
        pictures, titles, files = [], [], []
        for row in result.rows:
            pictures.append(result.shown)
            titles.append(row["caption"])
            for method in result.methods:
                picture = render(result.maps[(row["target"], method)], self.render)
                name = f"{self.key}_{map_slug(row['target'])}_{method}.png"
                save_image(picture, out / name)
                files.append(name)
                pictures.append(picture)
                titles.append(method if len(result.rows) == 1 else f"{method}\n{row['target']}")
        image_grid(pictures, titles, out / f"{self.key}_grid.png", ncols=1 + len(result.methods), cell=2.4)
        save_tensors({f"{t}|{m}": v for (t, m), v in result.maps.items()}, out / f"{self.key}.safetensors",
                     "cnnscope-saliency-1")
        return [*files, f"{self.key}_grid.png", f"{self.key}.safetensors"]


@dataclass
class StripResult(Result):
    """The report's strip: the unit of `layer` that responds most to the image (channel, y, x) and the
    picture Image | DeConvNet | SaliNet | DeSaliNet."""

    strip: torch.Tensor = field(metadata=MAPS)
    channel: int
    y: int | None
    x: int | None
    methods: list[str] = field(default_factory=lambda: ["image", *COLUMNS])
    notes: list[str] = field(default_factory=list, metadata={"omit_empty": True})

    def pictures(self) -> list[tuple[torch.Tensor, str]]:
        return [(self.strip, f"channel {self.channel}: " + " | ".join(self.methods))]


@dataclass(frozen=True)
class StripJob(Job):
    """Image | DeConvNet | SaliNet | DeSaliNet for the most responsive unit of `layer` on `image`."""

    key: str
    model: ModelSpec
    image: str
    layer: str
    kind = "backprop-strip"

    def compute(self, model: Model) -> StripResult:
        x01 = model.preprocess.geometry(load_image(self.image))
        x = model.preprocess.normalize(x01)
        with torch.no_grad():
            feat = capture(model, x, [self.layer])[self.layer][0]
        if feat.dim() == 3:
            channel, rest = divmod(int(feat.flatten().argmax()), feat.shape[1] * feat.shape[2])
            y, xx = divmod(rest, feat.shape[2])
        else:
            channel, y, xx = int(feat.argmax()), None, None
        target = Target("neuron", channel, y, xx, layer=self.layer)
        methods, notes, _ = applicable(model, x, self.layer, COLUMNS)
        notes = [n for n in notes if "no max-pool" not in n]  # (the report says it once per model, not per strip)
        blank = torch.full_like(x01[0], 0.5)  # a method that cannot apply shows grey, not another method's map
        strip = [x01[0]] + [render(backprop_maps(model, x, [target], m)[0], "signed")[0] if m in methods else blank
                            for m in COLUMNS]
        gap = torch.ones(3, x01.shape[-2], 4)
        return StripResult(torch.cat([t for img in strip for t in (img, gap)][:-1], dim=2), channel, y, xx,
                           notes=notes)

    def write(self, out: Path, result: StripResult) -> list[str]:
        save_image(result.strip, out / f"{self.key}.png")
        return [f"{self.key}.png"]


@dataclass
class SelectivityResult(Result):
    """Per method, mean correlations between maps of the max neuron and random neurons / a random direction,
    and between random neurons (high = NOT neuron-selective)."""

    correlations: dict
    count: int
    notes: list[str] = field(default_factory=list)
    coverage: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SelectivityJob(Job):
    """The ECCV'16 selectivity protocol on `limit` images of `images` (None: the bundled photographs)."""

    key: str
    model: ModelSpec
    layer: str
    images: str | None = None
    limit: int = 20
    neurons: int = 4
    seed: int = 0
    kind = "selectivity"



    def compute(self, model: Model) -> SelectivityResult:
        images = stream_images(self.images, self.limit if self.images else min(self.limit, 6))  # one at a time
        methods, notes, cov = applicable(model, model.prepare(images[0]), self.layer, COLUMNS)
        return SelectivityResult(selectivity(model, images, self.layer, neurons=self.neurons, seed=self.seed,
                                             methods=methods, progress=False), len(images), notes, cov)

    def write(self, out: Path, result: SelectivityResult) -> list[str]:
        return []


@dataclass
class SanityResult(Result):
    """Cascading randomisation: `blocks` re-initialised from the top, `spearman[method]` the rank
    correlation of each step's map with the trained network's, and the `target`'s label."""

    blocks: list[str]
    spearman: dict
    target: str
    notes: list[str] = field(default_factory=list)
    coverage: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SanityJob(Job):
    """Adebayo et al. 2018 on one image and target."""

    key: str
    model: ModelSpec
    image: str
    target: Target
    seed: int = 0
    kind = "sanity"



    def compute(self, model: Model) -> SanityResult:
        image = load_image(self.image)
        methods, notes, cov = applicable(model, model.prepare(image), self.target.layer, COLUMNS)
        r = cascading_randomisation(model, image, self.target, methods=methods, seed=self.seed, progress=False)
        return SanityResult(**r, notes=notes, coverage=cov)

    def write(self, out: Path, result: SanityResult) -> list[str]:
        plot_sanity(result.to_json(), out / f"{self.key}.png")
        return [f"{self.key}.png"]


__all__ = ["COLUMNS", "SaliencyJob", "SanityJob", "SelectivityJob", "StripJob"]
