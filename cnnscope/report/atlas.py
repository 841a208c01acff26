"""`cnnscope report`: a whole model as a browsable static site, planned as jobs of the families' own kinds.

The plan is per layer: inversions (`InvertJob`), one activation-maximisation picture per channel
(`MaximizeJob`), the layer's top-activating dataset patches (`PatchesJob`, here), the backprop strips
(`StripJob`); then, when asked, equivariance and stitching one layer per job. The job engine makes the
report resumable and parallel with byte-identical files (see `cnnscope.jobs`); `compose` draws the
analyses' figures from their jobs' records.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from ..backprop.jobs import StripJob
from ..data import image_sources
from ..images import load_image, save_image, source_stem
from ..jobs import Job, Result, Run, provide
from ..layers import capture, expand_layers, get_layer
from ..models import Model, ModelSpec
from ..preimage.plans import invert_job, maximize_job
from ..preimage.recipes import get_recipe
from ..store import finished, slug
from ..targets import Target
from ..transforms.jobs import EquivarianceJob, StitchJob, write_equivariance, write_stitch
from ..transforms.plans import plan_equivariance, plan_stitch

INVERT_ITERS = 200  # the report's inversions (its atlas pictures: the recipe's count for "atlas")
QUICK = {"layers": "stage2,stage4", "channels": 4, "iters": 40, "size": 96, "examples": 2, "patch_images": 8}


@dataclass(frozen=True)
class ReportSettings:
    """Everything a unit's output depends on (and nothing it does not: no paths, no worker count)."""

    model: str
    weights: str | None = None
    layers: tuple[str, ...] = ()
    channels: int | None = None  # first K channels of each layer in the atlas (None = every channel)
    iters: int | None = None  # pre-image iterations; None: INVERT_ITERS for inversions, the recipe's atlas count
    size: int | None = None  # pre-image size (None = the model's input size)
    seed: int = 0
    images: str | None = None  # folder of images; None = the bundled samples
    examples: int = 4  # images inverted and back-propagated per layer
    patch_images: int = 100  # images searched for top-activating patches
    patches: int = 9  # patches shown per channel
    equivariance: str | None = None  # transform to analyse (e.g. vflip), None = skip
    stitch_with: str | None = None  # second model for stitching, None = skip
    recipe: str = "lucid"  # pre-image recipe of the atlas (see preimage.recipes)
    random_weights: bool = False
    atlas_batch: int = 1  # atlas channels optimised together in one job (a GPU's throughput; 1 on a CPU)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["layers"] = list(self.layers)
        return d

    def seed_for(self, key: str) -> int:
        """A job's solver seed: its key hashed with the report's seed (jobs differ, reruns agree)."""
        return (zlib.crc32(key.encode()) ^ self.seed) & 0x7FFFFFFF


def image_slug(source: str) -> str:
    return slug(source_stem(source))


# ---------------------------------------------------------------------------------------------- patches
@dataclass
class PatchesResult(Result):
    """Per channel (str), the top images: their slug, the best unit's (y, x) and its response; `tiles` are
    the receptive-field crops tiled 3 wide (one picture per channel)."""

    sources: list[str]
    channels: dict
    tiles: dict = field(metadata={"json": False})


PATCH_CHUNK = 16  # pictures per forward in the patch search


@dataclass(frozen=True)
class PatchesJob(Job):
    """Per channel of `layer`, the images (one patch each) whose strongest response is highest, cropped to
    the receptive field of the unit that gave it."""

    key: str
    model: ModelSpec
    layer: str
    channels: tuple[int, ...]
    images: str | None = None
    limit: int = 100
    patches: int = 9
    kind = "patches"

    def compute(self, model: Model) -> PatchesResult:
        sources = image_sources(self.images, self.limit)

        def picture(i: int) -> torch.Tensor:
            return model.preprocess.geometry(load_image(sources[i]))

        # a chunk of pictures at a time, keeping each channel's strongest response and where: memory does not
        # grow with --patch-images (the maps of them all were [N, C, H, W]); the winners are decoded again below
        best, where, w = [], [], 1
        with torch.no_grad():
            for start in range(0, len(sources), PATCH_CHUNK):
                images = torch.cat([picture(i) for i in range(start, min(start + PATCH_CHUNK, len(sources)))])
                feats = capture(model, model.preprocess.normalize(images), [self.layer])[self.layer]
                if feats.dim() == 4:
                    b, at = feats.flatten(2).max(2)  # [n, C]
                    w = feats.shape[-1]
                else:
                    b, at = feats, torch.zeros_like(feats, dtype=torch.long)
                best.append(b)
                where.append(at)
        best, where = torch.cat(best), torch.cat(where)
        geometry = get_layer(model, self.layer).geometry
        winners = {}  # the pictures some channel's patch comes from, decoded once each
        channels, tiles = {}, {}
        for c in self.channels:
            crops, rows = [], []
            for i in best[:, c].topk(min(self.patches, len(sources))).indices.tolist():
                y, x = divmod(int(where[i, c]), w)
                if i not in winners:
                    winners[i] = picture(i)[0]
                crops.append(_crop(winners[i], geometry, y, x))
                rows.append({"image": image_slug(sources[i]), "y": y, "x": x, "value": round(float(best[i, c]), 5)})
            channels[str(c)], tiles[c] = rows, _tile(crops)
        return PatchesResult([image_slug(s) for s in sources], channels, tiles)

    def write(self, out: Path, result: PatchesResult) -> list[str]:
        folder = Path(self.key).parent
        for c, tile in result.tiles.items():
            save_image(tile, out / folder / f"c{c:04d}.png")
        return [str(folder / f"c{c:04d}.png") for c in result.tiles]


def _crop(image: torch.Tensor, geometry, y: int, x: int, size: int = 64) -> torch.Tensor:
    """The receptive field of unit (y, x) cut from a [3,S,S] image (grey outside), resized to size²."""
    s = image.shape[-1]
    if geometry is None or geometry.h is None:
        box = (0, s - 1, 0, s - 1)
    else:
        gh, gw = geometry.h, geometry.w
        box = (round(gh.start + y * gh.stride), round(gh.end + y * gh.stride),
               round(gw.start + x * gw.stride), round(gw.end + x * gw.stride))
    y0, y1, x0, x1 = box
    pad = max(0, -y0, -x0, y1 - s + 1, x1 - s + 1)
    padded = F.pad(image[None], (pad, pad, pad, pad), value=0.5)[0]
    patch = padded[:, y0 + pad:y1 + pad + 1, x0 + pad:x1 + pad + 1]
    return F.interpolate(patch[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]


def _tile(patches: Sequence[torch.Tensor], cols: int = 3, gap: int = 2) -> torch.Tensor:
    n, size = len(patches), patches[0].shape[-1]
    rows = -(-n // cols)
    canvas = torch.ones(3, rows * size + (rows - 1) * gap, cols * size + (cols - 1) * gap)
    for i, p in enumerate(patches):
        r, c = divmod(i, cols)
        canvas[:, r * (size + gap):r * (size + gap) + size, c * (size + gap):c * (size + gap) + size] = p
    return canvas


# ------------------------------------------------------------------------------------------------- plan
LAYER_KINDS = ("invert", "maximize", "patches", "backprop-strip")  # the sections of a layer's page


def default_layers(model: Model, quick: bool) -> list[str]:
    """The report's layers when none are asked for: the depth row, or (quick) two mid-depth conv layers."""
    conv = list(model.profile.conv_layers)
    if not quick:
        return expand_layers(model, "stages")
    return [conv[2], conv[4]] if len(conv) > 4 else conv[len(conv) // 4:][:2]


def plan(report: ReportSettings, model: Model) -> list[Job]:
    """Every job of the report, in a stable order (cheap: reads layer shapes only).

    The jobs record the loaded model's own spec, so they run where it runs (``--device``) with its
    preprocessing overrides; its seed only where it seeds random weights (old report folders resume)."""
    spec = model.job_spec()
    spec = spec if spec.random_weights else replace(spec, seed=0)
    provide(spec, model)  # in this process the engine uses the model already loaded
    jobs: list[Job] = []
    examples = image_sources(report.images, report.examples)
    atlas = get_recipe(report.recipe, "atlas")
    inversion = get_recipe(None, "invert", model.profile.handcrafted)  # the verb's default (chosen by measurement)
    for layer in report.layers:
        d = slug(layer)  # layer names may hold '#' or '()': not for paths and links
        size = report.size or model.input_size
        n_channels = get_layer(model, layer).shape[0]
        channels = tuple(range(n_channels if report.channels is None else min(report.channels, n_channels)))
        for src in examples:
            key = f"invert/{d}/{image_slug(src)}"
            config = inversion.config(iters=report.iters or INVERT_ITERS, seed=report.seed_for(key), progress=False)
            jobs.append(invert_job(model, key, src, (layer,), size, recipe=inversion, cfg=config, prior=None,
                                   judge=False, spec=spec))
        for start in range(0, len(channels), report.atlas_batch):
            part = channels[start:start + report.atlas_batch]
            key = f"atlas/{d}/c{part[0]:04d}" + (f"-c{part[-1]:04d}" if len(part) > 1 else "")
            config = atlas.config(iters=report.iters or atlas.iters_for("atlas"), seed=report.seed_for(key),
                                  progress=False)
            jobs.append(maximize_job(model, key, layer, [Target("neuron", c) for c in part], size, recipe=atlas,
                                     cfg=config, prior=None, judge=False, spec=spec))
        jobs.append(PatchesJob(f"patches/{d}/patches", spec, layer, channels, report.images, report.patch_images,
                               report.patches))
        for src in examples:
            jobs.append(StripJob(f"backprop/{d}/{image_slug(src)}", spec, src, layer))
    common = {"images": report.images, "limit": 40, "fit": 0.8, "epochs": 2, "seed": report.seed}
    maps = [layer for layer in report.layers if get_layer(model, layer).has_grid]  # not logits or pooled vectors
    if report.equivariance:
        jobs += plan_equivariance(model, maps, report.equivariance, name=analysis_name("equivariance", report),
                                  spec=spec, **common)
    if report.stitch_with:
        jobs += plan_stitch(model, model, [(layer, layer) for layer in maps],
                            name=analysis_name("stitch", report), spec_a=spec,
                            spec_b=ModelSpec(report.stitch_with, device=spec.device, amp=spec.amp), by_layer=True,
                            **common)
    return jobs


def analysis_name(kind: str, report: ReportSettings) -> str:
    """File stem (under the report) of a transformation analysis's figure and record."""
    if kind == "equivariance":
        return f"transforms/equivariance_{report.equivariance.replace(':', '')}"
    return f"transforms/stitch_{report.stitch_with}"


def is_done(out: Path, job: Job) -> bool:
    return finished(out, job.key, job.settings()) is not None


def compose(out: Path, report: ReportSettings, jobs: Sequence[Job], run: Run, model: Model) -> list[str]:
    """The analyses' figures, from their jobs (only once every layer of one is done). Returns their stems."""
    made = []
    for kind, job_type in (("equivariance", EquivarianceJob), ("stitch", StitchJob)):
        planned = [j for j in jobs if isinstance(j, job_type)]
        outcomes = [o for o in run.outcomes if isinstance(o.job, job_type)]
        if not planned or len(outcomes) != len(planned):
            continue
        name = analysis_name(kind, report)
        if kind == "equivariance":
            write_equivariance(out, name, outcomes, report.equivariance, model.name, report.to_dict())
        else:
            metric = "top1_error" if "top1_error" in outcomes[0].results["baseline"]["A"] else "disagreement_with_b"
            write_stitch(out, name, outcomes, metric, {**report.to_dict(), "a": model.name, "b": report.stitch_with})
        made.append(name)
    return made
