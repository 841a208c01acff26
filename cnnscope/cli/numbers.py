"""argparse type adapters: text -> a number, checked by `cnnscope.checks` (the API's and the jobs' wording)."""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Callable

from .. import checks
from ..errors import CnnscopeError


def _adapter(parse: Callable[[str], object], check: Callable, what: str, **bounds):
    """An argparse type: `parse` the text (refused as "expected WHAT") and `check` the value."""
    def adapt(text: str):
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got '{text}'") from None
        try:
            return check(value, "", **bounds)
        except CnnscopeError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    adapt.__name__ = check.__name__
    return adapt


positive_int = _adapter(int, checks.integer, "a positive integer")
at_least_two = _adapter(int, checks.integer, "an integer >= 2", low=2)
non_negative_int = _adapter(int, checks.integer, "an integer >= 0", low=0)
odd_positive = _adapter(int, checks.odd, "an odd size (1, 3, 5…)")
finite = _adapter(float, checks.number, "a number")
non_negative = _adapter(float, checks.number, "a number", low=0.0)
positive = _adapter(float, checks.number, "a number", low=0.0, strict=True)
fraction = _adapter(float, checks.fraction, "a number")


def floats3(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 3 comma-separated numbers, got '{text}'") from None
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected 3 comma-separated finite numbers (R,G,B), got '{text}'")
    return values


def workers_count(text: str) -> int:
    v = positive_int(text)
    cores = os.cpu_count() or 1
    if v > 4 * cores:
        raise argparse.ArgumentTypeError(f"{v} workers on a machine with {cores} cores (at most {4 * cores})")
    return v


def ray_address(text: str) -> str:
    if text in ("local", "auto") or re.fullmatch(r"(ray://)?[\w.-]+:\d{1,5}", text):
        return text
    raise argparse.ArgumentTypeError(f"expected 'local', 'auto', HOST:PORT or ray://HOST:PORT, got '{text}'")
