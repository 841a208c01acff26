"""Figures: matplotlib, saved atomically; imports no family (everything may use it)."""

from .figures import bar_chart, image_grid, save_figure

__all__ = ["bar_chart", "image_grid", "save_figure"]
