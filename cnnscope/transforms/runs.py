"""Equivariance of a hand-crafted representation (HOG, DSIFT) by regression: its files and the seed's glyph figure."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from ..features.render import render_hog
from ..layers import get_layer
from ..models import Model
from ..store import save_tensors, write_json, write_text
from ..viz import save_figure
from .regression import apply_map, regression_experiment


def feature_equivariance_run(model: Model, transform, images: torch.Tensor, n_fit: int, out: Path, name: str,
                             neighbourhoods: tuple[int, ...], ridge: float, settings: dict) -> dict:
    """Equivariance of a hand-crafted representation by regression: table, CSV, JSON, maps, glyph figure."""
    layer_name, layer = next(iter(model.net.named_children()), ("output", model.net))  # its one layer
    geometry = get_layer(model, layer_name).geometry
    perm = None
    if transform.kind in ("hflip", "vflip", "rot180") and hasattr(layer, "flip_permutation"):
        perm = layer.flip_permutation(transform.kind)

    def extractor(x):
        return model(model.preprocess.normalize(x))

    result = regression_experiment(extractor, geometry, transform, images[:n_fit], images[n_fit:], neighbourhoods,
                                   ridge, perm)
    errors = result["errors"]
    held_out = {k: v for k, v in errors.items() if not k.endswith("_fit")}
    out.mkdir(parents=True, exist_ok=True)
    write_text("method,relative_error_held_out,relative_error_fit\n" + "".join(
        f"{k},{v},{errors.get(k + '_fit', '')}\n" for k, v in held_out.items()), out / f"{name}.csv")
    tensors = {f"{k}|{part}": t for k, (w, b) in result["maps"].items() for part, t in (("weight", w), ("bias", b))}
    save_tensors(tensors, out / f"{name}_maps.safetensors", "cnnscope-equivariance-maps-1",
                 settings=json.dumps(settings))
    summary = {"settings": settings, "relative_error": errors, "valid_cells": result["valid_cells"],
               "cells": result["cells"], "files": [f"{name}.csv", f"{name}.png", f"{name}_maps.safetensors"]}
    _plot_feature_equivariance(model.name, layer, transform, result, held_out, out / f"{name}.png")
    write_json(summary, out / f"{name}.json")
    return summary


def _plot_feature_equivariance(model_name: str, layer, transform, result: dict, held_out: dict, path: Path) -> None:
    """The seed's slide: Phi(gx) next to M_g Phi(x) (learned) and g applied to Phi(x) alone, as HOG glyphs
    (valid cells only), with the held-out errors as bars."""
    image, moved, target, mask = result["example"]
    best = min((k for k in result["maps"] if k.startswith("learned")), key=lambda k: held_out[k])
    compensated = apply_map(*result["maps"][best], moved)
    panels = [("x", image[0].permute(1, 2, 0).numpy()),
              (f"g x ({transform.label})", transform.image(image)[0].permute(1, 2, 0).numpy())]
    if hasattr(layer, "flip_permutation"):  # HOG: draw the maps as glyphs
        o = layer.orientations
        keep = mask[None].float()
        for title, f in ((r"$\Phi(gx)$", target[0]), (rf"$M_g\Phi(x)$, {best.replace('_', ' ')}", compensated[0]),
                         (r"$g\,\Phi(x)$ (spatial only)", moved[0])):
            panels.append((title, render_hog(f * keep, o, 9)))
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(2.6 * (len(panels) + 1) + 1.2, 3.0))
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
