"""
A report of a whole model
=========================

``cnnscope report`` composes the families into a static site of one model: per layer the inversions of a
few pictures, an activation-maximisation atlas of its channels, each channel's top-activating patches and
backprop strips (Image | DeConvNet | SaliNet | DeSaliNet). Every job is resumable; ``--workers`` and
``--ray`` spread them. Here the quick form (two layers, a few channels).
"""

# %%
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
from PIL import Image

import cnnscope

folder = Path(tempfile.mkdtemp(prefix="cnnscope-report-"))
site = cnnscope.report("efficientnet_lite0", folder, quick=True)
print(f"{site.computed} jobs computed; layers {site.layers}; open {Path(site.index).relative_to(folder)}")

# %%
# Some of the pictures the site shows, as written: per layer the atlas (each channel's picture), the
# inversion of the cat, and its backprop strip.
fig, axes = plt.subplots(len(site.layers), 6, figsize=(12, 2.2 * len(site.layers)),
                         gridspec_kw={"width_ratios": [1, 1, 1, 1, 1, 4]})
for row, layer in zip(axes, site.layers):
    pictures = [*sorted((folder / "atlas" / layer).glob("c*.png"))[:4], folder / "invert" / layer / "chelsea.png",
                folder / "backprop" / layer / "chelsea.png"]
    for ax, png in zip(row, pictures):
        ax.imshow(Image.open(png))
        ax.set_title(f"{layer}: {png.parent.parent.name} {png.stem}", fontsize=7)
        ax.axis("off")
fig.tight_layout()
plt.show()
