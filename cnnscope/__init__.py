"""cnnscope: what does this CNN represent?

The Python API is made from the same declarations as the CLI: one function per verb, with the verb's options
as keywords (``help(cnnscope.invert)`` and ``cnnscope invert --help`` show the same options and defaults). A
model is a zoo name, a `Model` or any ``nn.Module``, an image a path, ``sample:NAME``, a PIL image, a numpy
array or a tensor:

>>> import cnnscope
>>> cnnscope.predict("efficientnet_lite0", "sample:chelsea")[0].name        # `cnnscope predict`
>>> r = cnnscope.invert("efficientnet_lite0", "sample:chelsea", "stage3")    # `cnnscope invert`
>>> r.normalised_error, r.images[0]      # typed fields; PIL pictures; in a notebook `r` shows itself
>>> r.save("out")                        # what the CLI writes for this job (PNG + JSON record)
>>> cnnscope.saliency(my_net, pil_image, classes=3)    # your own nn.Module: never changed

Everything here is imported on first use, so ``import cnnscope`` is quick.
"""

from __future__ import annotations

from .lazy import exports
from .verbs import by_api_name

__version__ = "0.1.0"

__getattr__, __all__ = exports(__name__, {
    ".api": " ".join(["FindingsResult ReportResult as_model", *by_api_name()]),  # a function per declared verb
    ".errors": "CnnscopeError",
    ".images": "image_batch load_image sample_names save_image",
    ".jobs": "Result",
    ".layers": "Capture Truncated capture get_layer resolve",
    ".models": "Model Prediction Preprocess load_model",
    ".targets": "Target",
})

# `report` is a verb and a subpackage: reading the declarations imported the subpackage, which bound the
# module to this name; unbound, the name is the verb's function (read through __getattr__)
for _name in by_api_name():
    if type(globals().get(_name)).__name__ == "module":
        del globals()[_name]
