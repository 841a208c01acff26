"""SmallCNN: the small network `cnnscope train-small` trains (its training lives in `transforms.smallnets`);
`load_small` reads one back (``--model small:FILE.safetensors``; `models.small_model` makes it a Model)."""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

from torch import nn

from ..store import load_tensors
from .preprocess import Preprocess

SIZE = 32


class SmallCNN(nn.Sequential):
    """conv-bn-relu(-pool) x 4, global average, linear. Layers block1..block4 are the relu outputs."""

    input_size = SIZE

    def __init__(self, width: int = 16, classes: int = 10):
        layers: list[tuple[str, nn.Module]] = []
        cin = 3
        for i, cout in enumerate([width, 2 * width, 4 * width, 4 * width], 1):
            layers += [(f"conv{i}", nn.Conv2d(cin, cout, 3, padding=1)), (f"bn{i}", nn.BatchNorm2d(cout)),
                       (f"relu{i}", nn.ReLU())]
            if i < 4:
                layers.append((f"pool{i}", nn.MaxPool2d(2)))
            cin = cout
        layers += [("gap", nn.AdaptiveAvgPool2d(1)), ("flat", nn.Flatten()), ("fc", nn.Linear(cin, classes))]
        super().__init__(OrderedDict(layers))

    def layer_aliases(self) -> dict[str, str]:
        return {f"block{i}": f"relu{i}" for i in range(1, 5)} | {"logits": "fc"}

    def depth_layers(self) -> list[str]:
        return ["block1", "block2", "block3", "block4", "logits"]


PREPROCESS = Preprocess(input_size=SIZE, resize=None, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))

SMALL_FORMAT = "cnnscope-smallcnn-1"


def load_small(path: str | Path) -> tuple[SmallCNN, dict]:
    state, meta = load_tensors(path, SMALL_FORMAT, "small network")
    net = SmallCNN()
    net.load_state_dict(state)
    return net.eval().requires_grad_(False), json.loads(meta["info"])
