"""Backpropagation networks on Lite0: speed against Captum, neuron selectivity, sanity curve.

    python benchmarks/backprop.py [--images 20] [--repeats 10]

(1) time per map, ours vs Captum, same input, in one run: class logit (full network both),
    a stage-4 neuron (ours truncates the forward; Captum's Neuron* runs the whole network),
    and a batch of 8 targets in one backward (per-map time);
(2) the selectivity table on the first N images of ../shared/imagenet-sample (or the bundled samples);
(3) the cascading-randomisation sanity curve on sample:chelsea.
"""

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

from timing import median_time

from cnnscope import load_image, load_model
from cnnscope.backprop import backprop_maps
from cnnscope.backprop.analysis import cascading_randomisation, selectivity, selectivity_table
from cnnscope.data import list_folder
from cnnscope.targets import Target

SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "imagenet-sample"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    from captum.attr import GuidedBackprop, NeuronGuidedBackprop

    model = load_model()
    x = model.prepare(load_image("sample:chelsea"))
    print("(1) time per map (median), Lite0 224 px, 2 threads")
    gbp = GuidedBackprop(model.net)
    theirs = median_time(lambda: gbp.attribute(x.clone().requires_grad_(True), target=282), args.repeats)
    ours = median_time(lambda: backprop_maps(model, x, [Target("class", 282, layer="logits")], "desalinet"),
                       args.repeats)
    print(f"  class logit      ours {ours * 1000:7.1f} ms   captum {theirs * 1000:7.1f} ms   ratio {ours / theirs:.2f}"
          "   (captum hooks only nn.ReLU: on Lite0's ReLU6 it silently returns the plain gradient)")
    alex = load_model("alexnet", random_weights=True)  # where Captum's nn.ReLU hooks do apply
    xa = alex.prepare(load_image("sample:chelsea"))
    gbp_a = GuidedBackprop(alex.net)
    theirs_a = median_time(lambda: gbp_a.attribute(xa.clone().requires_grad_(True), target=282), args.repeats)
    ours_a = median_time(lambda: backprop_maps(alex, xa, [Target("class", 282, layer="logits")], "desalinet"),
                         args.repeats)
    print(f"  AlexNet class    ours {ours_a * 1000:7.1f} ms   captum {theirs_a * 1000:7.1f} ms   "
          f"ratio {ours_a / theirs_a:.2f}   (random weights; Captum applies here)")
    ngbp = NeuronGuidedBackprop(model.net, model.net._blocks[7])
    theirs_n = median_time(lambda: ngbp.attribute(x.clone().requires_grad_(True), neuron_selector=(5, 7, 7)),
                           args.repeats)
    ours_n = median_time(lambda: backprop_maps(model, x, [Target("neuron", 5, 7, 7, layer="stage4")], "desalinet"),
                         args.repeats)
    print(f"  stage4 neuron    ours {ours_n * 1000:7.1f} ms   captum {theirs_n * 1000:7.1f} ms   "
          f"ratio {ours_n / theirs_n:.2f}")
    targets = [Target("neuron", c, 7, 7, layer="stage4") for c in range(8)]
    batch = median_time(lambda: backprop_maps(model, x, targets, "desalinet"), max(3, args.repeats // 2))
    print(f"  8 stage4 neurons in one backward: {batch * 1000:.1f} ms = {batch / 8 * 1000:.1f} ms per map "
          f"(ratio to captum per map {batch / 8 / theirs_n:.2f})")

    if (SAMPLE / "labels.csv").is_file():
        images = [load_image(p) for p, _ in list_folder(SAMPLE, args.images)]
        source = f"first {len(images)} images of imagenet-sample"
    else:
        images = [load_image(f"sample:{n}") for n in ("chelsea", "coffee", "astronaut", "rocket")]
        source = "bundled samples"
    for layer in ("stage4", "stage6"):
        t = time.perf_counter()
        result = selectivity(model, images, layer, neurons=4, progress=False)
        print(f"(2) selectivity at {layer}, {source} ({time.perf_counter() - t:.0f} s); "
              "mean correlation, high = not selective")
        print("  " + selectivity_table(result).replace("\n", "\n  "))

    t = time.perf_counter()
    sanity_images = images[:5]
    curves = []
    for img in sanity_images:
        k = model.predict(img, k=1)[0][0].index
        curves.append(cascading_randomisation(model, img, Target("class", k, layer="logits"), progress=False))
    blocks = curves[0]["blocks"]
    print(f"(3) cascading randomisation, {len(sanity_images)} images ({source}), top class, "
          f"{time.perf_counter() - t:.0f} s: mean Spearman vs trained")
    print("  blocks  " + " ".join(b.replace("_blocks.", "b")[:6].rjust(6) for b in blocks))
    for method in curves[0]["spearman"]:
        mean = [statistics.mean(c["spearman"][method][i] for c in curves) for i in range(len(blocks))]
        print(f"  {method:<9}" + " ".join(f"{v:6.2f}" for v in mean))
    return 0


if __name__ == "__main__":
    sys.exit(main())
