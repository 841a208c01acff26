"""Matplotlib figures, saved atomically (the low layer: every family may draw with it; it imports none)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..images import tensor_to_uint8  # noqa: E402
from ..store import atomic_path  # noqa: E402


def save_figure(fig, path: str | os.PathLike, dpi: int = 110) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)


def bar_chart(labels: Sequence[str], values: Sequence[float], title: str, path: str | os.PathLike) -> None:
    """Horizontal bars, first label on top (for top-k predictions)."""
    fig, ax = plt.subplots(figsize=(4.2, 0.45 * len(labels) + 0.8))
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
    """A grid of [3,H,W] tensors in [0,1] (None leaves a cell empty), each with a small title."""
    n = len(images)
    ncols = ncols or n
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(cell * ncols, cell * nrows + (0.4 if title else 0)),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        if i < n and images[i] is not None:
            ax.imshow(tensor_to_uint8(images[i]))
            ax.set_title(titles[i], fontsize=8)
    if row_labels:
        for r, label in enumerate(row_labels[:nrows]):
            axes[r, 0].set_ylabel(label, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
