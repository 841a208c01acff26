"""The model zoo: a name -> (builder, weights source, preprocessing), plus user models.

`zoo` holds the names, `model` the `Model` the methods analyse (and its `ModelSpec` and `ModelProfile`),
`loading` how a name, a file or a module becomes one.

>>> from cnnscope.models import load_model
>>> model = load_model("efficientnet_lite0")
>>> model.predict(load_image("sample:coffee"))[0][0].name
'espresso'
"""

from .loading import MODULE_PREFIX, load_model, load_spec
from .model import Model, ModelProfile, ModelSpec, Prediction, small_model
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from .zoo import DEFAULT_MODEL, HANDCRAFTED, ZOO, ZooEntry, imagenet_classes, list_models

__all__ = ["DEFAULT_MODEL", "HANDCRAFTED", "MODULE_PREFIX", "Model", "ModelProfile", "ModelSpec", "Prediction",
           "Preprocess", "ZOO", "ZooEntry", "imagenet_classes", "list_models", "load_model", "load_spec",
           "small_model", "IMAGENET_MEAN", "IMAGENET_STD"]
