"""Cost of `cnnscope reproduce`: the whole run as the CLI makes it (`--workers`, `--max-memory`), the seconds of each
finding in its worker, the verdicts, and the peak resident memory of this process and of its worker; optionally
the speed of stitching one stage for 200 fit images (issue 14's goal: <= 1 min).

    python benchmarks/reproduce.py [--images FOLDER] [--workers 2] [--max-memory 4] [--findings ID,...] [--quick]
                                   [--stitch-speed]

Issue 40's goal: with 2 workers on 500 ImageNet images the whole run takes at most 15 minutes, each process
below 4 GB.
"""

import argparse
import resource
import tempfile
import time
from pathlib import Path

from cnnscope.data import image_set, split
from cnnscope.memory import set_budget
from cnnscope.models import load_model
from cnnscope.report.findings import DEFAULT, check_fits, reproduce
from cnnscope.transforms.equivalence import StitchFit, stitch_experiment


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
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--max-memory", type=float, default=4.0, help="GB per process, as --max-memory")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--stitch-speed", action="store_true", help="also time stitching one stage for 200 fit images")
    args = p.parse_args()
    set_budget(args.max_memory)
    model = load_model("efficientnet_lite0")
    ids = tuple(args.findings.split(","))
    check_fits(model, args.quick, ids)
    with tempfile.TemporaryDirectory() as out:
        run, findings = reproduce(Path(out), model, args.images, args.quick, 0, ids, workers=args.workers)
    print(f"# {args.images or 'bundled samples'}; --workers {args.workers}; --max-memory {args.max_memory:g}")
    print(f"{'finding':<30}{'seconds':>10}  verdict (each finding's seconds in its worker, one thread)")
    for outcome, finding in zip(run.outcomes, findings):
        print(f"{outcome.job.key:<30}{outcome.seconds or 0:10.1f}  {finding['verdict']}")
    work = sum(o.seconds or 0 for o in run.outcomes)
    print(f"{'total work':<30}{work:10.1f}  ({work / 60:.1f} min, one finding after the other)")
    print(f"{'whole run':<30}{run.seconds:10.1f}  ({run.seconds / 60:.1f} min with {args.workers} workers)")
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    worker = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2 ** 20
    print(f"peak resident memory: this process {own:.2f} GB, its worker {worker:.2f} GB (budget {args.max_memory:g})")
    if args.stitch_speed:
        for layer in ("stage2", "stage4", "stage6"):
            for epochs in (0, 2):
                s = stitch_one_stage(layer, 200, 100, epochs)
                print(f"stitch Lite0 -> Lite1 at {layer}, 200 fit + 100 test images, {epochs} task epochs: {s:.1f} s "
                      f"(goal <= 60 s)")


if __name__ == "__main__":
    main()
