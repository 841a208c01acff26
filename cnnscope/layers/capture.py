"""Capturing activations: the forward runs only as far as the deepest requested layer."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ..device import of as device_of
from ..errors import CnnscopeError
from .geometry import first_tensor
from .tracing import OUTPUT, CallTracker, FunctionalMode, Stop, list_layers, resolve, unwrap

# the most bytes one activation of a pass over pictures may take on the CPU: glibc's allocator hands a freed block of
# up to 32 MB to the next request, while a larger one is mapped afresh every time and its pages faulted in
PASS_BYTES = 20 * 2 ** 20


# ---------------------------------------------------------------------------------------------- capture
class Capture:
    """Callable that returns {name: activation} for the requested layers, running the forward only as far
    as the deepest of them. Keeps its hooks until `close()` (or the end of a `with` block), so it is cheap to
    call in an optimisation loop. Gradients flow: use it under torch.no_grad() only when you want none.

    >>> with Capture(model, ["conv3", "fc8"]) as phi:
    ...     feats = phi(x)      # x preprocessed, [N,3,S,S]
    """

    def __init__(self, model, layers: Sequence[str] | str):
        self.net, _, _ = unwrap(model)
        requested = [layers] if isinstance(layers, str) else list(layers)
        if not requested:
            raise CnnscopeError("no layers requested")
        self.requested = requested
        self.targets = {resolve(model, n): n for n in requested}  # canonical -> requested name
        self.functional = any(t.endswith(")") or ")#" in t for t in self.targets)
        self.tracker = CallTracker(self.net)
        self.store: dict[str, torch.Tensor] = {}
        self.active = False
        self.handles: list = []
        if self.functional:
            self.handles = self.tracker.hooks(lambda m, name, out: self._seen(name, out))
        else:
            modules = {}
            for canonical in self.targets:
                path = canonical.split("#")[0]
                modules[self.net if path == OUTPUT else self.net.get_submodule(path)] = True
            for module in modules:
                if isinstance(module, torch.jit.ScriptModule):
                    continue  # only the TorchScript root ('output') can be targeted; read from the return value
                self.handles.append(module.register_forward_hook(self._module_hook))

    def _module_hook(self, module, args, out):
        if self.active:
            self._seen(self.tracker.module_name(module), out)

    def _seen(self, name: str, out) -> None:
        if not self.active or name not in self.targets:
            return
        t = first_tensor(out)
        done = len(self.store) + 1 == len(self.targets)
        # Later in-place ops (ReLU(inplace=True)) would overwrite a kept tensor: clone unless we stop here.
        self.store[name] = t if done else t.clone()
        if done:
            raise Stop

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = x.to(device_of(self.net))  # inputs follow the network (a no-op when already there)
        self.store = {}
        self.tracker.reset()
        self.active = True
        try:
            if self.functional:
                with FunctionalMode(self.tracker, lambda name, op, t: self._seen(name, t), None):
                    out = self.net(x)
            else:
                out = self.net(x)
            if OUTPUT in self.targets and OUTPUT not in self.store:  # TorchScript root
                self.store[OUTPUT] = first_tensor(out)
        except Stop:
            pass
        finally:
            self.active = False
        missing = [n for n in self.targets if n not in self.store]
        if missing:
            raise CnnscopeError(f"layers not reached in this forward: {', '.join(missing)}")
        found = {requested: _gradient_in_its_layout(self.store[canonical])
                 for canonical, requested in self.targets.items()}
        self.store = {}  # a capture kept between calls (a loop's, a Truncated's) holds no activations
        return found

    def close(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _gradient_in_its_layout(t: torch.Tensor) -> torch.Tensor:
    """A channels-last activation (the zoo's networks) gets its gradient channels-last too: an objective's
    gradient (a slice's, a product's) is laid out contiguously, and the network's backward then takes slow
    mixed-layout paths (BatchNorm and activation backward 3-6x slower at the stem)."""
    if (t.requires_grad and t.dim() == 4 and not t.is_contiguous()
            and t.is_contiguous(memory_format=torch.channels_last)):
        t.register_hook(lambda g: g.contiguous(memory_format=torch.channels_last))
    return t


def pictures_per_pass(model, most: int = 16) -> int:
    """How many pictures to send through `model` at once in a pass over many: on the CPU as many (up to `most`)
    as keep its largest activation within PASS_BYTES — Lite0 at 224 px (a 4.8 MB activation per picture) passes
    4 at a time, and a forward then takes 0.5x, a forward and backward 0.7x, the time per picture of passes of 16
    (one thread) — elsewhere `most`."""
    net, _, _ = unwrap(model)
    if device_of(net).type != "cpu":
        return most
    param = next(iter(net.parameters()), None)
    size = param.element_size() if param is not None else 4
    largest = max((size * math.prod(row.shape) for row in list_layers(model)), default=0)
    return max(1, min(most, PASS_BYTES // max(largest, 1)))


def capture(model, x: torch.Tensor, layers: Sequence[str] | str) -> dict[str, torch.Tensor]:
    """Activations of `layers` for a preprocessed batch (the forward stops at the deepest one).

    Parameters
    ----------
    model : Model or nn.Module
    x : Tensor
        [N,3,S,S] preprocessed (``model.prepare``).
    layers : str or sequence of str
        Layer names or aliases (`list_layers`).

    Returns
    -------
    dict
        Layer name -> activation [N, ...] (gradients flow through it).
    """
    with Capture(model, layers) as phi:
        return phi(x)


class Truncated(nn.Module):
    """The model cut after one layer: ``Truncated(model, "conv3")(x)`` is that layer's activation."""

    def __init__(self, model, layer: str):
        super().__init__()
        self._capture = Capture(model, [layer])
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._capture(x)[self.layer]
