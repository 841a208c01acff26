"""The one timing helper of the benchmark scripts (imported as `from timing import median_time`: a script's
own folder is on sys.path)."""

import statistics
import time


def median_time(fn, repeats: int, warmup: int = 3) -> float:
    """Median wall time of fn() over `repeats` calls, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)
