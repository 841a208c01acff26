"""The hand-crafted representations' jobs, planned in one place for the CLI, the Python API and the demo."""

from __future__ import annotations

from ..images import source_stem
from ..store import slug
from .jobs import HogJob


def plan_hog(image, *, cell_size: int = 8, orientations: int = 9, bilinear: bool = False, size: int | None = None,
             glyph: int = 15, key: str | None = None) -> HogJob:
    """HOG of `image` drawn as glyphs; key ``hog_IMAGE``."""
    return HogJob(key or slug(f"hog_{source_stem(image)}"), image, cell_size, orientations, bilinear, size, glyph)
