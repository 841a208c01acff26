"""Loading a model: a zoo name, a trained SmallCNN, a user's file or TorchScript, or a module in memory (a
frozen private copy), with its preprocessing and class names."""

from __future__ import annotations

import copy
import dataclasses
import difflib
import io
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from ..device import of as device_of
from ..device import resolve as resolve_device
from ..errors import CnnscopeError
from ..layers import list_layers
from . import small
from .model import Model, ModelSpec, freeze, small_model
from .preprocess import Preprocess
from .structure import infer_aliases, logits_field, pick, returning_logits
from .user import build_user_model, is_user_model
from .weights import load_strict, read_state_dict
from .zoo import DEFAULT_MODEL, ZOO, handcrafted_net, imagenet_classes


def load_model(
    name: str | nn.Module = DEFAULT_MODEL,
    *,
    weights: str | None = None,
    random_weights: bool = False,
    seed: int = 0,
    preprocess: Preprocess | dict | None = None,
    classes: str | None = None,
    device: str | torch.device | None = "cpu",
    amp: bool = False,
) -> Model:
    """Build a zoo model (by name) or a user model (``file.py:factory`` or a TorchScript file).

    Parameters
    ----------
    name : str or nn.Module
        A zoo name (`list_models`), ``small:FILE.safetensors``, ``path/file.py:factory`` or a TorchScript file;
        or your own network (an ``nn.Module`` or ``torch.jit.ScriptModule``). Your network is never changed:
        cnnscope analyses a frozen copy in eval mode (your module keeps its training flag, BatchNorm running
        statistics, ``requires_grad``, ``.grad`` and hooks; load it again after changing it).
    weights : str, optional
        A checkpoint (.pth/.pt/.safetensors state dict) loaded strictly instead of the default weights.
    random_weights : bool
        Skip loading and keep the initialisation seeded by `seed` (tests, architecture studies).
    seed : int
        Seeds that initialisation.
    preprocess : Preprocess or dict, optional
        A Preprocess, or a dict of fields (input_size, resize, mean, std) overriding the model's own.
    classes : str or sequence of str, optional
        A file of class names, one per line, or (for a module) the names themselves (default: ImageNet's for
        1000 outputs, else ``class 0`` … ``class K-1``).
    device : str or torch.device, optional
        Where the network runs: "cpu" (default), "auto" (CUDA if available), "cuda", "cuda:N", "mps";
        refused in one line when this machine has no such device. Every method follows ``model.device``.
    amp : bool
        Mixed precision for the network's forward and backward passes (float16 on CUDA, bfloat16 on the CPU);
        objectives, statistics and regression solves stay in float32/float64.

    Returns
    -------
    Model
        In eval mode with frozen parameters; ``model.spec`` loads it again.
    """
    where = resolve_device(device)
    if isinstance(name, nn.Module):
        model = _from_module(name, preprocess, classes, where)
        model.amp, model.spec = amp, dataclasses.replace(model.spec, amp=amp)
        return model
    if not isinstance(name, str):
        raise CnnscopeError(f"a model is a zoo name, a file spec or an nn.Module, not a {type(name).__name__}")
    model = _build_model(name, weights, random_weights, seed, preprocess, classes)
    model.net.to(where)
    model.amp = amp
    overrides = preprocess.to_dict() if isinstance(preprocess, Preprocess) else (preprocess or {})
    model.spec = ModelSpec(name, weights, random_weights, seed,
                           tuple((k, tuple(v) if isinstance(v, list) else v)
                                 for k, v in sorted(overrides.items()) if v is not None), classes, str(where),
                           amp)
    return model


def load_spec(spec: ModelSpec) -> Model:
    """The model a spec names (`load_model` with its arguments): how a job's worker loads its model."""
    return load_model(spec.name, weights=spec.weights, random_weights=spec.random_weights, seed=spec.seed,
                      preprocess=dict(spec.preprocess) or None, classes=spec.classes, device=spec.device,
                      amp=spec.amp)


def _build_model(name: str, weights: str | None, random_weights: bool, seed: int,
                 preprocess: Preprocess | dict | None, classes: str | None) -> Model:
    """`load_model` without recording how (the spec)."""
    base, _, arg = name.partition(":")
    if base in ZOO and ZOO[base].handcrafted:
        if weights is not None:
            raise CnnscopeError(f"model '{name}' is hand-crafted: it has no weights to load")
        net = handcrafted_net(base, arg)
        pp = _merge_preprocess(ZOO[base].preprocess, preprocess)
        return Model(name, freeze(net), pp, (), {}, "none (hand-crafted)", False, handcrafted=True)
    if name in ZOO:
        entry = ZOO[name]
        torch.manual_seed(seed)
        net = entry.build()
        aliases = net.layer_aliases() if hasattr(net, "layer_aliases") else {}
        base_pp, torchscript = entry.preprocess, False
        if random_weights:
            source = f"random (seed {seed})"
        else:
            source = weights or entry.default_weights()
            if source is None:
                raise CnnscopeError(f"{name} has no weights here: {entry.weights_hint}")
            load_strict(net, read_state_dict(source), source, name)
        # the zoo's networks step 6-15% faster from stage2 on (the stem ~15% slower) on the CPU with channels-last
        # weights, and their activations follow (benchmarks/feature_vis.py --parts step); a user's network keeps
        # its own layout, since its forward may view activations as contiguous
        net = net.to(memory_format=torch.channels_last)
    elif name.startswith("small:"):  # a SmallCNN trained by `cnnscope train-small`
        net, _ = small.load_small(name[len("small:"):])
        return small_model(net, name)
    elif is_user_model(name):
        net, torchscript = build_user_model(name)
        base_pp, source = Preprocess(), "user"
        if weights is not None:
            load_strict(net, read_state_dict(weights), weights, name)
            source = weights
    else:
        close = difflib.get_close_matches(name, list(ZOO), n=3, cutoff=0.3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise CnnscopeError(
            f"unknown model '{name}'{hint} (zoo: {', '.join(ZOO)}; or path/to/file.py:factory, or a TorchScript file)"
        )
    pp = _merge_preprocess(base_pp, preprocess)
    net = freeze(net)
    if is_user_model(name):
        outputs, aliases = _adopt(net, pp, name)
        names = _read_classes(classes) if classes is not None else _default_names(outputs)
    else:
        outputs, names = len(imagenet_classes()), _read_classes(classes)  # the zoo's classifiers: ImageNet's
    return Model(name, net, pp, _as_many(names, outputs, classes), aliases, source, torchscript)


def _as_many(names: Sequence[str], outputs: int, given) -> Sequence[str]:
    """`names`, when there are as many as the network has outputs (0: a network without [N, K] logits)."""
    if given is not None and outputs and len(names) != outputs:
        where = f"classes file {given}" if isinstance(given, (str, Path)) else "classes"
        raise CnnscopeError(f"{where}: {len(names)} class names for a network with {outputs} outputs")
    return names


def _read_classes(path: str | None) -> Sequence[str]:
    if path is None:
        return imagenet_classes()
    p = Path(path)
    if not p.is_file():
        raise CnnscopeError(f"classes file {path}: no such file")
    names = [line.strip() for line in p.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    if not names:
        raise CnnscopeError(f"classes file {path}: is empty (expected one class name per line)")
    return names


def _adopt(net: nn.Module, pp: Preprocess, label: str) -> tuple[int, dict[str, str]]:
    """A user's network (a private copy) as the methods need it, from one forward pass on a blank picture: a
    forward returning an object or dict with ``logits`` (Hugging Face) or a tuple (logits, ...) is made to
    return the logits; stages are named when the network does not name them (`structure.infer_aliases`).
    Returns (its number of outputs, 0 when it has no [N, K] output; its aliases)."""
    with torch.no_grad():
        try:
            out = net(torch.zeros(1, 3, pp.input_size, pp.input_size, device=device_of(net)))
        except Exception as err:
            raise CnnscopeError(f"model {label}: its forward pass failed on a {pp.input_size} px input "
                                f"({type(err).__name__}: {str(err).splitlines()[0][:120] if str(err) else ''}); "
                                "give its input size (--input-size N, or preprocess={'input_size': N})") from None
    field = logits_field(out)
    scripted = isinstance(net, torch.jit.ScriptModule)
    if field and not scripted:
        returning_logits(net, field)
        out = pick(out, field)
    k = out.shape[1] if isinstance(out, torch.Tensor) and out.dim() == 2 else 0
    if scripted or hasattr(net, "layer_aliases"):
        return k, (net.layer_aliases() if hasattr(net, "layer_aliases") else {})
    return k, infer_aliases(net, list_layers(net, pp.input_size, cache=False))


def _default_names(outputs: int) -> Sequence[str]:
    """As many class names as the network has outputs: ImageNet's for 1000, else "class 0" … "class K-1"."""
    return imagenet_classes() if outputs == 1000 else [f"class {i}" for i in range(outputs)]


MODULE_PREFIX = "<module "  # the spec name of a model given as a Python object: it cannot travel to workers


def _copy_module(net: nn.Module) -> nn.Module:
    """A private copy of the user's network (TorchScript through its own serialisation)."""
    try:
        if isinstance(net, torch.jit.ScriptModule):
            buffer = io.BytesIO()
            torch.jit.save(net, buffer)
            buffer.seek(0)
            return torch.jit.load(buffer, map_location="cpu")
        return copy.deepcopy(net)
    except Exception as err:
        raise CnnscopeError(f"could not copy the {type(net).__name__} to analyse it ({type(err).__name__}: "
                            f"{str(err).splitlines()[0][:120] if str(err) else ''})") from None


def _from_module(net: nn.Module, preprocess: Preprocess | dict | None, classes, device: torch.device) -> Model:
    """A Model of the user's own network: a frozen copy, so the analysis can never change the original."""
    torchscript = isinstance(net, torch.jit.ScriptModule)
    pp = _merge_preprocess(Preprocess(), preprocess)
    copy_ = freeze(_copy_module(net)).to(device)
    if isinstance(classes, str) or classes is None:
        names: Sequence[str] | None = _read_classes(classes) if classes is not None else None
    else:
        names = [str(c) for c in classes]
    outputs, aliases = _adopt(copy_, pp, type(net).__name__)
    names = _default_names(outputs) if names is None else _as_many(names, outputs, classes)
    name = type(net).__name__
    model = Model(name, copy_, pp, names, aliases, "user (in memory)", torchscript)
    model.spec = ModelSpec(f"{MODULE_PREFIX}{name} at {id(net):#x}>", device=str(device))
    return model


def _merge_preprocess(base: Preprocess, override: Preprocess | dict | None) -> Preprocess:
    if isinstance(override, Preprocess):
        pp = override
    elif override:
        given = {k: v for k, v in override.items() if v is not None}
        if "input_size" in given and "resize" not in given:  # a new size without --resize: resize to it, so a
            given["resize"] = given["input_size"]  # 48 px network sees the whole picture, not its middle 48 px
        pp = dataclasses.replace(base, **given)
    else:
        pp = base
    _validate_preprocess(pp)
    return pp


def _validate_preprocess(pp: Preprocess) -> None:
    if pp.input_size < 8 or pp.input_size > 4096:
        raise CnnscopeError(f"input size must be between 8 and 4096 px, got {pp.input_size}")
    if pp.resize is not None and pp.resize < pp.input_size:
        raise CnnscopeError(f"resize ({pp.resize}) must be at least the input size ({pp.input_size})")
    for label, values in (("mean", pp.mean), ("std", pp.std)):
        if len(values) != 3:
            raise CnnscopeError(f"--{label} needs 3 comma-separated values (R,G,B), got {len(values)}")
    if any(s <= 0 for s in pp.std):
        raise CnnscopeError(f"--std values must be positive, got {list(pp.std)}")
