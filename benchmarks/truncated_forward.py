"""Cost of capturing an early layer vs running the whole network (the forward stops at the deepest
requested layer). Prints time ratios; the acceptance bar is stage1 <= 0.3 x full forward for Lite0.

    python benchmarks/truncated_forward.py [--model efficientnet_lite0] [--repeats 30]
"""

import argparse
import sys

import torch
from timing import median_time

from cnnscope import Capture, load_image, load_model


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()
    model = load_model(args.model)
    x = model.prepare(load_image("sample:chelsea"))
    with torch.no_grad():
        full = median_time(lambda: model.net(x), args.repeats)
        print(f"{args.model}: full forward {full * 1000:.2f} ms (median of {args.repeats}, no grad, batch 1, "
              f"{torch.get_num_threads()} threads)")
        ratios = {}
        for layer in ["stem", "stage1", "stage2", "stage3", "stage4", "stage6", "logits"]:
            if layer not in model.aliases:
                continue
            with Capture(model, [layer]) as phi:
                t = median_time(lambda: phi(x), args.repeats)
            ratios[layer] = t / full
            print(f"  capture {layer:<8} {t * 1000:7.2f} ms   ratio {t / full:.3f}")
    x.requires_grad_(True)
    with Capture(model, ["stage3"]) as phi:
        fb = median_time(lambda: phi(x)["stage3"].sum().backward(), args.repeats)

    def full_fb(x):
        model.net(x).sum().backward()

    fb_full = median_time(lambda: full_fb(x), args.repeats)
    print(f"  forward+backward to stage3 {fb * 1000:.2f} ms vs to logits {fb_full * 1000:.2f} ms "
          f"(ratio {fb / fb_full:.3f})")
    ok = ratios.get("stage1", 0) <= 0.3
    print("stage1/full ratio", f"{ratios.get('stage1', float('nan')):.3f}", "OK" if ok else "FAIL (> 0.3)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
