"""The model zoo: a name -> (builder, weights source, preprocessing), plus user models.

`zoo` holds the names, `model` the `Model` the methods analyse (and its `ModelSpec` and `ModelProfile`),
`loading` how a name, a file or a module becomes one.

>>> from cnnscope.models import load_model
>>> model = load_model("efficientnet_lite0")
>>> model.predict(load_image("sample:coffee"))[0][0].name
'espresso'
"""

from ..lazy import exports

__getattr__, __all__ = exports(__name__, {
    ".loading": "MODULE_PREFIX load_model load_spec",
    ".model": "Model ModelProfile ModelSpec Prediction small_model",
    ".preprocess": "IMAGENET_MEAN IMAGENET_STD Preprocess",
    ".zoo": "DEFAULT_MODEL HANDCRAFTED ZOO ZooEntry imagenet_classes list_models",
})
