"""
The randomisation sanity check
==============================

Adebayo et al. (2018) asked whether a saliency map depends on what the network learned. Re-initialise the
network's blocks one after another from the top and compare each map with the trained network's (Spearman
rank correlation). A method that explains the model should lose its map as the weights go; one that keeps
it is showing the picture.
"""

# %%
import matplotlib.pyplot as plt

import cnnscope

r = cnnscope.sanity("efficientnet_lite0", "sample:chelsea")
print("target:", r.target)
for method, curve in r.spearman.items():
    print(f"{method:10}", " ".join(f"{v:5.2f}" for v in curve))

# %%
fig, ax = plt.subplots(figsize=(7, 3.4))
for method, curve in r.spearman.items():
    ax.plot(range(len(curve)), curve, marker="o", label=method)
ax.set_xticks(range(len(r.blocks)), r.blocks, rotation=60, ha="right", fontsize=7)
ax.set_ylabel("Spearman with the trained map")
ax.set_xlabel("blocks re-initialised, from the top down to")
ax.legend()
fig.tight_layout()
plt.show()

# %%
# How to read it: the gradient's curve falls as soon as the top blocks are random; guided backprop
# (DeSaliNet) and DeConvNet keep much of their map long after, which is Adebayo et al.'s warning.
