"""`cnnscope reproduce`: the seed talk's findings, each a job that measures and gives a verdict.

A finding's record holds the claim, what was measured, what the claim expects, and the verdict: "holds",
"does not hold" or "inconclusive" (the measurement cannot decide, e.g. too few images). The run writes
`findings.json` (the list), `findings.html` and one CSV per finding; like every verb it resumes and runs on
workers or Ray.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from html import escape
from pathlib import Path

import torch

from ..backprop.analysis import pearson, selectivity, spearman
from ..backprop.methods import backprop_maps
from ..backprop.plans import deepest_map
from ..data import list_folder, load_images, stream_images
from ..images import load_image
from ..jobs import Job, Run, execute
from ..layers import get_layer
from ..models import Model, ModelSpec, small_model
from ..preimage.solver import SolverConfig
from ..preimage.tasks import Prior, ambiguity, invert, reconstruction_error, sized_preprocess
from ..store import write_csv, write_json, write_text
from ..targets import Target
from ..transforms.equivalence import check_fits as check_stitch_fits
from ..transforms.equivariance import NEIGHBOURHOODS
from ..transforms.equivariance import check_fits as check_map_fits
from ..transforms.plans import plan_feature_equivariance
from ..transforms.smallnets import train_small
from . import html
from .finding import VERDICTS, FindingJob, FindingResult
from .transform_findings import (
    TRANSFORMS,
    DataFinding,
    EquivarianceFinding,
    InvarianceFinding,
    SeedsFinding,
    StitchingFinding,
)


# ----------------------------------------------------------------------------------------- backprop
@dataclass(frozen=True)
class SelectivityFinding(FindingJob):
    key: str
    model: ModelSpec
    images: str | None = None
    limit: int = 6
    neurons: int = 4
    seed: int = 0
    kind = "finding-deconvnet-selectivity"
    cost = 35.0

    def compute(self, model: Model) -> FindingResult:
        images = stream_images(self.images, self.limit)
        layer = deepest_map(model)
        r = selectivity(model, images, layer, neurons=self.neurons, seed=self.seed, progress=False)
        measured = {m: round(v["max_vs_random_neuron"], 4) for m, v in r.items()} | {"layer": layer}
        holds = min(measured["deconvnet"], measured["desalinet"]) >= 0.8 and measured["salinet"] <= 0.5
        return FindingResult(
            "deconvnet-selectivity", "DeConvNet and DeSaliNet maps hardly depend on which neuron they start from; "
            "SaliNet maps do (Mahendran & Vedaldi ECCV'16)", measured,
            "correlation of maps from different neurons at one place: DeConvNet, DeSaliNet >= 0.8; SaliNet <= 0.5",
            "holds" if holds else "does not hold", len(images))


@dataclass(frozen=True)
class ImageInformationFinding(FindingJob):
    key: str
    model: ModelSpec
    images: str | None = None
    limit: int = 6
    small_epochs: int = 1
    seed: int = 0
    kind = "finding-deconvnet-image-information"
    cost = 15.0

    def compute(self, model: Model) -> FindingResult:
        images = load_images(self.images, self.limit)
        net, _ = train_small("shapes", self.seed, self.small_epochs, progress=False)
        pooled = small_model(net, "small CNN with max-pool")
        measured = {"without_max_pool": {"model": model.name, "layer": deepest_map(model),
                                         "correlation": _across_images(model, images, deepest_map(model))},
                    "with_max_pool": {"model": pooled.name, "layer": "block4",
                                      "correlation": _across_images(pooled, images, "block4")}}
        a, b = measured["without_max_pool"]["correlation"], measured["with_max_pool"]["correlation"]
        has_pool = any(isinstance(m, torch.nn.MaxPool2d) for m in model.net.modules())
        verdict = "holds" if a >= 0.9 and b <= a - 0.3 else "does not hold"
        note = ("the model has max-pooling: its DeConvNet keeps switches" if has_pool else
                f"{model.name} has no max-pool: its DeConvNet has no switches, and with the ReLU masks ignored the "
                "map only knows where the target is — a uniform pattern, the same for every image")
        return FindingResult(
            "deconvnet-image-information", "without max-pool switches, a DeConvNet map carries no information "
            "about the image, only about the target's position (the bottleneck argument, M&V ECCV'16)", measured,
            "mean correlation of DeConvNet maps of one target across images: >= 0.9 without max-pool, at least "
            "0.3 lower with it", verdict, len(images), note)


def _across_images(model: Model, images, layer: str) -> float:
    x = torch.cat([model.prepare(img) for img in images])
    channels = get_layer(model, layer).shape[0]
    maps = backprop_maps(model, x, [Target("neuron", channels // 2, layer=layer)], "deconvnet")[:, 0]
    pairs = list(itertools.combinations(range(len(maps)), 2))
    return round(sum(pearson(maps[i], maps[j]) for i, j in pairs) / len(pairs), 4)


# --------------------------------------------------------------------------------------------- pre-images
@dataclass(frozen=True)
class PriorFinding(FindingJob):
    key: str
    model: ModelSpec
    image: str
    layer: str
    size: int = 128
    iters: int = 200
    seed: int = 0
    kind = "finding-prior"
    cost = 20.0

    def compute(self, model: Model) -> FindingResult:
        measured, pictures, captions = {}, [], []
        for name, prior in (("no prior", Prior.none()), ("TV beta=1", Prior(beta=1.0)), ("TV beta=2", Prior())):
            r = invert(model, self.image, [self.layer], size=self.size, prior=prior, recipe="mv",
                       config=SolverConfig(iters=self.iters, seed=self.seed, progress=False))
            tv = float((r.images[..., 1:, :] - r.images[..., :-1, :]).abs().mean()
                       + (r.images[..., 1:] - r.images[..., :-1]).abs().mean())
            measured[name] = {"total_variation": round(tv, 5), "normalised_error": round(reconstruction_error(r)[0], 5)}
            pictures.append(r.images[0])
            captions.append(f"{name}\nTV {tv:.4f}, err {measured[name]['normalised_error']:.3f}")
        tv = {k: v["total_variation"] for k, v in measured.items()}
        holds = tv["TV beta=2"] < tv["no prior"] and tv["TV beta=1"] < tv["no prior"]
        return FindingResult(
            "prior", "a natural-image prior (total variation) gives smoother, more natural pre-images than none "
            "(Mahendran & Vedaldi CVPR'15)", measured | {"layer": self.layer},
            "total variation of the pre-image lower with either TV prior than without", "holds" if holds else
            "does not hold", 1, "", pictures, captions)


@dataclass(frozen=True)
class InversionDepthFinding(FindingJob):
    key: str
    model: ModelSpec
    images: tuple[str, ...]
    layers: tuple[str, ...]
    restarts: int = 2
    size: int = 128
    iters: int = 200
    seed: int = 0
    kind = "finding-inversion-depth"
    cost = 90.0

    def compute(self, model: Model) -> FindingResult:
        rows, pictures, captions = [], [], []
        for layer in self.layers:
            errors, spreads = [], []
            for source in self.images:
                r = invert(model, source, [layer], size=self.size, restarts=self.restarts, recipe="mv",
                           config=SolverConfig(iters=self.iters, seed=self.seed, progress=False))
                errors += reconstruction_error(r)
                original = sized_preprocess(model, self.size).geometry(load_image(source))
                spreads.append(ambiguity(r, original)["mean_mutual_rms_distance"])
                if source == self.images[0]:
                    pictures.append(r.images[0])
                    captions.append(f"{layer}\nerr {errors[0]:.3f}")
            mv = [100 * math.sqrt(max(e, 0)) for e in errors]
            mean = sum(mv) / len(mv)
            se = (sum((v - mean) ** 2 for v in mv) / max(1, len(mv) - 1)) ** 0.5 / math.sqrt(len(mv))
            rows.append({"layer": layer, "normalised_error": round(sum(errors) / len(errors), 5),
                         "mv_error": round(mean, 2), "mv_error_ci95": round(1.96 * se, 2),
                         "ambiguity": round(sum(spreads) / len(spreads), 5)})
        rho = spearman(torch.arange(len(rows), dtype=torch.float64),
                       torch.tensor([r["ambiguity"] for r in rows], dtype=torch.float64))
        verdict = "holds" if rho >= 0.5 else "does not hold" if rho <= -0.5 else "inconclusive"
        return FindingResult(
            "inversion-depth", "deeper representations are more ambiguous: pre-images of the same code drift apart "
            "with depth (Mahendran & Vedaldi IJCV'16)", {"rows": rows, "spearman_depth_ambiguity": round(rho, 3)},
            "Spearman correlation between depth and restart ambiguity >= 0.5", verdict, len(self.images),
            "ambiguity = mean RMS pixel distance between pre-images of one code from different noise; mv_error = "
            "M&V's sqrt(normalised error) x 100, mean and 95% half-width", pictures, captions)


# ---------------------------------------------------------------------------------------- hand-crafted
@dataclass(frozen=True)
class HogRotationFinding(FindingJob):
    key: str
    model: ModelSpec
    images: str | None = None
    limit: int = 12
    seed: int = 0
    kind = "finding-hog-rotation"
    cost = 2.0

    def compute(self, model: Model) -> FindingResult:
        inner = plan_feature_equivariance(self.model, "rotate:45", images=self.images, limit=self.limit, fit=0.75,
                                          ridge=1e-4, neighbourhoods=(1, 3), seed=self.seed, key=self.key)
        r = inner.compute(model)
        e = {k: round(v, 4) for k, v in r.relative_error.items() if not k.endswith("_fit")}
        holds = e["learned_3x3"] < e["spatial_only"] < e["uncompensated"]
        return FindingResult(
            "hog-rotation", "HOG is not invariant to a 45 degree rotation, but a learned linear map M_g predicts "
            "HOG(gx) from HOG(x) (Lenc & Vedaldi CVPR'15)", e | {"valid_cells": r.valid_cells},
            "relative error: learned 3x3 map < spatial inverse only < uncompensated", "holds" if holds else
            "does not hold", r.fit + r.test)


FINDINGS = ("prior", "inversion-depth", "deconvnet-selectivity", "deconvnet-image-information", "vflip", "hflip",
            "rot90", "invariance", "hog-rotation", "stitching", "seeds", "data")
DEFAULT = tuple(f for f in FINDINGS if f not in ("hflip", "rot90"))  # the other transforms via --transforms
ACCURACY = TRANSFORMS + ("stitching",)  # top-1 error with labels, else agreement with the network itself
STITCH_PARTNERS = {"efficientnet_lite0": "efficientnet_lite1", "efficientnet_lite1": "efficientnet_lite0"}


def skipped(model: Model, ids: tuple[str, ...]) -> dict[str, str]:
    """Findings that cannot run on this model, with the reason."""
    out = {}
    if model.profile.logits is None or model.profile.handcrafted:
        for i in ACCURACY + ("invariance", "deconvnet-selectivity", "deconvnet-image-information", "prior",
                             "inversion-depth"):
            out[i] = f"{model.name} has no classifier"
    elif model.name not in STITCH_PARTNERS:
        out["stitching"] = (f"needs a second network trained on the same task with {model.name}'s widths (built in "
                            "for efficientnet_lite0 <-> efficientnet_lite1)")
    return {i: why for i, why in out.items() if i in ids}


def _stages(model: Model, quick: bool) -> tuple[str, ...]:
    stages = tuple(model.profile.analysis)
    if quick:  # the first, a middle and the last-but-one stage
        stages = tuple(dict.fromkeys((stages[0], stages[len(stages) // 2], stages[max(len(stages) - 2, 0)])))
    return stages


def check_fits(model: Model, quick: bool, ids: tuple[str, ...] = DEFAULT) -> None:
    """Refuse, before any job, findings whose fits cannot keep within the memory budget at some stage (the
    equivariance maps' smallest support; stitching's sums, for a partner of the model's own widths)."""
    ids = [i for i in ids if i not in skipped(model, ids)]
    stages = _stages(model, quick)
    if any(i in TRANSFORMS + ("invariance",) for i in ids):
        check_map_fits(model, stages, NEIGHBOURHOODS)
    if "stitching" in ids:
        check_stitch_fits(model, model, stages, task_epochs=0 if quick else 2)


def plan(model: Model, images: str | None, quick: bool, seed: int, ids: tuple[str, ...] = DEFAULT) -> list[Job]:
    """The findings' jobs, sized for --quick (CI) or a full run; ids that cannot run here (`skipped`) are left
    out."""
    spec, depth = model.job_spec(), model.profile.conv_layers
    pool = [str(path) for path, _ in list_folder(images, 2)] if images else ["sample:chelsea", "sample:coffee"]
    sources = tuple(pool)[:1 if quick else 2]  # the pre-image findings invert the first one or two images
    layers = tuple(depth[i] for i in range(0, len(depth), 2))[:3 if quick else None]
    stages = _stages(model, quick)
    limit = 24 if quick else None  # images for the transformation findings (all of a folder)
    epochs = 0 if quick else 2
    makers = {
        "prior": lambda: PriorFinding("prior", spec, sources[0], depth[min(3, len(depth) - 1)], 96 if quick else 160,
                                      60 if quick else 300, seed),
        "inversion-depth": lambda: InversionDepthFinding("inversion-depth", spec, sources, layers, 2,
                                                         96 if quick else 160, 60 if quick else 300, seed),
        "deconvnet-selectivity": lambda: SelectivityFinding("deconvnet-selectivity", spec, images,
                                                            4 if quick else 20, 3, seed),
        "deconvnet-image-information": lambda: ImageInformationFinding("deconvnet-image-information", spec, images,
                                                                       4 if quick else 20, 1, seed),
        "invariance": lambda: InvarianceFinding("invariance", spec, stages, images, limit, 1 if quick else None,
                                                seed),
        "hog-rotation": lambda: HogRotationFinding("hog-rotation", ModelSpec("hog"), images, 8 if quick else 40, seed),
        "stitching": lambda: StitchingFinding("stitching", spec, ModelSpec(STITCH_PARTNERS.get(model.name, "")),
                                              stages, images, limit, epochs, seed),
        "seeds": lambda: SeedsFinding("seeds", 2 if quick else 8, 1 if quick else 8, 150 if quick else 600, seed),
        "data": lambda: DataFinding("data", 2 if quick else 8, 1 if quick else 8, 150 if quick else 600, seed),
    }
    for t in TRANSFORMS:
        makers[t] = (lambda t=t: EquivarianceFinding(t, spec, t, stages, images, limit, 1 if quick else None,
                                                     epochs, seed))
    out = skipped(model, ids)
    return [makers[i]() for i in ids if i not in out]


def write_findings(out: Path, run: Run) -> list[dict]:
    """findings.json, findings.html and a CSV per finding, from the jobs' records."""
    findings = [o.results for o in run.outcomes]
    write_json(findings, out / "findings.json")
    sections = []
    for o in run.outcomes:
        f = o.results
        rows = _flat(f["measured"])
        write_csv(["measure", "value"], rows, out / f"{f['id']}.csv")
        table = html.table(("measure", "value"), rows, max_rows=80)
        figure = "".join(html.figure(name, f["id"]) for name in o.files)
        body = (f"<p><b>Claim.</b> {escape(f['claim'])}</p><p><b>Expected.</b> {escape(f['expected'])}</p>"
                f"<p><b>Verdict: {escape(f['verdict'])}</b> ({f['n_images']} images). {escape(f['note'])}</p>")
        sections.append(html.section(f["id"], body + table + figure, f["id"]))
    intro = "<p>The findings of Vedaldi's talk, measured on this model; each links to its CSV.</p>"
    write_text(html.page("cnnscope reproduce", sections, intro), out / "findings.html")
    return findings


def _flat(value, prefix: str = "") -> list[tuple[str, object]]:
    """Nested measurements as (dotted name, value) rows."""
    if isinstance(value, dict):
        return [row for k, v in value.items() for row in _flat(v, f"{prefix}{k}.")]
    if isinstance(value, list):
        return [row for i, v in enumerate(value) for row in _flat(v, f"{prefix}{i}.")]
    return [(prefix.rstrip("."), value)]


def reproduce(out: Path, model: Model, images: str | None = None, quick: bool = False, seed: int = 0,
              ids: tuple[str, ...] = DEFAULT, workers: int = 1, ray: str | None = None) -> tuple[Run, list[dict]]:
    """Run the findings (resumable) and write their summary files."""
    run = execute(plan(model, images, quick, seed, ids), out, workers=workers, ray=ray, desc="reproduce")
    return run, write_findings(out, run) if not run.interrupted else []


__all__ = ["ACCURACY", "DEFAULT", "FINDINGS", "TRANSFORMS", "VERDICTS", "FindingResult", "reproduce", "skipped"]
