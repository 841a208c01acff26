"""Number types for the CLI's options: each validates once (finite, in range) and refuses in one line."""

from __future__ import annotations

import argparse
import math
import os
import re


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


def _integer_at_least(low: int, what: str):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got '{text}'") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"expected {what}, got {v}")
        return v

    parse.__name__ = what.replace(" ", "_")
    return parse


positive_int = _integer_at_least(1, "a positive integer")


def odd_positive(text: str) -> int:
    """A map's m x m support: 1, 3, 5…"""
    v = positive_int(text)
    if v % 2 == 0:
        raise argparse.ArgumentTypeError(f"expected an odd size (1, 3, 5…), got {v}")
    return v
at_least_two = _integer_at_least(2, "an integer >= 2")
non_negative_int = _integer_at_least(0, "an integer >= 0")


def finite(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got '{text}'")
    return v


def non_negative(text: str) -> float:
    v = finite(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return v


def positive(text: str) -> float:
    v = finite(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return v


def fraction(text: str) -> float:
    v = finite(text)
    if not 0 < v < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction between 0 and 1, got {text}")
    return v
