"""Figures and files for the backpropagation verbs."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ..images import load_image, save_image
from ..layers import get_layer
from ..models import Model
from ..preimage.runs import slug
from ..store import write_json
from ..viz import image_grid, save_figure
from .methods import METHODS, BPTarget, backprop_maps, render

COLUMNS = ("deconvnet", "salinet", "desalinet")  # the seed's order: Image | DeConvNet | SaliNet | DeSaliNet


def default_rows(model: Model, image: torch.Tensor) -> list[BPTarget]:
    """The seed's two rows: the full code of the last convolutional stage, and the top class."""
    net = model.net
    depth = net.depth_layers() if hasattr(net, "depth_layers") else []
    conv = next((name for name in reversed(depth) if (get_layer(model, name).rf or None) is not None), None)
    top = model.predict(image, k=1)[0][0]
    logits = "logits" if "logits" in model.aliases else "output"
    rows = [BPTarget("features", conv)] if conv else []
    return rows + [BPTarget("class", logits, top.index)]


def run_saliency(model: Model, source: str, rows: list[BPTarget], methods: list[str], out: Path,
                 pool: str | None = None, mode: str = "signed") -> dict:
    image = load_image(source)
    x = model.prepare(image)
    name = slug(source.replace("sample:", ""))
    computed = []  # every map first: a bad target fails before anything is written
    for row in rows:
        for method in methods:
            start = time.perf_counter()
            g = backprop_maps(model, x, [row], method, pool)[0, 0]
            computed.append((row, method, g, time.perf_counter() - start))
    out.mkdir(parents=True, exist_ok=True)
    pictures, titles, records, raw = [], [], [], {}
    shown = model.preprocess.geometry(image)[0]
    for i, (row, method, g, seconds) in enumerate(computed):
        if i % len(methods) == 0:
            pictures.append(shown)
            titles.append(f"image\n{row.label()}" if row.kind != "class" else
                          f"image\nclass {row.channel} {model.class_name(row.channel)}")
        picture = render(g, mode)
        file = f"saliency_{name}_{slug(row.label())}_{method}.png"
        save_image(picture, out / file)
        raw[f"{row.label()}|{method}"] = g.contiguous()
        pictures.append(picture)
        titles.append(method if len(rows) == 1 else f"{method}\n{row.label()}")
        records.append({"target": row.label(), "method": method, "file": file, "seconds": round(seconds, 4)})
    grid = out / f"saliency_{name}_grid.png"
    image_grid(pictures, titles, grid, ncols=1 + len(methods), cell=2.4)
    from safetensors.torch import save_file

    from ..store import atomic_path

    with atomic_path(out / f"saliency_{name}.safetensors") as tmp:
        save_file(raw, str(tmp))
    summary = {**model.settings(), "image": source, "methods": methods, "pool_rule": pool or "switches",
               "render": mode, "maps": records, "grid": grid.name}
    write_json(summary, out / f"saliency_{name}.json")
    return summary


def plot_sanity(result: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    steps = range(1, len(result["blocks"]) + 1)
    for method, curve in result["spearman"].items():
        ax.plot(list(steps), curve, marker="o", ms=3, label=method)
    ax.set_xticks(list(steps), result["blocks"], rotation=70, fontsize=7)
    ax.set_ylim(-0.2, 1.05)
    ax.set_ylabel("Spearman vs trained")
    ax.set_xlabel("re-initialised down to (cascading from the top)")
    ax.set_title(f"model-parameter randomisation: {result['target']}", fontsize=10)
    ax.axhline(0, color="#999", lw=0.5)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def selectivity_table(result: dict) -> str:
    keys = ("max_vs_random_neuron", "max_vs_random_direction", "random_vs_random")
    lines = [f"{'method':<10} " + " ".join(f"{k:>24}" for k in keys)]
    for method in METHODS:
        if method in result:
            lines.append(f"{method:<10} " + " ".join(f"{result[method][k]:24.3f}" for k in keys))
    return "\n".join(lines)
