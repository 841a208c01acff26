"""The composing verbs, run (declared in `verbs`): report, reproduce, demo."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..data import image_sources, list_folder
from ..errors import CnnscopeError, unknown
from ..jobs import Result
from ..layers import expand_layers
from ..models import DEFAULT_MODEL
from ..progress import table
from ..requests import engine, load, out_dir
from ..verbs import Answer, Request
from .atlas import report_settings
from .demo import run_demo
from .findings import ACCURACY, DEFAULT, FINDINGS, TRANSFORMS, skipped
from .findings import reproduce as reproduce_findings
from .site import build_report


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


def report(req: Request) -> Answer:
    out = out_dir(req)
    model = load(req)
    name = req.model if isinstance(req.model, str) else model.job_spec().name
    settings = report_settings(
        model, name or DEFAULT_MODEL, expand_layers(model, req.layers) if req.layers else None,
        quick=req.quick, channels=req.channels, iters=req.iters, size=req.size, seed=req.seed,
        images=req.images, examples=req.examples, patch_images=req.patch_images, equivariance=req.equivariance,
        stitch_with=req.stitch_with, atlas_batch=req.atlas_batch, weights=req.weights,
        random_weights=req.random_weights)
    table(f"report: {len(settings.layers)} layers -> {out}/index.html")
    _, run = build_report(out, settings, model, progress=True, **engine(req))
    rate = f", {60 * run.computed / run.seconds:.1f} jobs/min" if run.computed and run.seconds > 0 else ""
    table(f"{run.computed} computed, {run.reused} reused in {run.seconds:.1f} s{rate}; wrote {out / 'index.html'}")
    result = ReportResult(str(out / "index.html"), list(settings.layers), run.computed, run.reused)
    result.interrupted = run.interrupted
    return Answer(result, result.to_json(), run.interrupted)


def _ids(req: Request, name: str, valid: tuple[str, ...], what: str) -> tuple[str, ...]:
    text = getattr(req, name)
    ids = tuple(dict.fromkeys(i.strip() for i in text.split(",") if i.strip()))
    if not ids:
        raise CnnscopeError(f"{req.label(name)}: expected {what} ids ({', '.join(valid)}), got '{text}'")
    for i in ids:
        if i not in valid:
            raise unknown(what, i, valid)
    return ids


def reproduce(req: Request) -> Answer:
    ids = _ids(req, "findings", FINDINGS, "finding") if req.findings is not None else DEFAULT
    if req.transforms is not None:
        chosen = _ids(req, "transforms", TRANSFORMS, "transform")
        ids = tuple(i for i in ids if i not in TRANSFORMS) + chosen
    out = out_dir(req)
    labelled = False
    if req.images is not None:
        image_sources(req.images)  # the folder checked before any work
        labelled = all(isinstance(label, int) for _, label in list_folder(req.images, None))
    model = load(req)
    for finding, why in skipped(model, ids).items():
        table(f"skipped {finding}: {why}")
    accuracy = [i for i in ids if i in ACCURACY]
    if accuracy and not labelled:
        where = f"{req.images} has no labels.csv" if req.images else "the bundled samples have no labels"
        table(f"note: {where}; {', '.join(accuracy)} measure disagreement with the network's own predictions "
              "instead of top-1 error (give a labelled folder with --images for accuracy)")
    run, findings = reproduce_findings(Path(out), model, req.images, req.quick, req.seed, ids, **engine(req))
    result = FindingsResult(findings, str(out))
    result.interrupted = run.interrupted
    if run.interrupted:
        return Answer(result, None, True)
    for f in findings:
        table(f"{f['id']:<30} {f['verdict']:<15} ({f['n_images']} images)")
    table(f"wrote {out / 'findings.json'}, findings.html")
    return Answer(result, findings)


def demo(req: Request) -> Answer:
    images = req.images.split(",") if req.images else None
    path = run_demo(req.out, model_name=req.model, images=images, preimage_iters=40 if req.quick else 200,
                    maximize_size=128 if req.quick else None, device=req.device)
    table(f"wrote {path}")
    return Answer(str(path), str(path))
