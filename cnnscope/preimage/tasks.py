"""The pre-image tasks — inversion, activation maximisation, caricature, accentuation: the same solver with
different objective terms — with how their settings resolve (`settings_for`), M&V's prior
and jitter, and the task metrics (reconstruction error, ambiguity, caricature gain)."""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import torch

from ..errors import CnnscopeError
from ..images import load_image
from ..layers import capture, get_layer
from ..models import Model, Preprocess
from ..targets import Target
from .objectives import (
    ALPHA,
    BETA,
    TV,
    AlphaNorm,
    B,
    Caricature,
    Diversity,
    InnerProduct,
    Objective,
    Representation,
    V,
)
from .param import Parametrization
from .recipes import Recipe, get_recipe
from .solver import ImageSpace, PreimageResult, SolverConfig, resized_for_network, solve

# Natural images used to put activation maximisation on the scale of real activations.
REFERENCE_IMAGES = ("sample:chelsea", "sample:coffee", "sample:astronaut", "sample:rocket")


@dataclass
class Prior:
    """lambda_beta R_TV^beta + lambda_alpha R_alpha (M&V IJCV'16 normalisation; weights multiply them)."""

    beta: float = BETA
    alpha: float = ALPHA
    tv_weight: float = 1.0
    alpha_weight: float = 1.0

    @staticmethod
    def none() -> Prior:
        return Prior(tv_weight=0.0, alpha_weight=0.0)

    def objective(self, scale: float = 1.0) -> Objective | int:
        """scale = model input size / optimised size: a smaller image has proportionally larger pixel
        differences for the same content, so the typical variation V grows with it."""
        out: Objective | int = 0
        if self.tv_weight:
            out = out + self.tv_weight * TV(self.beta, v=V * scale)
        if self.alpha_weight:
            out = out + self.alpha_weight * AlphaNorm(self.alpha)
        return out

    def to_dict(self) -> dict:
        return asdict(self)


def sized_preprocess(model: Model, size: int | None) -> Preprocess:
    """The model's preprocessing at another input size (resize scaled in proportion)."""
    pp = model.preprocess
    if size is None or size == pp.input_size:
        return pp
    resize = None if pp.resize is None else max(size, round(pp.resize * size / pp.input_size))
    return replace(pp, input_size=size, resize=resize)


def auto_jitter(model: Model, layers: Sequence[str], size: int) -> int:
    """Jitter of about 1/8 of the coarsest stride (none for fine layers): keeps deep pre-images natural
    without blurring the exact spatial match that early layers can achieve."""
    strides = []
    for name in layers:
        info = get_layer(model, name)
        strides.append(32 if info.stride is None else info.stride[0])
    return int(round(max(strides) / 8)) if strides and max(strides) >= 16 else 0


def noise(n: int, size: int, seed: int, scale: float = 0.1 * B) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=gen) * scale


def _target_batch(model: Model, image: torch.Tensor, size: int) -> torch.Tensor:
    return sized_preprocess(model, size)(image)


ALIGNED_TASKS = ("invert", "caricature")
# tasks that start from or match a picture keep its full resolution (a coarser picture would lose its detail)
PICTURE_TASKS = (*ALIGNED_TASKS, "accentuate")


@dataclass
class Setup:
    """What a preset hands the solver: the recipe, its solver settings, the parametrisation and the prior."""

    recipe: Recipe
    config: SolverConfig
    param: Parametrization
    prior: Prior


GRAM_PRIORS = {  # texture as Gatys (no prior); style with a light TV term against high-frequency noise
    "texture": lambda: Prior.none(),
    "style": lambda: Prior(tv_weight=0.1, alpha_weight=0),
}


def settings_for(task: str, recipe: str | Recipe | None = None, overrides: dict | None = None, *, seed: int = 0,
                 box: bool = True, jitter: int | None = None, prior: Prior | None = None,
                 config: SolverConfig | None = None, auto: int | None = None, handcrafted: bool = False
                 ) -> tuple[Recipe, SolverConfig, Prior | None]:
    """The one path from a task, a recipe and the user's options to (recipe, solver settings, prior).

    Parameters
    ----------
    task : str
        invert, maximize, caricature, accentuate, atlas, texture or style (its default recipe: `DEFAULT_RECIPE`).
    recipe : str or Recipe, optional
        A recipe or its name; None = the task's default.
    overrides : dict, optional
        The options the user set (param, iters, lr, optimizer, transforms); None values keep the recipe's.
    seed, box, jitter, prior
        As the user gave them (None: unset).
    config : SolverConfig, optional
        Solver settings made earlier (by a door, from the same recipe): only what they leave unset is filled.
    auto : int, optional
        M&V's jitter for this task and layer; given by whoever knows the layer (planners, the solver's tasks),
        which also fills the prior from the recipe. Texture and style need neither.
    handcrafted : bool
        The model is a hand-crafted representation (HOG, DSIFT): its default recipe is M&V's.

    Returns
    -------
    (Recipe, SolverConfig, Prior or None)
        The prior stays None only when neither `prior`, a texture/style task nor `auto` decides it.
    """
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    r = get_recipe(recipe, task, handcrafted)
    r = replace(r, **{"iters": r.iters_for(task), **given})
    # an inversion's or caricature's target is a feature map at fixed positions: transforms that move the picture
    # (pad, crop, scale, rotate) would misalign it, so those tasks keep M&V's small circular shift unless the
    # user gives transforms
    if task in ALIGNED_TASKS and "transforms" not in given:
        r = replace(r, transforms="auto")
    if task in PICTURE_TASKS and "resolution" not in given:
        r = replace(r, resolution=1.0)
    cfg = config or r.config(seed=seed, box=box, jitter=jitter)
    if cfg.transforms is None and r.transforms not in ("auto", "none"):
        cfg = replace(cfg, transforms=r.transforms)
    if cfg.jitter is None and (task in GRAM_PRIORS or auto is not None):
        cfg = replace(cfg, jitter=auto if r.transforms == "auto" and auto is not None else 0)
    if prior is None and task in GRAM_PRIORS:
        prior = GRAM_PRIORS[task]()
    elif prior is None and auto is not None:
        prior = Prior() if r.prior else Prior.none()
    return r, cfg, prior


def _setup(model: Model, task: str, recipe: str | Recipe | None, config: SolverConfig | None,
           prior: Prior | None, n: int, size: int, auto: int) -> Setup:
    r, cfg, prior = settings_for(task, recipe, config=config, prior=prior, auto=auto,
                                 handcrafted=model.profile.handcrafted)
    picture = max(8, round(size * r.resolution))
    if picture != size:
        cfg = replace(cfg, net_size=size)
    param = r.make_param(n, picture, seed=cfg.seed, mean=tuple(model.preprocess.mean), config=cfg)
    return Setup(r, cfg, param, prior)


# --------------------------------------------------------------------------------------------- inversion
INVERT_DATA_WEIGHT = 20.0


def invert(model: Model, image: torch.Tensor | str, layers: Sequence[str] | str, *, size: int | None = None,
           prior: Prior | None = None, data_weight: float = INVERT_DATA_WEIGHT, restarts: int = 1,
           window: tuple[int, int, int, int] | None = None, config: SolverConfig | None = None,
           recipe: str | Recipe | None = None) -> PreimageResult:
    """Reconstruct `image` from its representation at `layers`, starting from noise (Mahendran & Vedaldi).

    Parameters
    ----------
    model : Model
    image : Tensor or str
        [3,H,W] in [0,1], a path or ``sample:NAME``.
    layers : str or sequence of str
        One layer or several (their terms are summed).
    size : int, optional
        Picture size in px (default the model's input size).
    prior : Prior, optional
        TV and alpha-norm weights (default: the recipe's).
    data_weight : float
        C, the weight of ||Phi(x) - Phi0||^2 / ||Phi0||^2.
    restarts : int
        Independent pictures of the same code from different noise, solved as one batch.
    window : (y0, y1, x0, x1), optional
        Reconstruct only these feature cells.
    config : SolverConfig, optional
        Overrides the recipe's solver settings.
    recipe : str or Recipe, optional
        Parametrisation, transforms and optimiser (default "mv").

    Returns
    -------
    PreimageResult
        ``restarts`` pictures; `reconstruction_error` gives their normalised errors.
    """
    layers = [layers] if isinstance(layers, str) else list(layers)
    img = load_image(image) if isinstance(image, str) else image
    size = size or model.input_size
    target_in = _target_batch(model, img, size)
    with torch.no_grad():
        phi0 = capture(model, target_in, layers)
    setup = _setup(model, "invert", recipe, config, prior, restarts, size, auto_jitter(model, layers, size))
    objective = sum((data_weight * Representation(layer, phi0[layer], window) for layer in layers), 0)
    objective = objective + setup.prior.objective(model.input_size / size)
    result = solve(model, objective, setup.param, setup.config)
    result.notes += silent_codes(phi0, "reconstruct")
    return result


def silent_codes(codes: dict[str, torch.Tensor], task: str) -> list[str]:
    """Notes for layers whose code of the image is all zero (every unit silent): there is nothing to `task`."""
    return [f"{layer}: the image's code is all zero (every unit silent), so there is nothing to {task}; the "
            "error says nothing about the layer" for layer, code in codes.items() if not bool(code.any())]


def reconstruction_error(result: PreimageResult, data_weight: float = INVERT_DATA_WEIGHT) -> list[float]:
    """||Phi(x*) - Phi0||^2 / ||Phi0||^2 per image (summed over layers when several were inverted)."""
    return [sum(vals) / data_weight for vals in zip(*result.values(Representation))]


def ambiguity(result: PreimageResult, original: torch.Tensor | None = None) -> dict:
    """How different are pre-images of the same code? Mutual RMS pixel distance (in [0,1] units)."""
    imgs = result.images.flatten(1)
    pairs = [float((imgs[i] - imgs[j]).pow(2).mean().sqrt())
             for i, j in itertools.combinations(range(len(imgs)), 2)]
    out = {"mutual_rms_distance": pairs,
           "mean_mutual_rms_distance": sum(pairs) / len(pairs) if pairs else 0.0}
    if original is not None:
        ref = original.flatten(1)
        dists = [float((im - ref[0]).pow(2).mean().sqrt()) for im in imgs]
        out["rms_distance_to_original"] = dists
    return out


# ------------------------------------------------------------------------------- activation maximisation
MAXIMIZE_DATA_WEIGHT = 20.0


def _directions(shape: tuple[int, ...], targets: Sequence[Target]) -> torch.Tensor:
    return torch.stack([t.weights(shape) for t in targets])


_REFERENCE: dict = {}  # one entry: (net weakref, layer, size) -> reference activations (reused by every chunk)


def _reference_features(model: Model, layer: str, size: int) -> torch.Tensor:
    key = next(iter(_REFERENCE), None)
    if key is None or key[0]() is not model.net or key[1:] != (layer, size):
        key = (weakref.ref(model.net), layer, size)
        pp = sized_preprocess(model, size)
        batch = torch.cat([pp(load_image(src)) for src in REFERENCE_IMAGES])
        with torch.no_grad():
            _REFERENCE.clear()  # a run maximises one layer at a time
            _REFERENCE[key] = capture(model, batch, [layer])[layer].flatten(1)
    return _REFERENCE[key]


def reference_scale(model: Model, layer: str, directions: torch.Tensor, size: int) -> torch.Tensor:
    """Per direction, the largest response over a few natural images (floored), so that the data term
    is O(1) when the pre-image excites the unit as much as a real image does."""
    feats = _reference_features(model, layer, size)
    responses = feats @ directions.flatten(1).T  # [images, directions]
    z = responses.max(0).values
    floor = 0.1 * z.clamp_min(0).mean().clamp_min(1e-3)
    return z.clamp_min(floor)


def layer_shape(model: Model, layer: str, size: int) -> tuple[int, ...]:
    """The activation shape (without batch) of `layer` for a size x size input."""
    shape = get_layer(model, layer).shape if size == model.input_size else None
    if shape is None:
        with torch.no_grad():
            shape = tuple(capture(model, torch.zeros(1, 3, size, size), [layer])[layer].shape[1:])
    return tuple(shape)


def _activation_objective(model: Model, layer: str, targets: Sequence[Target], size: int, data_weight: float,
                          per_target: int = 1) -> tuple[Objective, torch.Tensor, torch.Tensor]:
    """data_weight * -<w, Phi(x)> / z for each target (repeated `per_target` times) -> (objective, w, z)."""
    directions = _directions(layer_shape(model, layer, size), targets)
    z = reference_scale(model, layer, directions, size)
    directions, z = directions.repeat_interleave(per_target, 0), z.repeat_interleave(per_target, 0)
    term = InnerProduct(layer, directions, scale=z.view(-1), label=f"activation[{layer}]")
    return data_weight * term, directions, z


def default_diversity_layer(model: Model, layer: str, size: int) -> str:
    """The maximised layer when it is a feature map, else the model's content layer (a mid-depth one)."""
    if len(layer_shape(model, layer, size)) == 3:
        return layer
    if model.profile.content is None:
        raise CnnscopeError(f"{layer} is not a feature map: give a diversity layer (--diversity-layer NAME)")
    return model.profile.content


def maximize(model: Model, layer: str, targets: Sequence[Target], *, size: int | None = None,
             prior: Prior | None = None, data_weight: float = MAXIMIZE_DATA_WEIGHT,
             config: SolverConfig | None = None, recipe: str | Recipe | None = None, batch: int = 1,
             diversity: float = 0.0, diversity_layer: str | None = None) -> tuple[PreimageResult, dict]:
    """Images that maximally excite `targets` at `layer` (activation maximisation).

    Parameters
    ----------
    model : Model
    layer : str
    targets : sequence of Target
        Neurons, channels, class logits or directions of `layer` (their ``weights(shape)``).
    size, prior, data_weight, config, recipe
        As for `invert` (default recipe "lucid"). The data term is -<w, Phi(x)> / Z, Z the unit's largest
        response on four natural images.
    batch : int
        Pictures per target, all solved as one batch: target i's are rows i*batch ... i*batch + batch - 1.
    diversity : float
        > 0 adds Lucid's diversity term (relative to the data term) between one target's pictures.
    diversity_layer : str, optional
        Where diversity is measured (default `layer` if it is a feature map, else the content layer).

    Returns
    -------
    result : PreimageResult
    info : dict
        ``reference_scale`` Z, ``start_activation`` and ``final_activation`` per picture.
    """
    size = size or model.input_size
    objective, directions, z = _activation_objective(model, layer, targets, size, data_weight, batch)
    setup = _setup(model, "maximize", recipe, config, prior, len(directions), size, auto=4)
    objective = objective + setup.prior.objective(model.input_size / size)
    if diversity:
        if batch < 2:
            raise CnnscopeError("diversity needs at least 2 images per unit (batch >= 2)")
        where = diversity_layer or default_diversity_layer(model, layer, size)
        objective = objective + diversity * data_weight * Diversity(where, batch)
    with torch.no_grad():
        start = ImageSpace(model).from_pixels(resized_for_network(setup.param(), setup.config.net_size))
    result = solve(model, objective, setup.param, setup.config)
    info = {
        "reference_scale": [float(v) for v in z],
        "start_activation": response(model, layer, directions, start),
        "final_activation": response(model, layer, directions, result.x),
    }
    return result, info


@torch.no_grad()
def response(model: Model, layer: str, directions: torch.Tensor, x: torch.Tensor) -> list[float]:
    """<w_i, Phi(x_i)> for images in centred 0-255 units."""
    feats = capture(model, ImageSpace(model).to_net(x), [layer])[layer].flatten(1)
    return [float(v) for v in (feats * directions.flatten(1)).sum(1)]


# ----------------------------------------------------------------------------------------- caricatures
CARICATURE_DATA_WEIGHT = 20.0


def caricature(model: Model, image: torch.Tensor | str, layer: str, *, size: int | None = None,
               prior: Prior | None = None, data_weight: float = CARICATURE_DATA_WEIGHT,
               cosine_power: float = 0.0, config: SolverConfig | None = None,
               recipe: str | Recipe | None = None) -> PreimageResult:
    """Start at x0 and emphasise what `layer` sees in it: min -<Phi(x0), Phi(x)>/||Phi(x0)||^2 + priors."""
    img = load_image(image) if isinstance(image, str) else image
    size = size or model.input_size
    x0_in = _target_batch(model, img, size)
    with torch.no_grad():
        phi0 = capture(model, x0_in, [layer])[layer]
    setup = _setup(model, "caricature", recipe, config, prior, 1, size, auto_jitter(model, [layer], size))
    objective = data_weight * Caricature(layer, phi0, cosine_power) + setup.prior.objective(model.input_size / size)
    setup.param.encode(sized_preprocess(model, size).geometry(img))
    return solve(model, objective, setup.param, setup.config)


def caricature_gain(result: PreimageResult, data_weight: float = CARICATURE_DATA_WEIGHT) -> list[float]:
    """<Phi(x0), Phi(x)> / ||Phi(x0)||^2 per picture: 1 at the start image, larger when the caricature works."""
    return [-v / data_weight for v in result.values(Caricature)[0]]


# ------------------------------------------------------------------------------------ feature accentuation
ACCENTUATE_ANCHOR_WEIGHT = 1.0


def default_anchor_layer(model: Model, layer: str) -> str:
    """Two rows below the accentuated layer in the model's depth row (at least its first layer)."""
    depth = list(model.profile.depth) if not model.profile.handcrafted else []
    if layer in depth:
        return depth[max(0, depth.index(layer) - 2)]
    if depth:
        return depth[min(2, len(depth) - 1)]
    raise CnnscopeError("give the layer to stay close to the image in (--anchor-layer NAME)")


def accentuate(model: Model, image: torch.Tensor | str, layer: str, targets: Sequence[Target], *,
               anchor_layer: str | None = None, anchor_weight: float = ACCENTUATE_ANCHOR_WEIGHT,
               size: int | None = None, prior: Prior | None = None, data_weight: float = MAXIMIZE_DATA_WEIGHT,
               config: SolverConfig | None = None, recipe: str | Recipe | None = None) -> tuple[PreimageResult, dict]:
    """Feature accentuation (Hamblin et al. 2024): start at `image` and push each target up, while a
    Representation term keeps the image's code at the lower `anchor_layer` (weight `anchor_weight` relative to
    the data term). The modern form of caricatures: what in *this* image would the unit respond to more?"""
    img = load_image(image) if isinstance(image, str) else image
    size = size or model.input_size
    anchor = anchor_layer or default_anchor_layer(model, layer)
    objective, directions, z = _activation_objective(model, layer, targets, size, data_weight)
    x0 = sized_preprocess(model, size).geometry(img)
    with torch.no_grad():
        phi0 = capture(model, ImageSpace(model).pixels_to_net(x0), [anchor])[anchor]
    setup = _setup(model, "accentuate", recipe, config, prior, len(targets), size, auto_jitter(model, [layer], size))
    objective = (objective + anchor_weight * data_weight * Representation(anchor, phi0)
                 + setup.prior.objective(model.input_size / size))
    setup.param.encode(x0)
    start = ImageSpace(model).from_pixels(x0).expand(len(targets), -1, -1, -1)
    result = solve(model, objective, setup.param, setup.config)
    info = {"anchor_layer": anchor, "reference_scale": [float(v) for v in z],
            "start_activation": response(model, layer, directions, start),
            "final_activation": response(model, layer, directions, result.x)}
    return result, info
