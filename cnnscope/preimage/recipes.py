"""Recipes: a parametrisation, robustness transforms, an optimiser and a prior that work well together.

- `mv`    Mahendran & Vedaldi IJCV'16 as published: pixels, TV^beta + alpha-norm prior, momentum SGD,
          jitter of 1/8 of the layer's stride at deep layers. Kept for fidelity to the seed (and it suits
          AlexNet/VGG; hand-crafted features' default), but on modern networks (depthwise convolutions, stride 2
          everywhere) deep pictures drift to high-frequency colour noise.
- `lucid` Olah et al. (Distill 2017) / Lucid's defaults: 1/f Fourier + decorrelated colour through a
          sigmoid at 128/224 of the network's size, Lucid's standard transforms (pad, jitter, scale, rotate),
          Adam, no explicit prior.
- `maco`  Fel et al. (NeurIPS 2023): the Fourier phase only, magnitude fixed to natural images', same
          transforms and optimiser.

Which is each verb's default was decided by measurement (benchmarks/feature_vis.py; see the README).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from ..errors import CnnscopeError
from .param import Parametrization, make_param
from .solver import SolverConfig


@dataclass(frozen=True)
class Recipe:
    name: str
    param: str  # pixel | colour | fourier | maco
    transforms: str  # robustness spec; "auto" = M&V's stride-dependent jitter
    optimizer: str
    lr: float
    iters: int
    prior: bool  # M&V's TV + alpha-norm prior
    resolution: float = 1.0  # the picture's size as a fraction of the network's; upsampled for the network
    slow_fraction: float = 0.2  # the last part of the run at 0.1x the learning rate
    task_iters: tuple[tuple[str, int], ...] = ()  # (task, iterations) where a task's measured count differs

    def iters_for(self, task: str) -> int:
        """The iterations this recipe runs for `task` (`iters` unless `task_iters` names the task)."""
        return dict(self.task_iters).get(task, self.iters)

    def config(self, **overrides) -> SolverConfig:
        """The solver settings of this recipe; keyword arguments that are not None replace them."""
        cfg = SolverConfig(iters=self.iters, optimizer=self.optimizer, lr=self.lr, slow_fraction=self.slow_fraction,
                           transforms=None if self.transforms in ("auto", "none") else self.transforms)
        return replace(cfg, **{k: v for k, v in overrides.items() if v is not None})

    def make_param(self, n: int, size, *, seed: int, mean, config: SolverConfig | None = None) -> Parametrization:
        options = {}
        if self.param == "pixel" and config is not None:
            options = {"bound": config.bound, "box": config.box}
        return make_param(self.param, n, size, seed=seed, mean=mean, **options)

    def to_dict(self) -> dict:
        return asdict(self)


RECIPES = {
    "mv": Recipe("mv", "pixel", "auto", "sgd", 0.05, 300, prior=True),
    # drawn at 128/224 of the network's size and upsampled for it, as Lucid/Lucent draw (128 px): cheaper steps and
    # judges' top-5 0.85 -> 0.97 on 20 classes (benchmarks/feature_vis.py --variants); tasks that start from a
    # picture keep its full resolution (`tasks.settings_for`). A class or channel picture settles in 192 steps
    # (judges' top-5 unchanged from 256 on 20 classes, 0.75x the time; benchmarks/feature_vis.py --variants); a
    # report's atlas picture in 128 (every one of 24 stage6 channels above its 200-step score before the one-pass
    # transforms, 2.3x the channels per minute; benchmarks/atlas.py)
    "lucid": Recipe("lucid", "fourier", "standard", "adam", 0.05, 256, prior=False, slow_fraction=0.0,
                    resolution=128 / 224, task_iters=(("maximize", 192), ("atlas", 128))),
    "maco": Recipe("maco", "maco", "standard", "adam", 0.05, 256, prior=False, slow_fraction=0.0),
    # texture and style (Gatys et al.): Adam on the picture's Gram statistics, no robustness transforms (the
    # statistics do not depend on position); their priors are the tasks' own (`tasks.settings_for`)
    "gatys": Recipe("gatys", "fourier", "none", "adam", 0.05, 300, prior=False),
}
GRAM_RECIPES = ("gatys",)  # for texture and style only: not a choice of the visualisation verbs' --recipe

# Each verb's default, chosen by measurement (benchmarks/feature_vis.py).
# invert and caricature: lower error / higher gain, equal or better judge overlap and faster than mv at stages 2-7
# on held-back images, and pictures in the objects' colours instead of mv's colour noise (see the README).
DEFAULT_RECIPE = {"maximize": "lucid", "invert": "lucid", "caricature": "lucid", "accentuate": "lucid",
                  "atlas": "lucid", "texture": "gatys", "style": "gatys"}


# Hand-crafted representations (HOG, DSIFT) keep M&V's recipe: their pre-images (HOGb) are the seed's figure,
# and a feature with no colour channels gives a Fourier colour parametrisation nothing to decorrelate.
HANDCRAFTED_DEFAULT = {"invert": "mv", "caricature": "mv"}


def get_recipe(recipe: str | Recipe | None, task: str, handcrafted: bool = False) -> Recipe:
    """A recipe by name (or the task's default when None; `handcrafted`: the default for a hand-crafted model)."""
    if isinstance(recipe, Recipe):
        return recipe
    name = recipe or (HANDCRAFTED_DEFAULT.get(task) if handcrafted else None) or DEFAULT_RECIPE.get(task, "mv")
    if name not in RECIPES:
        raise CnnscopeError(f"unknown recipe '{name}' (choose from {', '.join(RECIPES)})")
    return RECIPES[name]
