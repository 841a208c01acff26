"""Speed of the differentiable HOG against VLFeat's C implementation (same image, same output), and of a
forward+backward pass (what a HOG pre-image step costs). Prints times and ratios.

    python benchmarks/hog.py [--size 224] [--repeats 30]
"""

import argparse

import numpy as np
import torch
import torch.nn.functional as F
from timing import median_time

from cnnscope import load_image
from cnnscope.features import HOG, DenseSIFT, vlfeat


def hog_row(img: torch.Tensor, bilinear: bool, repeats: int) -> list:
    hog = HOG(8, 9, bilinear)
    fwd = median_time(lambda: hog(img), repeats)
    x = img.clone().requires_grad_(True)
    both = median_time(lambda: hog(x).square().sum().backward(), repeats)
    row = ["HOGb (bilinear)" if bilinear else "HOG (hard)", fwd, both]
    if vlfeat.available():
        arr = img[0].numpy()
        ref = median_time(lambda: vlfeat.vl_hog(arr, 8, 9, bilinear), repeats)
        diff = float(np.abs(vlfeat.vl_hog(arr, 8, 9, bilinear) - hog(img)[0].numpy()).max())
        row += [ref, diff]
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()
    img = F.interpolate(load_image("sample:chelsea")[None], size=(args.size, args.size), mode="area")
    rows = [hog_row(img, bilinear, args.repeats) for bilinear in (False, True)]
    dsift = DenseSIFT()
    rows.append(["DSIFT (8 px bins, step 4)", median_time(lambda: dsift(img), args.repeats),
                 median_time(lambda: dsift(img.clone().requires_grad_(True)).sum().backward(), args.repeats)])
    print(f"# {args.size}x{args.size} px, torch {torch.__version__}, {torch.get_num_threads()} threads; median of "
          f"{args.repeats}")
    print(f"{'':<28}{'forward ms':>11}{'fwd+bwd ms':>11}{'vl_hog ms':>11}{'ours/vl':>9}{'max |diff|':>12}")
    for r in rows:
        line = f"{r[0]:<28}{r[1] * 1e3:11.2f}{r[2] * 1e3:11.2f}"
        if len(r) > 3:
            line += f"{r[3] * 1e3:11.2f}{r[1] / r[3]:9.2f}{r[4]:12.1e}"
        print(line)
    if not vlfeat.available():
        print("(libvlfeat not installed: apt-get install libvlfeat1 for the reference column)")


if __name__ == "__main__":
    main()
