"""How many principal directions should a wide layer's m x m map read at its off-centre taps? Lite0's head
(1280 channels), vflip: the 3x3 map dense (11,521 inputs) and reduced to K directions (1280 + 8 K inputs), fitted
on the finding's 60 % of a labelled folder (each fit picture and one crop), at each ridge of the task's grid.
Prints per split, K and ridge the held-out R^2 of the features and the top-1 error of the network finishing on the
compensated code of the held-out 40 %, with the seconds of the sums and solve and the sums' size. Choose K on
split 0, confirm it on split 1 (held back).

    .venv/bin/python benchmarks/wide_maps.py --images FOLDER [--directions dense,128,256,512] [--splits 0,1]
"""

from __future__ import annotations

import argparse
import time

import torch

from cnnscope.data import image_store, split, subset, with_crops
from cnnscope.models import load_model
from cnnscope.transforms.equivalence import RestOfNetwork, error_rates
from cnnscope.transforms.equivariance import TASK_RIDGES, _Pairs, _stitch, principal_directions
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
    x, labels = image_store(model, args.images, None, 0)
    pairs = _Pairs(model, args.layer, Transform.parse(args.transform))
    rest = RestOfNetwork(model, args.layer)
    c = pairs.shape[0]
    print(f"# Lite0 {args.layer} ({c} channels), {args.transform}, {len(x)} images, 60/40 fit/test, the 3x3 map")
    print(f"{'split':<6}{'K':>6}{'inputs':>8}{'ridge':>7}{'R2':>8}{'test err':>10}{'spatial':>9}{'s':>7}{'GB':>6}")
    for s in (int(v) for v in args.splits.split(",")):
        i_fit, i_test = split(len(x), 0.6, s)
        gen = torch.Generator().manual_seed(s)
        fit = with_crops(subset(x, i_fit), len(i_fit), model.input_size, gen)
        test = subset(x, i_test)
        for k in args.directions.split(","):
            start = time.perf_counter()
            basis = None if k == "dense" else principal_directions(pairs, fit, int(k))
            sums, held = Moments(c, c, 3, basis), Moments(c, c, 3, basis)
            for i in range(0, len(fit), 16):
                sums.add(*reversed(pairs(fit[i:i + 16])), pairs.mask)
            h_test = []
            for i in range(0, len(test), 16):
                f, h = pairs(test[i:i + 16])
                held.add(h, f, pairs.mask)
                h_test.append(h)
            h_test = torch.cat(h_test)
            spatial = error_rates(rest(h_test), labels[i_test], labels[i_test])["top1_error"]
            for r in TASK_RIDGES:
                stitch = _stitch(sums, r)
                weight, bias = sums.solve(r, towards_identity=True)
                with torch.no_grad():
                    err = error_rates(rest(stitch(h_test)), labels[i_test], labels[i_test])["top1_error"]
                print(f"{s:<6}{k:>6}{sums.inputs:>8}{r:>7g}{held.pooled_r2(weight, bias):>8.3f}{err:>10.3f}"
                      f"{spatial:>9.3f}{time.perf_counter() - start:>7.1f}"
                      f"{Moments.nbytes(c, c, 3, None if basis is None else int(k)) / 2 ** 30:>6.2f}", flush=True)


if __name__ == "__main__":
    main()
