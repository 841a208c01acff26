"""Equivariance of a hand-crafted representation (HOG, DSIFT) by regression, as a job: M_g is fitted by
ridge regression from pairs (Phi(x), Phi(gx)), judged by relative error; the seed's glyph figure."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..data import image_set, split
from ..features.render import render_hog
from ..jobs import Job, Result
from ..layers import get_layer
from ..models import Model, ModelSpec
from ..store import save_tensors, write_csv
from ..viz import save_figure, subplots
from .regression import apply_map, regression_experiment
from .transform import Transform


@dataclass
class FeatureEquivarianceResult(Result):
    """Relative error ||M_g Phi(x) - Phi(gx)|| / ||Phi(gx)|| per method on held-out images (and `_fit` on
    the fitting ones), over `valid_cells` of `cells` (inside g x's valid region). `maps` and `example` go to
    the safetensors file and the figure."""

    relative_error: dict
    valid_cells: int
    cells: int
    fit: int
    test: int
    maps: dict = field(metadata={"json": False})
    example: tuple = field(metadata={"json": False})
    layer: object = field(metadata={"json": False})


@dataclass(frozen=True)
class FeatureEquivarianceJob(Job):
    """Is Phi(gx) = M_g Phi(x) for a hand-crafted representation's one layer? (`neighbourhoods`: m x m cells
    each output cell of a learned map may read.)"""

    key: str
    model: ModelSpec
    transform: str
    images: str | None = None
    limit: int | None = None
    fit: float = 0.8
    ridge: float = 1e-4
    neighbourhoods: tuple[int, ...] = (1, 3)
    seed: int = 0
    kind = "feature-equivariance"

    def compute(self, model: Model) -> FeatureEquivarianceResult:
        transform = Transform.parse(self.transform)
        layer_name, layer = next(iter(model.net.named_children()), ("output", model.net))  # its one layer
        perm = None
        if transform.kind in ("hflip", "vflip", "rot180") and hasattr(layer, "flip_permutation"):
            perm = layer.flip_permutation(transform.kind)
        images, _ = image_set(model, self.images, self.limit, self.seed)
        i_fit, i_test = split(len(images), self.fit, self.seed)

        def extractor(x):
            return model(model.preprocess.normalize(x))

        r = regression_experiment(extractor, get_layer(model, layer_name).geometry, transform, images[i_fit],
                                  images[i_test], self.neighbourhoods, self.ridge, perm)
        return FeatureEquivarianceResult(r["errors"], r["valid_cells"], r["cells"], len(i_fit), len(i_test),
                                         r["maps"], r["example"], layer)

    def write(self, out: Path, result: FeatureEquivarianceResult) -> list[str]:
        errors = result.relative_error
        held_out = {k: v for k, v in errors.items() if not k.endswith("_fit")}
        write_csv(["method", "relative_error_held_out", "relative_error_fit"],
                  [[k, v, errors.get(k + "_fit")] for k, v in held_out.items()], out / f"{self.key}.csv")
        save_tensors({f"{k}|{part}": t for k, (w, b) in result.maps.items() for part, t in (("weight", w),
                      ("bias", b))}, out / f"{self.key}_maps.safetensors", "cnnscope-equivariance-maps-1")
        _plot_feature_equivariance(self.model.name, result.layer, Transform.parse(self.transform), result.example,
                                   result.maps, held_out, out / f"{self.key}.png")
        return [f"{self.key}.csv", f"{self.key}.png", f"{self.key}_maps.safetensors"]


def _plot_feature_equivariance(model_name: str, layer, transform, example, maps: dict, held_out: dict,
                               path: Path) -> None:
    """The seed's slide: Phi(gx) next to M_g Phi(x) (learned) and g applied to Phi(x) alone, as HOG glyphs
    (valid cells only), with the held-out errors as bars."""
    image, moved, target, mask = example
    best = min((k for k in maps if k.startswith("learned")), key=lambda k: held_out[k])
    compensated = apply_map(*maps[best], moved)
    panels = [("x", image[0].permute(1, 2, 0).numpy()),
              (f"g x ({transform.label})", transform.image(image)[0].permute(1, 2, 0).numpy())]
    if hasattr(layer, "flip_permutation"):  # HOG: draw the maps as glyphs
        o = layer.orientations
        keep = mask[None].float()
        for title, f in ((r"$\Phi(gx)$", target[0]), (rf"$M_g\Phi(x)$, {best.replace('_', ' ')}", compensated[0]),
                         (r"$g\,\Phi(x)$ (spatial only)", moved[0])):
            panels.append((title, render_hog(f * keep, o, 9)))
    fig, axes = subplots(1, len(panels) + 1, figsize=(2.6 * (len(panels) + 1) + 1.2, 3.0))
    for ax, (title, img) in zip(axes, panels):
        ax.imshow(img.clip(0, 1), cmap="gray" if img.ndim == 2 else None)
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    ax = axes[-1]
    labels = list(held_out)
    ax.barh(range(len(labels))[::-1], [held_out[k] for k in labels], color="#3b75af")
    ax.set_yticks(list(range(len(labels))[::-1]), [k.replace("_", " ") for k in labels], fontsize=7)
    ax.set_xlabel("relative error (held out)", fontsize=8)
    ax.set_xlim(0, max(1.0, max(held_out.values()) * 1.05))
    fig.suptitle(f"{model_name}: is Phi(gx) = M_g Phi(x) for g = {transform.label}?", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
