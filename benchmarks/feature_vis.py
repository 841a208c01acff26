"""Feature visualisation quality and speed, side by side with Lucent on the same Lite0 (issue 11).

    python benchmarks/feature_vis.py [--parts classes,channels,invert,caricature,texture,step] [--skip-lucent]
                                      [--per-call N] [--seeds 0,1,2] [--variants ...] [--out DIR]

classes   20 classes spread over the 1000 (25, 75, ..., 975): judges Lite1 and Lite2 (which never saw the
          optimisation) rank the class; top-1 / top-5 rate over (picture, judge) pairs; seconds per unit.
channels  20 channels of stages 4-7 (spatial mean): activation over the channel's maximum on natural images
          (the ImageNet sample when present), and the power-spectrum slope against natural images'.
caricature  per recipe and layer, on held-back images: gain over the start, judges' top-5 overlap, seconds.
invert    per recipe and layer, on held-back images: normalised error, whether the judges' top-5 for the
          pre-image overlaps their top-5 for the original, seconds (what chose invert's default recipe).
texture   judge (Lite1) Gram distance to the source for sample:brick and sample:gravel, pixels vs Fourier.
step      a step of the default recipe against a bare truncated forward+backward; peak RSS of one picture.

Ours: `maximize` with its default recipe, `--chunk 8` targets per optimisation (the CLI default).
Lucent: its defaults (128 px Fourier + decorrelated colour, standard transforms, Adam 0.05, 512 steps,
upsampled to 224), one unit at a time, run in this benchmark's own throw-away environment
(benchmarks/.lucent-env: torch-lucent and kornia 0.4.1 installed with --no-deps, plus the stand-ins in
benchmarks/lucent_standins for torchvision.transforms.Normalize and IPython.display). Writes side-by-side
grids (ours | Lucent) into --out.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

from cnnscope import load_image, load_model
from cnnscope.data import list_folder
from cnnscope.images import save_image
from cnnscope.jobs import compute_job
from cnnscope.layers import Capture, capture
from cnnscope.models.folding import for_optimisation
from cnnscope.preimage import (
    InnerProduct,
    SolverConfig,
    Target,
    caricature,
    invert,
    reconstruction_error,
    solve,
)
from cnnscope.preimage.objectives import unit_direction
from cnnscope.preimage.plans import maximize_job
from cnnscope.preimage.quality import class_ranks, gram_distance, judges_for, spectrum_slope, topk_overlap
from cnnscope.preimage.recipes import get_recipe
from cnnscope.preimage.style import texture
from cnnscope.preimage.tasks import caricature_gain, settings_for, sized_preprocess
from cnnscope.viz import image_grid

HERE = Path(__file__).resolve().parent
SAMPLE = HERE.parents[1] / "shared" / "imagenet-sample"
LUCENT_ENV = HERE / ".lucent-env"
CLASSES = list(range(25, 1000, 50))
STAGES = ("stage4", "stage5", "stage6", "stage7")
CHUNK = 8


def lucent_env() -> Path:
    if not (LUCENT_ENV / "lucent").is_dir():
        print("installing torch-lucent + kornia 0.4.1 (--no-deps) into", LUCENT_ENV, flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(LUCENT_ENV),
                        "torch-lucent==0.1.8", "kornia==0.4.1", "decorator"], check=True)
    return LUCENT_ENV


def run_lucent(units: list[dict], out: Path) -> dict[str, float]:
    out.mkdir(parents=True, exist_ok=True)
    spec = out / "units.json"
    spec.write_text(json.dumps(units))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(lucent_env()), str(HERE / "lucent_standins")])}
    subprocess.run([sys.executable, str(HERE / "lucent_runner.py"), str(spec), str(out)], check=True, env=env)
    return json.loads((out / "lucent_times.json").read_text())


def natural_images(n: int) -> list[torch.Tensor]:
    if SAMPLE.is_dir():
        return [load_image(p) for p, _ in list_folder(SAMPLE, limit=n)]
    return [load_image(f"sample:{s}") for s in ("chelsea", "coffee", "astronaut", "rocket")]


def channels_of(model) -> list[tuple[str, int]]:
    out = []
    for stage in STAGES:
        width = capture(model, torch.zeros(1, 3, 224, 224), [stage])[stage].shape[1]
        out += [(stage, round(i * width / 5) + 3) for i in range(5)]
    return out


def channel_means(model, images: torch.Tensor, units: list[tuple[str, int]]) -> list[float]:
    """Each unit's channel mean on its own picture (pictures resized to the model's input size)."""
    s = model.input_size
    x = F.interpolate(images, size=(s, s), mode="bilinear", antialias=True, align_corners=False)
    feats = capture(model, model.preprocess.normalize(x), sorted({l for l, _ in units}))
    return [float(feats[l][i, c].mean()) for i, (l, c) in enumerate(units)]


def natural_max(model, units, natural) -> list[float]:
    batch = torch.cat([model.prepare(im) for im in natural])
    with torch.no_grad():
        feats = capture(model, batch, sorted({l for l, _ in units}))
    return [float(feats[l][:, c].mean((1, 2)).max()) for l, c in units]


VARIANTS = {  # changes to maximize's default settings compared by --variants (what chose the current default)
    "default": {},
    "full224": {"resolution": 1.0},  # drawn at the network's size
    "i256": {"iters": 256},
    "i192": {"iters": 192},
    "i128": {"iters": 128},
}


def ours_maximize(model, layer_targets: list[tuple[str, Target]], variant: str = "default",
                  per_call: int = CHUNK, seed: int = 0) -> tuple[torch.Tensor, float]:
    """Our default recipe (changed by `variant`), `per_call` targets of one layer per optimisation, each run as
    the CLI runs it (a job: one thread, seeded as `--seed`); returns pictures and seconds/unit."""
    recipe, cfg, _ = settings_for("maximize", None, VARIANTS[variant])  # as the CLI and the API set it up
    cfg = replace(cfg, progress=False, seed=seed)
    images, seconds = [], 0.0
    by_layer: dict[str, list[Target]] = {}
    for layer, t in layer_targets:
        by_layer.setdefault(layer, []).append(t)
    for layer, targets in by_layer.items():
        for i in range(0, len(targets), per_call):
            job = maximize_job(model, f"{layer}-{i}", layer, targets[i:i + per_call], 224, recipe=recipe, cfg=cfg,
                               prior=None, judge=False)
            result, sec = compute_job(job)
            images.append(result.tensors)
            seconds += sec
    return torch.cat(images), seconds / len(layer_targets)


def load_png(path: Path) -> torch.Tensor:
    return load_image(str(path))[None]


def side_by_side(ours: torch.Tensor, theirs: torch.Tensor, titles: list[str], path: Path) -> None:
    imgs, caps = [], []
    for a, b, t in zip(ours, theirs, titles):
        imgs += [a, F.interpolate(b[None], size=a.shape[-2:], mode="bilinear", antialias=True)[0]]
        caps += [f"{t}\nours", f"{t}\nLucent"]
    image_grid(imgs, caps, path, ncols=8)


def part_classes(model, args, out: Path) -> None:
    judges = judges_for(model)
    rows = {}
    seeds = [int(v) for v in args.seeds.split(",")]
    variant_of = {}
    for variant in args.variants.split(","):
        for seed in seeds:  # a 20-class rate moves by 0.05-0.1 from one solver seed to another
            ours, secs = ours_maximize(model, [("logits", Target("class", k)) for k in CLASSES], variant,
                                       args.per_call, seed)
            name = " ".join(["ours"] + [variant] * (args.variants != "default") + [f"s{seed}"] * (len(seeds) > 1))
            rows[name], variant_of[name] = (class_ranks(judges, ours, CLASSES), secs), variant
            image_grid(list(ours), [model.classes[k][:18] for k in CLASSES], out / f"classes_{variant}_s{seed}.png",
                       ncols=10)
    lucent = None
    if not args.skip_lucent:
        units = [{"key": f"class{k}", "layer": "_fc", "channel": k} for k in CLASSES]
        times = run_lucent(units, out / "lucent_classes")
        lucent = torch.cat([load_png(out / "lucent_classes" / f"class{k}.png") for k in CLASSES])
        rows["lucent"] = (class_ranks(judges, lucent, CLASSES), statistics.mean(times.values()))
        side_by_side(ours, lucent, [model.classes[k][:18] for k in CLASSES], out / "classes_ours_vs_lucent.png")
    print(f"\n== classes (judges: {', '.join(j.name for j in judges)})")
    print(f"{'class':<24}" + "".join(f"{name + ' ranks':>22}" for name in rows))
    for i, k in enumerate(CLASSES):
        print(f"{model.classes[k][:22]:<24}" + "".join(f"{str(list(r[0][i].values())):>22}" for r in rows.values()))
    rates = {}
    for name, (rk, s) in rows.items():
        flat = [v for d in rk for v in d.values()]
        rates[name] = (sum(v < 1 for v in flat) / len(flat), sum(v < 5 for v in flat) / len(flat))
        print(f"{name:<8} judge top-1 {rates[name][0]:.2f}  top-5 {rates[name][1]:.2f}  {s:.1f} s/unit")
    if len(seeds) > 1:
        for variant in args.variants.split(","):
            mine = [r for name, r in rates.items() if variant_of.get(name) == variant]
            print(f"ours {variant}, mean over seeds {args.seeds}: judge top-1 "
                  f"{statistics.mean(r[0] for r in mine):.3f}  top-5 {statistics.mean(r[1] for r in mine):.3f}")
    if lucent is not None:
        for name in rows:
            if name != "lucent":
                print(f"seconds per unit, {name} / Lucent: {rows[name][1] / rows['lucent'][1]:.2f}")


def part_channels(model, args, out: Path) -> None:
    units = channels_of(model)
    natural = natural_images(100)
    nat_max = natural_max(model, units, natural)
    nat_slope = statistics.mean(spectrum_slope(torch.cat([sized_preprocess(model, 224).geometry(im)
                                                          for im in natural])))
    rows = {}
    for variant in args.variants.split(","):
        rows[f"ours {variant}" if args.variants != "default" else "ours"] = ours_maximize(
            model, [(layer, Target("channel", c)) for layer, c in units], variant, per_call=args.per_call)
    ours = next(iter(rows.values()))[0]
    if not args.skip_lucent:
        lu = [{"key": f"{layer}_{c}", "layer": model.aliases[layer].replace(".", "_"), "channel": c}
              for layer, c in units]
        times = run_lucent(lu, out / "lucent_channels")
        lucent = torch.cat([load_png(out / "lucent_channels" / f"{u['key']}.png") for u in lu])
        rows["lucent"] = (lucent, statistics.mean(times.values()))
        side_by_side(ours, lucent, [f"{layer} ch{c}" for layer, c in units], out / "channels_ours_vs_lucent.png")
    print(f"\n== channels (natural max over {len(natural)} images; natural spectrum slope {nat_slope:.2f})")
    for name, (imgs, s) in rows.items():
        with torch.no_grad():
            ratio = [a / m for a, m in zip(channel_means(model, imgs, units), nat_max)]
        slopes = spectrum_slope(imgs)
        print(f"{name:<8} activation/natural max: median {statistics.median(ratio):.2f}, >= 1.0 for "
              f"{sum(r >= 1 for r in ratio)}/{len(ratio)};  spectrum slope mean {statistics.mean(slopes):.2f}, "
              f"within 0.5 of natural for {sum(abs(v - nat_slope) <= 0.5 for v in slopes)}/{len(slopes)};  "
              f"{s:.1f} s/unit")
        for (layer, c), r, v in zip(units, ratio, slopes):
            print(f"   {layer} ch{c:<4} ratio {r:6.2f}  slope {v:6.2f}")


def part_invert(model, args, out: Path) -> None:
    """Which recipe should `invert` use by default? Normalised error ||Phi(x*) - Phi(x0)||^2 / ||Phi(x0)||^2."""
    compare_recipes(model, args, out, "invert", "error", lambda im, layer, r: invert(model, im, layer, recipe=r),
                    lambda res: reconstruction_error(res)[0])


def part_caricature(model, args, out: Path) -> None:
    """Which recipe should `caricature` use by default? The gain <Phi(x0), Phi(x)> / ||Phi(x0)||^2 (1 at the
    start); the judges' overlap says whether the caricature is still of this picture."""
    compare_recipes(model, args, out, "caricature", "gain",
                    lambda im, layer, r: caricature(model, im, layer, recipe=r), lambda res: caricature_gain(res)[0])


def compare_recipes(model, args, out: Path, task: str, score: str, run, measure) -> None:
    """Per recipe (mv, lucid) and layer, on held-back images (the LAST --invert-images of the ImageNet sample,
    never looked at while the recipes were made): the task's score, how often the judges' top-5 for the picture
    overlaps theirs for the original, seconds per picture; grids of the pictures to look at."""
    judges = judges_for(model)
    images = held_back_images(args.invert_images)
    print(f"\n== {task} ({len(images)} held-back images; judges {', '.join(j.name for j in judges)})")
    print(f"{'recipe':<7}{'layer':<8}{score:>8}{'judge top-5 overlap':>21}{'s/picture':>11}")
    for layer in args.invert_layers.split(","):
        for recipe in ("mv", "lucid"):
            r = get_recipe(recipe, task)
            scores, hits, secs, pics = [], 0, [], []
            for im in images:
                res = run(im, layer, r)
                scores.append(measure(res))
                ov = topk_overlap(judges, res.images, sized_preprocess(model, 224).geometry(im))[0]
                hits += sum(v > 0 for v in ov.values())
                secs.append(res.seconds)
                pics.append(res.images[0])
            image_grid(pics, [f"{layer} {recipe}"] * len(pics), out / f"{task}_{recipe}_{layer}.png", ncols=5)
            print(f"{recipe:<7}{layer:<8}{statistics.mean(scores):8.3f}{hits / (len(images) * len(judges)):21.2f}"
                  f"{statistics.mean(secs):11.1f}", flush=True)


def held_back_images(n: int) -> list[torch.Tensor]:
    if SAMPLE.is_dir():
        return [load_image(p) for p, _ in list_folder(SAMPLE)[-n:]]
    return [load_image(f"sample:{s}") for s in ("chelsea", "coffee", "astronaut", "rocket")][:n]


def part_texture(model, args, out: Path) -> None:
    judge = judges_for(model)[0]
    layers = judge.net.style_layers()
    print(f"\n== texture (judge {judge.name} at its style layers)")
    for src in ("sample:brick", "sample:gravel"):
        image = load_image(src)
        row = []
        for param in ("pixel", "fourier"):
            r, _ = texture(model, image, param=param, config=SolverConfig(optimizer="adam", iters=300, progress=False))
            d = gram_distance(judge, r.images, image, layers)[0]
            row.append((param, d, r.seconds))
            save_image(r.images[0], out / f"texture_{src[7:]}_{param}.png")
        print(f"{src:<14} " + "   ".join(f"{p}: judge Gram distance {d:.4f} ({s:.0f} s)" for p, d, s in row)
              + f"   ratio {row[1][1] / row[0][1]:.2f}")


# VmHWM, not ru_maxrss: a forked child's ru_maxrss starts at its parent's RSS (this process holds ~2 GB)
PEAK_RSS_CHILD = """
import re, torch
from cnnscope import load_model
from cnnscope.preimage import Target, get_recipe, maximize
torch.set_num_threads(2)
model = load_model("efficientnet_lite0")
recipe = get_recipe(None, "maximize")
maximize(model, "logits", [Target("class", 285)], recipe=recipe, config=recipe.config(iters=20, progress=False))
status = open("/proc/self/status").read()
print(int(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1)) / 2**20)
"""


STEPS, ROUNDS = 20, 5  # steps per timed solve; rounds of (bare block, each variant's solve), interleaved


def part_step(model, args, out: Path) -> None:
    """Step cost of the default recipe (and --variants) against a bare truncated forward+backward to the same
    layer at 224 px, one thread (as a job runs), for three objectives: a unit as `maximize` and the atlas ask
    for it (a channel's centre neuron: the solver runs the network on the input window that neuron sees,
    `preimage.window`), the same unit on the whole input (receptive_window=False: what the parametrisation,
    transforms and Adam add to a whole pass) and a channel's spatial mean (every cell read: always the whole
    input). This machine's speed drifts by 10-30% over minutes, so rounds interleave a block of bare passes
    with each solve and the medians are compared; a step is a solve's loop time over its steps, and what a
    solve costs besides its steps (setup, the memory probe, the window's check, the final evaluation) is
    printed apart, as "per solve". Then the peak RSS of one 224 px class visualisation in a fresh process."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    print("\n== step cost (224 px, batch 1, Lite0, one thread; goal: <= 1.6x at the stem, <= 1.10x from stage2); "
          "bare: the network as loaded (the solver runs it with its BatchNorms folded, `models.folding`); "
          "unit = a channel's centre neuron, on its receptive window (as maximize runs it) and on the whole input; "
          "mean = the channel's spatial mean")
    for layer in ("stem", "stage2", "stage4", "stage6", "logits"):
        shape = capture(model, torch.zeros(1, 3, 224, 224), [layer])[layer].shape[1:]
        objectives = {"unit": InnerProduct(layer, unit_direction(shape, [3], "neuron"))}
        if len(shape) == 3:
            objectives["mean"] = InnerProduct(layer, unit_direction(shape, [3], "channel"))
        x = torch.zeros(1, 3, 224, 224, requires_grad=True)
        phi = Capture(model, [layer])
        phi_folded = Capture(for_optimisation(model, [layer]), [layer])  # the network the solver runs

        def bare_block(phi=phi, x=x, layer=layer) -> float:
            start = time.perf_counter()
            for _ in range(STEPS):
                phi(x)[layer].sum().backward()
            return (time.perf_counter() - start) / STEPS

        def solve_for(recipe, obj, window=True) -> tuple[float, float]:
            """(seconds per step, seconds per solve besides its steps)."""
            start = time.perf_counter()
            picture = round(224 * recipe.resolution)  # as `maximize` sets it up: the network sees 224 px
            param = recipe.make_param(1, picture, seed=0, mean=model.preprocess.mean)
            r = solve(model, obj, param, recipe.config(iters=STEPS, progress=False, receptive_window=window,
                                                       net_size=224 if picture != 224 else None))
            return r.seconds / STEPS, time.perf_counter() - start - r.seconds

        recipes = {v: replace(get_recipe(None, "maximize"), **VARIANTS[v]) for v in args.variants.split(",")}
        runs = {}
        for v, recipe in recipes.items():
            prefix = "" if len(recipes) == 1 else f"{v} "
            runs[prefix + "unit"] = (recipe, objectives["unit"], True)
            runs[prefix + "unit, whole input"] = (recipe, objectives["unit"], False)
            if "mean" in objectives:
                runs[prefix + "mean"] = (recipe, objectives["mean"], True)
        bare_block()
        bare_block(phi_folded)
        for run in runs.values():
            solve_for(*run)  # warm-up
        t_bare, t_folded, t_solve = [], [], {name: [] for name in runs}
        for _ in range(ROUNDS):
            t_bare.append(bare_block())
            t_folded.append(bare_block(phi_folded))
            for name, run in runs.items():
                t_solve[name].append(solve_for(*run))
        b, bf = statistics.median(t_bare), statistics.median(t_folded)
        cells = []
        for name, times in t_solve.items():
            step, fixed = statistics.median(t for t, _ in times), statistics.median(f for _, f in times)
            cells.append(f"{name} {step / b:.2f} ({step * 1000:.1f} ms; per solve {fixed * 1000:.0f} ms)")
        print(f"{layer:<7} bare forward+backward {b * 1000:.1f} ms (BatchNorm folded {bf * 1000:.1f} ms); "
              "step / bare: " + ", ".join(cells), flush=True)
        phi.close()
        phi_folded.close()
    torch.set_num_threads(threads)
    rss = subprocess.run([sys.executable, "-c", PEAK_RSS_CHILD], capture_output=True, text=True, check=True)
    print(f"peak RSS of one 224 px class visualisation: {float(rss.stdout.strip().splitlines()[-1]):.2f} GB")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--parts", default="classes,channels,invert,caricature,texture,step")
    ap.add_argument("--skip-lucent", action="store_true")
    ap.add_argument("--variants", default="default", help=f"classes, channels, step: variants ({', '.join(VARIANTS)})")
    ap.add_argument("--per-call", type=int, default=CHUNK, help="classes/channels: units per optimisation (1: as a "
                    "user runs `cnnscope maximize --class K`)")
    ap.add_argument("--seeds", default="0", help="classes: solver seeds of our pictures (e.g. 0,1,2)")
    ap.add_argument("--invert-images", type=int, default=10)
    ap.add_argument("--invert-layers", default="stage2,stage4,stage6,stage7")
    ap.add_argument("--out", default="feature-vis-out")
    args = ap.parse_args()
    torch.set_num_threads(2)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = load_model("efficientnet_lite0")
    parts = {"classes": part_classes, "channels": part_channels, "invert": part_invert, "caricature": part_caricature,
             "texture": part_texture,
             "step": part_step}
    for name in args.parts.split(","):
        parts[name](model, args, out)


if __name__ == "__main__":
    main()
