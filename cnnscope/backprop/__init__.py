"""Backpropagation networks: backprop induces a reversed network of transposed blocks; changing only the
backward rules of the rectifiers and max-pools gives SaliNet, DeConvNet and DeSaliNet (Mahendran & Vedaldi,
ECCV'16). `BackpropRules` is the declarative rule map; `backprop_maps` the batched maps."""

from .methods import METHODS, backprop_maps, method_rules, render
from .network import BackpropRules, explain
from .rules import POOL_RULES, RECTIFIER_RULES

__all__ = ["METHODS", "POOL_RULES", "RECTIFIER_RULES", "BackpropRules", "backprop_maps", "explain",
           "method_rules", "render"]
