"""How long the CLI takes to start: `cnnscope --help`, `cnnscope VERB --help` (no torch: the declarations
alone) and a small verb (`cnnscope models --json`, which imports the science). Median wall time of N runs
of the installed command, each a fresh process.

    .venv/bin/python benchmarks/cli_start.py [--runs 7]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = (["--help"], ["invert", "--help"], ["equivariance", "--help"], ["models", "--json"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    exe = shutil.which("cnnscope", path=str(Path(sys.executable).parent)) or "cnnscope"
    for words in COMMANDS:
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            subprocess.run([exe, *words], stdout=subprocess.DEVNULL, check=True)
            times.append(time.perf_counter() - start)
        print(f"cnnscope {' '.join(words):<22} median {statistics.median(times):.3f} s "
              f"(min {min(times):.3f}, max {max(times):.3f}, {args.runs} runs)")


if __name__ == "__main__":
    main()
