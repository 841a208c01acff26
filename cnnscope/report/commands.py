"""The composing verbs, run (declared in `verbs`): report, reproduce, demo."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..data import image_sources, list_folder
from ..errors import CnnscopeError, unknown
from ..jobs import Result
from ..layers import expand_layers
from ..models import DEFAULT_MODEL, load_model
from ..preimage.solver import check_memory
from ..progress import table
from ..requests import engine, load, out_dir
from ..transforms.transform import Transform
from ..verbs import Answer, Request
from .atlas import QUICK, ReportSettings, default_layers
from .demo import run_demo
from .findings import ACCURACY, DEFAULT, FINDINGS, TRANSFORMS, check_fits, skipped
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
    # checked before any work (not in a worker): the images folder, the transform, the second model, each
    # layer's atlas batch against the memory budget; --quick's small values where none is given
    if req.images is not None and not Path(req.images).is_dir():
        raise CnnscopeError(f"{req.label('images')} {req.images}: not a folder")
    if req.equivariance:
        Transform.parse(req.equivariance)
    if req.stitch_with:
        load_model(req.stitch_with)
    q = QUICK if req.quick else {}
    layers = tuple(expand_layers(model, req.layers) if req.layers else default_layers(model, req.quick))
    settings = ReportSettings(
        model=name or DEFAULT_MODEL, weights=req.weights, layers=layers, channels=req.channels or q.get("channels"),
        iters=req.iters or q.get("iters"), size=req.size or q.get("size"), seed=req.seed, images=req.images,
        examples=req.examples or q.get("examples", 4), patch_images=req.patch_images or q.get("patch_images", 100),
        equivariance=req.equivariance, stitch_with=req.stitch_with, random_weights=req.random_weights,
        atlas_batch=req.atlas_batch)
    for layer in layers:
        check_memory(model, [layer], req.atlas_batch, settings.size or model.input_size)
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
    check_fits(model, req.quick, ids)  # before any job: a fit over the memory budget refuses in one line
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
