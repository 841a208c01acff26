"""How many principal directions should a wide layer's m x m map read at its off-centre taps? Lite0's head
(1280 channels), vflip: the 3x3 map dense (11,521 inputs) and reduced to K directions (1280 + 8 K inputs), each
chosen by the task among the ridges exactly as `cnnscope equivariance` does, on the finding's 60/40 split of a
labelled folder. Prints per K and split: the test top-1 error with the learned map, its held-out R^2, the fit's
seconds and its sums' size. Choose K on split 0, confirm it on split 1 (held back).

    .venv/bin/python benchmarks/wide_maps.py --images FOLDER [--directions dense,128,256,512] [--splits 0,1]
"""

from __future__ import annotations

import argparse
import time

import torch

import cnnscope.transforms.equivariance as eq
from cnnscope.data import image_set, split
from cnnscope.models import load_model
from cnnscope.transforms.ridge import Moments
from cnnscope.transforms.transform import Transform


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", required=True)
    parser.add_argument("--layer", default="head")
    parser.add_argument("--transform", default="vflip")
    parser.add_argument("--directions", default="dense,128,256,512")
    parser.add_argument("--splits", default="0,1")
    args = parser.parse_args()
    torch.set_num_threads(2)
    model = load_model("efficientnet_lite0")
    x, labels = image_set(model, args.images, None, 0)
    c = eq.require_grid(model, args.layer).shape[0]
    print(f"# Lite0 {args.layer} ({c} channels), {args.transform}, {len(x)} images, 60/40 fit/test; "
          "supports 1x1 and 3x3, chosen by the task")
    print(f"{'split':<6}{'K':>6}{'inputs':>8}{'map':>14}{'test err':>10}{'uncomp.':>9}{'R2':>8}{'s':>8}{'sums GB':>9}")
    for s in (int(v) for v in args.splits.split(",")):
        i_fit, i_test = split(len(x), 0.6, s)
        for k in args.directions.split(","):
            eq.REDUCED_DIRECTIONS = 10 ** 9 if k == "dense" else int(k)
            start = time.perf_counter()
            r = eq.equivariance_experiment(model, [args.layer], Transform.parse(args.transform), x[i_fit],
                                           x[i_test], labels[i_fit], labels[i_test],
                                           eq.EquivarianceFit(seed=s, crops=1, progress=False))
            seconds = time.perf_counter() - start
            row = r["rows"][0]
            reduced = None if k == "dense" else int(k)
            inputs = c * 9 if reduced is None or c <= reduced else c + 8 * reduced
            print(f"{s:<6}{k:>6}{inputs:>8}{row['map']:>14}{row['learned']:>10.3f}"
                  f"{r['baseline']['uncompensated']:>9.3f}{row['learned_r2']:>8.3f}{seconds:>8.1f}"
                  f"{Moments.nbytes(c, c, 3, reduced) / 2 ** 30:>9.2f}", flush=True)


if __name__ == "__main__":
    main()
