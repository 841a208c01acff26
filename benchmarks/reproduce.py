"""Cost of `cnnscope reproduce`: seconds per finding (each job run alone, one after the other, in this
process), the verdicts, and the speed of stitching one stage for 200 fit images (issue 14's goal: <= 1 min;
the task-loss-only stitch it replaces took about 4.9 min a stage for 200 + 200 images).

    python benchmarks/reproduce.py [--images FOLDER] [--findings ID,...] [--quick]
"""

import argparse
import tempfile
import time

import torch

from cnnscope.data import image_set, split
from cnnscope.jobs import run_job
from cnnscope.models import load_model
from cnnscope.report.findings import DEFAULT, plan
from cnnscope.transforms.equivalence import StitchFit, stitch_experiment


def finding_times(model, images, quick: bool, ids) -> list[tuple[str, float, str]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for job in plan(model, images, quick, 0, ids):
            start = time.perf_counter()
            results, _, _, _ = run_job(tmp, job)
            rows.append((job.key, time.perf_counter() - start, results["verdict"]))
    return rows


def stitch_one_stage(layer: str, n_fit: int, n_test: int, epochs: int) -> float:
    a, b = load_model("efficientnet_lite0"), load_model("efficientnet_lite1")
    x, _ = image_set(a, None, n_fit + n_test, 0)
    i_fit, i_test = split(len(x), n_fit / (n_fit + n_test), 0)
    start = time.perf_counter()
    stitch_experiment(a, b, [layer], x[i_fit], x[i_test], how=StitchFit(task_epochs=epochs, progress=False))
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", default=None, help="a labelled folder (default: the bundled samples)")
    p.add_argument("--findings", default=",".join(DEFAULT))
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(2)
    model = load_model("efficientnet_lite0")
    total = 0.0
    print(f"{'finding':<30}{'seconds':>10}  verdict")
    for key, seconds, verdict in finding_times(model, args.images, args.quick, tuple(args.findings.split(","))):
        total += seconds
        print(f"{key:<30}{seconds:10.1f}  {verdict}")
    print(f"{'total':<30}{total:10.1f}  ({total / 60:.1f} min, one process; --workers 2 runs two findings at once)")
    for layer in ("stage2", "stage4", "stage6"):
        for epochs in (0, 2):
            s = stitch_one_stage(layer, 200, 100, epochs)
            print(f"stitch Lite0 -> Lite1 at {layer}, 200 fit + 100 test images, {epochs} task epochs: {s:.1f} s "
                  f"(goal <= 60 s)")


if __name__ == "__main__":
    main()
