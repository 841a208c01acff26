"""Two measurements on backpropagation maps.

Selectivity (the protocol of Mahendran & Vedaldi ECCV'16): at the location where a layer responds most,
generate maps from the max-activation neuron, from random other neurons and from a random positive
direction at the same place; if the maps hardly change (high correlation), the method is not
neuron-selective. The seed's finding: DeConvNet maps are largely not selective.

Sanity (Adebayo et al. 2018, cascading randomisation): re-initialise the network's weights from the top
down, one block at a time, and measure the Spearman rank correlation between the maps of the trained and
the randomised network. A map that does not change is not explaining the trained model.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..layers import capture
from ..models import Model
from ..progress import iterate
from ..targets import Target
from .methods import METHODS, backprop_maps


def _vectors(a, b) -> tuple[np.ndarray, np.ndarray]:
    return (torch.as_tensor(a).detach().flatten().double().cpu().numpy(),
            torch.as_tensor(b).detach().flatten().double().cpu().numpy())


def _defined(value: float) -> float:
    """A correlation with a constant (e.g. an all-zero map) is undefined: 0, "no linear relation"."""
    return 0.0 if not math.isfinite(value) else float(value)


def pearson(a, b) -> float:
    """Pearson's r between two maps (flattened); 0 when either is constant."""
    from scipy import stats  # (a second to import: only when a correlation is asked for, not at every CLI start)

    x, y = _vectors(a, b)
    if x.std() == 0 or y.std() == 0:
        return 0.0
    return _defined(stats.pearsonr(x, y).statistic)


def spearman(a, b) -> float:
    """Spearman's rank correlation (ties share their mean rank) between two maps; 0 when either is constant."""
    from scipy import stats  # (as in `pearson`)

    x, y = _vectors(a, b)
    if x.std() == 0 or y.std() == 0:
        return 0.0
    return _defined(stats.spearmanr(x, y).statistic)


def selectivity(model: Model, images: Sequence[torch.Tensor], layer: str, neurons: int = 4,
                methods: Sequence[str] = tuple(METHODS), seed: int = 0, progress: bool = True) -> dict:
    """Mean map correlations per method: max neuron vs random neurons, vs a random positive direction,
    and random neuron vs random neuron (all at the max-response location of each image)."""
    gen = torch.Generator().manual_seed(seed)
    out = {m: {"max_vs_random_neuron": [], "max_vs_random_direction": [], "random_vs_random": []} for m in methods}
    for img in iterate(images, "selectivity", "image", show=progress):
        x = model.prepare(img)
        with torch.no_grad():
            feat = capture(model, x, [layer])[layer][0]
        if feat.dim() == 3:
            flat = feat.flatten()
            c_max, rest = divmod(int(flat.argmax()), feat.shape[1] * feat.shape[2])
            y, xx = divmod(rest, feat.shape[2])
        else:
            c_max, y, xx = int(feat.argmax()), None, None
        others = [c for c in torch.randperm(feat.shape[0], generator=gen).tolist() if c != c_max][:neurons]
        direction = torch.zeros_like(feat)
        w = torch.randn(feat.shape[0], generator=gen).abs()
        if feat.dim() == 3:
            direction[:, y, xx] = w
        else:
            direction[:] = w
        targets = [Target("neuron", c_max, y, xx, layer=layer)]
        targets += [Target("neuron", c, y, xx, layer=layer) for c in others]
        targets.append(Target("direction", direction=direction, layer=layer))
        for method in methods:
            maps = backprop_maps(model, x, targets, method)[0]
            rec = out[method]
            rec["max_vs_random_neuron"] += [pearson(maps[0], maps[i]) for i in range(1, len(others) + 1)]
            rec["max_vs_random_direction"].append(pearson(maps[0], maps[-1]))
            rec["random_vs_random"] += [pearson(maps[i], maps[j]) for i in range(1, len(others) + 1)
                                        for j in range(i + 1, len(others) + 1)]
    return {m: {k: (sum(v) / len(v) if v else float("nan")) for k, v in rec.items()} for m, rec in out.items()}


def _has_weights(module: nn.Module) -> bool:
    return any(isinstance(m, (nn.Conv2d, nn.Linear)) for m in module.modules())


def _param_blocks(net: nn.Module) -> list[str]:
    """Names of the blocks re-initialised in turn, from the output down: top-level children that hold
    convolutions or linear layers, with ModuleLists/Sequentials unrolled (Lite0's 16 blocks one at a time).
    A network with fewer than three such blocks at the top (a Hugging Face model: its backbone and its
    classifier) is opened further, the block with the most weights first, until it has some to cascade over."""
    def blocks_of(module: nn.Module, prefix: str) -> list[str]:
        out = []
        for name, child in module.named_children():
            if isinstance(child, (nn.ModuleList, nn.Sequential)) and len(child) > 2:
                out += [f"{prefix}{name}.{i}" for i, sub in enumerate(child) if _has_weights(sub)]
            elif _has_weights(child):
                out.append(f"{prefix}{name}")
        return out

    def size(path: str) -> int:
        return sum(p.numel() for p in net.get_submodule(path).parameters())

    blocks = blocks_of(net, "")
    opened: set[str] = set()
    while len(blocks) < 3:
        closed = [b for b in blocks if b not in opened]
        if not closed:
            break
        biggest = max(closed, key=size)
        opened.add(biggest)
        inner = blocks_of(net.get_submodule(biggest), f"{biggest}.")
        if len(inner) >= 2:
            at = blocks.index(biggest)
            blocks[at:at + 1] = inner
    return blocks[::-1]


def _randomise(module: nn.Module, gen: torch.Generator) -> None:
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            fan_in = m.weight[0].numel()
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.zero_()


def cascading_randomisation(model: Model, image: torch.Tensor, target: Target,
                            methods: Sequence[str] = tuple(METHODS), seed: int = 0, progress: bool = True) -> dict:
    """Spearman correlation of |map| (max over colour) between the trained model and the model with
    blocks re-initialised from the top down, one more block per step. Returns blocks and curves."""
    x = model.prepare(image)

    def saliency(m: Model) -> dict[str, torch.Tensor]:
        return {meth: backprop_maps(m, x, [target], meth)[0, 0].abs().amax(0) for meth in methods}

    reference = saliency(model)
    clone = Model(model.name, copy.deepcopy(model.net), model.preprocess, model.classes, model.aliases,
                  model.weights)
    gen = torch.Generator().manual_seed(seed)
    blocks = _param_blocks(clone.net)
    curves = {meth: [] for meth in methods}
    for block in iterate(blocks, "randomising", "block", show=progress):
        _randomise(clone.net.get_submodule(block), gen)
        maps = saliency(clone)
        for meth in methods:
            curves[meth].append(spearman(reference[meth], maps[meth]))
    return {"blocks": blocks, "spearman": curves, "target": target.label()}


def selectivity_table(result: dict) -> str:
    """The selectivity correlations as a text table, a row per method."""
    keys = ("max_vs_random_neuron", "max_vs_random_direction", "random_vs_random")
    lines = [f"{'method':<10} " + " ".join(f"{k:>24}" for k in keys)]
    for method in METHODS:
        if method in result:
            lines.append(f"{method:<10} " + " ".join(f"{result[method][k]:24.3f}" for k in keys))
    return "\n".join(lines)
