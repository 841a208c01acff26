"""`cnnscope demo`: one HTML page showing what cnnscope does, section by section.

Each section is a function (context -> HTML); later features append theirs to SECTIONS.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..backprop.jobs import COLUMNS
from ..backprop.plans import default_rows, plan_saliency
from ..errors import CnnscopeError
from ..features.plans import plan_hog
from ..images import load_image, save_image
from ..jobs import execute
from ..layers import list_layers
from ..models import DEFAULT_MODEL, Model, ModelSpec, load_model
from ..preimage import Prior, SolverConfig, Target
from ..preimage.plans import invert_job, plan_maximize, plan_style, plan_texture
from ..preimage.recipes import get_recipe
from ..preimage.summaries import run_caricature, run_invert, run_maximize
from ..progress import units
from ..store import write_json, write_text
from ..transforms.plans import plan_cka, plan_feature_equivariance
from ..viz import bar_chart
from . import html

DEFAULT_IMAGES = ("sample:chelsea", "sample:coffee")


@dataclass
class DemoContext:
    out: Path
    model: Model
    images: dict[str, object]  # source -> [3,H,W] tensor
    settings: dict = field(default_factory=dict)

    @staticmethod
    def slug(source: str) -> str:
        return "".join(c if c.isalnum() else "_" for c in Path(source.replace("sample:", "")).stem)


def section_predict(ctx: DemoContext) -> str:
    parts = []
    preds = ctx.model.predict(list(ctx.images.values()), k=5)
    ctx.settings["predictions"] = {}
    for (src, img), top in zip(ctx.images.items(), preds):
        slug = ctx.slug(src)
        save_image(ctx.model.preprocess.geometry(img)[0], ctx.out / f"{slug}_input.png")
        bar_chart([p.name for p in top], [p.probability for p in top], f"{ctx.model.name}: {src}",
                  ctx.out / f"{slug}_top5.png")
        ctx.settings["predictions"][src] = [p.__dict__ for p in top]
        parts.append(html.figure(f"{slug}_input.png", f"{src} as the network sees it "
                                 f"({ctx.model.input_size}px centre crop)", 224))
        parts.append(html.figure(f"{slug}_top5.png", f"top-5 classes for {src}"))
    return html.section("Predictions", "".join(parts), "predict")


def section_layers(ctx: DemoContext) -> str:
    rows = list_layers(ctx.model)
    write_json([r.to_dict() for r in rows], ctx.out / "layers.json")
    named = [r for r in rows if r.alias]
    body = ('<p>The main layers (friendly aliases; every module and call is addressable, see '
            '<a href="layers.json">layers.json</a> or <code>cnnscope layers</code>). Receptive field, '
            "stride and offset are in input pixels.</p>")
    table_rows = []
    for r in named:
        d = r.to_dict()
        rf = "whole image" if r.is_global else d["receptive_field"]
        table_rows.append((r.alias, r.name, r.kind, "x".join(map(str, r.shape)), rf,
                           d["stride"] if d["stride"] is not None else "-",
                           d["offset"] if d["offset"] is not None else "-"))
    body += html.table(("alias", "layer", "type", "output", "receptive field", "stride", "offset"), table_rows)
    return html.section("Layers", body, "layers")


DEMO_CLASSES = (285, 980, 401, 599)  # Egyptian cat, volcano, accordion, honeycomb


def section_preimages(ctx: DemoContext) -> str:
    """Inversion across depth, activation maximisation (M&V's recipe against the default one) and
    caricatures (reduced budget for the demo)."""

    out = ctx.out / "preimage"
    iters = ctx.settings.get("preimage_iters", 200)
    source = next(iter(ctx.images))
    depth = list(ctx.model.profile.depth)
    size = ctx.settings.get("maximize_size")  # --quick: smaller pictures for the unit and class visualisations
    mv, vis = get_recipe("mv", "invert"), get_recipe(None, "maximize")
    inv = run_invert([ctx.model], source, ",".join(depth), out, cfg=mv.config(iters=iters, seed=0), prior=None,
                     data_weight=20.0, size=None, recipe=mv)[0]
    _stop_if_interrupted(inv)
    middle = "stage3" if "stage3" in ctx.model.aliases else depth[len(depth) // 2]
    mx = run_maximize(plan_maximize([ctx.model], lambda m: [middle], lambda m, layer: [Target("channel", k)
                                                                                       for k in range(8)],
                                    size=size, recipe=vis, cfg=vis.config(iters=iters, seed=0), prior=None,
                                    data_weight=20.0), out)[0]
    _stop_if_interrupted(mx)
    class_grids = {}
    if ctx.model.profile.logits is not None and len(ctx.model.classes) == 1000:
        for recipe in (mv, vis):
            planned = plan_maximize([ctx.model], lambda m: ["logits"],
                                    lambda m, layer: [Target("class", k) for k in DEMO_CLASSES], size=size,
                                    recipe=recipe, cfg=recipe.config(iters=iters, seed=0), prior=None,
                                    data_weight=20.0)
            cls = run_maximize(planned, out / f"classes_{recipe.name}")[0]
            _stop_if_interrupted(cls)
            class_grids[recipe.name] = f"preimage/classes_{recipe.name}/{cls['grid']}"
    car = run_caricature([ctx.model], source, ",".join(depth[2:-1:2]), out, cfg=mv.config(iters=iters, seed=0),
                         prior=None, data_weight=20.0, size=None, recipe=mv)[0]
    _stop_if_interrupted(car)
    ctx.settings["preimage"] = {"invert": inv, "maximize": mx, "caricature": car}
    errors = ", ".join(f"{u['title']} {u['normalised_error'][0]:.3f}" for u in inv["units"])
    body = (f"<p>One optimiser, min<sub>x</sub> C·data(Φ(x)) + R<sub>TV</sub><sup>β</sup>(x) + R<sub>α</sub>(x), "
            f"started from noise ({iters} iterations each). Inversion of {html.escape(source)} from each "
            f"depth (normalised errors: {html.escape(errors)}); early layers keep the image, deep ones keep "
            "increasingly abstract parts. Commands: <code>cnnscope invert IMAGE --layer stages</code>, "
            "<code>cnnscope maximize --layer stage3 --channel 0-7 --where channel</code>, "
            "<code>cnnscope caricature IMAGE --layer L</code>.</p>")
    body += html.figure(f"preimage/{inv['grid']}", "inversion across depth (recipe mv, the seed's; the invert verb "
                        f"defaults to {get_recipe(None, 'invert').name})")
    body += html.figure(f"preimage/{mx['grid']}", f"activation maximisation: channels 0-7 (recipe {vis.name})")
    for name, grid in class_grids.items():
        body += html.figure(grid, f"class visualisations, recipe {name}"
                            + (" (Mahendran & Vedaldi: pixels + TV prior)" if name == "mv" else
                               " (Fourier + decorrelated colour + transformation robustness)"))
    body += html.figure(f"preimage/{car['grid']}", "caricatures across layers (recipe mv, the seed's)")
    return html.section("Pre-images", body, "preimages")


def section_backprop(ctx: DemoContext) -> str:
    """The seed's comparison: Image | DeConvNet | SaliNet | DeSaliNet, for the last conv stage and the logits."""
    out = ctx.out / "backprop"
    source, image = next(iter(ctx.images.items()))
    run = execute(plan_saliency(ctx.model, [source], lambda _: default_rows(ctx.model), list(COLUMNS)), out,
                  desc="saliency")
    _stop_if_interrupted(run)
    job = run.outcomes[0]
    ctx.settings["backprop"] = {"settings": job.job.settings(), "results": job.results, "files": job.files}
    body = ("<p>Backpropagation induces a reversed network; changing only the backward rule of the rectifiers "
            "gives SaliNet (true gradient), DeConvNet (backward signal rectified, forward mask ignored) and "
            "DeSaliNet (both). Top row: reconstruction from the whole code of the last convolutional stage; "
            "bottom: from the top class. <code>cnnscope saliency IMAGE</code>; "
            "<code>cnnscope backprop</code> prints the reversed network; "
            "<code>cnnscope selectivity</code> measures how little DeConvNet maps depend on the neuron.</p>")
    body += html.figure(f"backprop/{job.job.key}_grid.png", "Image | DeConvNet | SaliNet | DeSaliNet")
    return html.section("Backpropagation networks", body, "backprop")


def section_style(ctx: DemoContext) -> str:
    """Texture synthesis from brick and gravel, and gravel's style on the first image (texture and style jobs)."""
    out = ctx.out / "style"
    iters = ctx.settings.get("preimage_iters", 200)
    cfg = SolverConfig(optimizer="adam", iters=iters, progress=False)
    source = next(iter(ctx.images))
    textures = [job for n in ("brick", "gravel") for job in plan_texture(
        ctx.model, f"sample:{n}", size=None, layers=None, cfg=cfg, prior=Prior.none(), param="pixel",
        key=f"texture_{n}")]
    style = plan_style(ctx.model, source, "sample:gravel", size=None, content_layer=None, style_layers=None, cfg=cfg,
                       prior=Prior(tv_weight=0.1, alpha_weight=0.0), key="style_gravel")
    run = execute([*textures, style], out, progress=False)
    _stop_if_interrupted(run)
    record = {o.job.key: {k: o.results[k] for k in ("gram_total_before", "gram_total_after")}
              for o in run.outcomes}
    parts = [html.figure(f"style/texture_{n}.png", f"texture from sample:{n} (Gram loss "
                         f"{record[f'texture_{n}']['gram_total_before']:.3f} → "
                         f"{record[f'texture_{n}']['gram_total_after']:.5f})", 224) for n in ("brick", "gravel")]
    parts.append(html.figure("style/style_gravel.png", f"{source} in the style of sample:gravel", 224))
    ctx.settings["style"] = record
    body = ("<p>Moment matching (Gatys et al.): the Gram matrices of a few layers describe a texture; "
            "with the inversion term added, they transfer style. Lite0 is not a VGG, and its textures "
            "are grainier than the classic VGG results. <code>cnnscope texture IMAGE</code>, "
            "<code>cnnscope style-transfer CONTENT STYLE</code>, <code>cnnscope train-texture-net IMAGE</code> + "
            "<code>cnnscope apply-texture-net --net FILE</code>.</p>")
    return html.section("Texture and style", body + "".join(parts), "style")


def section_equivalence(ctx: DemoContext) -> str:
    """Linear CKA between Lite0 and Lite1 layers, on random crops of the bundled samples (a CKA job)."""
    try:
        load_model("efficientnet_lite1")
    except Exception as err:  # the optional weights package is missing: say so instead of failing the demo
        return html.section("Equivalence", f"<p>skipped: {html.escape(str(err))}</p>", "equivalence")
    layers = tuple(ctx.model.profile.depth)
    job = plan_cka(ctx.model, load_model("efficientnet_lite1"), layers, layers,
                   limit=16 if ctx.settings.get("preimage_iters", 200) < 100 else 40, key="cka")
    run = execute([job], ctx.out / "equivalence", progress=False)
    _stop_if_interrupted(run)
    ctx.settings["cka"] = run.outcomes[0].results["cka"]
    body = ("<p>Are two networks' representations the same up to a simple map? Linear CKA compares the layers "
            "of Lite0 and Lite1 (trained separately, same data): the diagonal is high. Stitching — A's front, a "
            "learned 1x1 map, B's rest — tests it by B's own task: <code>cnnscope stitch --images FOLDER</code>; "
            "seeds, before/after training and different data with small CNNs trained here: "
            "<code>cnnscope stitch-small</code>.</p>")
    return html.section("Equivalence", body + html.figure("equivalence/cka.png", "layer-by-layer linear CKA"),
                        "equivalence")


def section_handcrafted(ctx: DemoContext) -> str:
    """HOG as glyphs, its pre-image, and its equivariance to a 45 degree rotation (learned M_g): three jobs."""
    source = next(iter(ctx.images))
    iters = ctx.settings.get("preimage_iters", 200)
    hogb = ModelSpec("hogb")
    jobs = [plan_hog(source, cell_size=8, orientations=9, bilinear=True, size=224, glyph=9, key="glyphs"),
            invert_job(load_model("hogb"), "preimage", source, ("hog",), 160, recipe=None,
                       cfg=SolverConfig(iters=iters, progress=False), prior=None, judge=False, spec=hogb),
            plan_feature_equivariance(ModelSpec("hog"), "rotate:45", limit=24 if iters >= 100 else 12, fit=0.75,
                                      ridge=1e-4, neighbourhoods=(1, 3), key="equivariance_hog_rotate45")]
    done = _stop_if_interrupted(execute(jobs, ctx.out / "hog", progress=False))
    run = {o.job.key: o.results for o in done.outcomes}
    errors = run["equivariance_hog_rotate45"]["relative_error"]
    preimage_error = run["preimage"]["normalised_error"][0]
    ctx.settings["hog"] = {"preimage_error": preimage_error, "rotate45": errors}
    body = (f"<p>HOG (UoCTTI, 31 channels per 8 px cell) is a differentiable module that matches VLFeat's "
            f"<code>vl_hog</code>; every tool takes it as a model (<code>--model hog|hogb|dsift</code>). Its "
            f"pre-image keeps edges and loses colour. Rotating the image by 45° is not a permutation of 9 orientation "
            f"bins, but a learned linear map M_g brings the relative error from {errors['spatial_only']:.2f} "
            f"(moving cells only) to {errors['learned_3x3']:.2f} on held-out crops. "
            "<code>cnnscope hog IMAGE</code>, <code>cnnscope invert IMAGE --model hogb</code>, "
            "<code>cnnscope equivariance --model hog --transform rotate:45</code>.</p>")
    body += html.figure("hog/glyphs.png", f"HOG glyphs of {source}", 300)
    body += html.figure("hog/preimage.png", f"HOGb pre-image (error {preimage_error:.3f})", 200)
    body += html.figure("hog/equivariance_hog_rotate45.png", "is HOG(gx) = M_g HOG(x) for a 45° rotation?")
    return html.section("Hand-crafted features: HOG", body, "hog")


def _stop_if_interrupted(run):
    """Ctrl-C reached a section's jobs: stop the demo (finished jobs are kept; the same command resumes)."""
    if run.interrupted if hasattr(run, "interrupted") else run.get("interrupted"):
        raise KeyboardInterrupt
    return run


SECTIONS: list[tuple[str, Callable[[DemoContext], str]]] = [
    ("predictions", section_predict),
    ("layers", section_layers),
    ("pre-images", section_preimages),
    ("backprop", section_backprop),
    ("texture and style", section_style),
    ("hand-crafted features", section_handcrafted),
    ("equivalence", section_equivalence),
]


def run_demo(out: str | Path = "demo-out", model_name: str | None = None,
             images: Sequence[str] | None = None, preimage_iters: int = 200, device: str = "cpu",
             maximize_size: int | None = None) -> Path:
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CnnscopeError(f"--out {out}: exists and is not a folder")
    sources = list(images or DEFAULT_IMAGES)
    loaded = {src: load_image(src) for src in sources}
    model = load_model(model_name or DEFAULT_MODEL, device=device)
    out.mkdir(parents=True, exist_ok=True)
    ctx = DemoContext(out, model, loaded, {**model.settings(), "images": sources,
                                           "preimage_iters": preimage_iters, "maximize_size": maximize_size})
    start = time.perf_counter()
    sections = []
    with units(len(SECTIONS), "demo", "section") as bar:
        for name, fn in SECTIONS:
            sections.append(fn(ctx))
            bar.update(1, note=name)
    ctx.settings["seconds"] = round(time.perf_counter() - start, 2)
    write_json(ctx.settings, out / "demo.json")
    intro = (f"<p>Model <b>{model.name}</b> (weights: {html.escape(Path(model.weights).name)}). "
             f'Settings and numbers: <a href="demo.json">demo.json</a>.</p>')
    return write_text(html.page("cnnscope demo", sections, intro), out / "index.html")
