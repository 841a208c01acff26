"""A network's structure read from one forward pass, for models that do not declare it.

Two things a zoo model says of itself and a researcher's own network (a Hugging Face ``...ForImageClassification``,
an ``efficientnet_pytorch`` EfficientNet, a timm-style net) does not:

- **where its logits are**: HF models return an output object (``.logits``), others a dict or a tuple whose
  first element is the logits. `logits_field` finds them and `returning_logits` makes the analysed copy's
  forward return that tensor, so every method sees ``[N, classes]`` as it does for a zoo model;
- **its stages**: `infer_aliases` names ``stage1`` … ``stageN``, ``head`` and ``logits`` (the aliases a zoo
  model declares). The stage container is the module whose children, in execution order, pass through the
  most distinct feature-map shapes (ResNet's ``encoder.stages``, EfficientNet's ``_blocks``, MobileNetV2's
  ``layer``); consecutive children with the same output shape form one stage, named by its last child —
  EfficientNet's 16 blocks become its 7 stages. ``head`` is the last feature map after the stages (before the
  global pool), ``logits`` the module whose output the network returns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn


def logits_field(out) -> str | None:
    """Where a forward's [N, K] logits are: "" (the output itself), ".logits", "['logits']" or "[0]"; else None."""
    def is_logits(t):
        return isinstance(t, torch.Tensor) and t.dim() == 2

    if isinstance(out, torch.Tensor):
        return "" if is_logits(out) else None
    if is_logits(getattr(out, "logits", None)):
        return ".logits"
    if isinstance(out, Mapping) and is_logits(out.get("logits")):
        return "['logits']"
    if isinstance(out, (tuple, list)) and out and is_logits(out[0]):
        return "[0]"
    return None


def pick(out, field: str):
    """The part of a forward's output that `field` (from `logits_field`) names."""
    if field == ".logits":
        return out.logits
    if field == "['logits']":
        return out["logits"]
    if field == "[0]":
        return out[0]
    return out


_ADAPTED: dict = {}  # (class, field) -> its subclass whose forward returns the logits (made once)


def returning_logits(net: nn.Module, field: str) -> nn.Module:
    """Make `net` (a private copy) return ``pick(out, field)``: its class becomes a subclass of its own class
    (same name, same modules, layer names and hooks) whose forward picks the logits."""
    if not field or getattr(type(net), "logits_field", None) == field:
        return net
    base = type(net)
    if (base, field) not in _ADAPTED:
        def forward(self, *args, **kwargs):
            return pick(base.forward(self, *args, **kwargs), field)

        _ADAPTED[(base, field)] = type(base.__name__, (base,), {
            "forward": forward, "logits_field": field, "__module__": base.__module__,
            "__qualname__": base.__qualname__, "__doc__": base.__doc__})
    net.__class__ = _ADAPTED[(base, field)]
    return net


def _spatial(row) -> bool:
    """A feature map [C, H, W] whose pixels have a place in the image (not a channels-last or token tensor)."""
    g = row.geometry
    return len(row.shape) == 3 and g is not None and g.h is not None and not g.channels_last


def infer_aliases(net: nn.Module, rows: Sequence) -> dict[str, str]:
    """stage1…stageN, head and logits for a network that declares no aliases (`rows`: its `list_layers`)."""
    index = {r.name: i for i, r in enumerate(rows)}
    best: tuple | None = None
    for path, module in net.named_modules():
        kids = [f"{path}.{n}" if path else n for n, _ in module.named_children()]
        called = sorted((k for k in kids if k in index and _spatial(rows[index[k]])), key=index.__getitem__)
        if len(called) < 2:
            continue
        groups: list[list[str]] = []
        for k in called:
            if groups and rows[index[groups[-1][-1]]].shape == rows[index[k]].shape:
                groups[-1].append(k)
            else:
                groups.append([k])
        score = (len(groups), -len(called))  # most shapes passed through, then the coarsest grouping
        if len(groups) >= 2 and (best is None or score > best[0]):
            best = (score, groups, path)
    aliases: dict[str, str] = {}
    if best is not None:
        _, groups, container = best
        for i, group in enumerate(groups):
            aliases[f"stage{i + 1}"] = group[-1]
        # the head: the last feature map after the stages, not a module that merely contains them
        enclosing = {".".join(container.split(".")[:i]) for i in range(1, container.count(".") + 2)} | {"output"}
        after = [r for r in rows[index[groups[-1][-1]] + 1:] if _spatial(r) and "pool" not in r.kind.lower()
                 and r.name.split("#")[0] not in enclosing]
        if after:
            aliases["head"] = after[-1].name
    out = next((r for r in rows if r.name == "output"), None)
    if out is not None:
        same = [r for r in rows if r.name != "output" and r.shape == out.shape and not r.name.endswith(")")]
        if same:
            aliases["logits"] = same[-1].name
    return aliases


def at_depth(net: nn.Module, rows: Sequence, fractions: Sequence[float]) -> list[str]:
    """Layers at fractions of a network's depth (0 = the first feature map, 1 = the last one): the outputs of
    its leaf modules (convolutions, norms, activations) that are spatial maps, in execution order, by position."""
    leaves = {n for n, m in net.named_modules() if n and not any(True for _ in m.children())}
    maps = [r.name for r in rows if _spatial(r) and r.name in leaves]
    if not maps:
        return []
    return [maps[min(len(maps) - 1, round(f * (len(maps) - 1)))] for f in fractions]
