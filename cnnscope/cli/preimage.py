"""Pre-image verbs: invert, maximize, accentuate, caricature (texture and style: `cli.style`)."""

from __future__ import annotations

from ..errors import CnnscopeError
from ..images import load_image
from ..layers import get_layer
from ..preimage.plans import plan_maximize
from ..preimage.robustness import parse_transforms
from ..preimage.runs import (
    channel_targets,
    expand_layers,
    parse_channels,
    parse_class,
    run_accentuate,
    run_caricature,
    run_invert,
    run_maximize,
)
from ..preimage.solver import check_memory
from ..preimage.tasks import settings_for
from ..targets import Target
from .numbers import non_negative, positive_int
from .options import (
    INTERRUPTED,
    engine,
    explicit_prior,
    finish,
    load_several,
    model_options,
    optimiser_options,
    out_dir,
    output_options,
    run_options,
    took,
)


def preimage_options(p, data_weight: float, recipes: bool = True, jobs: bool = True) -> None:
    model_options(p, several=recipes)
    output_options(p)
    run_options(p, jobs=jobs)
    optimiser_options(p, data_weight, recipes)


def register(sub) -> None:
    p = sub.add_parser("invert", help="pre-image: reconstruct an image from its code at a layer")
    p.add_argument("image", metavar="IMAGE", help="image file or sample:NAME")
    p.add_argument("--layer", help="layer(s), comma-separated, or 'stages' for stem..logits "
                                   "(hand-crafted models: their one layer)")
    p.add_argument("--restarts", type=positive_int, default=1,
                   help="N pre-images of the same code from different noise (reconstruction ambiguity)")
    p.add_argument("--compare-priors", action="store_true", help="no prior vs TV beta=1 vs TV beta=2")
    p.add_argument("--window", help="reconstruct only feature cells y0:y1,x0:x1")
    p.add_argument("--joint", action="store_true",
                   help="several layers: one picture whose code matches at all of them (default: one per layer)")
    preimage_options(p, data_weight=20.0)
    p.set_defaults(func=cmd_invert)

    p = sub.add_parser("maximize", help="activation maximisation: images that excite a unit or class")
    p.add_argument("--layer", default=None, help="layer(s), comma-separated, or 'stages' (default logits)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--channel", help="channel(s): 3, 0-15 or 1,5,9")
    what.add_argument("--all-channels", action="store_true", help="every channel of the layer (grid)")
    what.add_argument("--class", dest="class_", metavar="NAME|INDEX", help="a class logit")
    p.add_argument("--where", choices=["neuron", "channel"], default="neuron",
                   help="a single neuron (default: the centre) or the whole channel's mean")
    p.add_argument("--y", type=int, help="neuron row (feature cells; default centre)")
    p.add_argument("--x", type=int, help="neuron column (feature cells; default centre)")
    p.add_argument("--chunk", type=positive_int, default=8, help="targets optimised together (default 8)")
    p.add_argument("--batch", type=positive_int, default=1, help="pictures per target (default 1)")
    p.add_argument("--diversity", type=non_negative, default=0.0, metavar="W",
                   help="push a target's --batch pictures apart (Gram diversity, weight W relative to the data "
                        "term; try 0.5)")
    p.add_argument("--diversity-layer", metavar="NAME",
                   help="layer the diversity is measured at (default: the maximised one, or a mid-depth one)")
    preimage_options(p, data_weight=20.0)
    p.set_defaults(func=cmd_maximize)

    p = sub.add_parser("accentuate", help="feature accentuation: push a unit up from an image, staying close to it")
    p.add_argument("image", metavar="IMAGE", help="image file or sample:NAME")
    p.add_argument("--layer", default=None, help="layer of the unit (default logits with --class)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--channel", help="channel(s): 3, 0-15 or 1,5,9 (one picture each)")
    what.add_argument("--class", dest="class_", metavar="NAME|INDEX", help="a class logit (several: comma-separated)")
    p.add_argument("--where", choices=["neuron", "channel"], default="channel",
                   help="a single neuron (the centre) or the whole channel's mean (default)")
    p.add_argument("--anchor-layer", metavar="NAME",
                   help="stay close to the image's code here (default: two rows below --layer)")
    p.add_argument("--anchor-weight", type=non_negative, default=1.0,
                   help="weight of staying close, relative to the data term (default 1)")
    preimage_options(p, data_weight=20.0, jobs=False)
    p.set_defaults(func=cmd_accentuate)

    p = sub.add_parser("caricature", help="emphasise what a layer sees in an image")
    p.add_argument("image", metavar="IMAGE", help="image file or sample:NAME")
    p.add_argument("--layer", help="layer(s), comma-separated, or 'stages' (hand-crafted models: their one layer)")
    p.add_argument("--cosine", type=non_negative, default=0.0, metavar="P",
                   help="weight the inner product by cos^P (rewards the pattern, not the magnitude)")
    preimage_options(p, data_weight=20.0)
    p.set_defaults(func=cmd_caricature)


def setup(args, task: str):
    """(models, prior, solver settings, output folder, recipe) of a pre-image verb; all checked first."""
    if args.jitter is not None and args.jitter < 0:
        raise CnnscopeError(f"--jitter must be >= 0 pixels, got {args.jitter}")
    out = out_dir(args.out)
    overrides = {"param": args.param, "iters": args.iters, "lr": args.lr, "optimizer": args.optimizer,
                 "transforms": args.transforms}
    parse_transforms(args.transforms)  # a bad spec: one line before any model is loaded
    models = load_several(args)  # (their kind decides the default recipe: M&V's for hand-crafted features)
    recipe, cfg, _ = settings_for(task, args.recipe, overrides, seed=args.seed, box=not args.no_box, jitter=args.jitter,
                                  handcrafted=any(m.profile.handcrafted for m in models))
    return models, explicit_prior(args), cfg, out, recipe


def default_layer(args, models) -> None:
    """--layer may be left out for hand-crafted representations (HOG, DSIFT): they have one layer."""
    if args.layer:
        return
    single = {m.profile.single_layer for m in models}
    if len(single) == 1 and None not in single:
        args.layer = single.pop()
        return
    raise CnnscopeError(f"--layer is required for {', '.join(m.name for m in models)} "
                        "(a layer name, several comma-separated, or 'stages')")


def check_budget(models, layer_spec: str, n: int, size: int | None, cfg) -> None:
    """Refuse an over-budget problem before anything is written."""
    for model in models:
        check_memory(model, expand_layers(model, layer_spec), n, size or model.input_size, cfg.max_memory_gb)


def parse_window(text: str | None):
    if not text:
        return None
    try:
        ys, xs = text.split(",")
        return tuple(int(v) for v in ys.split(":") + xs.split(":"))
    except ValueError:
        raise CnnscopeError(f"--window {text}: expected y0:y1,x0:x1") from None


def cmd_invert(args) -> dict | list:
    load_image(args.image)  # validate before loading models
    window = parse_window(args.window)
    models, prior, cfg, out, recipe = setup(args, "invert")
    default_layer(args, models)
    check_budget(models, args.layer, args.restarts, args.size, cfg)
    summary = run_invert(models, args.image, args.layer, out, cfg=cfg, prior=prior, data_weight=args.data_weight,
                         size=args.size, restarts=args.restarts, compare_priors=args.compare_priors, window=window,
                         recipe=recipe, joint=args.joint, **engine(args))
    for u in summary["units"]:
        print_notes(u)
        errs = ", ".join(f"{e:.4f}" for e in u["normalised_error"])
        judged = ""
        if u.get("judge_top5_overlap"):
            judged = "   judges' top-5 overlap " + " ".join(
                "/".join(str(v) for v in d.values()) for d in u["judge_top5_overlap"])
        print(f"{u['title']:<40} normalised error {errs}{judged}   ({took(u['seconds'])})")
        if "ambiguity" in u:
            a = u["ambiguity"]
            print(f"{'':<40} mean mutual RMS pixel distance {a['mean_mutual_rms_distance']:.4f}; "
                  f"to the original {sum(a['rms_distance_to_original']) / len(a['rms_distance_to_original']):.4f}")
    print(f"wrote {out / summary['grid']}")
    finish(summary["interrupted"], INTERRUPTED)
    return summary


def print_notes(unit: dict) -> None:
    for note in unit.get("notes", []):
        print(f"note: {note}")


def judged(unit: dict) -> str:
    """The judges' ranks of a class picture's class, for printing ('' for other targets)."""
    if "judge_rank" not in unit:
        return ""
    return "   judges' rank of the class " + ", ".join(f"{k} {v}" for k, v in unit["judge_rank"].items())


def _logits(models) -> str:
    """The class-logit layer of the models (the default layer of class targets)."""
    found = {m.profile.logits for m in models}
    if None in found or len(found) != 1:
        raise CnnscopeError("--class needs models with a classifier (give --layer for others)")
    return found.pop()


def cmd_maximize(args) -> dict | list:
    models, prior, cfg, out, recipe = setup(args, "maximize")
    if args.diversity and args.batch < 2:
        raise CnnscopeError("--diversity needs --batch 2 or more (pictures per unit to tell apart)")
    single = {m.profile.single_layer for m in models}  # a hand-crafted representation's one layer
    if args.class_ is None and args.layer is None and (len(single) > 1 or None in single):
        raise CnnscopeError("--layer is required with --channel/--all-channels")
    layer_spec = args.layer or (single.pop() if args.class_ is None else _logits(models))
    channels = parse_channels(args.channel) if args.channel else None

    def targets_for(model, layer):
        if args.class_ is not None:
            return [Target("class", parse_class(model, args.class_))]
        chans = list(range(get_layer(model, layer).channels or 1)) if args.all_channels else channels
        return channel_targets(model, layer, chans, args.where, args.y, args.x)

    for model in models:  # every target checked before any work
        for layer in expand_layers(model, layer_spec):
            targets_for(model, layer)
    check_budget(models, layer_spec, args.chunk * args.batch if args.class_ is None else args.batch, args.size, cfg)
    planned = plan_maximize(models, lambda m: expand_layers(m, layer_spec), targets_for, size=args.size,
                            recipe=recipe, cfg=cfg, prior=prior, data_weight=args.data_weight, chunk=args.chunk,
                            batch=args.batch, diversity=args.diversity, diversity_layer=args.diversity_layer)
    summary = run_maximize(planned, out, **engine(args))
    for u in summary["units"]:
        print_notes(u)
        print(f"{u['layer']:<14} {u['target']:<16} activation {u['start_activation']:9.3f} -> "
              f"{u['final_activation']:9.3f}   ({u['activation_ratio']:.2f}x the natural-image max){judged(u)}")
    print(f"wrote {out / summary['grid']}")
    finish(summary["interrupted"], INTERRUPTED)
    return summary


def cmd_caricature(args) -> dict | list:
    load_image(args.image)
    models, prior, cfg, out, recipe = setup(args, "caricature")
    default_layer(args, models)
    check_budget(models, args.layer, 1, args.size, cfg)
    summary = run_caricature(models, args.image, args.layer, out, cfg=cfg, prior=prior,
                             data_weight=args.data_weight, size=args.size, cosine_power=args.cosine, recipe=recipe,
                             **engine(args))
    for u in summary["units"]:
        print_notes(u)
        print(f"{u['layer']:<14} <Phi(x0),Phi(x)>/||Phi(x0)||^2 = {u['relative_response']:.3f} "
              f"(1 at the input; {took(u['seconds'])})")
    print(f"wrote {out / summary['grid']}")
    finish(summary["interrupted"], INTERRUPTED)
    return summary


def cmd_accentuate(args) -> dict | list:
    load_image(args.image)
    models, prior, cfg, out, recipe = setup(args, "accentuate")
    if len(models) > 1:
        raise CnnscopeError("accentuate takes one --model")
    model = models[0]
    if args.class_ is not None:
        layer = args.layer or _logits(models)
        targets = [Target("class", parse_class(model, c.strip())) for c in args.class_.split(",") if c.strip()]
    elif args.layer is None and model.profile.single_layer is None:
        raise CnnscopeError("--layer is required with --channel")
    else:
        layer = args.layer or model.profile.single_layer
        targets = channel_targets(model, layer, parse_channels(args.channel), args.where)
    layer = expand_layers(model, layer)[0]
    if args.anchor_layer:
        expand_layers(model, args.anchor_layer)
    check_budget(models, layer, len(targets), args.size, cfg)
    summary = run_accentuate(model, args.image, layer, targets, out, cfg=cfg, prior=prior,
                             data_weight=args.data_weight, size=args.size, anchor_layer=args.anchor_layer,
                             anchor_weight=args.anchor_weight, recipe=recipe)
    for u in summary["units"]:
        print(f"{layer:<14} {u['target']:<16} activation {u['start_activation']:9.3f} -> "
              f"{u['final_activation']:9.3f} (anchored at {u['anchor_layer']}){judged(u)}")
    print(f"wrote {out / summary['grid']}")
    finish(summary["interrupted"], INTERRUPTED)
    return summary
