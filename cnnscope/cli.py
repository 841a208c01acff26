"""The `cnnscope` command. Every verb is a thin layer over the Python API of the same name."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from .errors import CnnscopeError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage dump
        sys.stderr.write(f"cnnscope: error: {message} (see: {self.prog} --help)\n")
        sys.exit(2)


def _floats3(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 3 comma-separated numbers, got '{text}'") from None
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected 3 comma-separated numbers (R,G,B), got '{text}'")
    return values


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _finite(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got '{text}'")
    return v


def _non_negative(text: str) -> float:
    v = _finite(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return v


def _positive(text: str) -> float:
    v = _finite(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return v


def _model_options(p: argparse.ArgumentParser, positional: bool = False) -> None:
    if positional:
        p.add_argument("model", nargs="?", default=None, metavar="MODEL",
                       help="zoo name, path/file.py:factory, or TorchScript file (default efficientnet_lite0)")
    else:
        p.add_argument("--model", default=None,
                       help="zoo name, path/file.py:factory, or TorchScript file (default efficientnet_lite0)")
    g = p.add_argument_group("model options")
    g.add_argument("--weights", metavar="PATH", help="checkpoint (.pth/.pt/.safetensors) to load strictly")
    g.add_argument("--random-weights", action="store_true", help="keep the seeded random initialisation")
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    g.add_argument("--input-size", type=_positive_int, help="network input size in px (user models)")
    g.add_argument("--resize", type=_positive_int, help="shorter side before the centre crop")
    g.add_argument("--mean", type=_floats3, help="normalisation mean R,G,B in [0,1] units")
    g.add_argument("--std", type=_floats3, help="normalisation std R,G,B in [0,1] units")
    g.add_argument("--classes", metavar="FILE", help="class names, one per line (default: ImageNet)")


def _preimage_options(p: argparse.ArgumentParser, data_weight: float, recipes: bool = True) -> None:
    from .preimage.param import PARAMS
    from .preimage.recipes import RECIPES

    p.add_argument("--model", default=None, help="model, or several comma-separated (same layer across models)")
    p.add_argument("--weights", metavar="PATH", help="checkpoint for the (single) model")
    p.add_argument("--random-weights", action="store_true", help="keep the seeded random initialisation")
    p.add_argument("--out", default="cnnscope-out", metavar="DIR", help="output folder (default cnnscope-out)")
    g = p.add_argument_group("optimiser")
    if recipes:
        g.add_argument("--recipe", choices=list(RECIPES), default=None,
                       help="mv (Mahendran & Vedaldi: pixels + TV/alpha prior), lucid (Fourier + decorrelated "
                            "colour + transforms), maco (phase only); default: the verb's measured best")
        g.add_argument("--param", choices=list(PARAMS), default=None,
                       help="image parametrisation (default: the recipe's)")
        g.add_argument("--transforms", metavar="SPEC", default=None,
                       help="robustness transforms each step: 'standard', 'none' or e.g. "
                            "'pad:12,jitter:8,scale:0.9-1.1,rotate:10,jitter:4' (default: the recipe's)")
        g.add_argument("--max-memory", type=_positive, default=8.0, metavar="GB",
                       help="refuse problems estimated to need more memory (default 8)")
    g.add_argument("--size", type=_positive_int, help="image size in px (default: the model's input size)")
    g.add_argument("--iters", type=_positive_int, default=None, help="iterations (default: the recipe's; 300)")
    g.add_argument("--seed", type=int, default=0, help="random seed (noise, transforms)")
    g.add_argument("--optimizer", choices=["sgd", "adam", "lbfgs"], default=None,
                   help="sgd = momentum 0.9 (M&V IJCV'16), adam (lucid, maco, texture, style), lbfgs")
    g.add_argument("--lr", type=_positive, default=None,
                   help="typical step (pixels: a fraction of B=80; default: the recipe's, 0.05)")
    g.add_argument("--jitter", type=int, default=None,
                   help="random circular shift in px each step, 0 = none (default: mv recipe 1/8 of the layer "
                        "stride for deep layers)")
    g.add_argument("--data-weight", type=_non_negative, default=data_weight,
                   help=f"weight C of the data term (default {data_weight:g})")
    g.add_argument("--tv-beta", type=_positive, default=None, help="TV exponent beta (default 2)")
    g.add_argument("--tv-weight", type=_non_negative, default=None, help="multiplier on lambda_beta (default 1)")
    g.add_argument("--alpha-weight", type=_non_negative, default=None, help="multiplier on lambda_alpha (default 1)")
    g.add_argument("--no-prior", action="store_true", help="no TV and no alpha-norm term")
    g.add_argument("--no-box", action="store_true", help="do not keep pixels in [0,1] (only the B+ bound)")


def _default_layer(args, models) -> None:
    """--layer may be left out for hand-crafted representations (HOG, DSIFT): they have one layer."""
    if args.layer:
        return
    only = {next(iter(dict(m.net.named_children())), None) for m in models if not m.classes}
    if len(only) == 1 and None not in only and all(not m.classes for m in models):
        args.layer = only.pop()
        return
    raise CnnscopeError(f"--layer is required for {', '.join(m.name for m in models)} "
                        "(a layer name, several comma-separated, or 'stages')")


def _preimage_setup(args, task: str):
    """Models, prior (None: the recipe's), solver settings, output folder and recipe of a pre-image verb.
    texture and style have no recipes: Adam, and no prior (texture) or a light TV term (style)."""
    from dataclasses import replace

    from .models import load_model
    from .preimage import Prior, SolverConfig
    from .preimage.presets import ALIGNED_TASKS
    from .preimage.recipes import get_recipe
    from .preimage.robustness import parse_transforms

    names = [n.strip() for n in (args.model or "efficientnet_lite0").split(",") if n.strip()]
    if args.weights and len(names) > 1:
        raise CnnscopeError("--weights applies to one model; give one --model with it")
    if args.jitter is not None and args.jitter < 0:
        raise CnnscopeError(f"--jitter must be >= 0 pixels, got {args.jitter}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CnnscopeError(f"--out {out}: exists and is not a folder")
    beta = 2.0 if args.tv_beta is None else args.tv_beta
    explicit_prior = args.tv_weight is not None or args.alpha_weight is not None or args.tv_beta is not None
    prior = None
    if args.no_prior:
        prior = Prior.none()
    elif task in ("texture", "style"):
        if explicit_prior:
            prior = Prior(beta=beta, tv_weight=1.0 if args.tv_weight is None else args.tv_weight,
                          alpha_weight=1.0 if args.alpha_weight is None else args.alpha_weight)
        else:  # texture: no prior (Gatys); style: a light TV term against high-frequency noise
            prior = Prior.none() if task == "texture" else Prior(beta=beta, tv_weight=0.1, alpha_weight=0)
    elif explicit_prior:
        prior = Prior(beta=beta, tv_weight=1.0 if args.tv_weight is None else args.tv_weight,
                      alpha_weight=1.0 if args.alpha_weight is None else args.alpha_weight)
    recipe = None
    if task in ("texture", "style"):
        cfg = SolverConfig(iters=args.iters or 300, optimizer=args.optimizer or "adam", lr=args.lr or 0.05,
                           seed=args.seed, box=not args.no_box, jitter=args.jitter or 0)
    else:
        overrides = {"param": args.param, "iters": args.iters, "lr": args.lr, "optimizer": args.optimizer,
                     "transforms": args.transforms}
        recipe = replace(get_recipe(args.recipe, task), **{k: v for k, v in overrides.items() if v is not None})
        if task in ALIGNED_TASKS and args.transforms is None:
            recipe = replace(recipe, transforms="auto")  # M&V's shift: the target feature map stays aligned
        parse_transforms(None if recipe.transforms == "auto" else recipe.transforms)  # one line on a bad spec
        cfg = recipe.config(seed=args.seed, box=not args.no_box, jitter=args.jitter, max_memory_gb=args.max_memory)
    models = [load_model(n, weights=args.weights, random_weights=args.random_weights, seed=args.seed)
              for n in names]
    return models, prior, cfg, out, recipe


def _check_memory(models, layer_spec: str, n: int, size: int | None, cfg) -> None:
    """Refuse an over-budget problem before anything is written."""
    from .preimage.runs import expand_layers
    from .preimage.solver import check_memory

    for model in models:
        check_memory(model, expand_layers(model, layer_spec), n, size or model.input_size, cfg.max_memory_gb)


def _took(seconds: float | None) -> str:
    return "reused" if seconds is None else f"{seconds:.1f} s"


def _finish(summary: dict, out: Path) -> None:
    print(f"wrote {out / summary['grid']}")
    if summary.get("interrupted"):
        sys.stderr.write("cnnscope: interrupted; finished units are saved, the one in flight marked interrupted "
                         "(the same command again redoes it)\n")
        raise SystemExit(130)


def cmd_invert(args) -> None:
    from .images import load_image
    from .preimage.runs import run_invert

    load_image(args.image)  # validate before loading models
    window = None
    if args.window:
        try:
            ys, xs = args.window.split(",")
            window = tuple(int(v) for v in ys.split(":") + xs.split(":"))
        except ValueError:
            raise CnnscopeError(f"--window {args.window}: expected y0:y1,x0:x1") from None
    models, prior, cfg, out, recipe = _preimage_setup(args, "invert")
    _default_layer(args, models)
    _check_memory(models, args.layer, args.restarts, args.size, cfg)
    summary = run_invert(models, args.image, args.layer, out, cfg=cfg, prior=prior, data_weight=args.data_weight,
                         size=args.size, restarts=args.restarts, compare_priors=args.compare_priors, window=window,
                         recipe=recipe)
    for u in summary["units"]:
        errs = ", ".join(f"{e:.4f}" for e in u["normalised_error"])
        judged = ""
        if u.get("judge_top5_overlap"):
            judged = "   judges' top-5 overlap " + " ".join(
                "/".join(str(v) for v in d.values()) for d in u["judge_top5_overlap"])
        print(f"{u['title']:<40} normalised error {errs}{judged}   ({_took(u['seconds'])})")
        if "ambiguity" in u:
            a = u["ambiguity"]
            print(f"{'':<40} mean mutual RMS pixel distance {a['mean_mutual_rms_distance']:.4f}; "
                  f"to the original {sum(a['rms_distance_to_original']) / len(a['rms_distance_to_original']):.4f}")
    _finish(summary, out)


def _layer_list(model, spec):
    from .layers import resolve

    if not spec:
        return None
    names = [n.strip() for n in spec.split(",") if n.strip()]
    for n in names:
        resolve(model, n)
    return names


def _style_outputs(out: Path, stem: str, images, titles, settings: dict, results: list[dict]) -> Path:
    from .images import save_image
    from .store import write_json
    from .viz import image_grid

    out.mkdir(parents=True, exist_ok=True)
    files = []
    for i, img in enumerate(images[1:]):
        name = f"{stem}.png" if len(images) == 2 else f"{stem}_{i}.png"
        save_image(img, out / name)
        files.append(name)
    grid = out / f"{stem}_grid.png"
    image_grid(images, titles, grid, ncols=len(images), cell=3.0)
    write_json({"settings": settings, "results": results, "files": files, "grid": grid.name}, out / f"{stem}.json")
    return grid


def cmd_texture(args) -> None:
    from .images import load_image
    from .preimage.runs import slug
    from .preimage.style import texture

    source = load_image(args.image)
    models, prior, cfg, out, _ = _preimage_setup(args, "texture")
    model = models[0]
    layers = _layer_list(model, args.style_layers)
    variants = [args.soften] if not args.compare_soften else [None, args.soften or 1.0]
    images, titles, results = [model.preprocess.geometry(source)[0]], ["source"], []
    for temp in variants:
        r, info = texture(model, source, size=args.size, layers=layers, temperature=temp, prior=prior,
                          scales=args.scales, config=cfg, style_size=args.style_size, param=args.param)
        before, after = sum(info["gram_before"].values()), sum(info["gram_after"].values())
        images.append(r.images[0])
        titles.append("Gram" if temp is None else f"softened Gram (T={temp:g})")
        results.append({**info, **r.summary(), "gram_total_before": before, "gram_total_after": after})
        print(f"{titles[-1]:<28} Gram loss {before:.4f} -> {after:.6f} ({before / max(after, 1e-12):.0f}x) "
              f"in {r.seconds:.1f} s")
    stem = slug(f"texture_{model.name}_{args.image.replace('sample:', '')}")
    settings = {"task": "texture", **model.settings(), "image": args.image, "size": args.size or model.input_size,
                "solver": cfg.to_dict(), "prior": prior.to_dict(), "scales": args.scales, "param": args.param}
    print(f"wrote {_style_outputs(out, stem, images, titles, settings, results)}")
    if any(r["interrupted"] for r in results):
        raise SystemExit(130)


def cmd_style(args) -> None:
    from .images import load_image
    from .preimage.runs import slug
    from .preimage.style import stylize

    content, style = load_image(args.content), load_image(args.style)
    models, prior, cfg, out, _ = _preimage_setup(args, "style")
    model = models[0]
    r, info = stylize(model, content, style, content_layer=args.content_layer,
                      style_layers=_layer_list(model, args.style_layers), style_weight=args.style_weight,
                      content_weight=args.data_weight, init=args.init, temperature=args.soften, prior=prior,
                      size=args.size, config=cfg)
    stem = slug(f"style_{model.name}_{args.content.replace('sample:', '')}_{args.style.replace('sample:', '')}")
    from .preimage.presets import sized_preprocess

    pp = sized_preprocess(model, args.size)
    images = [pp.geometry(content)[0], pp.geometry(style)[0], r.images[0]]
    settings = {"task": "style", **model.settings(), "content": args.content, "style": args.style,
                "solver": cfg.to_dict(), "prior": prior.to_dict()}
    grid = _style_outputs(out, stem, [images[0], images[2]], ["content", f"stylised ({args.style})"], settings,
                          [{**info, **r.summary()}])
    print(f"Gram loss after: {sum(info['gram_after'].values()):.5f}; {r.seconds:.1f} s")
    print(f"wrote {grid}")


def cmd_train_texture_net(args) -> None:
    from .images import load_image
    from .models import load_model
    from .preimage.generator import NetSettings, train_generator

    load_image(args.image)
    if not args.out.endswith(".safetensors"):
        raise CnnscopeError(f"--out {args.out}: must end in .safetensors")
    model = load_model(args.model or "efficientnet_lite0")
    if args.size % 8:
        raise CnnscopeError(f"--size must be a multiple of 8, got {args.size}")
    settings = NetSettings(mode=args.mode, model=model.name, style=args.image, size=args.size, batch=args.batch,
                           lr=args.lr, iters=args.iters, seed=args.seed, style_weight=args.style_weight,
                           content_weight=args.content_weight, temperature=args.soften, content=args.content)
    result = train_generator(model, settings, args.out, resume=args.resume, save_every=args.save_every)
    h = result["history"]
    if h:
        print(f"loss {h[0]:.4f} -> {h[-1]:.4f} over {len(h)} iterations ({result['seconds']:.0f} s this run)")
    print(f"wrote {args.out}")
    if result["interrupted"]:
        sys.stderr.write("cnnscope: interrupted; checkpoint saved, continue with --resume\n")
        raise SystemExit(130)


def cmd_stylize(args) -> None:
    from .images import load_image, save_image
    from .preimage.generator import apply_generator, load_checkpoint
    from .store import write_json

    if not args.out.endswith(".png"):
        raise CnnscopeError(f"--out {args.out}: must end in .png")
    net, settings, state = load_checkpoint(args.net)
    image = None
    if settings.mode == "style":
        if args.image is None:
            raise CnnscopeError("this is a style network: give an IMAGE to stylise")
        image = load_image(args.image)
    start = time.perf_counter()
    out = apply_generator(net, settings, image, args.size, args.seed)
    seconds = time.perf_counter() - start
    save_image(out, args.out)
    from dataclasses import asdict

    write_json({"net": args.net, "settings": asdict(settings), "trained_iterations": state["iteration"],
                "image": args.image, "size": args.size, "seed": args.seed, "seconds": seconds},
               Path(args.out).with_suffix(".json"))
    print(f"wrote {args.out} ({out.shape[-1]}x{out.shape[-2]} px, {seconds * 1000:.0f} ms)")


def _judged(unit: dict) -> str:
    """The judges' ranks of a class picture's class, for printing ('' for other targets)."""
    if "judge_rank" not in unit:
        return ""
    return "   judges' rank of the class " + ", ".join(f"{k} {v}" for k, v in unit["judge_rank"].items())


def cmd_maximize(args) -> None:
    from .preimage import Target
    from .preimage.runs import parse_channels, parse_class, run_maximize

    models, prior, cfg, out, recipe = _preimage_setup(args, "maximize")
    if args.diversity and args.batch < 2:
        raise CnnscopeError("--diversity needs --batch 2 or more (pictures per unit to tell apart)")
    if args.class_ is not None:
        layer_spec = args.layer or "logits"
    elif args.layer is None:
        raise CnnscopeError("--layer is required with --channel/--all-channels")
    else:
        layer_spec = args.layer
    channels = parse_channels(args.channel) if args.channel else None

    def targets_for(model, layer):
        from .layers import get_layer

        if args.class_ is not None:
            return [Target("class", parse_class(model, args.class_))]
        width = get_layer(model, layer).channels or 1
        chans = list(range(width)) if args.all_channels else channels
        bad = [c for c in chans if c >= width]
        if bad:
            raise CnnscopeError(f"channel {bad[0]} is out of range: {layer} has {width} channels (0-{width - 1})")
        return [Target(args.where, c, args.y, args.x) for c in chans]

    width = args.chunk * args.batch if args.class_ is None else args.batch
    _check_memory(models, layer_spec, width, args.size, cfg)
    summary = run_maximize(models, layer_spec, targets_for, out, cfg=cfg, prior=prior, data_weight=args.data_weight,
                           size=args.size, chunk=args.chunk, recipe=recipe, batch=args.batch,
                           diversity=args.diversity, diversity_layer=args.diversity_layer)
    for u in summary["units"]:
        print(f"{u['layer']:<14} {u['target']:<16} activation {u['start_activation']:9.3f} -> "
              f"{u['final_activation']:9.3f}   ({u['activation_ratio']:.2f}x the natural-image max){_judged(u)}")
    _finish(summary, out)


def cmd_caricature(args) -> None:
    from .images import load_image
    from .preimage.runs import run_caricature

    load_image(args.image)
    models, prior, cfg, out, recipe = _preimage_setup(args, "caricature")
    _default_layer(args, models)
    _check_memory(models, args.layer, 1, args.size, cfg)
    summary = run_caricature(models, args.image, args.layer, out, cfg=cfg, prior=prior,
                             data_weight=args.data_weight, size=args.size, cosine_power=args.cosine, recipe=recipe)
    for u in summary["units"]:
        print(f"{u['layer']:<14} <Phi(x0),Phi(x)>/||Phi(x0)||^2 = {u['relative_response']:.3f} "
              f"(1 at the input; {_took(u['seconds'])})")
    _finish(summary, out)


def cmd_accentuate(args) -> None:
    from .images import load_image
    from .preimage import Target
    from .preimage.runs import expand_layers, parse_channels, parse_class, run_accentuate

    load_image(args.image)
    models, prior, cfg, out, recipe = _preimage_setup(args, "accentuate")
    if len(models) > 1:
        raise CnnscopeError("accentuate takes one --model")
    model = models[0]
    if args.class_ is not None:
        layer = args.layer or "logits"
        targets = [Target("class", parse_class(model, c.strip())) for c in args.class_.split(",") if c.strip()]
    elif args.layer is None:
        raise CnnscopeError("--layer is required with --channel")
    else:
        layer = args.layer
        from .layers import get_layer

        width = get_layer(model, layer).channels or 1
        targets = [Target(args.where, c) for c in parse_channels(args.channel)]
        bad = [t.channel for t in targets if t.channel >= width]
        if bad:
            raise CnnscopeError(f"channel {bad[0]} is out of range: {layer} has {width} channels (0-{width - 1})")
    layer = expand_layers(model, layer)[0]
    if args.anchor_layer:
        expand_layers(model, args.anchor_layer)
    _check_memory(models, layer, len(targets), args.size, cfg)
    summary = run_accentuate(model, args.image, layer, targets, out, cfg=cfg, prior=prior,
                             data_weight=args.data_weight, size=args.size, anchor_layer=args.anchor_layer,
                             anchor_weight=args.anchor_weight, recipe=recipe)
    for u in summary["units"]:
        print(f"{layer:<14} {u['target']:<16} activation {u['start_activation']:9.3f} -> "
              f"{u['final_activation']:9.3f} (anchored at {u['anchor_layer']}){_judged(u)}")
    _finish(summary, out)


def _load(args):
    from .models import DEFAULT_MODEL, load_model

    overrides = {"input_size": args.input_size, "resize": args.resize, "mean": args.mean, "std": args.std}
    return load_model(args.model or DEFAULT_MODEL, weights=args.weights, random_weights=args.random_weights,
                      seed=args.seed, preprocess=overrides, classes=args.classes)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cnnscope", description="Understand what a CNN represents.")
    parser.add_argument("--version", action="version", version=f"cnnscope {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("models", help="list the model zoo")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("layers", help="layer table: output shape, receptive field, stride, offset")
    _model_options(p, positional=True)
    p.add_argument("--layer", action="append", metavar="NAME", help="only these layers (repeatable)")
    p.add_argument("--named", action="store_true", help="only layers with a friendly alias")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_layers)

    p = sub.add_parser("predict", help="top-k ImageNet classes for images")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image file or sample:NAME")
    _model_options(p)
    p.add_argument("--top-k", type=_positive_int, default=5, help="how many classes (default 5)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("activations", help="capture activations at named layers (forward truncated)")
    p.add_argument("image", metavar="IMAGE", help="image file or sample:NAME")
    _model_options(p)
    p.add_argument("--layer", action="append", required=True, metavar="NAME", help="layer (repeatable)")
    p.add_argument("--out", metavar="FILE", help="save as .safetensors (+ .json settings beside it)")
    p.set_defaults(func=cmd_activations)

    p = sub.add_parser("demo", help="write the demo HTML page + figures into a folder")
    p.add_argument("--out", default="demo-out", metavar="DIR", help="output folder (default demo-out)")
    p.add_argument("--model", default=None, help="zoo model (default efficientnet_lite0)")
    p.add_argument("--images", nargs="+", default=None, metavar="IMAGE",
                   help="images (default sample:chelsea sample:coffee)")
    p.add_argument("--quick", action="store_true", help="small optimisation budget (for CI and a first look)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("invert", help="pre-image: reconstruct an image from its code at a layer")
    p.add_argument("image", metavar="IMAGE", help="image file or sample:NAME")
    p.add_argument("--layer", help="layer(s), comma-separated, or 'stages' for stem..logits "
                                   "(hand-crafted models: their one layer)")
    p.add_argument("--restarts", type=_positive_int, default=1,
                   help="N pre-images of the same code from different noise (reconstruction ambiguity)")
    p.add_argument("--compare-priors", action="store_true", help="no prior vs TV beta=1 vs TV beta=2")
    p.add_argument("--window", help="reconstruct only feature cells y0:y1,x0:x1")
    _preimage_options(p, data_weight=20.0)
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
    p.add_argument("--chunk", type=_positive_int, default=8, help="targets optimised together (default 8)")
    p.add_argument("--batch", type=_positive_int, default=1, help="pictures per target (default 1)")
    p.add_argument("--diversity", type=_non_negative, default=0.0, metavar="W",
                   help="push a target's --batch pictures apart (Gram diversity, weight W relative to the data "
                        "term; try 0.5)")
    p.add_argument("--diversity-layer", metavar="NAME",
                   help="layer the diversity is measured at (default: the maximised one, or a mid-depth one)")
    _preimage_options(p, data_weight=20.0)
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
                   help="stay close to the image's code here (default: two rows below --layer; stage... for Lite)")
    p.add_argument("--anchor-weight", type=_non_negative, default=1.0,
                   help="weight of staying close, relative to the data term (default 1)")
    _preimage_options(p, data_weight=20.0)
    p.set_defaults(func=cmd_accentuate)

    p = sub.add_parser("caricature", help="emphasise what a layer sees in an image")
    p.add_argument("image", metavar="IMAGE", help="image file or sample:NAME")
    p.add_argument("--layer", help="layer(s), comma-separated, or 'stages' (hand-crafted models: their one layer)")
    p.add_argument("--cosine", type=float, default=0.0, metavar="P",
                   help="weight the inner product by cos^P (rewards the pattern, not the magnitude)")
    _preimage_options(p, data_weight=20.0)
    p.set_defaults(func=cmd_caricature)

    p = sub.add_parser("texture", help="texture synthesis: match the Gram statistics of an image, from noise")
    p.add_argument("image", metavar="STYLE_IMAGE", help="image file or sample:NAME")
    p.add_argument("--style-layers", help="comma-separated layers (default: the model's style layers)")
    p.add_argument("--style-size", type=_positive_int, help="shorter side of the source in px (default: input size)")
    p.add_argument("--scales", type=_positive_int, default=1, help="coarse-to-fine scales (default 1)")
    p.add_argument("--soften", type=float, metavar="T", help="softmax activations (temperature T) before the Gram")
    p.add_argument("--compare-soften", action="store_true", help="plain Gram vs softened Gram, side by side")
    p.add_argument("--param", choices=["pixel", "colour", "fourier", "maco"], default="fourier",
                   help="image parametrisation (default fourier: its textures are half as far from the source's "
                        "statistics for a judge network as pixel ones; see benchmarks/feature_vis.py)")
    _preimage_options(p, data_weight=1.0, recipes=False)
    p.set_defaults(func=cmd_texture)

    p = sub.add_parser("style", help="style transfer: content of one image, Gram statistics of another")
    p.add_argument("content", metavar="CONTENT")
    p.add_argument("style", metavar="STYLE")
    p.add_argument("--style-weight", type=float, default=10.0, help="weight of the Gram terms (default 10)")
    p.add_argument("--content-layer", help="(default: the model's content layer)")
    p.add_argument("--style-layers", help="comma-separated (default: the model's style layers)")
    p.add_argument("--init", choices=["content", "noise"], default="content")
    p.add_argument("--soften", type=float, metavar="T", help="softmax activations (temperature T) before the Gram")
    _preimage_options(p, data_weight=1.0, recipes=False)
    p.set_defaults(func=cmd_style)

    p = sub.add_parser("train-texture-net", help="train a feed-forward texture (or style) network")
    p.add_argument("image", metavar="STYLE_IMAGE")
    p.add_argument("--mode", choices=["texture", "style"], default="texture")
    p.add_argument("--out", default="cnnscope-out/texture-net.safetensors", metavar="FILE")
    p.add_argument("--model", default=None)
    p.add_argument("--size", type=_positive_int, default=128, help="training size in px (default 128)")
    p.add_argument("--iters", type=_positive_int, default=1500)
    p.add_argument("--batch", type=_positive_int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--style-weight", type=float, default=1.0)
    p.add_argument("--content-weight", type=float, default=1.0)
    p.add_argument("--soften", type=float, metavar="T")
    p.add_argument("--content", metavar="FOLDER", help="(style mode) content images; default bundled samples")
    p.add_argument("--resume", action="store_true", help="continue from --out if it exists")
    p.add_argument("--save-every", type=_positive_int, default=100)
    p.set_defaults(func=cmd_train_texture_net)

    p = sub.add_parser("stylize", help="apply a trained texture/style network in one forward pass")
    p.add_argument("image", nargs="?", metavar="IMAGE", help="input image (style networks)")
    p.add_argument("--net", required=True, metavar="FILE")
    p.add_argument("--size", type=_positive_int, help="output size (texture) or shorter side (style)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="cnnscope-out/stylized.png", metavar="FILE.png")
    p.set_defaults(func=cmd_stylize)

    p = sub.add_parser("saliency", help="SaliNet / DeConvNet / DeSaliNet maps (the seed's comparison figure)")
    p.add_argument("image", metavar="IMAGE", help="image file or sample:NAME")
    _model_options(p)
    p.add_argument("--method", default="all", help="salinet, deconvnet, desalinet, or all (default)")
    p.add_argument("--layer", help="start layer (default: the seed's two rows, last conv stage + top class)")
    tgt = p.add_mutually_exclusive_group()
    tgt.add_argument("--channel", type=int, help="a neuron of this channel (at --y, --x; default centre)")
    tgt.add_argument("--class", dest="class_", metavar="NAME|INDEX", help="a class logit")
    tgt.add_argument("--features", action="store_true", help="the layer's whole activation (full code)")
    p.add_argument("--whole-channel", action="store_true", help="with --channel: every position of it")
    p.add_argument("--y", type=int)
    p.add_argument("--x", type=int)
    p.add_argument("--pool-rule", choices=["switches", "centre", "uniform", "passthrough"],
                   help="max-pool backward rule (default switches)")
    p.add_argument("--render", choices=["signed", "abs", "max"], default="signed", help="how maps are shown")
    p.add_argument("--out", default="cnnscope-out", metavar="DIR", help="output folder (default cnnscope-out)")
    p.set_defaults(func=cmd_saliency)

    p = sub.add_parser("backprop", help="print the reversed network and the backward rule of every block")
    _model_options(p, positional=True)
    p.add_argument("--explain", action="store_true", default=True, help="(default) print the reversed network")
    p.add_argument("--method", default="deconvnet", help="salinet, deconvnet or desalinet (default deconvnet)")
    p.add_argument("--pool-rule", choices=["switches", "centre", "uniform", "passthrough"])
    p.set_defaults(func=cmd_backprop)

    p = sub.add_parser("selectivity", help="are backprop maps neuron-selective? (ECCV'16 protocol)")
    _model_options(p)
    p.add_argument("--images", metavar="FOLDER", help="image folder (default: bundled samples)")
    p.add_argument("--limit", type=_positive_int, default=20, help="at most this many images (default 20)")
    p.add_argument("--layer", default=None, help="layer (default: the last convolutional stage)")
    p.add_argument("--neurons", type=_positive_int, default=4, help="random neurons per image (default 4)")
    p.add_argument("--out", default="cnnscope-out", metavar="DIR")
    p.set_defaults(func=cmd_selectivity)

    p = sub.add_parser("sanity", help="cascading model-parameter randomisation (Adebayo et al. 2018)")
    p.add_argument("image", metavar="IMAGE")
    _model_options(p)
    p.add_argument("--class", dest="class_", metavar="NAME|INDEX", help="class (default: the top prediction)")
    p.add_argument("--out", default="cnnscope-out", metavar="DIR")
    p.set_defaults(func=cmd_sanity)

    p = sub.add_parser("stitch", help="equivalence by stitching: front of A, learned map E, rest of B")
    p.add_argument("--a", default="efficientnet_lite0", help="model A (default efficientnet_lite0)")
    p.add_argument("--b", default="efficientnet_lite1", help="model B (default efficientnet_lite1)")
    p.add_argument("--layers", default=None,
                   help="layers present in both (or a:b pairs), comma-separated (default: stem, stage1..stage6)")
    p.add_argument("--images", metavar="FOLDER", help="images (labels.csv used if present; default bundled crops)")
    p.add_argument("--limit", type=_positive_int, help="at most this many images")
    p.add_argument("--fit", type=float, default=0.8, help="fraction of images used to fit (default 0.8)")
    p.add_argument("--epochs", type=_positive_int, default=8, help="task-loss epochs (default 8)")
    p.add_argument("--no-resample", action="store_true", help="refuse grids that differ instead of resampling")
    p.add_argument("--kernel", type=_positive_int, default=1, help="task-loss stitch kernel m (m x m; default 1)")
    p.add_argument("--batchnorm", action="store_true", help="task-loss stitch: batch norm before the map")
    p.add_argument("--quick", action="store_true", help="few images, two layers, 2 epochs (for CI)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="cnnscope-out", metavar="DIR")
    p.set_defaults(func=cmd_stitch)

    p = sub.add_parser("cka", help="linear CKA between the layers of two models (heatmap)")
    p.add_argument("--a", default="efficientnet_lite0")
    p.add_argument("--b", default="efficientnet_lite1")
    p.add_argument("--layers", default="stages", help="layers of A and B ('stages' = stem..logits)")
    p.add_argument("--images", metavar="FOLDER")
    p.add_argument("--limit", type=_positive_int, default=50)
    p.add_argument("--debiased", action="store_true", help="debiased CKA (default biased)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="cnnscope-out", metavar="DIR")
    p.set_defaults(func=cmd_cka)

    p = sub.add_parser("report", help="a browsable static HTML site of a whole model (resumable, parallel)")
    p.add_argument("model", nargs="?", default=None, metavar="MODEL", help="zoo name or user model (default Lite0)")
    p.add_argument("--images", metavar="FOLDER", help="images for patches and examples (default bundled samples)")
    p.add_argument("--out", default="cnnscope-report", metavar="DIR")
    p.add_argument("--layers", default=None, help="layers, comma-separated, or 'stages' (default)")
    p.add_argument("--channels", type=_positive_int, help="first K channels per layer in the atlas (default all)")
    p.add_argument("--iters", type=_positive_int, default=None, help="pre-image iterations (default 200)")
    p.add_argument("--size", type=_positive_int, help="pre-image size in px (default the model's input size)")
    p.add_argument("--examples", type=_positive_int, default=None, help="images inverted / back-propagated (4)")
    p.add_argument("--patch-images", type=_positive_int, default=None,
                   help="images searched for top patches (default 100)")
    p.add_argument("--equivariance", metavar="TRANSFORM", help="also run the equivariance analysis (e.g. vflip)")
    p.add_argument("--stitch-with", metavar="MODEL", help="also stitch this model's layers into MODEL_B's")
    p.add_argument("--workers", type=_positive_int, default=1, help="worker processes (default 1)")
    p.add_argument("--ray", metavar="ADDRESS", help="run units on a Ray cluster ('local' starts one here)")
    p.add_argument("--quick", action="store_true", help="two layers, 4 channels, 40 iterations, 96 px")
    p.add_argument("--weights", default=None, metavar="PATH")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("hog", help="HOG of an image drawn as glyphs (oriented strokes per cell)")
    p.add_argument("image", metavar="IMAGE", help="image file or sample:NAME")
    p.add_argument("--cell-size", type=_positive_int, default=8, help="pixels per cell (default 8)")
    p.add_argument("--orientations", type=_positive_int, default=9, help="undirected orientations (default 9)")
    p.add_argument("--bilinear", action="store_true", help="bilinear orientation binning (HOGb)")
    p.add_argument("--size", type=_positive_int, help="resize the shorter side to this many px first")
    p.add_argument("--glyph", type=_positive_int, default=15, help="glyph size in px (default 15)")
    p.add_argument("--out", default="cnnscope-out", metavar="DIR")
    p.set_defaults(func=cmd_hog)

    p = sub.add_parser("equivariance", help="is Phi(gx) = M_g Phi(x)? compensate a transform inside the network")
    p.add_argument("--transform", default="vflip", help="hflip, vflip, rot90, rot180, rotate:DEG, scale:F")
    p.add_argument("--layers", default=None, help="conv layers (default: stem, stage2, stage4, stage6, head)")
    p.add_argument("--model", default=None)
    p.add_argument("--images", metavar="FOLDER", help="images (labels.csv used if present; default bundled crops)")
    p.add_argument("--limit", type=_positive_int)
    p.add_argument("--fit", type=float, default=0.8, help="fraction of images used to fit (default 0.8)")
    p.add_argument("--epochs", type=_positive_int, default=8, help="epochs for the learned map (default 8)")
    p.add_argument("--ridge", type=float, default=None,
                   help="ridge: CNN layers, towards M = I (default 0.1); hand-crafted features (default 1e-4)")
    p.add_argument("--neighbourhood", default="1,3",
                   help="hand-crafted features: m x m cells each output cell may read (default 1,3)")
    p.add_argument("--quick", action="store_true", help="few images, two layers, 2 epochs (for CI)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="cnnscope-out", metavar="DIR")
    p.set_defaults(func=cmd_equivariance)

    p = sub.add_parser("train-small", help="train a small CNN from scratch on a procedural dataset (seconds)")
    p.add_argument("--data", choices=["shapes", "textures"], default="shapes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=_positive_int, default=8)
    p.add_argument("--out", default=None, metavar="FILE", help="(default cnnscope-out/small_DATA_seedS.safetensors)")
    p.set_defaults(func=cmd_train_small)

    p = sub.add_parser("stitch-small", help="seeds / before-after training / different data, by stitching")
    p.add_argument("--out", default="cnnscope-out", metavar="DIR")
    p.add_argument("--epochs", type=_positive_int, default=8, help="training epochs per network")
    p.add_argument("--quick", action="store_true", help="fewer images and epochs (for CI)")
    p.set_defaults(func=cmd_stitch_small)

    p = sub.add_parser("samples", help="list the bundled sample images (use as sample:NAME)")
    p.set_defaults(func=cmd_samples)
    return parser


def _version() -> str:
    from . import __version__

    return __version__


def cmd_models(args) -> None:
    from .models import ZOO

    rows = []
    for entry in ZOO.values():
        try:
            available = entry.default_weights() is not None
        except CnnscopeError:
            available = False
        status = "installed" if available else "not found: " + entry.weights_hint
        rows.append({"name": entry.name, "input_size": entry.preprocess.input_size,
                     "weights": "hand-crafted, no weights" if entry.handcrafted else status,
                     "description": entry.description})
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        print(f"{r['name']:<{width}}  {r['input_size']:>4}px  {r['description']}  [{r['weights']}]")
    print("\nUser models: --model path/to/file.py:factory  or  --model model.pt (TorchScript)")


def cmd_layers(args) -> None:
    from .layers import format_table, get_layer, list_layers

    model = _load(args)
    if args.layer:
        rows = [get_layer(model, n) for n in args.layer]
    else:
        rows = list_layers(model)
        if args.named:
            rows = [r for r in rows if r.alias]
    if args.json:
        print(json.dumps({**model.settings(), "layers": [r.to_dict() for r in rows]}, indent=2))
        return
    print(f"# {model.name}: input 3x{model.input_size}x{model.input_size}; rf/stride/offset in input pixels "
          "(offset = centre of unit (0,0); 'all' = whole image; ~ = approximate)")
    print(format_table(rows))


def cmd_predict(args) -> None:
    from .images import load_image

    images = [load_image(src) for src in args.images]  # validate every input before any work
    model = _load(args)
    results = model.predict(images, k=args.top_k)
    if args.json:
        out = [{"image": src, "top": [p.__dict__ for p in preds]} for src, preds in zip(args.images, results)]
        print(json.dumps({**model.settings(), "predictions": out}, indent=2))
        return
    for src, preds in zip(args.images, results):
        print(src)
        for rank, p in enumerate(preds, 1):
            print(f"  {rank}. {p.name:<32} {p.probability:6.3f}  (class {p.index})")


def cmd_activations(args) -> None:
    from .images import load_image
    from .layers import capture
    from .store import atomic_path, write_json

    if args.out and not args.out.endswith(".safetensors"):
        raise CnnscopeError(f"--out {args.out}: must end in .safetensors")
    image = load_image(args.image)
    model = _load(args)
    start = time.perf_counter()
    feats = capture(model, model.prepare(image), args.layer)
    seconds = time.perf_counter() - start
    for name, t in feats.items():
        print(f"{name:<28} shape {'x'.join(map(str, t.shape[1:])):<14} mean {t.mean():9.4f}  "
              f"max {t.max():9.4f}  >0 {float((t > 0).float().mean()):.2f}")
    print(f"forward (truncated at the deepest layer): {seconds * 1000:.1f} ms")
    if args.out:
        from safetensors.torch import save_file

        with atomic_path(args.out) as tmp:
            save_file({k: v[0].contiguous() for k, v in feats.items()}, str(tmp))
        write_json({**model.settings(), "image": args.image, "layers": args.layer, "seed": args.seed},
                   Path(args.out).with_suffix(".json"))
        print(f"wrote {args.out}")


def cmd_demo(args) -> None:
    from .demo import run_demo

    path = run_demo(args.out, model_name=args.model, images=args.images, preimage_iters=40 if args.quick else 200)
    print(f"wrote {path}")


def _methods(spec: str) -> list[str]:
    from .backprop import METHODS
    from .backprop.runs import COLUMNS

    names = list(COLUMNS) if spec == "all" else [m.strip() for m in spec.split(",")]
    for m in names:
        if m not in METHODS:
            raise CnnscopeError(f"unknown method '{m}' (salinet, deconvnet, desalinet, all)")
    return names


def _out_dir(path: str) -> Path:
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise CnnscopeError(f"--out {out}: exists and is not a folder")
    return out


def cmd_saliency(args) -> None:
    from .backprop import BPTarget
    from .backprop.runs import default_rows, run_saliency
    from .images import load_image
    from .layers import resolve
    from .preimage.runs import parse_class

    image = load_image(args.image)
    methods = _methods(args.method)
    out = _out_dir(args.out)
    model = _load(args)
    if args.class_ is not None:
        rows = [BPTarget("class", args.layer or ("logits" if "logits" in model.aliases else "output"),
                         parse_class(model, args.class_))]
    elif args.layer is None:
        if args.channel is not None or args.features:
            raise CnnscopeError("--channel/--features need --layer")
        rows = default_rows(model, image)
    else:
        resolve(model, args.layer)
        if args.channel is not None:
            kind = "channel" if args.whole_channel else "neuron"
            rows = [BPTarget(kind, args.layer, args.channel, args.y, args.x)]
        else:
            rows = [BPTarget("features", args.layer)]
    summary = run_saliency(model, args.image, rows, methods, out, args.pool_rule, args.render)
    for rec in summary["maps"]:
        print(f"{rec['target']:<32} {rec['method']:<10} {rec['seconds'] * 1000:8.1f} ms  {out / rec['file']}")
    print(f"wrote {out / summary['grid']}")


def cmd_backprop(args) -> None:
    from .backprop import explain, method_rules

    model = _load(args)
    rows = explain(model, method_rules(args.method, args.pool_rule))
    print(f"# reversed network of {model.name} for {args.method} (read top to bottom = backward order)")
    width = max(len(r["layer"]) for r in rows)
    for r in rows:
        alias = f" ({r['alias']})" if r["alias"] else ""
        print(f"{r['layer'] + alias:<{width + 10}} {r['type']:<18} -> {r['backward']}")


def _folder_images(folder: str | None, limit: int):
    from .data import list_folder
    from .images import load_image

    if folder is None:
        names = ("chelsea", "coffee", "astronaut", "rocket", "retina", "ihc")
        return [load_image(f"sample:{n}") for n in names][:limit]
    return [load_image(p) for p, _ in list_folder(folder, limit)]


def cmd_selectivity(args) -> None:
    from .backprop.analysis import selectivity
    from .backprop.runs import selectivity_table
    from .store import write_json

    out = _out_dir(args.out)
    images = _folder_images(args.images, args.limit)
    model = _load(args)
    layer = args.layer
    if layer is None:
        depth = model.net.depth_layers() if hasattr(model.net, "depth_layers") else []
        layer = next((n for n in reversed(depth) if n != "logits" and not n.startswith("fc")), None)
        if layer is None:
            raise CnnscopeError("give --layer for this model")
    result = selectivity(model, images, layer, neurons=args.neurons, seed=args.seed)
    print(f"# mean correlation between maps from different neurons at the same location ({layer}, "
          f"{len(images)} images); high = NOT neuron-selective")
    print(selectivity_table(result))
    write_json({**model.settings(), "layer": layer, "images": args.images or "bundled samples",
                "count": len(images), "neurons": args.neurons, "seed": args.seed, "correlations": result},
               out / "selectivity.json")
    print(f"wrote {out / 'selectivity.json'}")


def cmd_sanity(args) -> None:
    from .backprop import BPTarget
    from .backprop.analysis import cascading_randomisation
    from .backprop.runs import plot_sanity
    from .images import load_image
    from .preimage.runs import parse_class
    from .store import write_json

    image = load_image(args.image)
    out = _out_dir(args.out)
    model = _load(args)
    k = parse_class(model, args.class_) if args.class_ is not None else model.predict(image, k=1)[0][0].index
    layer = "logits" if "logits" in model.aliases else "output"
    result = cascading_randomisation(model, image, BPTarget("class", layer, k), seed=args.seed)
    out.mkdir(parents=True, exist_ok=True)
    plot_sanity(result, out / "sanity.png")
    write_json({**model.settings(), "image": args.image, **result}, out / "sanity.json")
    for method, curve in result["spearman"].items():
        print(f"{method:<10} " + " ".join(f"{v:5.2f}" for v in curve))
    print(f"wrote {out / 'sanity.png'}")


def _layer_pairs(model_a, model_b, spec: str) -> list[tuple[str, str]]:
    from .layers import resolve

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


def cmd_stitch(args) -> None:
    from .models import load_model
    from .preimage.runs import slug
    from .transforms.equivalence import stitch_experiment
    from .transforms.runs import format_table, image_set, stitch_table, write_stitch_outputs

    out = _out_dir(args.out)
    if not 0 < args.fit < 1:
        raise CnnscopeError(f"--fit must be a fraction between 0 and 1, got {args.fit}")
    a, b = load_model(args.a, seed=args.seed), load_model(args.b, seed=args.seed)
    layers = args.layers or ("stem,stage2" if args.quick else "stem,stage1,stage2,stage3,stage4,stage5,stage6")
    pairs = _layer_pairs(a, b, layers)
    limit = args.limit or (24 if args.quick else None)
    images, labels = image_set(a, args.images, limit, args.seed)
    n_fit = max(1, min(len(images) - 1, round(len(images) * args.fit)))
    gen = torch_perm(len(images), args.seed)
    images = images[gen]
    labels = labels[gen] if labels is not None else None
    result = stitch_experiment(a, b, pairs, images[:n_fit], images[n_fit:],
                               labels[:n_fit] if labels is not None else None,
                               labels[n_fit:] if labels is not None else None,
                               task_epochs=2 if args.quick else args.epochs, resample=not args.no_resample,
                               seed=args.seed, kernel=args.kernel, batchnorm=args.batchnorm)
    metric = "top1_error" if labels is not None else "disagreement_with_b"
    settings = {"a": a.name, "b": b.name, "layers": [list(p) for p in pairs], "images": args.images or "bundled crops",
                "fit": n_fit, "test": len(images) - n_fit, "epochs": 2 if args.quick else args.epochs,
                "seed": args.seed, "resample": not args.no_resample, "kernel": args.kernel,
                "batchnorm": args.batchnorm}
    name = slug(f"stitch_{a.name}_{b.name}")
    write_stitch_outputs(out, name, result, metric, settings)
    print(f"# {metric.replace('_', ' ')} on {len(images) - n_fit} held-out images ({n_fit} used to fit)")
    print(format_table(stitch_table(result, metric)))
    print(f"wrote {out / (name + '.csv')}, {name}.png, {name}.json, {name}_stitches.safetensors")


def torch_perm(n: int, seed: int):
    import torch

    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))


def cmd_cka(args) -> None:
    from .models import load_model
    from .preimage.runs import expand_layers, slug
    from .store import write_json
    from .transforms.cka import linear_cka
    from .transforms.equivalence import features
    from .transforms.runs import cka_heatmap, image_set

    out = _out_dir(args.out)
    a, b = load_model(args.a, seed=args.seed), load_model(args.b, seed=args.seed)
    la, lb = expand_layers(a, args.layers), expand_layers(b, args.layers)
    images, _ = image_set(a, args.images, args.limit, args.seed)
    if len(images) < 4:
        raise CnnscopeError("CKA needs at least 4 images")
    fa = {name: features(a, name, a.preprocess.normalize(images)).flatten(1) for name in la}
    fb = {name: features(b, name, b.preprocess.normalize(images)).flatten(1) for name in lb}
    matrix = [[linear_cka(fa[x], fb[y], args.debiased) for y in lb] for x in la]
    name = slug(f"cka_{a.name}_{b.name}")
    out.mkdir(parents=True, exist_ok=True)
    kind = "debiased" if args.debiased else "biased"
    cka_heatmap(matrix, la, lb, f"linear CKA ({kind}), {len(images)} images: {a.name} (rows) vs {b.name}",
                out / f"{name}.png")
    write_json({"a": a.name, "b": b.name, "layers_a": la, "layers_b": lb, "debiased": args.debiased,
                "images": args.images or "bundled crops", "count": len(images), "cka": matrix}, out / f"{name}.json")
    width = max(len(x) for x in la)
    print(" " * width + "".join(f"{y[:8]:>9}" for y in lb))
    for x, row in zip(la, matrix):
        print(f"{x:<{width}}" + "".join(f"{v:9.2f}" for v in row))
    print(f"wrote {out / (name + '.png')}")


def cmd_equivariance(args) -> None:
    from .models import load_model
    from .preimage.runs import slug
    from .store import atomic_path, write_json, write_text
    from .transforms.equivariance import equivariance_experiment
    from .transforms.runs import image_set, plot_equivariance
    from .transforms.transform import Transform

    out = _out_dir(args.out)
    transform = Transform.parse(args.transform)
    if not 0 < args.fit < 1:
        raise CnnscopeError(f"--fit must be a fraction between 0 and 1, got {args.fit}")
    model = load_model(args.model or "efficientnet_lite0", seed=args.seed)
    if not model.classes:  # a hand-crafted representation: no classifier to judge by, so regression error
        return _feature_equivariance(args, model, transform, out)
    ridge = 0.1 if args.ridge is None else args.ridge
    default = "stem,stage2" if args.quick else "stem,stage2,stage4,stage6,head"
    layers = _layer_list(model, args.layers or default)
    images, labels = image_set(model, args.images, args.limit or (24 if args.quick else None), args.seed)
    order = torch_perm(len(images), args.seed)
    images = images[order]
    labels = labels[order] if labels is not None else None
    n_fit = max(1, min(len(images) - 1, round(len(images) * args.fit)))
    result = equivariance_experiment(model, layers, transform, images[:n_fit], images[n_fit:],
                                     labels[:n_fit] if labels is not None else None,
                                     labels[n_fit:] if labels is not None else None,
                                     task_epochs=2 if args.quick else args.epochs, seed=args.seed, ridge=ridge)
    metric = result["metric"]
    cols = ("spatial_only", "permutation", "learned")
    lines = [f"# {transform.label}: {metric.replace('_', ' ')} on {len(images) - n_fit} held-out images "
             f"({n_fit} used to fit); no transform {result['baseline']['no_transform']:.3f}, "
             f"transformed uncompensated {result['baseline']['uncompensated']:.3f}",
             f"{'layer':<12}" + "".join(f"{c:>14}" for c in cols) + f"{'invariant ch.':>16}{'mean corr':>11}"
             + f"{'map epochs':>12}"]
    csv_rows = ["layer,no_transform,uncompensated," + ",".join(cols)
                + ",invariant_channels,channels,mean_corr,learned_epochs"]
    for r in result["rows"]:
        lines.append(f"{r['layer']:<12}" + "".join(f"{r[c]:14.3f}" for c in cols)
                     + f"{r['invariant_channels']:>9}/{r['channels']:<6}{r['mean_channel_correlation']:11.3f}"
                     + f"{r['learned_epochs']!s:>12}")
        csv_rows.append(",".join(str(v) for v in [r["layer"], result["baseline"]["no_transform"],
                                                    result["baseline"]["uncompensated"], *(r[c] for c in cols),
                                                    r["invariant_channels"], r["channels"],
                                                    r["mean_channel_correlation"], r["learned_epochs"]]))
    print("\n".join(lines))
    name = slug(f"equivariance_{model.name}_{transform.label}")
    out.mkdir(parents=True, exist_ok=True)
    write_text("\n".join(csv_rows) + "\n", out / f"{name}.csv")
    plot_equivariance(result, out / f"{name}.png", model.name)
    from safetensors.torch import save_file

    settings = {"model": model.name, "transform": transform.label, "layers": layers, "fit": n_fit,
                "test": len(images) - n_fit, "images": args.images or "bundled crops", "seed": args.seed,
                "epochs": 2 if args.quick else args.epochs, "ridge": ridge}
    tensors = {f"{layer}|{k}": v.contiguous() for layer, m in result["maps"].items() for k, v in m.state_dict().items()}
    with atomic_path(out / f"{name}_maps.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"settings": json.dumps(settings)})
    write_json({"settings": settings, "metric": metric, "baseline": result["baseline"], "rows": result["rows"]},
               out / f"{name}.json")
    print(f"wrote {out / (name + '.csv')}, {name}.png, {name}.json, {name}_maps.safetensors")


def cmd_report(args) -> None:
    from .models import DEFAULT_MODEL, load_model
    from .preimage.runs import expand_layers
    from .report.atlas import QUICK, ReportSettings, execute, plan
    from .report.site import write_site

    out = _out_dir(args.out)
    if args.images is not None and not Path(args.images).is_dir():
        raise CnnscopeError(f"--images {args.images}: not a folder")
    name = args.model or DEFAULT_MODEL
    model = load_model(name, weights=args.weights)
    quick = QUICK if args.quick else {}
    if args.layers:
        layers = expand_layers(model, args.layers)
    else:
        layers = expand_layers(model, "stages")
        if args.quick:  # two mid-depth layers (Lite's stage2 and stage4 where the model has them)
            named = [n for n in QUICK["layers"].split(",") if n in model.aliases]
            layers = named if len(named) == 2 else layers[len(layers) // 4:][:2]
    if args.equivariance:
        from .transforms.transform import Transform

        Transform.parse(args.equivariance)
    if args.stitch_with:
        load_model(args.stitch_with)  # fail now, not in a worker
    report = ReportSettings(
        model=name, weights=args.weights, layers=tuple(layers),
        channels=args.channels or quick.get("channels"), iters=args.iters or quick.get("iters", 200),
        size=args.size or quick.get("size"), seed=args.seed, images=args.images,
        examples=args.examples or quick.get("examples", 4),
        patch_images=args.patch_images or quick.get("patch_images", 100),
        equivariance=args.equivariance, stitch_with=args.stitch_with)
    units = plan(report, model)
    print(f"report: {len(units)} units ({len(layers)} layers) -> {out}/index.html")
    run = execute(out, report, units, workers=args.workers, ray_address=args.ray)
    index = write_site(out, report, units, model, run)
    rate = f", {run['units_per_minute']} units/min" if run["units_per_minute"] else ""
    print(f"{run['computed']} computed, {run['already_done']} reused in {run['seconds']} s{rate}; wrote {index}")
    if run["interrupted"]:
        sys.stderr.write("cnnscope: interrupted; finished units are saved: run the same command to resume\n")
        raise SystemExit(130)


def cmd_hog(args) -> None:
    import numpy as np
    import torch.nn.functional as F

    from .features import HOG, render_hog
    from .images import load_image, save_image
    from .preimage.runs import slug
    from .store import write_json

    out = _out_dir(args.out)
    image = load_image(args.image)
    if args.size:
        h, w = image.shape[-2:]
        scale = args.size / min(h, w)
        image = F.interpolate(image[None], size=(round(h * scale), round(w * scale)), mode="bilinear",
                              antialias=True, align_corners=False)[0].clamp(0, 1)
    if args.orientations < 2:
        raise CnnscopeError(f"--orientations must be at least 2, got {args.orientations}")
    hog = HOG(args.cell_size, args.orientations, args.bilinear)
    features = hog(image[None])
    glyphs = render_hog(features, args.orientations, args.glyph)
    stem = slug(f"hog_{Path(args.image).stem if not args.image.startswith('sample:') else args.image[7:]}")
    out.mkdir(parents=True, exist_ok=True)
    save_image((np.stack([glyphs] * 3, -1) * 255).round().astype(np.uint8), out / f"{stem}.png")
    settings = {"image": args.image, "cell_size": args.cell_size, "orientations": args.orientations,
                "bilinear": args.bilinear, "size": args.size, "glyph": args.glyph}
    write_json({"settings": settings, "features_shape": list(features.shape[1:]), "image_shape":
                list(image.shape[1:]), "files": [f"{stem}.png"]}, out / f"{stem}.json")
    print(f"HOG {tuple(features.shape[1:])} of a {image.shape[2]}x{image.shape[1]} image; wrote {out / stem}.png")


def _feature_equivariance(args, model, transform, out: Path) -> None:
    from .preimage.runs import slug
    from .transforms.runs import feature_equivariance_run, image_set

    if args.layers:
        raise CnnscopeError(f"--layers does not apply to {model.name}: a hand-crafted representation has one layer")

    try:
        sizes = tuple(int(v) for v in args.neighbourhood.split(","))
    except ValueError:
        raise CnnscopeError(f"--neighbourhood {args.neighbourhood}: expected odd sizes like 1,3,5") from None
    if not sizes or any(m < 1 or m % 2 == 0 or m > 9 for m in sizes):
        raise CnnscopeError(f"--neighbourhood {args.neighbourhood}: sizes must be odd, between 1 and 9")
    ridge = 1e-4 if args.ridge is None else args.ridge
    if ridge < 0:
        raise CnnscopeError(f"--ridge must not be negative, got {ridge}")
    images, _ = image_set(model, args.images, args.limit or (12 if args.quick else None), args.seed)
    images = images[torch_perm(len(images), args.seed)]
    n_fit = max(1, min(len(images) - 1, round(len(images) * args.fit)))
    name = slug(f"equivariance_{model.name}_{transform.label}")
    settings = {"model": model.name, "transform": transform.label, "fit": n_fit, "test": len(images) - n_fit,
                "images": args.images or "bundled crops", "seed": args.seed, "ridge": ridge,
                "neighbourhoods": list(sizes), "input_size": model.input_size}
    summary = feature_equivariance_run(model, transform, images, n_fit, out, name, sizes, ridge, settings)
    errors = summary["relative_error"]
    print(f"# {model.name}, {transform.label}: relative error ||M_g Phi(x) - Phi(gx)|| / ||Phi(gx)|| on "
          f"{len(images) - n_fit} held-out images ({n_fit} to fit; {summary['valid_cells']}/{summary['cells']} "
          "cells inside the valid region)")
    for key, value in errors.items():
        if not key.endswith("_fit"):
            fit = errors.get(key + "_fit")
            print(f"{key:<16}{value:8.3f}" + (f"   (fit {fit:.3f})" if fit is not None else ""))
    print(f"wrote {out / (name + '.csv')}, {name}.png, {name}.json, {name}_maps.safetensors")


def cmd_train_small(args) -> None:
    from .transforms.smallnets import save_small, train_small

    out = args.out or f"cnnscope-out/small_{args.data}_seed{args.seed}.safetensors"
    if not out.endswith(".safetensors"):
        raise CnnscopeError(f"--out {out}: must end in .safetensors")
    net, info = train_small(args.data, args.seed, args.epochs)
    save_small(net, info, out)
    print(f"{args.data} seed {args.seed}: test accuracy {info['test_accuracy']:.3f} after {args.epochs} epochs")
    print(f"wrote {out} (use it as --a small:{out})")


def cmd_stitch_small(args) -> None:
    from .store import write_json
    from .transforms.runs import format_table, stitch_table
    from .transforms.smallnets import seed_data_experiment

    out = _out_dir(args.out)
    epochs = 2 if args.quick else args.epochs
    results = seed_data_experiment(out / "small-nets", epochs=epochs, n_images=150 if args.quick else 600,
                                   task_epochs=1 if args.quick else 4)
    summary = {}
    for case, r in results.items():
        rows = stitch_table(r["result"], r["metric"])
        summary[case] = {"a": r["a"], "b": r["b"], "metric": r["metric"], "table": rows}
        print(f"# {case}: A={r['a']} B={r['b']} ({r['metric'].replace('_', ' ')})")
        print(format_table(rows))
    write_json({"epochs": epochs, "cases": summary}, out / "stitch_small.json")
    print(f"wrote {out / 'stitch_small.json'}")


def cmd_samples(args) -> None:
    from .images import sample_names

    print("  ".join(f"sample:{n}" for n in sample_names()))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        args.func(args)
    except CnnscopeError as err:
        sys.stderr.write(f"cnnscope: error: {err}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("cnnscope: interrupted\n")
        return 130
    except BrokenPipeError:  # e.g. `cnnscope layers | head`
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
