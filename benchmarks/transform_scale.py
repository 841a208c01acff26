"""Transformation analysis at a researcher's scale (issue 40): the peak memory and wall time of equivariance, the
invariance finding and stitching over 100, 500 and 2,000 images under one memory budget, each run alone in a
child process (its own maximum resident set, from the kernel). Memory should be flat in the number of images
(the peak at 2,000 within 10 % of the peak at 500) and time linear (seconds per image about constant).

    .venv/bin/python benchmarks/transform_scale.py [--images FOLDER] [--counts 100,500,2000]
        [--parts equivariance,invariance,stitching] [--layers stage6,head] [--max-memory 4]

Without --images, random crops of the bundled photographs serve (as many as asked); with a folder, its first
N images. Equivariance: vflip (supports 1x1 and 3x3 chosen by the task, no crops: the pictures alone);
invariance: the reproduce finding (hflip and vflip maps); stitching: Lite0 -> Lite1 with two task epochs
(the reproduce finding's settings); each at `--layers` (default the two widest stages, where the sums are).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLI = str(Path(sys.executable).with_name("cnnscope"))
INVARIANCE = """import sys
from cnnscope.jobs import run_job
from cnnscope.memory import set_budget
from cnnscope.models import load_model
from cnnscope.report.transform_findings import InvarianceFinding
set_budget(float(sys.argv[1]))
model = load_model("efficientnet_lite0")
images = None if sys.argv[3] == "-" else sys.argv[3]
layers = tuple(sys.argv[5].split(","))
job = InvarianceFinding("invariance", model.job_spec(), layers, images, int(sys.argv[2]))
results, _, _ = run_job(sys.argv[4], job)
print(results["verdict"])
"""


def command(part: str, n: int, images: str | None, budget: float, out: str, layers: str) -> list[str]:
    source = ["--images", images] if images else []
    common = ["--limit", str(n), "--max-memory", str(budget), "-q", "--out", out, *source]
    if part == "equivariance":
        return [CLI, "equivariance", "--transform", "vflip", "--layers", layers, "--crops", "0", *common]
    if part == "stitching":
        return [CLI, "stitch", "--a", "efficientnet_lite0", "--b", "efficientnet_lite1", "--layers", layers,
                "--epochs", "2", *common]
    if part == "invariance":
        return [sys.executable, "-c", INVARIANCE, str(budget), str(n), images or "-", out, layers]
    raise SystemExit(f"unknown part {part}")


def measure(argv: list[str]) -> tuple[int, float, float, str]:
    """(exit status, peak resident GB, seconds, last line of stderr) of one child process."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
        err.seek(0)
        lines = err.read().decode(errors="replace").strip().splitlines()
    return os.waitstatus_to_exitcode(status), usage.ru_maxrss / 2 ** 20, seconds, lines[-1] if lines else ""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", default=None)
    p.add_argument("--counts", default="100,500,2000")
    p.add_argument("--parts", default="equivariance,invariance,stitching")
    p.add_argument("--layers", default="stage6,head")
    p.add_argument("--max-memory", type=float, default=4.0)
    args = p.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    print(f"# budget --max-memory {args.max_memory:g} GB; images: {args.images or 'bundled crops'}; layers "
          f"{args.layers}")
    print(f"{'part':<14}{'images':>8}{'rc':>4}{'peak GB':>9}{'seconds':>9}{'s/image':>9}{'peak / at 500':>15}")
    for part in args.parts.split(","):
        peaks = {}
        for n in counts:
            with tempfile.TemporaryDirectory() as tmp:
                rc, peak, seconds, last = measure(command(part, n, args.images, args.max_memory, tmp + "/out",
                                                                args.layers))
            peaks[n] = peak
            ratio = f"{peak / peaks[500]:.3f}" if 500 in peaks else ""
            print(f"{part:<14}{n:>8}{rc:>4}{peak:>9.2f}{seconds:>9.1f}{seconds / n:>9.3f}{ratio:>15}"
                  + (f"   {last}" if rc else ""), flush=True)


if __name__ == "__main__":
    main()
