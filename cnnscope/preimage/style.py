"""Texture synthesis and style transfer by moment matching (Gatys et al. 2015): the same solver, with
Gram-matrix terms for style and the inversion term for content.

Gram matrices are averaged over positions (G = F F^T / HW), so a texture can be synthesised at any size,
larger than its source included. `soften` applies a softmax to a layer's activations before the Gram
matrix: non-VGG networks have peaky activations that dominate the statistics (Wang et al. CVPR'21, SWAG).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import CnnscopeError
from ..images import load_image
from ..layers import capture, get_layer, list_layers
from ..models import Model
from .objectives import Context, Representation, Term, gram
from .param import make_param
from .solver import ImageSpace, PreimageResult, SolverConfig, solve
from .tasks import Prior, noise, sized_preprocess


def soften(features: torch.Tensor, temperature: float) -> torch.Tensor:
    """Softmax over all activations of the layer (per image), scaled back to unit mean: flattens the
    few huge activations that otherwise dominate the Gram matrix."""
    n = features.shape[0]
    flat = features.reshape(n, -1)
    return (F.softmax(flat / temperature, dim=1) * flat.shape[1]).view_as(features)


class GramTerm(Term):
    """||G(Phi_L(x)) - G0||_F^2 / ||G0||_F^2 (zero at the style image; 1 for features with no correlation)."""

    def __init__(self, layer: str, target: torch.Tensor, temperature: float | None = None):
        super().__init__()
        self.layer, self.layers, self.temperature = layer, (layer,), temperature
        self.label = f"gram[{layer}]"
        self.target = target.detach()
        self.norm = (self.target ** 2).flatten(1).sum(1).clamp_min(1e-12)

    def features_gram(self, feats: torch.Tensor) -> torch.Tensor:
        if self.temperature:
            feats = soften(feats, self.temperature)
        return gram(feats)

    def value(self, ctx: Context) -> torch.Tensor:
        g = self.features_gram(ctx.features[self.layer])
        return ((g - self.target) ** 2).flatten(1).sum(1) / self.norm


# elementwise nonlinearities, as module classes or functions spell them (ReLU6, GELUActivation, F.silu,
# MemoryEfficientSwish, ...); plain ELU by its whole name, since "elu" is also inside e.g. PixelUnshuffle
ACTIVATIONS = ("relu", "gelu", "silu", "swish", "mish", "selu", "celu")
WHOLE_NAMES = ("elu", "f.elu")


def default_style_layers(model: Model) -> list[str]:
    """The model's own Gram layers; else, as Gatys et al. chose relu1_1 ... relu5_1 of VGG, the first
    activation map at each resolution (up to five, input to output); else the first maps of its stage row."""
    if model.profile.style:
        return list(model.profile.style)
    firsts: dict = {}
    for r in _activation_maps(model):
        firsts.setdefault(r.stride, r.name)
    return list(firsts.values())[:5] or _stage_maps(model)[:5]


def default_content_layer(model: Model) -> str:
    """The model's own content layer; else the middle activation map (or stage map)."""
    if model.profile.content:
        return model.profile.content
    layers = [r.name for r in _activation_maps(model)] or _stage_maps(model)
    return layers[len(layers) // 2]


def _activation_maps(model: Model) -> list:
    """Rows of the layer table out of an elementwise nonlinearity with a channels-first map of local receptive
    field (a Gram matrix over its channels), input to output; not a squeeze-excitation's pooled vector, not
    ConvNeXt's channels-last inner maps."""
    return [r for r in list_layers(model) if r.rf is not None and len(r.shape) == 3 and not r.geometry.channels_last
            and (any(a in r.kind.lower() for a in ACTIVATIONS) or r.kind.lower() in WHOLE_NAMES)]


def _stage_maps(model: Model) -> list[str]:
    rows = {n: get_layer(model, n) for n in model.profile.conv_layers}
    maps = [n for n, r in rows.items() if r.has_grid and not r.geometry.channels_last]
    if not maps:
        raise CnnscopeError(f"{model.name} has no convolutional feature maps to take Gram matrices of: give "
                            "--style-layers")
    return maps


@dataclass
class StyleTarget:
    layers: list[str]
    grams: dict[str, torch.Tensor]


def style_target(model: Model, image: torch.Tensor, layers: Sequence[str], size: int | None = None,
                 temperature: float | None = None) -> StyleTarget:
    """Gram matrices of the whole style image (resized so its shorter side is `size`, not cropped)."""
    size = size or model.input_size
    x01 = image.unsqueeze(0) if image.dim() == 3 else image
    h, w = x01.shape[-2:]
    scale = size / min(h, w)
    x01 = F.interpolate(x01, size=(max(8, round(h * scale)), max(8, round(w * scale))), mode="bilinear",
                        antialias=True, align_corners=False)
    for name in layers:
        get_layer(model, name)  # unknown names fail early, with suggestions
    with torch.no_grad():
        feats = capture(model, model.preprocess.normalize(x01), list(layers))
    grams = {}
    for name in layers:
        f = feats[name]
        if f.dim() != 4:
            raise CnnscopeError(f"style layer {name} is not convolutional (shape {tuple(f.shape[1:])})")
        grams[name] = gram(soften(f, temperature) if temperature else f)
    return StyleTarget(list(layers), grams)


def style_objective(target: StyleTarget, weights: Sequence[float] | None = None,
                    temperature: float | None = None):
    weights = list(weights) if weights else [1.0 / len(target.layers)] * len(target.layers)
    return sum((w * GramTerm(name, target.grams[name], temperature) for w, name in zip(weights, target.layers)), 0)


def gram_losses(result: PreimageResult) -> dict[str, float]:
    """The (weighted) Gram terms' final values, by label, for the first picture."""
    return {t.label: v[0] for t, v in result.by_term.items() if isinstance(t, GramTerm)}


def texture(model: Model, style: torch.Tensor | str, *, size: int | None = None, layers: Sequence[str] | None = None,
            temperature: float | None = None, prior: Prior | None = None, scales: int = 1,
            config: SolverConfig | None = None, style_size: int | None = None,
            param: str = "pixel") -> tuple[PreimageResult, dict]:
    """Synthesise a texture with the style image's Gram statistics, from noise, at any size.
    scales > 1 optimises coarse to fine (each scale twice the previous, the last at `size`).
    `param` is the image parametrisation (see `param/`; each scale starts from the previous one's picture)."""
    img = load_image(style) if isinstance(style, str) else style
    size = size or model.input_size
    layers = list(layers or default_style_layers(model))
    target = style_target(model, img, layers, style_size, temperature)
    objective = style_objective(target, temperature=temperature)
    prior = prior or Prior.none()
    cfg = config or SolverConfig(optimizer="lbfgs", iters=150)
    sizes = [max(32, size // 2 ** k) for k in range(scales - 1, -1, -1)]
    x = noise(1, sizes[0], cfg.seed)
    before = None
    result = None
    space = ImageSpace(model)
    start = None if param == "pixel" else make_param(param, 1, sizes[0], seed=cfg.seed)
    if start is not None:
        with torch.no_grad():
            x = space.from_pixels(start())
    for s in sizes:
        if x.shape[-1] != s:
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False)
            if start is not None:
                start = make_param(param, 1, s, seed=cfg.seed)
                start.encode(space.to_pixels(x))
        obj = objective + prior.objective(model.input_size / s)
        if before is None:
            with torch.no_grad():
                ctx = Context(x, capture(model, space.to_net(x), layers))
                before = {k: float(v[0]) for k, v in objective.breakdown(ctx).items()}
        result = solve(model, obj, x if start is None else start, cfg)
        x = result.x
        if result.interrupted:  # Ctrl-C: no finer scale; the picture so far is returned, marked interrupted
            break
    info = {"layers": layers, "sizes": sizes, "gram_before": before, "gram_after": gram_losses(result),
            "temperature": temperature, "param": param}
    return result, info


def stylize(model: Model, content: torch.Tensor | str, style: torch.Tensor | str, *,
            content_layer: str | None = None, style_layers: Sequence[str] | None = None,
            style_weight: float = 10.0, content_weight: float = 1.0, init: str = "content",
            temperature: float | None = None, prior: Prior | None = None, size: int | None = None,
            config: SolverConfig | None = None) -> tuple[PreimageResult, dict]:
    """Style transfer: content_weight * inversion term at content_layer + style_weight * Gram terms."""
    c_img = load_image(content) if isinstance(content, str) else content
    s_img = load_image(style) if isinstance(style, str) else style
    size = size or model.input_size
    layers = list(style_layers or default_style_layers(model))
    content_layer = content_layer or default_content_layer(model)
    target = style_target(model, s_img, layers, size, temperature)
    pp = sized_preprocess(model, size)
    c01 = pp.geometry(c_img)
    with torch.no_grad():
        phi_c = capture(model, pp.normalize(c01), [content_layer])[content_layer]
    objective = (content_weight * Representation(content_layer, phi_c)
                 + style_weight * style_objective(target, temperature=temperature)
                 + (prior or Prior(tv_weight=0.1, alpha_weight=0.0)).objective(model.input_size / size))
    cfg = config or SolverConfig(optimizer="lbfgs", iters=150)
    space = ImageSpace(model)
    if init == "content":
        x0 = space.from_pixels(c01)
    elif init == "noise":
        x0 = noise(1, size, cfg.seed)
    else:
        raise CnnscopeError(f"--init must be content or noise, got '{init}'")
    with torch.no_grad():  # the style terms at the start, weighted as in the objective
        ctx = Context(x0, capture(model, space.to_net(x0), layers))
        before = {k: float(v[0]) for k, v in (style_weight * style_objective(target, temperature=temperature))
                  .breakdown(ctx).items()}
    result = solve(model, objective, x0, cfg)
    info = {"content_layer": content_layer, "style_layers": layers, "style_weight": style_weight,
            "content_weight": content_weight, "init": init, "temperature": temperature,
            "gram_before": before, "gram_after": gram_losses(result)}
    return result, info
