"""
Texture synthesis and style transfer
====================================

A texture is what stays when positions are forgotten. Gatys et al. keep, at each of several layers, only
the Gram matrix :math:`G_L = F_L F_L^\\top / HW` of the feature map :math:`F_L` (which channels fire
together, averaged over positions), and look for a picture with the same Gram matrices,

.. math:: \\min_x \\; \\sum_L \\frac{\\lVert G(\\Phi_L(x)) - G_L \\rVert^2}{\\lVert G_L \\rVert^2}.

Add an inversion term at one deeper layer for a content photograph and the same optimiser does style
transfer. cnnscope runs it on EfficientNet-Lite0's first activation at each resolution (the rule behind
Gatys's choice of VGG layers).
"""

# %%
import matplotlib.pyplot as plt

import cnnscope

texture = cnnscope.texture("efficientnet_lite0", "sample:gravel", size=160, iters=150)
print("Gram loss per layer:", {k: round(v[0], 4) for k, v in texture.terms.items()})

# %%
# Style transfer: the cat's content at one layer, the gravel's Gram matrices at the style layers.
styled = cnnscope.style_transfer("efficientnet_lite0", "sample:chelsea", "sample:gravel", size=160, iters=150)

# %%
fig, axes = plt.subplots(1, 4, figsize=(11, 3))
for ax in axes:
    ax.axis("off")
axes[0].imshow(cnnscope.load_image("sample:gravel").permute(1, 2, 0).numpy())
axes[0].set_title("source: gravel")
axes[1].imshow(texture.images[0])
axes[1].set_title("synthesised texture")
axes[2].imshow(cnnscope.load_image("sample:chelsea").permute(1, 2, 0).numpy())
axes[2].set_title("content")
axes[3].imshow(styled.images[0])
axes[3].set_title("style transfer")
fig.tight_layout()
plt.show()

# %%
# How to read it: the synthesised texture should look like more of the same gravel, with no copy of any
# one stone; where it repeats whole patches, the optimiser has memorised rather than summarised. A
# feed-forward generator (``cnnscope train-texture-net``, after Ulyanov et al. and Johnson et al. 2016)
# learns to make such pictures in one pass.
