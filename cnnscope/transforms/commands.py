"""The transformation-analysis verbs, run (declared in `verbs`)."""

from __future__ import annotations

from ..errors import CnnscopeError
from ..jobs import execute
from ..layers import expand_layers, resolve
from ..progress import table
from ..requests import answer, engine, first, load, out_dir, out_file, wrote
from ..store import write_json
from ..verbs import Answer, Odd, Request
from .equivalence import check_fits as check_stitch_fits
from .equivariance import MAX_NEIGHBOURHOOD, check_fits
from .jobs import format_table, stitch_table, write_equivariance, write_stitch
from .plans import equivariance_name, plan_cka, plan_equivariance, plan_feature_equivariance, plan_stitch, stitch_name
from .smallnets import save_small, seed_data_experiment
from .smallnets import train_small as train_small_net
from .transform import Transform


def _layer_pairs(req: Request, model_a, model_b, spec: str) -> list[tuple[str, str]]:
    pairs = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        la, _, lb = part.partition(":")
        lb = lb or la
        resolve(model_a, la)
        resolve(model_b, lb)
        pairs.append((la, lb))
    if not pairs:
        raise CnnscopeError(f"no layers given ({req.label('layers')})")
    return pairs


def _neighbourhoods(req: Request) -> tuple[int, ...]:
    try:
        sizes = tuple(int(v) for v in req.neighbourhood.split(","))
    except ValueError:
        raise CnnscopeError(f"{req.label('neighbourhood')} {req.neighbourhood}: expected odd sizes like 1,3,5") \
            from None
    return tuple(Odd(MAX_NEIGHBOURHOOD).check(m, req.label("neighbourhood")) for m in sizes)


def equivariance(req: Request) -> Answer:
    out = out_dir(req)
    transform = Transform.parse(req.transform)
    model = load(req)
    if model.profile.handcrafted:  # no classifier to judge by: regression error of the one layer's map
        return _feature_equivariance(req, model, transform, out)
    if model.profile.logits is None:
        raise CnnscopeError(f"{model.name} has no classifier: the equivariance test judges maps by its output")
    analysis = model.profile.analysis
    default = ",".join(analysis[:2] if req.quick else analysis)
    layers = list(dict.fromkeys(expand_layers(model, req.layers or default, maps_only=True)))
    limit = req.limit or (24 if req.quick else None)
    name = equivariance_name(model, req.transform)
    check_fits(model, layers, _neighbourhoods(req))
    jobs = plan_equivariance(model, layers, req.transform, images=req.images, limit=limit, fit=req.fit,
                             epochs=req.epochs, ridge=req.ridge, crops=req.crops, seed=req.seed,
                             neighbourhoods=_neighbourhoods(req))
    run = execute(jobs, out, desc="equivariance", **engine(req))
    if run.interrupted or not run.outcomes:
        return answer(run, None)
    settings = {"model": model.name, "transform": transform.label, "layers": layers, "images": req.images
                or "bundled crops", "limit": limit, "fit": req.fit, "seed": req.seed, "epochs": req.epochs,
                "ridge": req.ridge, "crops": req.crops}
    result = write_equivariance(out, name, run.outcomes, transform.label, model.name, settings)
    cols = ("spatial_only", "permutation", "learned")
    table(f"# {transform.label}: {result['metric'].replace('_', ' ')} on held-out images; no transform "
          f"{result['baseline']['no_transform']:.3f}, transformed uncompensated "
          f"{result['baseline']['uncompensated']:.3f}")
    table(f"{'layer':<12}" + "".join(f"{c:>14}" for c in cols) + f"{'map R2':>9}{'invariant ch.':>16}"
          + f"{'null':>6}{'map (chosen by the task)':>26}")
    for r in result["rows"]:
        form = r["map"] if r["ridge"] is None else f"{r['map']}, ridge {r['ridge']:.0e}"
        table(f"{r['layer']:<12}" + "".join(f"{r[c]:14.3f}" for c in cols)
              + f"{r['learned_r2']:9.3f}{r['invariant_channels']:>9}/{r['channels']:<6}"
              + f"{r['null_invariant_channels']:>6}  {form}")
    for r in result["rows"]:
        for note in r.get("skipped") or []:
            table(f"note: {r['layer']}: {note}")
    wrote(out, name + ".csv", f"{name}.png", f"{name}.json", f"{name}_maps.safetensors")
    return answer(run, result)


def _feature_equivariance(req: Request, model, transform, out) -> Answer:
    if req.layers:
        raise CnnscopeError(f"{req.label('layers')} does not apply to {model.name}: a hand-crafted representation "
                            "has one layer")
    job = plan_feature_equivariance(model, req.transform, images=req.images,
                                    limit=req.limit or (12 if req.quick else None), fit=req.fit,
                                    ridge=1e-4 if req.ridge is None else req.ridge,
                                    neighbourhoods=_neighbourhoods(req), seed=req.seed)
    run = execute([job], out)
    if (r := first(run)) is None:
        return answer(run, None)
    table(f"# {model.name}, {transform.label}: relative error ||M_g Phi(x) - Phi(gx)|| / ||Phi(gx)|| on "
          f"{r['test']} held-out images ({r['fit']} to fit; {r['valid_cells']}/{r['cells']} cells inside the "
          "valid region)")
    for key, value in r["relative_error"].items():
        if not key.endswith("_fit"):
            fit = r["relative_error"].get(key + "_fit")
            table(f"{key:<16}{value:8.3f}" + (f"   (fit {fit:.3f})" if fit is not None else ""))
    wrote(out, job.key + ".csv", f"{job.key}.png", f"{job.key}.json", f"{job.key}_maps.safetensors")
    return answer(run, r)


def stitch(req: Request) -> Answer:
    out = out_dir(req)
    a, b = load(req, "a"), load(req, "b")
    conv = a.profile.conv_layers
    default = ",".join(conv[0:3:2] if req.quick else conv[:7])
    pairs = _layer_pairs(req, a, b, req.layers or default)
    limit, epochs = req.limit or (24 if req.quick else None), 2 if req.quick else req.epochs
    name = stitch_name(a, b)
    check_stitch_fits(a, b, pairs, req.kernel, epochs)
    jobs = plan_stitch(a, b, pairs, images=req.images, limit=limit, fit=req.fit, epochs=epochs,
                       resample=not req.no_resample, kernel=req.kernel, batchnorm=req.batchnorm, seed=req.seed)
    run = execute(jobs, out, desc="stitch", **engine(req))
    if run.interrupted or not run.outcomes:
        return answer(run, None)
    metric = "top1_error" if "top1_error" in run.outcomes[0].results["baseline"]["A"] else "disagreement_with_b"
    settings = {"a": a.name, "b": b.name, "layers": [list(p) for p in pairs], "images": req.images
                or "bundled crops", "limit": limit, "fit": req.fit, "epochs": epochs, "seed": req.seed,
                "resample": not req.no_resample, "kernel": req.kernel, "batchnorm": req.batchnorm}
    rows = write_stitch(out, name, run.outcomes, metric, settings)
    table(f"# {metric.replace('_', ' ')} on held-out images ({req.fit:.0%} of them used to fit)")
    table(format_table(rows))
    wrote(out, name + ".csv", f"{name}.png", f"{name}.json", f"{name}_stitches.safetensors")
    return answer(run, {"metric": metric, "table": rows})


def cka(req: Request) -> Answer:
    out = out_dir(req)
    a, b = load(req, "a"), load(req, "b")
    la, lb = expand_layers(a, req.layers), expand_layers(b, req.layers)
    job = plan_cka(a, b, la, lb, images=req.images, limit=req.limit, debiased=req.debiased, seed=req.seed)
    run = execute([job], out)
    if (res := first(run)) is None:
        return answer(run, None)
    matrix = res["cka"]
    width = max(len(x) for x in la)
    table(" " * width + "".join(f"{y[:8]:>9}" for y in lb))
    for x, row in zip(la, matrix):
        table(f"{x:<{width}}" + "".join(f"{v:9.2f}" for v in row))
    wrote(out, job.key + ".png")
    return answer(run, res)


def train_small(req: Request) -> Answer:
    out = out_file(req.out or f"cnnscope-out/small_{req.data}_seed{req.seed}.safetensors", ".safetensors",
                   req.force, req.label("out"))
    net, info = train_small_net(req.data, req.seed, req.epochs)
    save_small(net, info, out)
    table(f"{req.data} seed {req.seed}: test accuracy {info['test_accuracy']:.3f} after {req.epochs} epochs")
    table(f"wrote {out} (use it as --a small:{out})")
    return Answer({**info, "file": str(out)}, {**info, "file": str(out)})


def stitch_small(req: Request) -> Answer:
    out = out_dir(req)
    epochs = 2 if req.quick else req.epochs
    results = seed_data_experiment(out / "small-nets", epochs=epochs, n_images=150 if req.quick else 600,
                                   task_epochs=1 if req.quick else 4)
    summary = {}
    for case, r in results.items():
        rows = stitch_table(r["result"]["baseline"], r["result"]["rows"], r["metric"])
        summary[case] = {"a": r["a"], "b": r["b"], "metric": r["metric"], "table": rows}
        table(f"# {case}: A={r['a']} B={r['b']} ({r['metric'].replace('_', ' ')})")
        table(format_table(rows))
    write_json({"epochs": epochs, "cases": summary}, out / "stitch_small.json")
    table(f"wrote {out / 'stitch_small.json'}")
    return Answer(summary, summary)
