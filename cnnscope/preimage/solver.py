"""The one pre-image optimiser: min_x E(x) over a batch of images, by projected gradient descent.

Each step costs one forward (truncated at the deepest layer the objective reads) and one backward;
everything else (regularisers, jitter, projection, bookkeeping) is a few element-wise passes over x.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import torch
from tqdm import tqdm

from ..layers import Capture
from .objectives import B_PLUS, B, Context, Objective


@dataclass
class SolverConfig:
    iters: int = 300
    optimizer: str = "sgd"  # "sgd" (momentum, M&V IJCV'16), "adam" or "lbfgs"
    lr: float = 0.05  # size of a typical first step, as a fraction of B (see `solve`)
    momentum: float = 0.9
    slow_fraction: float = 0.2  # the last part of the run goes at 0.1x the learning rate
    jitter: int = 0  # random translation of up to this many pixels each step
    bound: float | None = B_PLUS  # each pixel's norm (centred 0-255 units) stays below this
    box: bool = True  # keep pixels in [0, 1], so the saved PNG is the pre-image
    seed: int = 0
    progress: bool = True
    desc: str = "pre-image"

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("progress")
        d.pop("desc")
        return d


@dataclass
class PreimageResult:
    x: torch.Tensor  # [N,3,H,W] best images found, centred 0-255 units
    images: torch.Tensor  # [N,3,H,W] the same in [0, 1]
    terms: dict[str, list[float]]  # per term, per image, evaluated on the best images without jitter
    energy: list[float]  # total objective per image
    history: list[float] = field(default_factory=list)  # mean energy per step
    iterations: int = 0
    seconds: float = 0.0
    interrupted: bool = False

    def summary(self) -> dict:
        return {"energy": self.energy, "terms": self.terms, "iterations": self.iterations,
                "seconds": round(self.seconds, 3), "interrupted": self.interrupted}


class ImageSpace:
    """Conversions between centred 0-255 units (what the optimiser sees) and the model's input."""

    def __init__(self, model):
        pp = model.preprocess
        self.mean = torch.tensor(pp.mean).view(1, 3, 1, 1)
        self.std = torch.tensor(pp.std).view(1, 3, 1, 1)
        self.lo = -255.0 * self.mean  # pixel value 0
        self.hi = 255.0 * (1.0 - self.mean)  # pixel value 1
        self.net_scale = 1.0 / (255.0 * self.std)

    def to_net(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.net_scale  # == preprocess.normalize(x / 255 + mean)

    def from_pixels(self, x01: torch.Tensor) -> torch.Tensor:
        return 255.0 * (x01 - self.mean)

    def to_pixels(self, x: torch.Tensor) -> torch.Tensor:
        return (x / 255.0 + self.mean).clamp(0, 1)

    @torch.no_grad()
    def project(self, x: torch.Tensor, bound: float | None, box: bool) -> None:
        if box:
            x.clamp_(self.lo, self.hi)
        if bound is not None:
            # (torch.linalg.vector_norm over dim 1 of NCHW is ~150x slower than this on CPU, torch 2.13)
            norm = x.square().sum(1, keepdim=True).sqrt_()
            if float(norm.max()) > bound:  # usually no pixel is over: skip the rescaling pass
                x.mul_((bound / norm.clamp_min_(1e-6)).clamp_(max=1.0))


def solve(model, objective: Objective, init: torch.Tensor, config: SolverConfig | None = None) -> PreimageResult:
    """Minimise `objective` over images starting at `init` ([N,3,H,W], centred 0-255 units).

    Learning rate: `lr` is the size of a typical step as a fraction of B, whatever the layer's scale: SGD
    uses momentum on the per-image normalised gradient (mean |step| <= lr*B), Adam's step is lr*B by
    construction, L-BFGS uses a line search.
    Ctrl-C stops early and returns the best images so far (`interrupted=True`).
    """
    cfg = config or SolverConfig()
    space = ImageSpace(model)
    gen = torch.Generator().manual_seed(cfg.seed)
    x = init.detach().clone()
    space.project(x, cfg.bound, cfg.box)
    x.requires_grad_(True)
    n = x.shape[0]
    layers = objective.layers
    phi = Capture(model, layers) if layers else None
    best_x = x.detach().clone()
    best_e = torch.full((n,), float("inf"))
    history: list[float] = []
    slow_from = cfg.iters - int(round(cfg.iters * cfg.slow_fraction))

    def energy(xv: torch.Tensor, jitter: bool) -> torch.Tensor:
        xin = xv
        if jitter and cfg.jitter > 0:
            dy, dx = torch.randint(-cfg.jitter, cfg.jitter + 1, (2,), generator=gen).tolist()
            xin = torch.roll(xv, shifts=(dy, dx), dims=(2, 3))
        feats = phi(space.to_net(xin)) if phi is not None else {}
        return objective(Context(xv, feats))

    def remember(e: torch.Tensor) -> None:
        for i in torch.nonzero(e.detach() < best_e).flatten().tolist():
            best_e[i] = e[i].detach()
            best_x[i].copy_(x.detach()[i])

    start = time.perf_counter()
    step = 0
    interrupted = False
    bar = tqdm(total=cfg.iters, desc=cfg.desc, disable=not cfg.progress, leave=False, unit="it")
    try:
        if cfg.optimizer == "lbfgs":
            # no tolerance stops: normalised energies have tiny gradients in 0-255 units; `iters` decides
            opt = torch.optim.LBFGS([x], lr=1.0, max_iter=1, history_size=20, line_search_fn="strong_wolfe",
                                    tolerance_grad=0.0, tolerance_change=0.0)
            # L-BFGS is scale-invariant except for its curvature test (s.y > 1e-10): rescale the energy so the
            # first gradient is O(1) per pixel, or every curvature pair would be dropped
            g0, = torch.autograd.grad(energy(x, jitter=False).sum(), x)
            boost = 1.0 / float(g0.abs().mean().clamp_min(1e-30))

            def closure():
                opt.zero_grad(set_to_none=True)
                e = energy(x, jitter=False)
                remember(e)
                total = e.sum()
                (total * boost).backward()
                return total * boost

            for step in range(1, cfg.iters + 1):  # noqa: B007 (step is reported after the loop)
                loss = opt.step(closure)
                space.project(x.data, cfg.bound, cfg.box)
                history.append(float(loss.detach()) / boost / n)
                bar.update(1)
        else:
            velocity = torch.zeros_like(x)
            adam = torch.optim.Adam([x], lr=cfg.lr * B) if cfg.optimizer == "adam" else None
            if cfg.optimizer not in ("sgd", "adam"):
                raise ValueError(f"unknown optimizer '{cfg.optimizer}' (sgd, adam, lbfgs)")
            for step in range(1, cfg.iters + 1):
                e = energy(x, jitter=True)
                remember(e)
                grad, = torch.autograd.grad(e.sum(), x)
                slow = 0.1 if step > slow_from else 1.0
                with torch.no_grad():
                    if adam is not None:
                        x.grad = grad
                        for group in adam.param_groups:
                            group["lr"] = cfg.lr * B * slow
                        adam.step()
                    else:
                        # momentum on the gradient normalised per image: the step is ~lr*B pixels whatever
                        # the layer's scale, and stiff terms (TV on noise) cannot make it diverge
                        mean_abs = grad.abs().flatten(1).mean(1)
                        coef = ((1 - cfg.momentum) * cfg.lr * B) / mean_abs.clamp_min(1e-20).view(n, 1, 1, 1)
                        velocity.mul_(cfg.momentum).addcmul_(grad, coef)
                        x.sub_(velocity, alpha=slow)
                    space.project(x, cfg.bound, cfg.box)
                history.append(float(e.detach().mean()))
                bar.update(1)
                if step % 20 == 0:
                    bar.set_postfix(E=f"{history[-1]:.4g}")
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
        seconds = time.perf_counter() - start
    with torch.no_grad():
        e = energy(x, jitter=False)  # the final iterate may be the best one
        remember(e)
        ctx = Context(best_x, phi(space.to_net(best_x)) if phi is not None else {})
        terms = {k: [float(v) for v in vals] for k, vals in objective.breakdown(ctx).items()}
        total = [float(v) for v in objective(ctx)]
    if phi is not None:
        phi.close()
    return PreimageResult(best_x, space.to_pixels(best_x), terms, total, history,
                          step if not interrupted else max(step - 1, 0), seconds, interrupted)
