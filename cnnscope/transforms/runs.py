"""Data and files for the transformation-analysis verbs (shared by equivalence and, later, equivariance)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import torch

from ..models import Model
from ..store import atomic_path, write_json, write_text
from ..viz import save_figure

METHODS = ("naive", "random", "permutation", "regression", "task")
def stitch_table(result: dict, metric: str) -> list[dict]:
    rows = []
    for key in ("A", "B"):
        rows.append({"layer": key + " alone", **{m: result["baseline"][key].get(metric) for m in METHODS}})
    for r in result["rows"]:
        rows.append({"layer": r["layer_a"] if r["layer_a"] == r["layer_b"] else f"{r['layer_a']}->{r['layer_b']}",
                     **{m: (r[m].get(metric) if m in r else None) for m in METHODS}})
    return rows


def format_table(rows: list[dict]) -> str:
    head = f"{'layer':<22}" + "".join(f"{m:>13}" for m in METHODS)
    lines = [head]
    for r in rows:
        if r["layer"].endswith("alone"):
            val = next(v for v in r.values() if isinstance(v, float))
            lines.append(f"{r['layer']:<22}{val:13.3f}")
        else:
            lines.append(f"{r['layer']:<22}" + "".join(f"{'-':>13}" if r[m] is None else f"{r[m]:13.3f}"
                                                      for m in METHODS))
    return "\n".join(lines)


def write_stitch_outputs(out: Path, name: str, result: dict, metric: str, settings: dict) -> dict:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    rows = stitch_table(result, metric)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["layer", *METHODS])
    writer.writeheader()
    writer.writerows(rows)
    write_text(buf.getvalue(), out / f"{name}.csv")
    tensors = {}
    for r in result["rows"]:
        for method, s in r["_stitches"].items():
            for k, v in s.state_dict().items():
                tensors[f"{r['layer_a']}|{r['layer_b']}|{method}|{k}"] = v.contiguous()
    with atomic_path(out / f"{name}_stitches.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"settings": str(settings)})
    plot_stitch(result, rows, metric, out / f"{name}.png", settings)
    clean = [{k: v for k, v in r.items() if k != "_stitches"} for r in result["rows"]]
    summary = {"settings": settings, "metric": metric, "baseline": result["baseline"], "rows": clean,
               "table": rows, "files": [f"{name}.csv", f"{name}.png", f"{name}_stitches.safetensors"]}
    write_json(summary, out / f"{name}.json")
    return summary


def plot_stitch(result: dict, rows: list[dict], metric: str, path: Path, settings: dict) -> None:
    import matplotlib.pyplot as plt

    layer_rows = [r for r in rows if not r["layer"].endswith("alone")]
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    xs = list(range(len(layer_rows)))
    for m in METHODS:
        ys = [r[m] for r in layer_rows]
        if any(y is not None for y in ys):
            ax.plot([x for x, y in zip(xs, ys) if y is not None], [y for y in ys if y is not None], marker="o",
                    label=m)
    for key, style in (("A", ":"), ("B", "--")):
        ax.axhline(result["baseline"][key].get(metric, 0), color="#555", ls=style, lw=1, label=f"{key} alone")
    ax.set_xticks(xs, [r["layer"] for r in layer_rows], rotation=30, fontsize=8)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_title(f"stitching {settings['a']} -> {settings['b']}", fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    save_figure(fig, path)


def cka_heatmap(matrix: list[list[float]], rows: list[str], cols: list[str], title: str, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(0.55 * len(cols) + 2.5, 0.45 * len(rows) + 1.8))
    im = ax.imshow(matrix, vmin=0, vmax=1, cmap="magma", origin="lower")
    ax.set_xticks(range(len(cols)), cols, rotation=60, fontsize=7)
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    for i, row in enumerate(matrix):
        for j, v in enumerate(row):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6, color="w" if v < 0.6 else "k")
    fig.colorbar(im, ax=ax, fraction=0.04)
    ax.set_title(title, fontsize=9)
    save_figure(fig, path)


def plot_equivariance(result: dict, path: Path, model_name: str) -> None:
    import matplotlib.pyplot as plt

    rows = result["rows"]
    xs = list(range(len(rows)))
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for key, label in (("spatial_only", "compensated: spatial inverse"), ("permutation", "+ channel permutation"),
                       ("learned", "+ learned channel map")):
        ax.plot(xs, [r[key] for r in rows], marker="o", label=label)
    ax.axhline(result["baseline"]["no_transform"], color="#555", ls=":", lw=1, label="no transform")
    ax.axhline(result["baseline"]["uncompensated"], color="#a33", ls="--", lw=1, label="transformed, uncompensated")
    ax.set_xticks(xs, [r["layer"] for r in rows], rotation=30, fontsize=8)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel(result["metric"].replace("_", " "))
    ax.set_title(f"{model_name}: equivariance to {result['transform']}", fontsize=10)
    ax.legend(fontsize=7)
    save_figure(fig, path)


def feature_equivariance_run(model: Model, transform, images: torch.Tensor, n_fit: int, out: Path, name: str,
                             neighbourhoods: tuple[int, ...], ridge: float, settings: dict) -> dict:
    """Equivariance of a hand-crafted representation by regression: table, CSV, JSON, maps, glyph figure."""
    from safetensors.torch import save_file

    from ..layers import get_layer
    from .regression import regression_experiment

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
    tensors = {f"{k}|{part}": t.contiguous() for k, (w, b) in result["maps"].items()
               for part, t in (("weight", w), ("bias", b))}
    with atomic_path(out / f"{name}_maps.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"settings": json.dumps(settings)})
    summary = {"settings": settings, "relative_error": errors, "valid_cells": result["valid_cells"],
               "cells": result["cells"], "files": [f"{name}.csv", f"{name}.png", f"{name}_maps.safetensors"]}
    _plot_feature_equivariance(model.name, layer, transform, result, held_out, out / f"{name}.png")
    write_json(summary, out / f"{name}.json")
    return summary


def _plot_feature_equivariance(model_name: str, layer, transform, result: dict, held_out: dict, path: Path) -> None:
    """The seed's slide: Phi(gx) next to M_g Phi(x) (learned) and g applied to Phi(x) alone, as HOG glyphs
    (valid cells only), with the held-out errors as bars."""
    import matplotlib.pyplot as plt

    from ..features.render import render_hog
    from .regression import apply_map

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
