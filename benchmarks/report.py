"""Throughput of `cnnscope report`: jobs per minute with 1 and 2 worker processes (and their ratio), whether
the per-job cost stays flat as the plan grows, and the size and time of a `--quick` report.

    python benchmarks/report.py [--channels 16] [--iters 100] [--size 128]
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cnnscope.jobs import execute, run_job
from cnnscope.models import load_model
from cnnscope.report.atlas import ReportSettings, plan


def throughput(settings: ReportSettings, workers: int) -> tuple[int, float]:
    model = load_model(settings.model)
    units = plan(settings, model)
    with tempfile.TemporaryDirectory() as tmp:
        run = execute(units, tmp, workers=workers, progress=False)
    return run.computed, run.seconds


def unit_times(settings: ReportSettings) -> dict[str, list[float]]:
    """Seconds of each unit, by kind, run one after the other in this process."""
    model = load_model(settings.model)
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for u in plan(settings, model):
            t = time.perf_counter()
            run_job(tmp, u)
            times.setdefault(u.kind, []).append(time.perf_counter() - t)
    return times


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--size", type=int, default=128)
    args = ap.parse_args()
    base = dict(model="efficientnet_lite0", layers=("stage2", "stage4"), iters=args.iters, size=args.size,
                examples=2, patch_images=16)
    print(f"# jobs: Lite0 stage2+stage4, {args.iters} iterations at {args.size} px; each job single-threaded")
    rates = {}
    for workers in (1, 2):
        n, sec = throughput(ReportSettings(**base, channels=args.channels), workers)
        rates[workers] = 60 * n / sec
        print(f"workers={workers}: {n} jobs in {sec:.1f} s = {rates[workers]:.1f} jobs/min")
    print(f"ratio 2 workers / 1 worker: {rates[2] / rates[1]:.2f}")
    small, large = args.channels // 2, args.channels * 2
    means = {}
    for ch in (small, large):
        per_kind = unit_times(ReportSettings(**base, channels=ch))
        means[ch] = {k: sum(v) / len(v) for k, v in per_kind.items()}
        print(f"plan with {ch} channels/layer ({sum(len(v) for v in per_kind.values())} jobs), ms per job: "
              + ", ".join(f"{k} {1000 * m:.0f}" for k, m in means[ch].items()))
    print("per-job cost ratio (large plan / small plan): "
          + ", ".join(f"{k} {means[large][k] / means[small][k]:.2f}" for k in means[small]))
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "cnnscope", "report", "--quick", "--out", tmp], check=True,
                       capture_output=True)
        sec = time.perf_counter() - t
        print(f"`cnnscope report --quick` (Lite0): {sec:.1f} s end to end, {folder_size(Path(tmp)) / 1e6:.2f} MB, "
              f"{sum(1 for _ in Path(tmp).rglob('*.png'))} PNGs")


if __name__ == "__main__":
    main()
