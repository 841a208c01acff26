"""The one pre-image optimiser: min_theta E(x(theta)) over a batch of images.

    x = param(theta)                 pixels in [0, 1] (param: pixel, colour, fourier, maco; see `param/`)
    E = objective(x, Phi(T(x)))      T: random robustness transforms, one draw per step (see `robustness`)

Each step costs one forward (truncated at the deepest layer the objective reads) and one backward;
everything else (parametrisation, transforms, regularisers, bookkeeping) is a few passes over the image.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from .. import memory
from ..errors import CnnscopeError
from ..layers import Capture
from ..models.folding import for_optimisation
from ..progress import steps
from .objectives import B_PLUS, Context, Objective
from .param import Parametrization, PixelParam
from .robustness import Pipeline, Shift, parse_transforms
from .window import plan_window

OPTIMIZERS = ("sgd", "adam", "lbfgs")


@dataclass
class SolverConfig:
    iters: int = 300
    optimizer: str = "sgd"  # "sgd" (momentum, M&V IJCV'16), "adam" or "lbfgs"
    lr: float = 0.05  # size of a typical first step, in the parametrisation's units (pixels: a fraction of B)
    momentum: float = 0.9
    slow_fraction: float = 0.2  # the last part of the run goes at 0.1x the learning rate
    jitter: int | None = None  # circular shift of up to this many px each step; None = the task's default
    transforms: str | None = None  # robustness transforms (see `robustness`); None = the task's default
    bound: float | None = B_PLUS  # pixel parametrisation: each pixel's norm (centred 0-255 units) stays below
    box: bool = True  # pixel parametrisation: keep pixels in [0, 1], so the saved PNG is the pre-image
    seed: int = 0
    net_size: int | None = None  # the network sees the picture resized to this (None: the picture's own size)
    receptive_window: bool = True  # steps run the network on the input window the objective's cells see (`window`)
    max_memory_gb: float | None = None  # refuse problems needing more (None: the run's budget, see `memory`)
    progress: bool = True
    desc: str = "pre-image"

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise CnnscopeError(f"unknown optimizer '{self.optimizer}' ({', '.join(OPTIMIZERS)})")
        numbers = (self.lr, self.momentum, self.slow_fraction, self.bound if self.bound is not None else 1.0)
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in numbers):
            raise CnnscopeError(f"solver: lr, momentum, slow_fraction and bound must be finite numbers, got {numbers}")
        if self.iters < 1 or not self.lr > 0 or not 0 <= self.momentum < 1 or not 0 <= self.slow_fraction <= 1:
            raise CnnscopeError("solver: iters >= 1, lr > 0, 0 <= momentum < 1 and 0 <= slow_fraction <= 1")
        if self.net_size is not None and self.net_size < 8:
            raise CnnscopeError(f"solver: net_size must be at least 8 px, got {self.net_size}")
        if self.jitter is not None and self.jitter < 0:
            raise CnnscopeError(f"jitter must be >= 0 pixels, got {self.jitter}")
        if self.max_memory_gb is not None and not 0 < self.max_memory_gb < float("inf"):
            raise CnnscopeError(f"the memory budget must be a positive number of GB, got {self.max_memory_gb}")

    def pipeline(self, size: int | None = None) -> Pipeline:
        """The robustness transforms for images of `size` px (presets scale with it), then the jitter."""
        shift = Pipeline((Shift(self.jitter),)) if self.jitter else Pipeline()
        return parse_transforms(self.transforms, size) + shift

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("progress", "desc", "max_memory_gb", "receptive_window"):  # they do not change the result
            d.pop(k)
        return d


PROBE = 64  # px: memory is measured on a forward at this size and scaled by area


def estimate_memory(model, layers, n: int, size: int | tuple[int, int]) -> float:
    """Bytes a step on n images of `size` px needs: what autograd saves for the backward in a forward
    truncated at `layers`, measured at PROBE px and scaled by area, doubled for the gradients in flight."""
    h, w = (size, size) if isinstance(size, int) else size
    saved = 0

    def count(t: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        saved += t.numel() * t.element_size()
        return t

    x = torch.zeros(1, 3, PROBE, PROBE, device=model.device, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(count, lambda t: t), Capture(model, list(layers)) as phi:
        phi(x)
    return 2.0 * saved * n * (h * w) / PROBE ** 2


def check_memory(model, layers, n: int, size, budget_gb: float | None = None) -> None:
    """Refuse, in one line, a problem whose estimated memory is over `budget_gb` (None: the run's budget)."""
    if not layers:
        return
    need = estimate_memory(model, layers, n, size) / 2 ** 30
    budget = memory.budget_gb() if budget_gb is None else budget_gb
    budget = min(budget, memory.device_free_gb(model.device))  # a GPU's own memory bounds it too
    if need > budget:
        hw = f"{size}x{size}" if isinstance(size, int) else "x".join(map(str, size))
        raise CnnscopeError(f"{n} image(s) of {hw} px at {', '.join(layers)} need about {need:.1f} GB, over the "
                            f"memory budget of {budget:g} GB (smaller --size / --batch, or --max-memory GB)")


def _check_finite(energy: torch.Tensor, step: int) -> None:
    if not bool(torch.isfinite(energy).all()):
        raise CnnscopeError(f"the optimisation diverged at step {step} (the objective is not a finite number): "
                            "try a smaller --lr, or a prior (--tv-weight 1)")


@dataclass
class PreimageResult:
    x: torch.Tensor  # [N,3,H,W] the images found, centred 0-255 units
    images: torch.Tensor  # [N,3,H,W] the same in [0, 1]: exactly what the network saw (before transforms)
    terms: dict[str, list[float]]  # per term, per image, evaluated on the final images without transforms
    energy: list[float]  # total objective per image
    history: list[float] = field(default_factory=list)  # mean energy per step
    iterations: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    by_term: dict = field(default_factory=dict)  # the same values keyed by the term objects themselves
    notes: list[str] = field(default_factory=list)  # what a reader must know (e.g. an all-zero code: nothing to show)

    def values(self, kind: type) -> list[list[float]]:
        """Per-image values of every term of type `kind` (e.g. Representation), in objective order."""
        return [v for t, v in self.by_term.items() if isinstance(t, kind)]

    def summary(self) -> dict:
        return {"energy": self.energy, "terms": self.terms, "iterations": self.iterations,
                "seconds": round(self.seconds, 3), "interrupted": self.interrupted}


class ImageSpace:
    """Conversions between pixels in [0, 1], centred 0-255 units (M&V's priors) and the model's input, on the
    model's device (inputs are moved there)."""

    def __init__(self, model):
        pp = model.preprocess
        self.mean = torch.tensor(pp.mean, device=model.device).view(1, 3, 1, 1)
        self.std = torch.tensor(pp.std, device=model.device).view(1, 3, 1, 1)
        self.net_scale = 1.0 / (255.0 * self.std)

    def to_net(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.mean.device) * self.net_scale  # == preprocess.normalize(x / 255 + mean)

    def pixels_to_net(self, p: torch.Tensor) -> torch.Tensor:
        return (p.to(self.mean.device) - self.mean) / self.std

    def from_pixels(self, x01: torch.Tensor) -> torch.Tensor:
        return 255.0 * (x01.to(self.mean.device) - self.mean)

    def to_pixels(self, x: torch.Tensor) -> torch.Tensor:
        return (x.to(self.mean.device) / 255.0 + self.mean).clamp(0, 1)


def pixel_start(model, init: torch.Tensor, config: SolverConfig) -> PixelParam:
    """The pixel parametrisation started at `init` ([N,3,H,W], centred 0-255 units)."""
    n, _, h, w = init.shape
    param = PixelParam(n, (h, w), mean=tuple(model.preprocess.mean), bound=config.bound, box=config.box)
    param.u.data.copy_(init)
    param.project()
    return param


class NormalisedMomentum:
    """M&V's SGD: momentum on the gradient normalised per image, so a step is ~lr units whatever the layer's
    scale, and stiff terms (TV on noise) cannot make it diverge."""

    def __init__(self, thetas: list[torch.Tensor], lr: float, cfg: SolverConfig):
        self.thetas, self.lr, self.momentum = thetas, lr, cfg.momentum
        self.velocity = [torch.zeros_like(t) for t in thetas]

    def step(self, grads: Sequence[torch.Tensor], slow: float) -> None:
        """One update in place (under no_grad); `slow` multiplies the step (0.1 in the run's slow end)."""
        for t, g, v in zip(self.thetas, grads, self.velocity):
            mean_abs = g.abs().flatten(1).mean(1).clamp_min(1e-20)
            coef = ((1 - self.momentum) * self.lr) / mean_abs.view(-1, *[1] * (g.dim() - 1))
            v.mul_(self.momentum).addcmul_(g, coef)
            t.sub_(v, alpha=slow)


class AdamSteps:
    """Adam (its step is ~lr by construction; betas 0.9, 0.999, eps 1e-8), the learning rate scaled by `slow`.

    PyTorch's fused kernel (one pass over the parameters instead of a dozen; CPU and CUDA have it), called as
    ``torch.optim.Adam(fused=True)`` calls it — the same numbers to the bit — but without the Optimizer class,
    whose first construction imports torch._dynamo: 1.2 s of every command that optimises a picture."""

    BETAS, EPS = (0.9, 0.999), 1e-8

    def __init__(self, thetas: list[torch.Tensor], lr: float, cfg: SolverConfig):
        self.thetas, self.lr = thetas, lr
        kinds = {(t.device, t.dtype) for t in thetas}
        self.fused = hasattr(torch, "_fused_adam_") and len(kinds) == 1 and thetas[0].device.type in ("cpu", "cuda")
        if self.fused:  # the state torch.optim.Adam(fused=True) keeps: moments, and a float32 step on the device
            self.moments = [torch.zeros_like(t, memory_format=torch.preserve_format) for t in thetas]
            self.squares = [torch.zeros_like(t, memory_format=torch.preserve_format) for t in thetas]
            self.steps = [torch.zeros((), dtype=torch.float32, device=t.device) for t in thetas]
        else:
            self.adam = torch.optim.Adam(thetas, lr=lr, betas=self.BETAS, eps=self.EPS)

    @torch.no_grad()
    def step(self, grads: Sequence[torch.Tensor], slow: float) -> None:
        if not self.fused:
            for t, g in zip(self.thetas, grads):
                t.grad = g
            for group in self.adam.param_groups:
                group["lr"] = self.lr * slow
            self.adam.step()
            return
        torch._foreach_add_(self.steps, 1)
        torch._fused_adam_(self.thetas, list(grads), self.moments, self.squares, [], self.steps, amsgrad=False,
                           lr=self.lr * slow, beta1=self.BETAS[0], beta2=self.BETAS[1], weight_decay=0.0,
                           eps=self.EPS, maximize=False, grad_scale=None, found_inf=None)


FIRST_ORDER = {"sgd": NormalisedMomentum, "adam": AdamSteps}


class LbfgsSteps:
    """L-BFGS with a strong-Wolfe line search on the deterministic energy (no transforms), one iteration a step.

    No tolerance stops: normalised energies have tiny gradients in 0-255 units; `iters` decides. L-BFGS is
    scale-invariant except for its curvature test (s.y > 1e-10): the energy is rescaled (`boost`) so the first
    gradient is O(1) per variable, or every curvature pair would be dropped.
    """

    def __init__(self, thetas: list[torch.Tensor], energy: Callable, remember: Callable):
        self.opt = torch.optim.LBFGS(thetas, lr=1.0, max_iter=1, history_size=20, line_search_fn="strong_wolfe",
                                     tolerance_grad=0.0, tolerance_change=0.0)
        self.energy, self.remember = energy, remember
        g0 = torch.autograd.grad(energy()[0].sum(), thetas)
        self.boost = 1.0 / float(torch.cat([g.abs().flatten() for g in g0]).mean().clamp_min(1e-30))

    def _closure(self) -> torch.Tensor:
        self.opt.zero_grad(set_to_none=True)
        e, pixels = self.energy()
        self.remember(e, pixels)
        total = e.sum() * self.boost
        total.backward()
        return total

    def step(self) -> torch.Tensor:
        """One iteration; returns the boosted total energy."""
        return self.opt.step(self._closure)


def resized_for_network(pixels: torch.Tensor, net_size: int | None) -> torch.Tensor:
    """A picture drawn smaller than the network's input (a recipe's `resolution`) as the network sees it."""
    if net_size is None or tuple(pixels.shape[-2:]) == (net_size, net_size):
        return pixels
    return F.interpolate(pixels, size=(net_size, net_size), mode="bilinear", align_corners=False)


def solve(model, objective: Objective, start: Parametrization | torch.Tensor,
          config: SolverConfig | None = None) -> PreimageResult:
    """The one optimiser of every pre-image task: minimise `objective` over a batch of images.

    Parameters
    ----------
    model : Model
        The network Phi (frozen; its forward stops at the deepest layer the objective reads).
    objective : Objective
        A weighted sum of terms (`objectives`): data terms on named layers plus priors.
    start : Parametrization or Tensor
        An image parametrisation (`param/`), or [N,3,H,W] pixels in centred 0-255 units to start the pixel
        parametrisation at.
    config : SolverConfig, optional
        Optimiser, iterations, learning rate, robustness transforms, seed (default: `SolverConfig()`).
        `lr` is a typical step in the parametrisation's units: SGD uses momentum on the per-image
        normalised gradient, Adam's step is lr by construction, L-BFGS a line search (no transforms).

    Returns
    -------
    PreimageResult
        ``images`` [N,3,H,W] in [0,1] (exactly what the network saw before the random transforms; the best
        seen when the objective is deterministic, else the last), ``x`` the same in centred 0-255 units,
        ``terms`` per-term values by label and ``by_term`` by term object, ``energy``, ``history``,
        ``iterations``, ``seconds``, and ``interrupted`` when Ctrl-C stopped it early.
    """
    cfg = config or SolverConfig()
    param = start if isinstance(start, Parametrization) else pixel_start(model, start, cfg)
    param.to(model.device)  # drawn on the CPU from a seeded generator: the same start on every device
    objective.to(model.device)
    space = ImageSpace(model)
    gen = torch.Generator().manual_seed(cfg.seed)
    n, size = param.n, (param.height, param.width)
    pipeline = cfg.pipeline(min(size)) if cfg.optimizer != "lbfgs" else Pipeline()
    seen_size = (cfg.net_size, cfg.net_size) if cfg.net_size else size
    thetas = [p for p in param.parameters() if p.requires_grad]
    check_memory(model, objective.layers, n, size, cfg.max_memory_gb)
    # the passes run on the network with its BatchNorms folded into their convolutions (same layers, same
    # values to float precision, ~0.75-0.8x the time) unless the objective reads a folded convolution itself
    phi = Capture(for_optimisation(model, objective.layers), objective.layers) if objective.layers else None
    try:  # a failed or interrupted solve leaves no hooks on the model
        # a neuron at an early layer sees a few pixels: steps run the network on that window of its input only
        window = plan_window(model, phi, objective, seen_size) if phi is not None and cfg.receptive_window else None
        step_objective, box = (window.objective, window.box) if window is not None else (objective, None)
        best_p = param().detach().clone()
        best_e = torch.full((n,), float("inf"), device=model.device)
        history: list[float] = []
        slow_from = cfg.iters - int(round(cfg.iters * cfg.slow_fraction))

        def energy(transformed: bool) -> tuple[torch.Tensor, torch.Tensor]:
            pixels = param()
            if transformed and pipeline:
                seen = pipeline(pixels, gen, seen_size, window=box)
            else:
                seen = resized_for_network(pixels, cfg.net_size)
                seen = window.crop(seen) if window is not None else seen
            with model.autocast():
                feats = phi(space.pixels_to_net(seen)) if phi is not None else {}
            feats = {k: v.float() for k, v in feats.items()}  # objectives in float32 whatever the forward's precision
            return step_objective(Context(lambda: space.from_pixels(pixels), feats)), pixels

        def remember(e: torch.Tensor, pixels: torch.Tensor) -> None:
            if pipeline:  # energies under random transforms are not comparable between steps: keep the last
                best_p.copy_(pixels.detach())
                return
            for i in torch.nonzero(e.detach() < best_e).flatten().tolist():
                best_e[i] = e[i].detach()
                best_p[i].copy_(pixels.detach()[i])

        start_time = time.perf_counter()
        step = 0
        interrupted = False
        bar = steps(cfg.iters, cfg.desc, show=cfg.progress)
        try:
            if cfg.optimizer == "lbfgs":
                stepper = LbfgsSteps(thetas, lambda: energy(False), remember)
                for step in range(1, cfg.iters + 1):  # noqa: B007 (step is reported after the loop)
                    loss = stepper.step()
                    _check_finite(loss, step)
                    param.project()
                    history.append(float(loss.detach()) / stepper.boost / n)
                    bar.update(1)
            else:
                update = FIRST_ORDER[cfg.optimizer](thetas, cfg.lr * param.lr_scale, cfg)
                for step in range(1, cfg.iters + 1):
                    e, pixels = energy(True)
                    grads = torch.autograd.grad(e.sum(), thetas)
                    if not pipeline:  # (with random transforms the last iterate is kept: taken after the loop)
                        remember(e, pixels)
                    with torch.no_grad():
                        update.step(grads, 0.1 if step > slow_from else 1.0)
                        param.project()
                    _check_finite(e, step)  # after the step: values are read back once per step, here
                    history.append(float(e.detach().mean()))
                    bar.update(1)
                    if step % 20 == 0:
                        bar.postfix(f"E={history[-1]:.4g}")
        except KeyboardInterrupt:
            interrupted = True
        finally:
            bar.close()
            seconds = time.perf_counter() - start_time

        def seen_without_transforms(pixels: torch.Tensor) -> tuple[torch.Tensor, Context]:
            seen = resized_for_network(pixels, cfg.net_size)  # what the network saw, without the random transforms
            return seen, Context(space.from_pixels(seen), phi(space.pixels_to_net(seen)) if phi is not None else {})

        with torch.no_grad():
            # one forward of the final iterate serves as the result's evaluation unless an earlier iterate was better
            # (deterministic objectives only: under random transforms the last iterate is kept)
            pixels = param()
            shown, ctx = seen_without_transforms(pixels)
            energies = objective(ctx)
            if not pipeline and not bool((energies < best_e).all()):
                remember(energies, pixels)
                shown, ctx = seen_without_transforms(best_p)
                energies = objective(ctx)
            by_term = {t: [float(v) for v in vals] for t, vals in objective.by_term(ctx).items()}
            terms = {k: [float(v) for v in vals] for k, vals in objective.breakdown(ctx).items()}
            total = [float(v) for v in energies]
    finally:
        if phi is not None:
            phi.close()
    images = shown.clamp(0, 1).cpu()  # results leave the device once, here
    return PreimageResult(space.from_pixels(shown).cpu(), images, terms, total, history,
                          step if not interrupted else max(step - 1, 0), seconds, interrupted, by_term)
