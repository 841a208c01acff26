"""Top-1 / top-5 accuracy of the zoo's pretrained models on ../shared/imagenet-sample (100 images).

    python benchmarks/imagenet_top1.py [--models efficientnet_lite0,efficientnet_lite1] [--folder DIR]

Prints one line per model; exits 1 if Lite0's top-1 is under 0.85 (the acceptance bar).
"""

import argparse
import csv
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from cnnscope import CnnscopeError, load_image, load_model

DEFAULT_FOLDER = Path(__file__).resolve().parents[1].parent / "shared" / "imagenet-sample"


def evaluate(name: str, folder: Path) -> tuple[float, float, float, int]:
    model = load_model(name)
    rows = list(csv.DictReader(open(folder / "labels.csv")))
    top1 = top5 = 0
    start = time.perf_counter()
    for row in tqdm(rows, desc=name, leave=False):
        preds = model.predict(load_image(folder / row["file"]), k=5)[0]
        label = int(row["class_index"])
        top1 += preds[0].index == label
        top5 += any(p.index == label for p in preds)
    ms = (time.perf_counter() - start) / len(rows) * 1000
    return top1 / len(rows), top5 / len(rows), ms, len(rows)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="efficientnet_lite0,efficientnet_lite1,efficientnet_lite2")
    ap.add_argument("--folder", type=Path, default=DEFAULT_FOLDER)
    args = ap.parse_args()
    if not (args.folder / "labels.csv").is_file():
        print(f"no labels.csv in {args.folder}: this benchmark needs the ImageNet sample", file=sys.stderr)
        return 2
    torch.set_grad_enabled(False)
    ok = True
    for name in args.models.split(","):
        try:
            top1, top5, ms, n = evaluate(name, args.folder)
        except CnnscopeError as err:
            print(f"{name:<20} skipped: {err}")
            continue
        print(f"{name:<20} top-1 {top1:.3f}  top-5 {top5:.3f}  on {n} images  ({ms:.1f} ms/image incl. loading)")
        if name == "efficientnet_lite0" and top1 < 0.85:
            ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
