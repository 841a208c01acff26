"""Image parametrisations: how the solver's free variables become pixels (one idea per file).

- `PixelParam`   the pixels themselves, projected into the B+ bound and [0,1] box (Mahendran & Vedaldi)
- `ColourParam`  pixels in a decorrelated colour basis, through a sigmoid
- `FourierParam` 1/f-scaled Fourier coefficients (+ decorrelated colour), through a sigmoid (Lucid)
- `MacoParam`    Fourier phase only, magnitude fixed to natural images' (Fel et al. 2023)
"""

from __future__ import annotations

from ...errors import CnnscopeError
from .base import Parametrization
from .colour import COLOUR_SQRT, ColourParam, decorrelated_to_rgb, rgb_to_decorrelated
from .fourier import FourierParam, spectrum_scale
from .maco import MacoParam, natural_magnitude
from .pixel import PixelParam

PARAMS = {"pixel": PixelParam, "colour": ColourParam, "fourier": FourierParam, "maco": MacoParam}


def make_param(name: str, n: int, size, *, seed: int = 0, mean=(0.5, 0.5, 0.5), **options) -> Parametrization:
    """A parametrisation by name ('pixel', 'colour', 'fourier', 'maco') for n images of `size` px.
    `mean` is the model's preprocessing mean (the pixel parametrisation's centre)."""
    if name not in PARAMS:
        raise CnnscopeError(f"unknown parametrisation '{name}' (choose from {', '.join(PARAMS)})")
    if name == "pixel":
        return PixelParam(n, size, mean=mean, seed=seed, **options)
    return PARAMS[name](n, size, seed=seed, **options)


__all__ = ["COLOUR_SQRT", "PARAMS", "ColourParam", "FourierParam", "MacoParam", "Parametrization", "PixelParam",
           "decorrelated_to_rgb", "make_param", "natural_magnitude", "rgb_to_decorrelated", "spectrum_scale"]
