"""SaliNet, DeConvNet and DeSaliNet as presets of the rule map, with targets and batched maps."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..device import of as device_of
from ..errors import CnnscopeError, unknown
from ..layers import Capture, get_layer
from ..targets import Target
from .coverage import Coverage, graph_coverage
from .network import BackpropRules
from .rules import DeconvNet, Gradient, Guided, Rule, Switches


@dataclass(frozen=True)
class Method:
    """A backprop network: the backward rules of the rectifiers and max-pools, and what follows from them."""

    name: str
    rectifier: Rule
    pool: Rule
    cite: str

    @property
    def gradient(self) -> bool:
        """Whether its rectifier rule is autograd's own derivative: the map is the true gradient wherever the
        pool rule is too (a method that changes no rule where none applies would be the gradient renamed)."""
        return self.rectifier.exact


METHODS = {m.name: m for m in (  # composites as data: the registry is the only place that names them
    Method("salinet", Gradient(), Switches(), "Simonyan et al. 2014: the true gradient"),
    Method("deconvnet", DeconvNet(), Switches(), "Zeiler & Fergus 2014"),
    Method("desalinet", Guided(), Switches(), "Mahendran & Vedaldi 2016 (= guided backprop)"),
)}


def method_rules(method: str | Method, pool: str | None = None, layers: dict | None = None) -> BackpropRules:
    if isinstance(method, str):
        if method not in METHODS:
            raise unknown("method", method, METHODS)
        method = METHODS[method]
    return BackpropRules(rectifier=method.rectifier, pool=pool or method.pool, layers=layers or {})


def _seed_signal(target: Target, feat: torch.Tensor) -> torch.Tensor:
    """The backward signal placed at the target layer for one image's activation `feat` (no batch dim)."""
    if target.kind == "features":
        return feat.detach().clone()
    return target.weights(tuple(feat.shape)).to(feat)


def backprop_maps(model, images: torch.Tensor, targets: Sequence[Target], method: str = "desalinet",
                  pool: str | None = None) -> torch.Tensor:
    """Backpropagation maps of SaliNet, DeConvNet or DeSaliNet (one forward and one backward in all).

    Parameters
    ----------
    model : Model or nn.Module
    images : Tensor
        [N,3,H,W] preprocessed (``model.prepare``).
    targets : sequence of Target
        T targets, all at one layer (``Target(..., layer=NAME)``); "features" starts from the layer's own
        activation.
    method : str
        "salinet" (gradient), "deconvnet" or "desalinet" (`METHODS`: the rectifier's and max-pool's rules).
    pool : str, optional
        Max-pool rule overriding the method's ("switches", "centre", "uniform", "passthrough").

    Returns
    -------
    Tensor
        [N, T, 3, H, W] on the CPU: the signal reaching the input (forward truncated at the target layer;
        computed on the model's device).
    """
    layers = {t.layer for t in targets}
    if None in layers:
        raise CnnscopeError("backprop targets need their layer (Target(..., layer=NAME))")
    if len(layers) != 1:
        raise CnnscopeError("all targets of one call must be at the same layer")
    layer = layers.pop()
    get_layer(model, layer)  # unknown names fail here, with suggestions
    n, t = images.shape[0], len(targets)
    x = images.detach().to(device_of(model)).repeat_interleave(t, dim=0).requires_grad_(True)  # [n*t]: image-major
    rules = method_rules(method, pool)
    label = getattr(model, "name", type(model).__name__)
    if not rules.rectifier.exact and (getattr(model, "torchscript", False)
                                      or isinstance(getattr(model, "net", model), torch.jit.ScriptModule)):
        # the rules replace rectifiers' backward as Python sees them; a TorchScript graph runs where they cannot
        # reach, so the map would silently be the plain gradient
        raise CnnscopeError(f"{method} cannot apply to the TorchScript model {label}: its "
                            "rectifiers run inside the compiled graph, out of reach of the backward rules (use "
                            "salinet, or give the network as Python code: file.py:factory with --weights)")
    stage = "forward pass"
    try:
        with torch.enable_grad(), rules.applied(model), Capture(model, [layer]) as phi:
            with getattr(model, "autocast", contextlib.nullcontext)():
                feat = phi(x)[layer]
            if not rules.rectifier.exact:
                refuse_blind(graph_coverage(feat, rules.rectifier), method, label, layer, rules.pool.exact)
            seeds = torch.stack([_seed_signal(targets[i % t], feat[i]) for i in range(n * t)])
            stage = "backward pass"
            if not feat.requires_grad:
                raise CnnscopeError(f"{method} on {label}: {layer} does not depend on the input through autograd "
                                    "(the forward detaches it or runs without gradients): there is no backward "
                                    "pass to take")
            grad, = torch.autograd.grad(feat, x, seeds, allow_unused=True)
    except CnnscopeError:
        raise
    except Exception as err:  # the user's network failed under autograd: one line, whose and where
        first = str(err).splitlines()[0][:160] if str(err) else ""
        raise CnnscopeError(f"{method} on {label} at {layer}: the {stage} failed ({type(err).__name__}: "
                            f"{first})") from None
    if grad is None:
        grad = torch.zeros_like(x)
    return grad.view(n, t, *images.shape[1:]).cpu()


def refuse_blind(cov: Coverage, method: str, label: str, layer: str, pool_exact: bool = True) -> None:
    """DeConvNet/DeSaliNet where no rule reaches any nonlinearity would be the gradient under another name."""
    if cov.blind and (pool_exact or not cov.max_pools):
        raise CnnscopeError(f"{method} cannot apply to {label} at {layer}: no backward rule reaches its "
                            f"nonlinearities ({cov.summary()}), so the map would be the plain gradient (use "
                            "salinet, or give the activations as torch ops or modules)")


def coverage_notes(cov: Coverage, label: str, layer: str, methods: Sequence[str], pool_rule: str | None) -> list[str]:
    """What a reader of DeConvNet/DeSaliNet maps must know: nonlinearities the rules miss, no max-pool to switch."""
    switched = [m for m in methods if not METHODS[m].gradient]
    if not switched:
        return []
    both = " and ".join(switched)
    s = "" if len(switched) > 1 else "s"  # (verb agreement)
    notes = []
    if cov.uncovered:
        notes.append(f"{label} below {layer}: {cov.summary()}; where not covered, {both} keep{s} the "
                     "true derivative")
    if not cov.covered and not cov.uncovered and not (cov.max_pools and pool_rule not in (None, "switches")):
        notes.append(f"{label} has no nonlinearity before {layer}: {both} equal{s} SaliNet there")
    elif pool_rule in (None, "switches") and not cov.max_pools:
        notes.append(f"{label} has no max-pool before {layer}: {both} differ{s} from SaliNet only in the "
                     "activations' backward rule (no switches to use)")
    return notes


def render(maps: torch.Tensor, mode: str = "signed") -> torch.Tensor:
    """[..., 3, H, W] maps -> displayable [..., 3, H, W] in [0, 1], each map scaled on its own.

    signed: grey = 0, colours show the signed RGB reconstruction (how DeConvNet maps are usually shown);
    abs: |g| summed over colour; max: max over colour of |g| (Simonyan's saliency), both as grey levels.
    """
    flat = maps.flatten(-3).abs()
    if mode == "signed":  # scale by a high quantile, not the max: a few extreme pixels would wash out the rest
        scale = _quantile(flat)[..., None, None, None]
        return (maps / (2 * scale) + 0.5).clamp(0, 1)
    if mode in ("abs", "max"):
        m = maps.abs().sum(-3, keepdim=True) if mode == "abs" else maps.abs().amax(-3, keepdim=True)
        scale = _quantile(m.flatten(-3))[..., None, None, None]
        return (m / scale).clamp(0, 1).expand_as(maps).contiguous()
    raise CnnscopeError(f"unknown render mode '{mode}' (signed, abs, max)")


def _quantile(flat: torch.Tensor, q: float = 0.995) -> torch.Tensor:
    k = max(1, int(round(q * flat.shape[-1])))
    return flat.kthvalue(k, dim=-1).values.clamp_min(1e-12)
