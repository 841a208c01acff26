"""Address any layer of any model by name: list, capture, truncate.

Three modules: `geometry` (receptive fields through every op), `tracing` (naming the calls of a forward pass:
the public `CallTracker` the backward rules use too, the layer table), `capture` (activations, truncation).

A *layer* is one call of a module during the forward pass, named by its module path (``features.3``,
``_blocks.4``) or a friendly alias (``conv2``, ``stage3``). A module called several times is addressed
per call (``relu``, ``relu#2``…). Activations computed by functional calls inside a model's own
``forward`` (``F.relu(x)``, ``x.relu()``, ``F.max_pool2d``…) are layers too, named ``<parent>.relu()``.
The model's final output is the layer ``output``.

Geometry (receptive field, effective stride, offset) is computed exactly by following every tensor
operation of one forward pass with a torch function mode (no global monkey-patching), so it works for
any nn.Module, residual branches and padding calls included.

Capturing stops the forward as soon as the deepest requested layer has been computed.
"""

from .capture import Capture, Truncated, capture, pictures_per_pass
from .geometry import Axis, Geometry, first_tensor, op_name
from .specs import expand_layers
from .tracing import (
    FUNCTIONAL_LAYERS,
    OUTPUT,
    CallTracker,
    FunctionalMode,
    LayerInfo,
    format_table,
    get_layer,
    layer_names,
    list_layers,
    resolve,
    unwrap,
)

__all__ = ["FUNCTIONAL_LAYERS", "OUTPUT", "Axis", "CallTracker", "Capture", "FunctionalMode", "Geometry", "LayerInfo",
           "Truncated", "capture", "expand_layers", "first_tensor", "format_table", "get_layer", "layer_names",
           "list_layers", "op_name", "pictures_per_pass", "resolve", "unwrap"]
