"""
Equivalence: stitching and CKA
==============================

Do two networks compute the same thing? Lenc & Vedaldi's test is constructive: run network A up to a
layer, map its code with a learned :math:`1 \\times 1` convolution :math:`E`, and let network B finish,

.. math:: \\Phi_B(x) \\approx E\\, \\Phi_A(x).

If the stitched network predicts as B does, the two codes are equivalent up to :math:`E`. Centred kernel
alignment (CKA, Kornblith et al. 2019) asks a weaker, cheaper question for every pair of layers at once:
do the two codes arrange the same pictures alike?
"""

# %%
import matplotlib.pyplot as plt

import cnnscope

cka = cnnscope.cka("efficientnet_lite0", "efficientnet_lite1", limit=24)
fig, ax = plt.subplots(figsize=(6.2, 5))
im = ax.imshow(cka.cka, vmin=0, vmax=1, cmap="viridis")
ax.set_xticks(range(len(cka.layers_b)), cka.layers_b, rotation=60, fontsize=7)
ax.set_yticks(range(len(cka.layers_a)), cka.layers_a, fontsize=7)
ax.set_xlabel("EfficientNet-Lite1")
ax.set_ylabel("EfficientNet-Lite0")
ax.set_title(f"linear CKA on {cka.count} pictures")
fig.colorbar(im, ax=ax, fraction=0.04)
fig.tight_layout()
plt.show()

# %%
# Stitch Lite0 into Lite1 at two stages; the error is the disagreement with Lite1's own prediction.
stitches = cnnscope.stitch("efficientnet_lite0", "efficientnet_lite1", "stage2,stage4", quick=True)
kinds = ["naive", "random", "permutation", "regression", "task"]
print(f"{'layer':8} {'A alone':>8}", *[f"{k:>12}" for k in kinds])
for r in stitches:
    metric = next(iter(r.baseline["B"]))
    print(f"{r.row['layer_a']:8} {r.baseline['A'][metric]:8.2f}", *[f"{r.row[k][metric]:12.2f}" for k in kinds])
print(f"({metric}; Lite1 alone {stitches[0].baseline['B'][metric]:.2f})")

# %%
# How to read it: the heat map's bright diagonal says that layers at the same depth arrange pictures
# alike; stitching says more: a learned map makes Lite0's stage code usable by Lite1 where the naive and
# random stitches fail. A random network's stem stitches too (its features are nearly linear in the pixels),
# which is why ``cnnscope reproduce`` compares against such a null.
