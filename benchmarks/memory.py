"""Memory over long runs (issue 26): resident memory must not grow with the number of jobs.

    python benchmarks/memory.py [--parts saliency,report,predict] [--count 2000] [--model efficientnet_lite0]
                                [--size 96] [--report-channels 200]

Generates `--count` natural pictures (random crops of the bundled photographs, `--size` px), runs
`cnnscope saliency` over all of them in ONE child process, and samples the child's resident memory (VmRSS) while
it runs, reading how many job records it has written: RSS after the first quarter of the jobs and at the end,
and the time per job in each quarter. Then the same for `cnnscope report` with `--report-channels` atlas
channels per layer (hundreds of jobs); and the peak of one `cnnscope predict` over a quarter of the pictures
and over all of them (one job that reads them 16 per forward). The run passes when the end is within 50 MB of
the first quarter.
`--model tiny` uses a small CNN (a user file) so thousands of jobs take a minute; tests/test_jobs.py checks the
engine's part of this (1,200 jobs of 2 MB tensors) without timing anything.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from cnnscope.images import load_image, sample_names, save_image

ALLOWED_GROWTH_MB = 50
TINY = """import torch, torch.nn as nn, torch.nn.functional as F
class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 5, stride=2, padding=2)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.fc = nn.Linear(16, 10)
    def forward(self, x):
        return self.fc(F.relu(self.conv2(F.max_pool2d(F.relu(self.conv1(x)), 2))).mean((2, 3)))
def build():
    torch.manual_seed(0)
    return Tiny()
"""


def make_pictures(folder: Path, count: int, size: int, seed: int = 0) -> list[str]:
    """`count` random crops (rescaled) of the bundled photographs, as PNG files."""
    folder.mkdir(parents=True, exist_ok=True)
    photos = [load_image(f"sample:{n}") for n in sample_names()]
    gen = torch.Generator().manual_seed(seed)
    paths = []
    for i in range(count):
        img = photos[i % len(photos)]
        h, w = img.shape[-2:]
        side = int(torch.randint(min(h, w) // 3, min(h, w) + 1, (), generator=gen))
        y = int(torch.randint(0, h - side + 1, (), generator=gen))
        x = int(torch.randint(0, w - side + 1, (), generator=gen))
        crop = torch.nn.functional.interpolate(img[None, :, y:y + side, x:x + side], size=(size, size),
                                               mode="bilinear", antialias=True)[0]
        path = folder / f"p{i:05d}.png"
        save_image(crop, path)
        paths.append(str(path))
    return paths


def rss_mb(pid: int) -> float | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return None


def watch(argv: list[str], out: Path, label: str) -> dict:
    """Run `cnnscope ARGV` in a child, sampling its RSS and how many job records (KEY.json under `out`) it has
    written; RSS and time per job at each quarter of the run's jobs."""
    log = tempfile.TemporaryFile("w+")  # (a pipe nobody reads until the end would fill and stall the child)
    child = subprocess.Popen([sys.executable, "-m", "cnnscope", *argv], stdout=subprocess.DEVNULL, stderr=log,
                             text=True)
    samples, start = [], time.perf_counter()  # (seconds, records written, RSS MB)
    while child.poll() is None:
        rss = rss_mb(child.pid)
        if rss is not None:
            samples.append((time.perf_counter() - start, sum(1 for _ in out.rglob("*.json")) if out.exists() else 0,
                            rss))
        time.sleep(0.2)
    log.seek(0)
    err = log.read()
    if child.returncode != 0:
        raise SystemExit(f"{label}: cnnscope exited {child.returncode}: {err.strip()[-400:]}")
    total = samples[-1][1]
    marks = [next(s for s in samples if s[1] >= total * q / 4) for q in (1, 2, 3)] + [samples[-1]]
    print(f"\n== {label}: {total} job records written by one process")
    prev_t, prev_n = 0.0, 0
    for t, n, r in marks:
        print(f"  after {n:>5} jobs: RSS {r:7.1f} MB, {(t - prev_t) / max(1, n - prev_n) * 1000:7.1f} ms/job "
              "in this stretch")
        prev_t, prev_n = t, n
    growth = marks[-1][2] - marks[0][2]
    verdict = "flat" if growth <= ALLOWED_GROWTH_MB else "GROWS"
    print(f"  RSS end - first quarter: {growth:+.1f} MB ({verdict}; allowed {ALLOWED_GROWTH_MB} MB)")
    return {"growth_mb": growth, "jobs": total}


def peak_mb(argv: list[str]) -> float:
    """The highest RSS sampled while `cnnscope ARGV` runs in a child."""
    child = subprocess.Popen([sys.executable, "-m", "cnnscope", *argv], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    peak = 0.0
    while child.poll() is None:
        peak = max(peak, rss_mb(child.pid) or 0.0)
        time.sleep(0.05)
    if child.returncode != 0:
        raise SystemExit(f"cnnscope {argv[0]} exited {child.returncode}")
    return peak


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--parts", default="saliency,report,predict")
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--model", default="efficientnet_lite0", help="a zoo name, or 'tiny' (a small user CNN)")
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--report-channels", type=int, default=150, help="atlas channels per layer; 0 skips the report")
    args = ap.parse_args()
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        name, extra = args.model, []
        if args.model == "tiny":
            (tmp / "tiny.py").write_text(TINY)
            name, extra = f"{tmp}/tiny.py:build", ["--input-size", "32"]
        model = ["--model", name, *extra]
        paths = make_pictures(tmp / "pictures", args.count, args.size)
        if "saliency" in args.parts:
            r = watch(["saliency", *paths, *model, "--out", str(tmp / "sal")], tmp / "sal", "saliency")
            ok &= r["growth_mb"] <= ALLOWED_GROWTH_MB
        if "report" in args.parts and args.report_channels:
            model = [name, *extra]  # (the report takes its model as an argument)
            layers = "conv1,conv2" if args.model == "tiny" else "stage4,stage6"
            argv = ["report", *model, "--layers", layers, "--channels", str(args.report_channels), "--iters", "5",
                    "--size", "64", "--images", str(tmp / "pictures"), "--out", str(tmp / "rep")]
            r = watch(argv, tmp / "rep", "report")
            ok &= r["growth_mb"] <= ALLOWED_GROWTH_MB
        if "predict" in args.parts:  # one job: the pictures are read 16 per forward, not all at once
            quarter = peak_mb(["predict", *paths[:len(paths) // 4], *model, "--json"])
            whole = peak_mb(["predict", *paths, *model, "--json"])
            flat = whole - quarter <= ALLOWED_GROWTH_MB
            print(f"\n== predict: peak RSS {quarter:.1f} MB for {len(paths) // 4} pictures, {whole:.1f} MB for "
                  f"{len(paths)} ({whole - quarter:+.1f} MB; {'flat' if flat else 'GROWS'})")
            ok &= flat
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
