"""The hand-crafted representations as one-layer networks of the model zoo (read by `cnnscope.models.zoo`)."""

from collections import OrderedDict

from torch import nn

from ..models.zoo import HANDCRAFTED
from .dsift import DenseSIFT
from .hog import HOG

HANDCRAFTED.update(
    hog=lambda size: nn.Sequential(OrderedDict(hog=HOG(cell_size=size))),
    hogb=lambda size: nn.Sequential(OrderedDict(hog=HOG(cell_size=size, bilinear=True))),
    dsift=lambda size: nn.Sequential(OrderedDict(dsift=DenseSIFT(bin_size=size, step=max(1, size // 2)))),
)
