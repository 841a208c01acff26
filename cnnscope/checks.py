"""Every number a user gives, checked once: the one wording of both doors.

Each check returns the value as the type it stands for or raises a one-line `CnnscopeError` "NAME: expected …,
got …" (without NAME when ``name`` is empty: argparse prefixes the option itself). The verbs' declarations
(`cnnscope.verbs`) check every option with them, once, when a request is built.
"""

from __future__ import annotations

import math

from .errors import CnnscopeError


def refuse(name: str, expected: str, value) -> CnnscopeError:
    """"NAME: expected …, got …" (without NAME when empty: argparse names the option itself)."""
    return CnnscopeError(f"{name + ': ' if name else ''}expected {expected}, got {value!r}")


def _integer_words(low: int) -> str:
    return {0: "an integer >= 0", 1: "a positive integer"}.get(low, f"an integer >= {low}")


def integer(value, name: str = "", low: int = 1) -> int:
    """A whole number >= `low` (bools and floats refused: 2.5 iterations is a mistake, not 2)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise refuse(name, _integer_words(low), value)
    return int(value)


def odd(value, name: str = "", high: int | None = None) -> int:
    """A map's m x m support: 1, 3, 5… (up to `high` when given)."""
    v = integer(value, name)
    if v % 2 == 0 or (high is not None and v > high):
        raise refuse(name, "an odd size (1, 3, 5…)" + (f" up to {high}" if high is not None else ""), value)
    return v


def number(value, name: str = "", low: float | None = None, *, strict: bool = False) -> float:
    """A finite number, >= `low` (> `low` when `strict`) when a bound is given."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise refuse(name, "a finite number", value)
    if low is not None and (value <= low if strict else value < low):
        raise refuse(name, f"a number {'>' if strict else '>='} {low:g}", value)
    return float(value)


def fraction(value, name: str = "") -> float:
    """A fraction strictly between 0 and 1 (a share of the images held for fitting)."""
    v = number(value, name)
    if not 0 < v < 1:
        raise refuse(name, "a fraction between 0 and 1", value)
    return v
