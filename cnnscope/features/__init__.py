"""Hand-crafted representations as differentiable modules: usable as Phi by every cnnscope tool.

Importing this package registers them in the model zoo (`cnnscope.models.HANDCRAFTED`): ``hog``, ``hogb`` and
``dsift`` (``NAME:N`` for N px cells or bins) load as one-layer networks.
"""

from collections import OrderedDict

from torch import nn

from ..models import HANDCRAFTED
from .dsift import DenseSIFT
from .hog import HOG
from .render import hog_glyphs, render_hog

HANDCRAFTED.update(
    hog=lambda size: nn.Sequential(OrderedDict(hog=HOG(cell_size=size))),
    hogb=lambda size: nn.Sequential(OrderedDict(hog=HOG(cell_size=size, bilinear=True))),
    dsift=lambda size: nn.Sequential(OrderedDict(dsift=DenseSIFT(bin_size=size, step=max(1, size // 2)))),
)

__all__ = ["HOG", "DenseSIFT", "hog_glyphs", "render_hog"]
