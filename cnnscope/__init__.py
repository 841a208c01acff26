"""cnnscope: what does this CNN represent?

The Python API mirrors the CLI verbs, one call per method; a model is a zoo name, a `Model` or any
``nn.Module``, an image a path, ``sample:NAME``, a PIL image, a numpy array or a tensor:

>>> import cnnscope
>>> cnnscope.predict("efficientnet_lite0", "sample:chelsea")[0].name          # `cnnscope predict`
>>> r = cnnscope.invert("efficientnet_lite0", "sample:chelsea", "stage3")      # `cnnscope invert`
>>> r.normalised_error, r.images[0]      # typed fields; PIL pictures; in a notebook `r` shows itself
>>> r.save("out")                        # what the CLI writes for this job (PNG + JSON record)
>>> cnnscope.saliency(my_net, pil_image, target=3)    # your own nn.Module: never changed
"""

from __future__ import annotations

__version__ = "0.1.0"

import torch

from .api import (
    FindingsResult,
    ReportResult,
    accentuate,
    as_model,
    caricature,
    cka,
    equivariance,
    hog,
    invert,
    maximize,
    report,
    reproduce,
    saliency,
    sanity,
    selectivity,
    stitch,
    stylize,
    texture,
)
from .errors import CnnscopeError
from .images import image_batch, load_image, sample_names, save_image
from .jobs import Result
from .layers import Capture, Truncated, capture, get_layer, list_layers, resolve
from .models import Model, Prediction, Preprocess, list_models, load_model
from .targets import Target


def predict(model, image, k: int = 5, device: str | None = None) -> list[Prediction] | list[list[Prediction]]:
    """Top-k predictions: ``cnnscope predict``.

    Parameters
    ----------
    model : str, Model or nn.Module
    image : one image, or a batch
        One picture (path, ``sample:NAME``, PIL image, numpy array, tensor [3,H,W]) gives one list of
        predictions; a batch (a list of pictures, or a tensor [N,3,H,W]) gives one list per picture.
    k : int
        How many classes per picture.

    Returns
    -------
    list of Prediction (index, name, probability), or a list of such lists for a batch.
    """
    loaded = as_model(model, device)
    batch = isinstance(image, (list, tuple)) or (torch.is_tensor(image) and image.dim() == 4 and len(image) != 1)
    # a list's pictures may differ in size (each is resized and cropped on its own) and are loaded as they are
    # predicted, a chunk at a time: memory does not grow with their number
    pictures = (load_image(s) for s in image) if isinstance(image, (list, tuple)) and image else image_batch(image)
    answers = loaded.predict(pictures, k=k)
    return answers if batch else answers[0]


__all__ = [
    "Capture", "CnnscopeError", "FindingsResult", "Model", "Prediction", "Preprocess", "ReportResult", "Result",
    "Target", "Truncated", "accentuate", "as_model", "capture", "caricature", "cka", "equivariance", "get_layer", "hog",
    "image_batch", "invert", "list_layers", "list_models", "load_image", "load_model", "maximize", "predict",
    "report", "reproduce", "resolve", "saliency", "sample_names", "sanity", "save_image", "selectivity", "stitch",
    "stylize", "texture",
]
