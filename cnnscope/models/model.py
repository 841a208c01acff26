"""A network ready for analysis (`Model`), how to load it again (`ModelSpec`) and what its layers are for
(`ModelProfile`)."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from ..device import of as device_of
from ..errors import CnnscopeError
from . import small
from .preprocess import Preprocess
from .zoo import DEFAULT_MODEL

PREDICT_CHUNK = 16  # pictures per forward in `Model.predict`


@dataclass(frozen=True)
class Prediction:
    index: int
    name: str
    probability: float


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
            check_pixels(img)
        if isinstance(images, torch.Tensor):
            return self.preprocess(images.to(self.device))
        return torch.cat([self.preprocess(img.to(self.device)) for img in images])

    def class_name(self, index: int) -> str:
        return self.classes[index] if 0 <= index < len(self.classes) else f"class {index}"

    @torch.no_grad()
    def predict(self, images: torch.Tensor | Iterable[torch.Tensor], k: int = 5) -> list[list[Prediction]]:
        """Top-k (index, name, probability) for each image: [N,3,H,W], [3,H,W], or any iterable of [3,H,W]
        (a generator that loads them is read PREDICT_CHUNK at a time: memory does not grow with their number)."""
        if k < 1:
            raise CnnscopeError(f"top-k must be at least 1, got {k}")
        if isinstance(images, torch.Tensor):
            images = [images] if images.dim() == 3 else images.unbind(0)
        answers: list[list[Prediction]] = []
        pictures = iter(images)
        while chunk := list(itertools.islice(pictures, PREDICT_CHUNK)):
            answers += self._top_k(chunk, k)
        return answers

    def _top_k(self, images: Sequence[torch.Tensor], k: int) -> list[list[Prediction]]:
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


def check_pixels(image) -> None:
    """Images reach models as float tensors in [0, 1] (what `load_image` gives)."""
    if not isinstance(image, torch.Tensor):
        raise CnnscopeError(f"expected an image tensor, got {type(image).__name__}")
    if not image.is_floating_point():
        raise CnnscopeError(f"expected a float image in [0, 1], got dtype {image.dtype} (divide uint8 by 255)")
    if image.dim() not in (3, 4) or image.shape[-3] != 3:
        raise CnnscopeError(f"expected an RGB image [3,H,W] or batch [N,3,H,W], got shape {tuple(image.shape)}")
    if not torch.isfinite(image).all():
        raise CnnscopeError("the image holds NaN or infinite values")


def freeze(net: nn.Module) -> nn.Module:
    net.eval()
    for p in net.parameters():  # (ScriptModules have no requires_grad_)
        p.requires_grad_(False)
    return net


def small_model(net: small.SmallCNN, name: str) -> Model:
    """A SmallCNN (trained by `cnnscope train-small`, or untrained) as a Model with classes 0-9."""
    return Model(name, freeze(net), small.PREPROCESS, [str(i) for i in range(10)], net.layer_aliases(),
                 "trained here")
