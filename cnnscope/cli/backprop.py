"""Backpropagation verbs: saliency, backprop (the reversed network), selectivity, sanity."""

from __future__ import annotations

from ..backprop import METHODS, explain, method_rules
from ..backprop.jobs import COLUMNS
from ..backprop.plans import plan_sanity, plan_selectivity
from ..backprop.rules import POOL_RULES as RULE_NAMES
from ..backprop.runs import default_rows, run_saliency, selectivity_table
from ..data import image_sources, picture_sources
from ..errors import CnnscopeError, unknown
from ..images import load_image
from ..jobs import execute
from ..layers import get_layer, resolve
from ..preimage.runs import parse_class
from ..targets import Target
from .numbers import at_least_two, positive_int
from .options import engine, finish, load, model_options, out_dir, output_options, run_options

POOL_RULES = list(RULE_NAMES)


def register(sub) -> None:
    p = sub.add_parser("saliency", help="SaliNet / DeConvNet / DeSaliNet maps (the seed's comparison figure)")
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="image file(s), sample:NAME or a folder (one job per picture)")
    model_options(p)
    output_options(p)
    run_options(p)
    p.add_argument("--method", default="all", help="salinet, deconvnet, desalinet, or all (default)")
    p.add_argument("--layer", help="start layer (default: the seed's two rows, last conv stage + top class)")
    tgt = p.add_mutually_exclusive_group()
    tgt.add_argument("--channel", type=int, help="a neuron of this channel (at --y, --x; default centre)")
    tgt.add_argument("--class", dest="class_", metavar="NAME|INDEX", help="a class logit")
    tgt.add_argument("--features", action="store_true", help="the layer's whole activation (full code)")
    p.add_argument("--whole-channel", action="store_true", help="with --channel: every position of it")
    p.add_argument("--y", type=int)
    p.add_argument("--x", type=int)
    p.add_argument("--pool-rule", choices=POOL_RULES, help="max-pool backward rule (default switches)")
    p.add_argument("--render", choices=["signed", "abs", "max"], default="signed", help="how maps are shown")
    p.set_defaults(func=cmd_saliency)

    p = sub.add_parser("backprop", help="print the reversed network and the backward rule of every block")
    model_options(p, positional=True)
    run_options(p, jobs=False)
    p.add_argument("--method", default="deconvnet", help="salinet, deconvnet or desalinet (default deconvnet)")
    p.add_argument("--pool-rule", choices=POOL_RULES)
    p.set_defaults(func=cmd_backprop)

    p = sub.add_parser("selectivity", help="are backprop maps neuron-selective? (ECCV'16 protocol)")
    model_options(p)
    output_options(p)
    run_options(p, jobs=False)
    p.add_argument("--images", metavar="FOLDER", help="image folder (default: bundled samples)")
    p.add_argument("--limit", type=positive_int, default=20, help="at most this many images (default 20)")
    p.add_argument("--layer", default=None, help="layer (default: the last convolutional stage)")
    p.add_argument("--neurons", type=at_least_two, default=4,
                   help="random neurons per image (default 4; two at least: they are also compared with each other)")
    p.set_defaults(func=cmd_selectivity)

    p = sub.add_parser("sanity", help="cascading model-parameter randomisation (Adebayo et al. 2018)")
    p.add_argument("image", metavar="IMAGE")
    model_options(p)
    output_options(p)
    run_options(p, jobs=False)
    p.add_argument("--class", dest="class_", metavar="NAME|INDEX", help="class (default: the top prediction)")
    p.set_defaults(func=cmd_sanity)


def methods(spec: str) -> list[str]:
    names = list(COLUMNS) if spec == "all" else [m.strip() for m in spec.split(",")]
    for m in names:
        if m not in METHODS:
            raise unknown("method", m, [*METHODS, "all"])
    return names


def _rows(args, model):
    """The targets of each image, checked before any work."""
    if args.class_ is not None:
        if model.profile.logits is None:
            raise CnnscopeError(f"{model.name} has no classes: give --layer and --channel or --features")
        rows = [Target("class", parse_class(model, args.class_), layer=args.layer or model.profile.logits)]
    elif args.layer is None:
        if args.channel is not None or args.features:
            raise CnnscopeError("--channel/--features need --layer")
        return lambda source: default_rows(model)
    else:
        resolve(model, args.layer)
        if args.channel is not None:
            width = get_layer(model, args.layer).channels or 1
            if not 0 <= args.channel < width:
                raise CnnscopeError(f"channel {args.channel} is out of range: {args.layer} has {width} channels "
                                    f"(0-{width - 1})")
            kind = "channel" if args.whole_channel else "neuron"
            rows = [Target(kind, args.channel, args.y, args.x, layer=args.layer)]
        else:
            rows = [Target("features", layer=args.layer)]
    return lambda source: rows


def cmd_saliency(args) -> None:
    sources = picture_sources(args.images)  # every file's header, before any work (each job decodes its own)
    names = methods(args.method)
    out = out_dir(args.out)
    model = load(args)
    run = run_saliency(model, sources, _rows(args, model), names, out, args.pool_rule, args.render,
                       **engine(args))
    for o in run.outcomes:
        for note in o.results.get("notes", []):
            print(f"note: {note}")
        print(f"{o.job.image}: " + ", ".join(r["target"] for r in o.results["rows"])
              + ("  (reused)" if o.seconds is None else f"  ({o.seconds:.1f} s)"))
        print(f"wrote {out / (o.job.key + '_grid.png')}")
    finish(run)


def cmd_backprop(args) -> None:
    model = load(args)
    rows = explain(model, method_rules(args.method, args.pool_rule))
    print(f"# reversed network of {model.name} for {args.method} (read top to bottom = backward order)")
    width = max(len(r["layer"]) for r in rows)
    for r in rows:
        alias = f" ({r['alias']})" if r["alias"] else ""
        print(f"{r['layer'] + alias:<{width + 10}} {r['type']:<18} -> {r['backward']}")


def cmd_selectivity(args) -> dict | list:
    image_sources(args.images, args.limit)  # the folder checked before any work
    out = out_dir(args.out)
    model = load(args)
    job = plan_selectivity(model, args.layer, args.images, args.limit, args.neurons, args.seed)
    layer = job.layer
    run = execute([job], out)
    finish(run)
    res = run.outcomes[0].results
    for note in res.get("notes", []):
        print(f"note: {note}")
    print(f"# mean correlation between maps from different neurons at the same location ({layer}, "
          f"{res['count']} images); high = NOT neuron-selective")
    print(selectivity_table(res["correlations"]))
    print(f"wrote {out / 'selectivity.json'}")
    return res


def cmd_sanity(args) -> dict | list:
    image = load_image(args.image)
    out = out_dir(args.out)
    model = load(args)
    klass = parse_class(model, args.class_) if args.class_ is not None and model.profile.logits else None
    run = execute([plan_sanity(model, args.image, image, klass, args.seed)], out)
    finish(run)
    for note in run.outcomes[0].results.get("notes", []):
        print(f"note: {note}")
    for method, curve in run.outcomes[0].results["spearman"].items():
        print(f"{method:<10} " + " ".join(f"{v:5.2f}" for v in curve))
    print(f"wrote {out / 'sanity.png'}")
    return run.outcomes[0].results
