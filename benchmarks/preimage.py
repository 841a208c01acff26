"""Pre-image engine benchmark (Lite0, 224 px, default settings).

    python benchmarks/preimage.py [--images 10] [--layers stages] [--iters 300] [--skip-errors]

(a) normalised reconstruction error ||Phi(x*)-Phi0||^2/||Phi0||^2 per layer on sample:chelsea and the
    first N images of ../shared/imagenet-sample, with the Spearman correlation of error vs depth;
(b) optimiser step time / bare forward+backward time of the network truncated at the same layer
    (same size, same process, interleaved);
(c) peak RSS of a 224 px inversion at the deepest layer, in a fresh process.
"""

import argparse
import csv
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from scipy import stats

from cnnscope import Capture, load_image, load_model
from cnnscope.layers import expand_layers
from cnnscope.preimage import SolverConfig, invert, reconstruction_error

SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "imagenet-sample"


def spearman(a, b) -> float:
    return float(stats.spearmanr(a, b).statistic)


def errors_per_layer(model, layers, images, iters):
    table = {layer: [] for layer in layers}
    for src in images:
        img = load_image(src)
        row = []
        for layer in layers:
            r = invert(model, img, layer, config=SolverConfig(iters=iters, progress=False))
            err = reconstruction_error(r)[0]
            table[layer].append(err)
            row.append(f"{err:.3f}")
        print(f"  {Path(str(src)).name[:28]:<28} " + " ".join(f"{v:>7}" for v in row), flush=True)
    return table


def step_ratio(model, layer, steps=20, rounds=7):
    """Median per-step times of the optimiser and of a bare truncated forward+backward, measured in
    alternating blocks so that both see the same machine state."""
    from cnnscope.preimage import TV, AlphaNorm, Representation, solve
    from cnnscope.preimage.tasks import noise

    x0 = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        phi0 = capture_one(model, layer)
    objective = 20 * Representation(layer, phi0) + TV() + AlphaNorm()
    bare_times, step_times = [], []
    with Capture(model, [layer]) as phi:
        def bare():
            x = x0.clone().requires_grad_(True)
            phi(x)[layer].square().sum().backward()

        for _ in range(3):
            bare()
        for _ in range(rounds):
            t = time.perf_counter()
            for _ in range(steps):
                bare()
            bare_times.append((time.perf_counter() - t) / steps)
            r = solve(model, objective, noise(1, 224, 0), SolverConfig(iters=steps, progress=False))
            step_times.append(r.seconds / r.iterations)
    return statistics.median(step_times), statistics.median(bare_times)


def capture_one(model, layer):
    from cnnscope import capture

    return capture(model, model.prepare(load_image("sample:chelsea")), [layer])[layer]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=10)
    ap.add_argument("--layers", default="stages")
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--skip-errors", action="store_true")
    args = ap.parse_args()
    model = load_model()
    layers = expand_layers(model, args.layers)

    if not args.skip_errors:
        images = ["sample:chelsea"]
        if (SAMPLE / "labels.csv").is_file():
            rows = list(csv.DictReader(open(SAMPLE / "labels.csv")))[: args.images]
            images += [SAMPLE / r["file"] for r in rows]
        print(f"(a) normalised reconstruction error, {args.iters} iterations, default prior")
        print(f"  {'image':<28} " + " ".join(f"{layer:>7}" for layer in layers))
        table = errors_per_layer(model, layers, images, args.iters)
        means = [statistics.mean(table[layer]) for layer in layers]
        medians = [statistics.median(table[layer]) for layer in layers]
        print(f"  {'mean':<28} " + " ".join(f"{m:7.3f}" for m in means))
        print(f"  {'median':<28} " + " ".join(f"{m:7.3f}" for m in medians))
        rho = spearman(list(range(len(layers))), means)
        print(f"  Spearman(depth, mean error) = {rho:.2f};  first layer mean {means[0]:.3f} "
              f"({'<=' if means[0] <= 0.1 else '>'} 0.1)")

    print("(b) optimiser step / bare truncated forward+backward (224 px, batch 1)")
    for layer in layers:
        solve_s, bare_s = step_ratio(model, layer)
        print(f"  {layer:<8} step {solve_s * 1000:7.2f} ms   bare {bare_s * 1000:7.2f} ms   "
              f"ratio {solve_s / bare_s:.3f}")

    code = ("import resource, torch; from cnnscope import load_model; from cnnscope.preimage import invert, "
            "SolverConfig; m = load_model(); invert(m, 'sample:chelsea', 'logits', "
            "config=SolverConfig(iters=20, progress=False)); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
    peak = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    print(f"(c) peak RSS of a 224 px inversion at logits: {peak:.0f} MB ({'<=' if peak <= 1024 else '>'} 1 GB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
