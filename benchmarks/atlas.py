"""Atlas throughput (issue 26, item 6): channels per minute of `cnnscope report`'s atlas jobs, and the quality
score shown beside each channel (activation over the natural-image maximum), for a few ways of running them.

    python benchmarks/atlas.py [--layer stage6] [--channels 8] [--configs base,iters100,batch4-iters100,lr0.08,...]
                               [--workers] [--device cuda]

Each configuration runs the report's own atlas jobs (`report.atlas.plan`, one thread per job, in this process)
on the first --channels channels of --layer; channels/min and the median / minimum activation ratio are printed
side by side with the first configuration's: the job's own (over the natural-image maximum at the picture's
size, the score the report shows) and at the network's input size (each picture resized to it: comparable
across sizes). --workers also times the same jobs in 1 and 2 worker processes.
"""

import argparse
import re
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

from cnnscope.images import load_image
from cnnscope.jobs import execute, run_job
from cnnscope.models import load_model
from cnnscope.preimage.recipes import RECIPES
from cnnscope.preimage.solver import ImageSpace
from cnnscope.preimage.tasks import _directions, layer_shape, reference_scale, response
from cnnscope.report.atlas import ReportSettings, plan
from cnnscope.targets import Target
from cnnscope.viz.figures import image_grid


def config_fields(name: str) -> dict:
    """ReportSettings fields of a configuration name: 'base', or '-'-joined itersN / batchN / sizeN / full / lrX /
    slowX (e.g. batch4-iters100; full: the picture drawn at the network's size, not upsampled; lrX: Adam's learning
    rate; slowX: the last X of the run at 0.1x the learning rate)."""
    fields, recipe = {}, {}
    for part in name.split("-"):
        m = re.fullmatch(r"(iters|batch|size)(\d+)", part)
        r = re.fullmatch(r"(lr|slow)([\d.]+)", part)
        if part == "full":  # the picture drawn at the network's input size (the recipe's resolution 1)
            recipe["resolution"] = 1.0
        elif r:
            recipe[{"lr": "lr", "slow": "slow_fraction"}[r.group(1)]] = float(r.group(2))
        elif part != "base" and not m:
            raise SystemExit(f"unknown configuration part '{part}' (base, itersN, batchN, sizeN, full, lrX, slowX)")
        if m:
            fields[{"iters": "iters", "batch": "atlas_batch", "size": "size"}[m.group(1)]] = int(m.group(2))
    if recipe:
        RECIPES[f"lucid-{name}"] = replace(RECIPES["lucid"], name=f"lucid-{name}", **recipe)
        fields["recipe"] = f"lucid-{name}"
    return fields


def atlas_jobs(settings: ReportSettings, device: str = "cpu"):
    model = load_model(settings.model, device=device)
    return model, [j for j in plan(settings, model) if j.kind == "maximize"]


def run_config(settings: ReportSettings, device: str = "cpu", save: Path | None = None) -> tuple[float, list[float]]:
    """Channels per minute (one job after another, one thread) and each channel's activation ratio; `save`
    keeps the pictures (one grid)."""
    model, jobs = atlas_jobs(settings, device)
    ratios, seconds = [], 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for job in jobs:
            t = time.perf_counter()
            results = run_job(tmp, job)[0]  # reads the scores back: the device has finished
            seconds += time.perf_counter() - t
            ratios += results["activation_ratio"]
        pictures = [load_image(p) for p in sorted(Path(tmp).rglob("*.png")) if "_grid" not in p.name]
    if save is not None:
        image_grid(pictures, [f"{r:.1f}x" for r in ratios], save, ncols=8)
    return 60 * len(ratios) / seconds, ratios, at_input_size(model, settings.layers[0], pictures)


def at_input_size(model, layer: str, pictures) -> list[float]:
    """Each channel's picture scored as the network sees a photo: resized to its input size, the centre unit's
    response over the natural-image maximum at that size (the job's own score uses its picture's size, so
    scores of different sizes are not comparable)."""
    size = model.input_size
    directions = _directions(layer_shape(model, layer, size), [Target("neuron", c) for c in range(len(pictures))])
    z = reference_scale(model, layer, directions, size)
    x = torch.stack([F.interpolate(p[None], size=(size, size), mode="bilinear", antialias=True)[0] for p in pictures])
    return [r / float(zi) for r, zi in zip(response(model, layer, directions, ImageSpace(model).from_pixels(x)), z)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layer", default="stage6")
    ap.add_argument("--channels", type=int, default=8)
    ap.add_argument("--configs", default="base,iters100,batch4,batch4-iters100")
    ap.add_argument("--save", default=None, help="a folder: one grid of each configuration's pictures")
    ap.add_argument("--device", default="cpu", help="where the network runs (cuda: batch the channels, batch64)")
    ap.add_argument("--workers", action="store_true", help="also time 1 vs 2 worker processes (base settings)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    base = {"model": "efficientnet_lite0", "layers": (args.layer,), "channels": args.channels, "examples": 0,
            "patch_images": 1}
    print(f"# atlas of Lite0 {args.layer}, first {args.channels} channels on {args.device}; one thread per job")
    print(f"{'config':<18}{'channels/min':>13}{'x base':>8}{'median ratio':>14}{'min ratio':>11}"
          f"{'median @input':>15}{'min @input':>12}")
    first = None
    for name in args.configs.split(","):
        t = time.perf_counter()
        save = Path(args.save) / f"atlas_{args.layer}_{name}.png" if args.save else None
        rate, ratios, common = run_config(ReportSettings(**{**base, **config_fields(name)}), args.device, save)
        wall = time.perf_counter() - t
        first = first or rate
        print(f"{name:<18}{rate:13.2f}{rate / first:8.2f}{statistics.median(ratios):14.2f}{min(ratios):11.2f}"
              f"{statistics.median(common):15.2f}{min(common):12.2f}   ({wall:.0f} s in all)", flush=True)
    if args.workers:
        model, jobs = atlas_jobs(ReportSettings(**base))
        rates = {}
        for workers in (1, 2):
            with tempfile.TemporaryDirectory() as tmp:
                run = execute(jobs, tmp, workers=workers, progress=False)
            rates[workers] = 60 * run.computed / run.seconds
            print(f"workers={workers}: {rates[workers]:.2f} channels/min")
        print(f"ratio 2 workers / 1 worker: {rates[2] / rates[1]:.2f}")


if __name__ == "__main__":
    main()
