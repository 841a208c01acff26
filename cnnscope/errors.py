"""The one exception type for problems with what the user gave us."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class CnnscopeError(ValueError):
    """Bad input (a file, a name, a number, a type). The CLI prints it as one line and exits with code 2; in
    Python it is a ``ValueError``, so ``except ValueError`` catches it too."""


def unknown(what: str, value, valid: Iterable[str]) -> CnnscopeError:
    """The error for a name that is not one of `valid`: it names the closest match and the valid ones."""
    valid = [str(v) for v in valid]
    close = difflib.get_close_matches(str(value), valid, n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return CnnscopeError(f"unknown {what} '{value}'{hint} ({', '.join(valid)})")
