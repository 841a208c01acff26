"""The pre-image verbs, run (declared in `verbs`): every default that depends on the model (layers, targets,
size, recipe) is resolved here, for both doors."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

from ..device import resolve as resolve_device
from ..errors import CnnscopeError
from ..images import load_image, save_image, source_stem
from ..jobs import execute
from ..layers import expand_layers, get_layer, resolve
from ..progress import table
from ..requests import INTERRUPTED, answer, engine, load, load_several, notes, out_dir, out_file, picture, took, wrote
from ..store import slug, write_json
from ..targets import Target, channel_targets, parse_class
from ..verbs import Answer, Request
from ..viz import image_grid
from .generator import NetSettings, apply_generator, load_checkpoint, train_generator
from .plans import plan_maximize, plan_style, plan_texture
from .robustness import parse_transforms
from .solver import check_memory
from .style import default_style_layers
from .summaries import run_accentuate, run_caricature, run_invert, run_maximize
from .tasks import Prior, settings_for, sized_preprocess


def setup(req: Request, task: str):
    """(models, prior, solver settings, output folder, recipe) of a pre-image verb; all checked first."""
    out = out_dir(req)
    overrides = {"param": req.param, "iters": req.iters, "lr": req.lr, "optimizer": req.optimizer,
                 "transforms": req.transforms}
    parse_transforms(req.transforms)  # a bad spec: one line before any model is loaded
    models = load_several(req)  # (their kind decides the default recipe: M&V's for hand-crafted features)
    recipe, cfg, _ = settings_for(task, req.recipe, overrides, seed=req.seed, box=not req.no_box, jitter=req.jitter,
                                  handcrafted=any(m.profile.handcrafted for m in models))
    return models, explicit_prior(req), cfg, out, recipe


def explicit_prior(req: Request) -> Prior | None:
    """The prior the options ask for (None: the recipe's); what they leave unset takes M&V's values."""
    if req.no_prior:
        return Prior.none()
    given = {k: v for k, v in (("beta", req.tv_beta), ("tv_weight", req.tv_weight),
                               ("alpha_weight", req.alpha_weight)) if v is not None}
    return Prior(**given) if given else None


def default_layer(req: Request, models) -> str:
    """The layer spec; it may be left out for hand-crafted representations (HOG, DSIFT): they have one."""
    if req.layer:
        return req.layer
    single = {m.profile.single_layer for m in models}
    if len(single) == 1 and None not in single:
        return single.pop()
    raise CnnscopeError(f"{req.label('layer')} is required for {', '.join(m.name for m in models)} "
                        "(a layer name, several comma-separated, or 'stages')")


def check_budget(models, layer_spec: str, n: int, size: int | None, cfg) -> None:
    """Refuse an over-budget problem before anything is written."""
    for model in models:
        check_memory(model, expand_layers(model, layer_spec), n, size or model.input_size, cfg.max_memory_gb)


def parse_window(req: Request):
    if not req.window:
        return None
    try:
        ys, xs = req.window.split(",")
        return tuple(int(v) for v in ys.split(":") + xs.split(":"))
    except ValueError:
        raise CnnscopeError(f"{req.label('window')} {req.window}: expected y0:y1,x0:x1") from None


def judged(unit: dict) -> str:
    """The judges' ranks of a class picture's class, for printing ('' for other targets)."""
    if "judge_rank" not in unit:
        return ""
    return "   judges' rank of the class " + ", ".join(f"{k} {v}" for k, v in unit["judge_rank"].items())


def _logits(req: Request, models) -> str:
    """The class-logit layer of the models (the default layer of class targets)."""
    found = {m.profile.logits for m in models}
    if None in found or len(found) != 1:
        raise CnnscopeError(f"{req.label('classes')} needs models with a classifier (give {req.label('layer')} for "
                            "others)")
    return found.pop()


def _classes(model, spec: str) -> list[Target]:
    return [Target("class", parse_class(model, c.strip())) for c in spec.split(",") if c.strip()]


# ------------------------------------------------------------------------------------------------ the verbs
def invert(req: Request) -> Answer:
    source, _ = picture(req.image)  # checked before loading models
    window = parse_window(req)
    models, prior, cfg, out, recipe = setup(req, "invert")
    layer = default_layer(req, models)
    check_budget(models, layer, req.restarts, req.size, cfg)
    summary, run = run_invert(models, source, layer, out, cfg=cfg, prior=prior, data_weight=req.data_weight,
                              size=req.size, restarts=req.restarts, compare_priors=req.compare_priors, window=window,
                              recipe=recipe, joint=req.joint, **engine(req))
    for u in summary["units"]:
        notes(u)
        errs = ", ".join(f"{e:.4f}" for e in u["normalised_error"])
        overlap = ""
        if u.get("judge_top5_overlap"):
            overlap = "   judges' top-5 overlap " + " ".join(
                "/".join(str(v) for v in d.values()) for d in u["judge_top5_overlap"])
        table(f"{u['title']:<40} normalised error {errs}{overlap}   ({took(u['seconds'])})")
        if "ambiguity" in u:
            a = u["ambiguity"]
            table(f"{'':<40} mean mutual RMS pixel distance {a['mean_mutual_rms_distance']:.4f}; "
                  f"to the original {sum(a['rms_distance_to_original']) / len(a['rms_distance_to_original']):.4f}")
    wrote(out, summary["grid"])
    return answer(run, summary, INTERRUPTED)


def maximize(req: Request) -> Answer:
    models, prior, cfg, out, recipe = setup(req, "maximize")
    if req.diversity and req.batch < 2:
        raise CnnscopeError(f"{req.label('diversity')} needs {req.label('batch')} 2 or more (pictures per unit to "
                            "tell apart)")
    single = {m.profile.single_layer for m in models}  # a hand-crafted representation's one layer
    if req.classes is None and req.layer is None and (len(single) > 1 or None in single):
        raise CnnscopeError(f"{req.label('layer')} is required with {req.label('channels')}/"
                            f"{req.label('all_channels')}")
    layer_spec = req.layer or (single.pop() if req.classes is None else _logits(req, models))
    if req.diversity_layer is not None:
        for model in models:
            resolve(model, req.diversity_layer)

    def targets_for(model, layer):
        if req.classes is not None:
            return _classes(model, req.classes)
        chans = list(range(get_layer(model, layer).channels or 1)) if req.all_channels else list(req.channels)
        return channel_targets(model, layer, chans, req.where, req.y, req.x)

    count = 1
    for model in models:  # every target checked before any work
        for layer in expand_layers(model, layer_spec):
            count = max(count, len(targets_for(model, layer)))
    check_budget(models, layer_spec, min(req.chunk, count) * req.batch, req.size, cfg)
    planned = plan_maximize(models, lambda m: expand_layers(m, layer_spec), targets_for, size=req.size,
                            recipe=recipe, cfg=cfg, prior=prior, data_weight=req.data_weight, chunk=req.chunk,
                            batch=req.batch, diversity=req.diversity, diversity_layer=req.diversity_layer)
    summary, run = run_maximize(planned, out, **engine(req))
    for u in summary["units"]:
        notes(u)
        table(f"{u['layer']:<14} {u['target']:<16} activation {u['start_activation']:9.3f} -> "
              f"{u['final_activation']:9.3f}   ({u['activation_ratio']:.2f}x the natural-image max){judged(u)}")
    wrote(out, summary["grid"])
    return answer(run, summary, INTERRUPTED)


def caricature(req: Request) -> Answer:
    source, _ = picture(req.image)
    models, prior, cfg, out, recipe = setup(req, "caricature")
    layer = default_layer(req, models)
    check_budget(models, layer, 1, req.size, cfg)
    summary, run = run_caricature(models, source, layer, out, cfg=cfg, prior=prior, data_weight=req.data_weight,
                                  size=req.size, cosine_power=req.cosine, recipe=recipe, **engine(req))
    for u in summary["units"]:
        notes(u)
        table(f"{u['layer']:<14} <Phi(x0),Phi(x)>/||Phi(x0)||^2 = {u['relative_response']:.3f} "
              f"(1 at the input; {took(u['seconds'])})")
    wrote(out, summary["grid"])
    return answer(run, summary, INTERRUPTED)


def accentuate(req: Request) -> Answer:
    source, _ = picture(req.image)
    models, prior, cfg, out, recipe = setup(req, "accentuate")
    if len(models) > 1:
        raise CnnscopeError(f"accentuate takes one {req.label('model')}")
    model = models[0]
    if req.classes is not None:
        layer = req.layer or _logits(req, models)
        targets = _classes(model, req.classes)
    elif req.layer is None and model.profile.single_layer is None:
        raise CnnscopeError(f"{req.label('layer')} is required with {req.label('channels')}")
    else:
        layer = req.layer or model.profile.single_layer
        targets = channel_targets(model, expand_layers(model, layer)[0], list(req.channels), req.where)
    layer = expand_layers(model, layer)[0]
    anchor = expand_layers(model, req.anchor_layer)[0] if req.anchor_layer else None
    check_budget(models, layer, len(targets), req.size, cfg)
    summary, run = run_accentuate(model, source, layer, targets, out, cfg=cfg, prior=prior,
                                  data_weight=req.data_weight, size=req.size, anchor_layer=anchor,
                                  anchor_weight=req.anchor_weight, recipe=recipe)
    for u in summary["units"]:
        table(f"{layer:<14} {u['target']:<16} activation {u['start_activation']:9.3f} -> "
              f"{u['final_activation']:9.3f} (anchored at {u['anchor_layer']}){judged(u)}")
    wrote(out, summary["grid"])
    return answer(run, summary, INTERRUPTED)


# ------------------------------------------------------------------------------------ texture and style
def _gram_setup(req: Request, task: str):
    """Model, prior, solver settings and output folder: Adam, and no prior (texture, as Gatys) or a light TV
    term against high-frequency noise (style), unless the options say otherwise."""
    out = out_dir(req)
    _, cfg, prior = settings_for(task, None, {"iters": req.iters, "optimizer": req.optimizer, "lr": req.lr},
                                 seed=req.seed, box=not req.no_box, jitter=req.jitter, prior=explicit_prior(req))
    return load(req), prior, cfg, out


def texture(req: Request) -> Answer:
    source, image = picture(req.image)
    model, prior, cfg, out = _gram_setup(req, "texture")
    layers = tuple(expand_layers(model, req.style_layers)) if req.style_layers else None
    check_memory(model, list(layers or default_style_layers(model)), 1, req.size or model.input_size)
    variants = [req.soften] if not req.compare_soften else [None, req.soften or 1.0]
    jobs = plan_texture(model, source, size=req.size, layers=layers, cfg=cfg, prior=prior, temperatures=variants,
                        scales=req.scales, style_size=req.style_size, param=req.param)
    stem = slug(f"texture_{model.name}_{source_stem(source)}")
    run = execute(jobs, out, desc="texture", **engine(req))
    images, titles = [model.preprocess.geometry(image)[0]], ["source"]
    for o in run.outcomes:
        t = o.job.temperature
        titles.append("Gram" if t is None else f"softened Gram (T={t:g})")
        if out is not None:
            images.append(load_image(out / o.files[0]))
        before, after = o.results["gram_total_before"], o.results["gram_total_after"]
        table(f"{titles[-1]:<28} Gram loss {before:.4f} -> {after:.6f} ({before / max(after, 1e-12):.0f}x) "
              + ("(reused)" if o.seconds is None else f"in {o.seconds:.1f} s"))
    data = {"units": [{"file": o.job.key, **o.results} for o in run.outcomes]}
    if out is not None:
        image_grid(images, titles, out / f"{stem}_grid.png", ncols=len(images), cell=3.0)
        table(f"wrote {out / f'{stem}_grid.png'}")
    return answer(run, data)


def style_transfer(req: Request) -> Answer:
    content_source, content = picture(req.content)
    style_source, _ = picture(req.style)  # checked before loading the model
    model, prior, cfg, out = _gram_setup(req, "style")
    if req.content_layer:
        resolve(model, req.content_layer)
    size = req.size or model.input_size
    layers = tuple(expand_layers(model, req.style_layers)) if req.style_layers else None
    check_memory(model, list(layers or default_style_layers(model)), 1, size)
    job = plan_style(model, content_source, style_source, size=size, content_layer=req.content_layer,
                     style_layers=layers, cfg=cfg, prior=prior,
                     style_weight=req.style_weight, content_weight=req.data_weight, init=req.init,
                     temperature=req.soften)
    run = execute([job], out, desc="style")
    data = {}
    if run.outcomes:
        o = run.outcomes[0]
        data = {"file": job.key, **o.results}
        table(f"Gram loss after: {o.results['gram_total_after']:.5f}"
              + ("" if o.seconds is None else f"; {o.seconds:.1f} s"))
        if out is not None:
            pp = sized_preprocess(model, req.size)
            shown = req.style if isinstance(req.style, str) else "picture"
            image_grid([pp.geometry(content)[0], load_image(out / o.files[0])], ["content", f"stylised ({shown})"],
                       out / f"{job.key}_grid.png", ncols=2, cell=3.0)
            table(f"wrote {out / f'{job.key}_grid.png'}")
    return answer(run, data, "the picture so far is saved, marked interrupted: the same command again redoes it")


def train_texture_net(req: Request) -> Answer:
    if not isinstance(req.image, str):
        raise CnnscopeError(f"{req.label('image')}: a file or sample:NAME (the checkpoint records it)")
    load_image(req.image)
    out_file(req.out, ".safetensors", req.force or req.resume, req.label("out"))
    if req.size % 8:
        raise CnnscopeError(f"{req.label('size')} must be a multiple of 8, got {req.size}")
    model = load(req)
    settings = NetSettings(mode=req.mode, model=model.name, style=req.image, size=req.size, batch=req.batch,
                           lr=req.lr, iters=req.iters, seed=req.seed, style_weight=req.style_weight,
                           content_weight=req.content_weight, temperature=req.soften, content=req.content)
    result = train_generator(model, settings, req.out, resume=req.resume, save_every=req.save_every)
    h = result["history"]
    if h:
        table(f"loss {h[0]:.4f} -> {h[-1]:.4f} over {len(h)} iterations ({result['seconds']:.0f} s this run)")
    table(f"wrote {req.out}")
    return Answer(result, result, bool(result["interrupted"]), "checkpoint saved: continue with --resume")


def apply_texture_net(req: Request) -> Answer:
    out_file(req.out, ".png", req.force, req.label("out"))
    net, settings, state = load_checkpoint(req.net)
    net.to(resolve_device(req.device))
    image = None
    if settings.mode == "style":
        if req.image is None:
            raise CnnscopeError(f"this is a style network: give an {req.label('image')} to stylise")
        image = load_image(req.image)
    start = time.perf_counter()
    picture_out = apply_generator(net, settings, image, req.size, req.seed)
    seconds = time.perf_counter() - start
    save_image(picture_out, req.out)
    record = {"net": req.net, "settings": asdict(settings), "trained_iterations": state["iteration"],
              "image": req.image if isinstance(req.image, (str, type(None))) else "(in memory)", "size": req.size,
              "seed": req.seed}
    write_json(record, Path(req.out).with_suffix(".json"))
    table(f"wrote {req.out} ({picture_out.shape[-1]}x{picture_out.shape[-2]} px, {seconds * 1000:.0f} ms)")
    return Answer(picture_out, record)
