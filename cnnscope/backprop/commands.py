"""The backpropagation verbs, run (declared in `verbs`)."""

from __future__ import annotations

from ..data import image_sources, picture_sources
from ..errors import CnnscopeError, unknown
from ..jobs import execute
from ..layers import get_layer, resolve
from ..progress import table
from ..requests import answer, engine, first, load, notes, out_dir, picture, wrote
from ..targets import Target, parse_class
from ..verbs import Answer, Request
from .analysis import selectivity_table
from .jobs import COLUMNS
from .methods import METHODS, method_rules
from .network import explain
from .plans import default_rows, plan_saliency, plan_sanity, plan_selectivity


def methods(req: Request) -> list[str]:
    names = list(COLUMNS) if req.method == "all" else [m.strip() for m in req.method.split(",")]
    for m in names:
        if m not in METHODS:
            raise unknown("method", m, [*METHODS, "all"])
    return names


def _rows(req: Request, model):
    """The targets of each image, checked before any work."""
    if req.classes is not None:
        if model.profile.logits is None:
            raise CnnscopeError(f"{model.name} has no classes: give {req.label('layer')} and {req.label('channel')} "
                                f"or {req.label('features')}")
        rows = [Target("class", parse_class(model, str(req.classes)), layer=req.layer or model.profile.logits)]
    elif req.layer is None:
        if req.channel is not None or req.features:
            raise CnnscopeError(f"{req.label('channel')}/{req.label('features')} need {req.label('layer')}")
        return lambda source: default_rows(model)
    else:
        resolve(model, req.layer)
        if req.channel is not None:
            width = get_layer(model, req.layer).channels or 1
            if not 0 <= req.channel < width:
                raise CnnscopeError(f"channel {req.channel} is out of range: {req.layer} has {width} channels "
                                    f"(0-{width - 1})")
            kind = "channel" if req.whole_channel else "neuron"
            rows = [Target(kind, req.channel, req.y, req.x, layer=req.layer)]
        else:
            rows = [Target("features", layer=req.layer)]
    return lambda source: rows


def saliency(req: Request) -> Answer:
    items = req.images if isinstance(req.images, list) else [req.images]
    if all(isinstance(i, str) for i in items):
        sources = picture_sources(items)  # every file's header, before any work (each job decodes its own)
    else:
        sources = [picture(i)[0] for i in items]
    names = methods(req)
    out = out_dir(req)
    model = load(req)
    run = execute(plan_saliency(model, sources, _rows(req, model), names, req.pool_rule, req.render), out,
                  desc="saliency", **engine(req))
    for o in run.outcomes:
        notes(o.results)
        shown = o.job.image if isinstance(o.job.image, str) else "picture"
        table(f"{shown}: " + ", ".join(r["target"] for r in o.results["rows"])
              + ("  (reused)" if o.seconds is None else f"  ({o.seconds:.1f} s)"))
        wrote(out, o.job.key + "_grid.png")
    return answer(run, [{"file": o.job.key, **o.results} for o in run.outcomes])


def backprop(req: Request) -> Answer:
    model = load(req)
    rows = explain(model, method_rules(req.method, req.pool_rule))
    table(f"# reversed network of {model.name} for {req.method} (read top to bottom = backward order)")
    width = max(len(r["layer"]) for r in rows)
    for r in rows:
        alias = f" ({r['alias']})" if r["alias"] else ""
        table(f"{r['layer'] + alias:<{width + 10}} {r['type']:<18} -> {r['backward']}")
    return Answer(rows, rows)


def selectivity(req: Request) -> Answer:
    image_sources(req.images, req.limit)  # the folder checked before any work
    out = out_dir(req)
    model = load(req)
    job = plan_selectivity(model, req.layer, req.images, req.limit, req.neurons, req.seed)
    run = execute([job], out)
    if (res := first(run)) is None:
        return answer(run, None)
    notes(res)
    table(f"# mean correlation between maps from different neurons at the same location ({job.layer}, "
          f"{res['count']} images); high = NOT neuron-selective")
    table(selectivity_table(res["correlations"]))
    wrote(out, "selectivity.json")
    return answer(run, res)


def sanity(req: Request) -> Answer:
    source, image = picture(req.image)
    out = out_dir(req)
    model = load(req)
    klass = parse_class(model, str(req.classes)) if req.classes is not None and model.profile.logits else None
    run = execute([plan_sanity(model, source, image, klass, req.seed)], out)
    if (res := first(run)) is None:
        return answer(run, None)
    notes(res)
    for method, curve in res["spearman"].items():
        table(f"{method:<10} " + " ".join(f"{v:5.2f}" for v in curve))
    wrote(out, "sanity.png")
    return answer(run, res)
