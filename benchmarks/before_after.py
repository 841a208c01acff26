"""The README's before/after figure: the seed's recipe (mv) against the default (lucid) on five classes of
Lite0, with the judges' (Lite1, Lite2) rank of each class.

    python benchmarks/before_after.py [--out docs/before_after.png]
"""

import argparse
from pathlib import Path

import torch

from cnnscope import load_model
from cnnscope.preimage import Target, get_recipe, maximize
from cnnscope.preimage.quality import class_ranks, judges_for
from cnnscope.viz import image_grid

CLASSES = (285, 980, 401, 599, 797)  # Egyptian cat, volcano, accordion, honeycomb, sleeping bag


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="docs/before_after.png")
    args = ap.parse_args()
    torch.set_num_threads(2)
    model = load_model("efficientnet_lite0")
    judges = judges_for(model)
    images, titles = [], []
    for name in ("mv", "lucid"):
        recipe = get_recipe(name, "maximize")
        r, _ = maximize(model, "logits", [Target("class", k) for k in CLASSES], recipe=recipe,
                        config=recipe.config(progress=False))
        ranks = class_ranks(judges, r.images, CLASSES)
        for k, im, rk in zip(CLASSES, r.images, ranks):
            images.append(im)
            titles.append(f"{name}: {model.classes[k]}\njudge ranks {'/'.join(str(v) for v in rk.values())}")
        print(f"{name:<6} judge ranks: {[list(d.values()) for d in ranks]}  ({r.seconds / len(CLASSES):.1f} s/unit)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    image_grid(images, titles, args.out, ncols=len(CLASSES))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
