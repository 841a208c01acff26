"""Hand-crafted representations as differentiable modules: usable as Phi by every cnnscope tool."""

from .dsift import DenseSIFT
from .hog import HOG
from .render import hog_glyphs, render_hog

__all__ = ["HOG", "DenseSIFT", "hog_glyphs", "render_hog"]
