"""Does spatial support help a stitch? Lite0 -> Lite1 (different widths and input sizes: 224 vs 240 px), the
regression stitch E as a 1x1 map and as a 3x3 map (closed form, the same streaming ridge solver, ridge chosen
by feature error on a held-back fifth), top-1 error of B finishing on E(Phi_A) on held-out labelled images.

    .venv/bin/python benchmarks/stitch_support.py --images FOLDER [--layers stage2,stage4,stage6]
"""

from __future__ import annotations

import argparse
import time

import torch

from cnnscope.data import image_set, split
from cnnscope.models import load_model
from cnnscope.transforms.equivalence import RestOfNetwork, error_rates, features, fit_regression, predict_through


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", required=True)
    parser.add_argument("--layers", default="stage2,stage4,stage6")
    parser.add_argument("--fit", type=float, default=0.6)
    args = parser.parse_args()
    a, b = load_model("efficientnet_lite0"), load_model("efficientnet_lite1")
    xa, labels = image_set(a, args.images, None, 0)
    xb, _ = image_set(b, args.images, None, 0)
    i_fit, i_test = split(len(xa), args.fit, 0)
    with torch.no_grad():
        b_pred = b(b.preprocess.normalize(xb[i_test])).argmax(1).cpu()
    print(f"# Lite0 -> Lite1, {len(i_fit)} fit / {len(i_test)} test images, top-1 error of the stitched network")
    b_alone = float((b_pred != labels[i_test]).float().mean())
    print(f"# B alone: {b_alone:.3f}")
    print(f"{'layer':<8}{'1x1':>8}{'3x3':>8}{'s (1x1)':>10}{'s (3x3)':>10}")
    for layer in args.layers.split(","):
        fa = features(a, layer, a.preprocess.normalize(xa))
        fb = features(b, layer, b.preprocess.normalize(xb))
        rest = RestOfNetwork(b, layer)
        out, took = {}, {}
        for m in (1, 3):
            start = time.perf_counter()
            stitch = fit_regression(fa[i_fit], fb[i_fit], resample=True, kernel=m)
            took[m] = time.perf_counter() - start
            out[m] = error_rates(predict_through(rest, stitch, fa[i_test]), labels[i_test], b_pred)["top1_error"]
        print(f"{layer:<8}{out[1]:8.3f}{out[3]:8.3f}{took[1]:10.1f}{took[3]:10.1f}")


if __name__ == "__main__":
    main()
