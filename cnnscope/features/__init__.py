"""Hand-crafted representations as differentiable modules: usable as Phi by every cnnscope tool.

``hog``, ``hogb`` and ``dsift`` (``NAME:N`` for N px cells or bins) load as one-layer networks: `zoo`
registers them in the model zoo (`cnnscope.models.HANDCRAFTED`) when the zoo first builds one.
"""

from ..lazy import exports

__getattr__, __all__ = exports(__name__, {
    ".dsift": "DenseSIFT",
    ".hog": "HOG",
    ".render": "hog_glyphs render_hog",
})
