"""Strict, safe loading of state dicts: torch.load(weights_only=True), one-line errors."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from ..errors import CnnscopeError


def _short_list(keys: list[str], n: int = 4) -> str:
    head = ", ".join(keys[:n])
    return head + (f", … (+{len(keys) - n} more)" if len(keys) > n else "")


def _load_failure(err: Exception) -> str:
    """The informative part of a torch.load error (its weights-only boilerplate says nothing about the file)."""
    text = str(err)
    found = re.search(r"WeightsUnpickler error:\s*(.+)", text)
    if found:
        return "unpickler: " + found.group(1).strip().splitlines()[0][:120]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0][:120] if lines else type(err).__name__


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a checkpoint file as a flat name -> tensor dict (unwrapping common containers)."""
    p = Path(path)
    if not p.is_file():
        raise CnnscopeError(f"weights file {path}: no such file")
    if p.suffix == ".safetensors":
        try:
            return load_file(str(p))
        except Exception as err:  # safetensors raises several types for bad headers
            raise CnnscopeError(f"weights file {path}: not a readable safetensors file ({err})") from None
    try:
        with warnings.catch_warnings():  # garbage bytes can look like an odd pickle protocol: torch warns, then fails
            warnings.simplefilter("ignore")
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling, zip and EOF errors all mean "not a usable checkpoint"
        code = re.search(r"GLOBAL ([\w.]+)", str(err))
        if code:  # a pickle that would call a function on load: never run it
            raise CnnscopeError(f"weights file {path}: not a PyTorch checkpoint of plain tensors: it contains code "
                                f"(it would call {code.group(1)} when loaded), so it was not loaded") from None
        raise CnnscopeError(f"weights file {path}: not a PyTorch checkpoint ({_load_failure(err)})") from None
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CnnscopeError(f"weights file {path}: holds no state dict of tensors")
    if obj and all(k.startswith("module.") for k in obj):  # saved from DataParallel
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def load_strict(net: nn.Module, state: dict[str, torch.Tensor], source: str, model_name: str) -> None:
    """Load `state` into `net` requiring every key and shape to match; else one line saying what differs."""
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys ({_short_list(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({_short_list(unexpected)})")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches (file vs model: {_short_list(shapes, 2)})")
        raise CnnscopeError(f"weights {source} do not fit {model_name}: " + "; ".join(parts))
    net.load_state_dict(state, strict=True)
