"""Figures: matplotlib (without pyplot), saved atomically; imports no family (everything may use it)."""

from .figures import (
    bar_chart,
    cka_heatmap,
    image_grid,
    plot_equivariance,
    plot_sanity,
    plot_stitch,
    save_figure,
    subplots,
)

__all__ = ["bar_chart", "cka_heatmap", "image_grid", "plot_equivariance", "plot_sanity", "plot_stitch",
           "save_figure", "subplots"]
