"""Backpropagation networks: backprop induces a reversed network of transposed blocks; changing only the
backward rules of the rectifiers and max-pools gives SaliNet, DeConvNet and DeSaliNet (Mahendran & Vedaldi,
ECCV'16). `BackpropRules` is the declarative rule map; `backprop_maps` the batched maps."""

from ..lazy import exports

__getattr__, __all__ = exports(__name__, {
    ".methods": "METHODS backprop_maps method_rules render",
    ".network": "BackpropRules explain",
    ".rules": "POOL_RULES RECTIFIER_RULES",
})
