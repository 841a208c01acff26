"""Top-level verbs that compose the families: report (a site of a whole model) and demo."""

from __future__ import annotations

from ..data import image_sources, list_folder
from ..errors import CnnscopeError
from ..jobs import provide
from ..models import DEFAULT_MODEL
from ..preimage.recipes import RECIPES
from ..preimage.runs import expand_layers
from ..report.atlas import INVERT_ITERS, ReportSettings, report_settings
from ..report.demo import run_demo
from ..report.findings import ACCURACY, DEFAULT, FINDINGS, TRANSFORMS, reproduce, skipped
from ..report.site import build_report
from .numbers import positive_int
from .options import device_option, engine, finish, load, model_options, out_dir, output_options, run_options


def register(sub) -> None:
    p = sub.add_parser("report", help="a browsable static HTML site of a whole model (resumable, parallel)")
    model_options(p, positional=True)
    output_options(p, default="cnnscope-report")
    run_options(p)
    p.add_argument("--images", metavar="FOLDER", help="images for patches and examples (default bundled samples)")
    p.add_argument("--layers", default=None, help="layers, comma-separated, or 'stages' (default)")
    p.add_argument("--channels", type=positive_int, help="first K channels per layer in the atlas (default all)")
    p.add_argument("--iters", type=positive_int, default=None,
                   help=f"pre-image iterations (default: {INVERT_ITERS} for the inversions, "
                        f"{RECIPES[ReportSettings.recipe].iters_for('atlas')} for the atlas)")
    p.add_argument("--size", type=positive_int, help="pre-image size in px (default the model's input size)")
    p.add_argument("--examples", type=positive_int, default=None, help="images inverted / back-propagated (4)")
    p.add_argument("--patch-images", type=positive_int, default=None,
                   help="images searched for top patches (default 100)")
    p.add_argument("--equivariance", metavar="TRANSFORM", help="also run the equivariance analysis (e.g. vflip)")
    p.add_argument("--stitch-with", metavar="MODEL", help="also stitch this model's layers into MODEL_B's")
    p.add_argument("--atlas-batch", type=positive_int, default=1, metavar="N",
                   help="atlas channels optimised together per job (default 1; on a GPU 16-64 use it fully)")
    p.add_argument("--quick", action="store_true", help="two layers, 4 channels, 40 iterations, 96 px")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("reproduce", help="the seed talk's findings, each measured with a verdict (findings.json)")
    model_options(p)
    output_options(p, default="cnnscope-findings")
    run_options(p)
    p.add_argument("--images", metavar="FOLDER", help="images (default: the bundled samples)")
    p.add_argument("--findings", metavar="ID,…", help=f"only these ({', '.join(FINDINGS)}; default all but "
                   "hflip and rot90)")
    p.add_argument("--transforms", metavar="T,…", help=f"equivariance findings to run ({', '.join(TRANSFORMS)}; "
                   "default vflip)")
    p.add_argument("--quick", action="store_true", help="few images and iterations (for CI, about 3 minutes)")
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("demo", help="write the demo HTML page + figures into a folder")
    output_options(p, default="demo-out")
    p.add_argument("--model", default=None, help="zoo model (default efficientnet_lite0)")
    p.add_argument("--images", nargs="+", default=None, metavar="IMAGE",
                   help="images (default sample:chelsea sample:coffee)")
    p.add_argument("--quick", action="store_true", help="small optimisation budget (for CI and a first look)")
    device_option(p)
    p.set_defaults(func=cmd_demo)


def cmd_report(args) -> None:
    out = out_dir(args.out)
    model = load(args)
    report = report_settings(
        model, args.model or DEFAULT_MODEL, expand_layers(model, args.layers) if args.layers else None,
        quick=args.quick, channels=args.channels, iters=args.iters, size=args.size, seed=args.seed,
        images=args.images, examples=args.examples, patch_images=args.patch_images, equivariance=args.equivariance,
        stitch_with=args.stitch_with, atlas_batch=args.atlas_batch, weights=args.weights,
        random_weights=args.random_weights)
    layers = report.layers
    print(f"report: {len(layers)} layers -> {out}/index.html")
    jobs, run = build_report(out, report, model, **engine(args))
    rate = f", {60 * run.computed / run.seconds:.1f} jobs/min" if run.computed and run.seconds > 0 else ""
    print(f"{run.computed} computed, {run.reused} reused in {run.seconds:.1f} s{rate}; wrote {out / 'index.html'}")
    finish(run)


def _ids(text: str | None, valid: tuple[str, ...], what: str) -> tuple[str, ...]:
    ids = tuple(dict.fromkeys(i.strip() for i in text.split(",") if i.strip()))
    unknown = [i for i in ids if i not in valid]
    if unknown or not ids:
        raise CnnscopeError(f"unknown {what} '{unknown[0] if unknown else text}' ({', '.join(valid)})")
    return ids


def cmd_reproduce(args) -> dict | list:
    ids = _ids(args.findings, FINDINGS, "finding") if args.findings is not None else DEFAULT
    if args.transforms is not None:
        chosen = _ids(args.transforms, TRANSFORMS, "transform")
        ids = tuple(i for i in ids if i not in TRANSFORMS) + chosen
    out = out_dir(args.out)
    labelled = False
    if args.images is not None:
        image_sources(args.images)  # the folder checked before any work
        labelled = all(isinstance(label, int) for _, label in list_folder(args.images, None))
    model = load(args)
    for finding, why in skipped(model, ids).items():
        print(f"skipped {finding}: {why}")
    accuracy = [i for i in ids if i in ACCURACY]
    if accuracy and not labelled:
        where = f"{args.images} has no labels.csv" if args.images else "the bundled samples have no labels"
        print(f"note: {where}; {', '.join(accuracy)} measure disagreement with the network's own predictions "
              "instead of top-1 error (give a labelled folder with --images for accuracy)")
    provide(model.job_spec(), model)
    run, findings = reproduce(out, model, args.images, args.quick, args.seed, ids, **engine(args))
    finish(run)
    for f in findings:
        print(f"{f['id']:<30} {f['verdict']:<15} ({f['n_images']} images)")
    print(f"wrote {out / 'findings.json'}, findings.html")
    return findings


def cmd_demo(args) -> None:
    path = run_demo(args.out, model_name=args.model, images=args.images, preimage_iters=40 if args.quick else 200,
                    maximize_size=128 if args.quick else None,
                    device=args.device)
    print(f"wrote {path}")
