"""Transformation-analysis verbs: equivariance, stitch, cka, train-small, stitch-small."""

from __future__ import annotations

from .. import checks
from ..errors import CnnscopeError
from ..jobs import execute
from ..layers import resolve
from ..preimage.runs import expand_layers
from ..store import write_json
from ..transforms.equivariance import MAX_NEIGHBOURHOOD
from ..transforms.jobs import (
    format_table,
    stitch_table,
    write_equivariance,
    write_stitch,
)
from ..transforms.plans import (
    equivariance_name,
    plan_cka,
    plan_equivariance,
    plan_feature_equivariance,
    plan_stitch,
    stitch_name,
)
from ..transforms.smallnets import save_small, seed_data_experiment, train_small
from ..transforms.transform import Transform
from .numbers import fraction, non_negative, non_negative_int, odd_positive, positive_int
from .options import engine, finish, load, model_options, out_dir, out_file, output_options, run_options


def register(sub) -> None:
    p = sub.add_parser("equivariance", help="is Phi(gx) = M_g Phi(x)? compensate a transform inside the network")
    p.add_argument("--transform", default="vflip", help="hflip, vflip, rot90, rot180, rotate:DEG, scale:F")
    p.add_argument("--layers", default=None, help="conv layers, or 'stages' (their spatial maps; default: stem, "
                   "stage2, stage4, stage6, head)")
    _data_options(p)
    p.add_argument("--epochs", type=non_negative_int, default=0,
                   help="epochs of the network's own loss refining the closed-form map (default 0: closed form only)")
    p.add_argument("--ridge", type=non_negative, default=None,
                   help="ridge: CNN layers, towards M = I (default: chosen on held-back images); hand-crafted "
                   "features (default 1e-4)")
    p.add_argument("--crops", type=non_negative_int, default=1,
                   help="random rescaled crops per fit image added to the regression (default 1)")
    p.add_argument("--neighbourhood", default="1,3",
                   help="the m x m cells each compensated cell may read: candidate supports of M_g, the best chosen "
                   "by the task on held-back fit images (CNN layers; the spatial inverse alone is always a "
                   "candidate) or each reported (hand-crafted features); default 1,3")
    p.add_argument("--quick", action="store_true", help="few images, two layers, 2 epochs (for CI)")
    model_options(p)
    output_options(p)
    run_options(p)
    p.set_defaults(func=cmd_equivariance)

    p = sub.add_parser("stitch", help="equivalence by stitching: front of A, learned map E, rest of B")
    model_options(p, role="a", default="efficientnet_lite0")
    model_options(p, role="b", default="efficientnet_lite1", preprocessing=False)
    p.add_argument("--layers", default=None,
                   help="layers present in both (or a:b pairs), comma-separated (default: stem, stage1..stage6)")
    _data_options(p)
    p.add_argument("--epochs", type=non_negative_int, default=8,
                   help="task-loss epochs (default 8; 0: the closed-form regression stitch only)")
    p.add_argument("--no-resample", action="store_true", help="refuse grids that differ instead of resampling")
    p.add_argument("--kernel", type=odd_positive, default=1,
                   help="the regression and task stitches' m x m support (odd; default 1)")
    p.add_argument("--batchnorm", action="store_true", help="task-loss stitch: batch norm before the map")
    p.add_argument("--quick", action="store_true", help="few images, two layers, 2 epochs (for CI)")
    output_options(p)
    run_options(p)
    p.set_defaults(func=cmd_stitch)

    p = sub.add_parser("cka", help="linear CKA between the layers of two models (heatmap)")
    model_options(p, role="a", default="efficientnet_lite0")
    model_options(p, role="b", default="efficientnet_lite1", preprocessing=False)
    p.add_argument("--layers", default="stages", help="layers of A and B ('stages' = stem..logits)")
    p.add_argument("--images", metavar="FOLDER")
    p.add_argument("--limit", type=positive_int, default=50)
    p.add_argument("--debiased", action="store_true", help="debiased CKA (default biased)")
    output_options(p)
    run_options(p, jobs=False)
    p.set_defaults(func=cmd_cka)

    p = sub.add_parser("train-small", help="train a small CNN from scratch on a procedural dataset (seconds)")
    p.add_argument("--data", choices=["shapes", "textures"], default="shapes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=positive_int, default=8)
    p.add_argument("--out", default=None, metavar="FILE", help="(default cnnscope-out/small_DATA_seedS.safetensors)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=cmd_train_small)

    p = sub.add_parser("stitch-small", help="seeds / before-after training / different data, by stitching")
    output_options(p)
    p.add_argument("--epochs", type=positive_int, default=8, help="training epochs per network")
    p.add_argument("--quick", action="store_true", help="fewer images and epochs (for CI)")
    p.set_defaults(func=cmd_stitch_small)


def _data_options(p) -> None:
    p.add_argument("--images", metavar="FOLDER", help="images (labels.csv used if present; default bundled crops)")
    p.add_argument("--limit", type=positive_int, help="at most this many images")
    p.add_argument("--fit", type=fraction, default=0.8, help="fraction of images used to fit (default 0.8)")


def _layer_pairs(model_a, model_b, spec: str) -> list[tuple[str, str]]:
    pairs = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        la, _, lb = part.partition(":")
        lb = lb or la
        resolve(model_a, la)
        resolve(model_b, lb)
        pairs.append((la, lb))
    if not pairs:
        raise CnnscopeError("no layers given (--layers)")
    return pairs


def cmd_equivariance(args) -> dict | list:
    out = out_dir(args.out)
    transform = Transform.parse(args.transform)
    model = load(args)
    if model.profile.handcrafted:  # no classifier to judge by: regression error of the one layer's map
        return _feature_equivariance(args, model, transform, out)
    if model.profile.logits is None:
        raise CnnscopeError(f"{model.name} has no classifier: the equivariance test judges maps by its output")
    analysis = model.profile.analysis
    default = ",".join(analysis[:2] if args.quick else analysis)
    layers = list(dict.fromkeys(expand_layers(model, args.layers or default, maps_only=True)))
    limit = args.limit or (24 if args.quick else None)
    epochs, ridge = args.epochs, args.ridge
    name = equivariance_name(model, args.transform)
    jobs = plan_equivariance(model, layers, args.transform, images=args.images, limit=limit, fit=args.fit,
                             epochs=epochs, ridge=ridge, crops=args.crops, seed=args.seed,
                             neighbourhoods=_neighbourhoods(args.neighbourhood))
    run = execute(jobs, out, desc="equivariance", **engine(args))
    finish(run)
    settings = {"model": model.name, "transform": transform.label, "layers": layers, "images": args.images
                or "bundled crops", "limit": limit, "fit": args.fit, "seed": args.seed, "epochs": epochs,
                "ridge": ridge, "crops": args.crops}
    result = write_equivariance(out, name, run.outcomes, transform.label, model.name, settings)
    cols = ("spatial_only", "permutation", "learned")
    print(f"# {transform.label}: {result['metric'].replace('_', ' ')} on held-out images; no transform "
          f"{result['baseline']['no_transform']:.3f}, transformed uncompensated "
          f"{result['baseline']['uncompensated']:.3f}")
    print(f"{'layer':<12}" + "".join(f"{c:>14}" for c in cols) + f"{'map R2':>9}{'invariant ch.':>16}"
          + f"{'null':>6}{'map (chosen by the task)':>26}")
    for r in result["rows"]:
        form = r["map"] if r["ridge"] is None else f"{r['map']}, ridge {r['ridge']:.0e}"
        print(f"{r['layer']:<12}" + "".join(f"{r[c]:14.3f}" for c in cols)
              + f"{r['learned_r2']:9.3f}{r['invariant_channels']:>9}/{r['channels']:<6}"
              + f"{r['null_invariant_channels']:>6}  {form}")
    print(f"wrote {out / (name + '.csv')}, {name}.png, {name}.json, {name}_maps.safetensors")
    return result


def _neighbourhoods(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise CnnscopeError(f"--neighbourhood {text}: expected odd sizes like 1,3,5") from None
    return tuple(checks.odd(m, "--neighbourhood", MAX_NEIGHBOURHOOD) for m in sizes)


def _feature_equivariance(args, model, transform, out) -> None:
    if args.layers:
        raise CnnscopeError(f"--layers does not apply to {model.name}: a hand-crafted representation has one layer")
    sizes = _neighbourhoods(args.neighbourhood)
    job = plan_feature_equivariance(model, args.transform, images=args.images,
                                    limit=args.limit or (12 if args.quick else None), fit=args.fit,
                                    ridge=1e-4 if args.ridge is None else args.ridge, neighbourhoods=sizes,
                                    seed=args.seed)
    run = execute([job], out)
    finish(run)
    r = run.outcomes[0].results
    print(f"# {model.name}, {transform.label}: relative error ||M_g Phi(x) - Phi(gx)|| / ||Phi(gx)|| on "
          f"{r['test']} held-out images ({r['fit']} to fit; {r['valid_cells']}/{r['cells']} cells inside the "
          "valid region)")
    for key, value in r["relative_error"].items():
        if not key.endswith("_fit"):
            fit = r["relative_error"].get(key + "_fit")
            print(f"{key:<16}{value:8.3f}" + (f"   (fit {fit:.3f})" if fit is not None else ""))
    print(f"wrote {out / (job.key + '.csv')}, {job.key}.png, {job.key}.json, {job.key}_maps.safetensors")
    return r


def cmd_stitch(args) -> dict | list:
    out = out_dir(args.out)
    a, b = load(args, "a"), load(args, "b")
    conv = a.profile.conv_layers
    default = ",".join(conv[0:3:2] if args.quick else conv[:7])
    pairs = _layer_pairs(a, b, args.layers or default)
    limit, epochs = args.limit or (24 if args.quick else None), 2 if args.quick else args.epochs
    name = stitch_name(a, b)
    jobs = plan_stitch(a, b, pairs, images=args.images, limit=limit, fit=args.fit, epochs=epochs,
                       resample=not args.no_resample, kernel=args.kernel, batchnorm=args.batchnorm, seed=args.seed)
    run = execute(jobs, out, desc="stitch", **engine(args))
    finish(run)
    metric = "top1_error" if "top1_error" in run.outcomes[0].results["baseline"]["A"] else "disagreement_with_b"
    settings = {"a": a.name, "b": b.name, "layers": [list(p) for p in pairs], "images": args.images
                or "bundled crops", "limit": limit, "fit": args.fit, "epochs": epochs, "seed": args.seed,
                "resample": not args.no_resample, "kernel": args.kernel, "batchnorm": args.batchnorm}
    table = write_stitch(out, name, run.outcomes, metric, settings)
    print(f"# {metric.replace('_', ' ')} on held-out images ({args.fit:.0%} of them used to fit)")
    print(format_table(table))
    print(f"wrote {out / (name + '.csv')}, {name}.png, {name}.json, {name}_stitches.safetensors")
    return {"metric": metric, "table": table}


def cmd_cka(args) -> dict | list:
    out = out_dir(args.out)
    a, b = load(args, "a"), load(args, "b")
    la, lb = expand_layers(a, args.layers), expand_layers(b, args.layers)
    job = plan_cka(a, b, la, lb, images=args.images, limit=args.limit, debiased=args.debiased, seed=args.seed)
    name = job.key
    run = execute([job], out)
    finish(run)
    matrix = run.outcomes[0].results["cka"]
    width = max(len(x) for x in la)
    print(" " * width + "".join(f"{y[:8]:>9}" for y in lb))
    for x, row in zip(la, matrix):
        print(f"{x:<{width}}" + "".join(f"{v:9.2f}" for v in row))
    print(f"wrote {out / (name + '.png')}")
    return run.outcomes[0].results


def cmd_train_small(args) -> None:
    out = out_file(args.out or f"cnnscope-out/small_{args.data}_seed{args.seed}.safetensors", ".safetensors",
                   args.force)
    net, info = train_small(args.data, args.seed, args.epochs)
    save_small(net, info, out)
    print(f"{args.data} seed {args.seed}: test accuracy {info['test_accuracy']:.3f} after {args.epochs} epochs")
    print(f"wrote {out} (use it as --a small:{out})")


def cmd_stitch_small(args) -> None:
    out = out_dir(args.out)
    epochs = 2 if args.quick else args.epochs
    results = seed_data_experiment(out / "small-nets", epochs=epochs, n_images=150 if args.quick else 600,
                                   task_epochs=1 if args.quick else 4)
    summary = {}
    for case, r in results.items():
        rows = stitch_table(r["result"]["baseline"], r["result"]["rows"], r["metric"])
        summary[case] = {"a": r["a"], "b": r["b"], "metric": r["metric"], "table": rows}
        print(f"# {case}: A={r['a']} B={r['b']} ({r['metric'].replace('_', ' ')})")
        print(format_table(rows))
    write_json({"epochs": epochs, "cases": summary}, out / "stitch_small.json")
    print(f"wrote {out / 'stitch_small.json'}")
