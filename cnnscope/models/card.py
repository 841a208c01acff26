"""Model cards: the model options a lab types once (``--profile mynet.toml``), as a TOML file."""

from __future__ import annotations

import math
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser from PyPI
    import tomli as tomllib

from ..errors import CnnscopeError, unknown

CARD_KEYS = {"model": str, "weights": str, "input_size": int, "resize": int, "mean": list, "std": list,
             "classes": str}


def read_profile(path: str) -> dict:
    """A model card (TOML): the model options a lab types once. Paths in it are relative to the card."""
    card = Path(path)
    if not card.is_file():
        raise CnnscopeError(f"--profile {path}: no such file")
    try:
        data = tomllib.loads(card.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise CnnscopeError(f"--profile {path}: not valid TOML ({str(err).splitlines()[0]})") from None
    out = {}
    for key, value in data.items():
        if key not in CARD_KEYS:
            raise unknown(f"key in --profile {path}:", key, CARD_KEYS)
        kind = CARD_KEYS[key]
        if kind is int and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise CnnscopeError(f"--profile {path}: {key} must be a positive integer, got {value!r}")
        if kind is list:
            if not (isinstance(value, list) and len(value) == 3 and all(isinstance(v, (int, float)) and
                                                                        math.isfinite(v) for v in value)):
                raise CnnscopeError(f"--profile {path}: {key} must be 3 finite numbers (R, G, B), got {value!r}")
            value = tuple(float(v) for v in value)
        if kind is str:
            if not isinstance(value, str):
                raise CnnscopeError(f"--profile {path}: {key} must be a string, got {value!r}")
            if key in ("weights", "classes") or (key == "model" and (".py:" in value or value.endswith(".pt"))):
                value = str(card.parent / value) if not Path(value.split(":")[0]).is_absolute() else value
        out[key] = value
    return out
