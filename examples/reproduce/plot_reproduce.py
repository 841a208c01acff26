"""
Reproducing the talk's findings
===============================

``cnnscope reproduce`` measures the findings of Vedaldi's talk on a model, each as a job with a verdict:
*holds* (the numbers meet the stated expectation), *does not hold* (the note says where and why) or
*inconclusive*. Here six of the ten findings run on EfficientNet-Lite0 in their quick form (bundled
photographs, short runs); ``cnnscope reproduce --images FOLDER`` runs all ten on your labelled images.
"""

# %%
import tempfile

import matplotlib.pyplot as plt
from PIL import Image

import cnnscope

folder = tempfile.mkdtemp(prefix="cnnscope-findings-")
findings = "prior,inversion-depth,deconvnet-selectivity,deconvnet-image-information,hog-rotation,stitching"
result = cnnscope.reproduce("efficientnet_lite0", folder, findings=findings, quick=True)

# %%
# The verdict table (``findings.json`` holds the numbers; ``findings.html`` the page with every figure).
for f in result.findings:
    print(f"{f['id']:28} {f['verdict']:14} {f['claim'][:70]}")

# %%
rows = [[f["id"], f["verdict"], f["expected"][:58]] for f in result.findings]
fig, ax = plt.subplots(figsize=(10, 0.45 * len(rows) + 0.6))
ax.axis("off")
table = ax.table(cellText=rows, colLabels=["finding", "verdict", "expected"], loc="center", cellLoc="left",
                 colWidths=[0.27, 0.13, 0.6])
table.auto_set_font_size(False)
table.set_fontsize(8)
for (r, c), cell in table.get_celld().items():
    if r > 0 and c == 1:
        cell.set_facecolor({"holds": "#d9f2d9", "does not hold": "#f7d4d4"}.get(rows[r - 1][1], "#eeeeee"))
fig.tight_layout()
plt.show()

# %%
# Two of the figures the run wrote: the prior's effect on a pre-image, and the inversions across depth.
fig, axes = plt.subplots(2, 1, figsize=(10, 6.5))
for ax, name in zip(axes, ["prior.png", "inversion-depth.png"]):
    ax.imshow(Image.open(f"{folder}/{name}"))
    ax.axis("off")
fig.tight_layout()
plt.show()

# %%
# How to read it: a verdict is only as good as its numbers; read each finding's note. The stitching
# finding, for example, counts a learned stitch as recovering only where a random network's features (the
# null) do not stitch as well.
