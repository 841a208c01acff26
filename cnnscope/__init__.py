"""cnnscope: what does this CNN represent?

The Python API mirrors the CLI verbs:

>>> import cnnscope
>>> model = cnnscope.load_model("efficientnet_lite0")
>>> cnnscope.predict(model, "sample:chelsea")[0].name        # `cnnscope predict`
>>> cnnscope.list_layers(model)                               # `cnnscope layers`
>>> cnnscope.capture(model, model.prepare(img), ["stage3"])   # `cnnscope activations`
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import CnnscopeError
from .images import load_image, sample_names, save_image
from .layers import Capture, Truncated, capture, get_layer, list_layers, resolve
from .models import Model, Prediction, Preprocess, list_models, load_model
from .targets import Target


def predict(model: Model | str, image, k: int = 5) -> list[Prediction]:
    """Top-k predictions for one image (a [3,H,W] tensor in [0,1], a path, or ``sample:NAME``)."""
    if isinstance(model, str):
        model = load_model(model)
    if not hasattr(image, "shape"):
        image = load_image(image)
    return model.predict(image, k=k)[0]


__all__ = [
    "Capture", "CnnscopeError", "Model", "Prediction", "Preprocess", "Target", "Truncated", "capture", "get_layer",
    "list_layers", "list_models", "load_image", "load_model", "predict", "resolve", "sample_names",
    "save_image",
]
