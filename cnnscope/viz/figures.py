"""Matplotlib figures, saved atomically (the low layer: every family may draw with it; it imports none)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np

from ..images import tensor_to_uint8
from ..store import atomic_path


def subplots(nrows: int = 1, ncols: int = 1, **options):
    """(figure, axes) like pyplot's, without pyplot: no global figure state, no GUI backend, faster import."""
    from matplotlib.figure import Figure  # 0.25 s: only when a figure is drawn, not at every CLI start

    squeeze = options.pop("squeeze", True)
    fig = Figure(**options)
    return fig, fig.subplots(nrows, ncols, squeeze=squeeze)


def save_figure(fig, path: str | os.PathLike, dpi: int = 110) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")


def bar_chart(labels: Sequence[str], values: Sequence[float], title: str, path: str | os.PathLike) -> None:
    """Horizontal bars, first label on top (for top-k predictions)."""
    fig, ax = subplots(figsize=(4.2, 0.45 * len(labels) + 0.8))
    y = range(len(labels))[::-1]
    ax.barh(list(y), list(values), color="#3b75af")
    ax.set_yticks(list(y), labels)
    ax.set_xlim(0, 1)
    ax.set_xlabel("probability")
    ax.set_title(title, fontsize=10)
    for yi, v in zip(y, values):
        ax.text(min(v + 0.02, 0.85), yi, f"{v:.2f}", va="center", fontsize=8)
    save_figure(fig, path)


def image_grid(images: Sequence, titles: Sequence[str], path: str | os.PathLike, ncols: int | None = None,
               row_labels: Sequence[str] | None = None, title: str | None = None, cell: float = 2.0) -> None:
    """A grid of pictures, [3,H,W] tensors in [0,1] or HxWx3 uint8 arrays (None leaves a cell empty), each with a
    small title."""
    n = len(images)
    ncols = ncols or n
    nrows = math.ceil(n / ncols)
    fig, axes = subplots(nrows, ncols, figsize=(cell * ncols, cell * nrows + (0.4 if title else 0)),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        if i < n and images[i] is not None:
            ax.imshow(images[i] if isinstance(images[i], np.ndarray) else tensor_to_uint8(images[i]))
            ax.set_title(titles[i], fontsize=8)
    if row_labels:
        for r, label in enumerate(row_labels[:nrows]):
            axes[r, 0].set_ylabel(label, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def plot_stitch(result: dict, rows: list[dict], metric: str, path: str | os.PathLike, settings: dict) -> None:
    layer_rows = [r for r in rows if not r["layer"].endswith("alone")]
    fig, ax = subplots(figsize=(6.5, 3.6))
    xs = list(range(len(layer_rows)))
    for m in [k for k in rows[0] if k != "layer"]:
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


def cka_heatmap(matrix: list[list[float]], rows: list[str], cols: list[str], title: str,
                path: str | os.PathLike) -> None:
    fig, ax = subplots(figsize=(0.55 * len(cols) + 2.5, 0.45 * len(rows) + 1.8))
    im = ax.imshow(matrix, vmin=0, vmax=1, cmap="magma", origin="lower")
    ax.set_xticks(range(len(cols)), cols, rotation=60, fontsize=7)
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    for i, row in enumerate(matrix):
        for j, v in enumerate(row):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6, color="w" if v < 0.6 else "k")
    fig.colorbar(im, ax=ax, fraction=0.04)
    ax.set_title(title, fontsize=9)
    save_figure(fig, path)


def plot_equivariance(result: dict, path: str | os.PathLike, model_name: str) -> None:
    rows = result["rows"]
    xs = list(range(len(rows)))
    fig, ax = subplots(figsize=(6.5, 3.6))
    for key, label in (("spatial_only", "compensated: spatial inverse"), ("permutation", "+ channel permutation"),
                       ("learned", "+ learned map M_g (m x m, chosen by the task)")):
        ax.plot(xs, [r[key] for r in rows], marker="o", label=label)
    ax.axhline(result["baseline"]["no_transform"], color="#555", ls=":", lw=1, label="no transform")
    ax.axhline(result["baseline"]["uncompensated"], color="#a33", ls="--", lw=1, label="transformed, uncompensated")
    ax.set_xticks(xs, [r["layer"] for r in rows], rotation=30, fontsize=8)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel(result["metric"].replace("_", " "))
    ax.set_title(f"{model_name}: equivariance to {result['transform']}", fontsize=10)
    ax.legend(fontsize=7)
    save_figure(fig, path)


def plot_sanity(result: dict, path: str | os.PathLike) -> None:
    fig, ax = subplots(figsize=(7, 3.6))
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
