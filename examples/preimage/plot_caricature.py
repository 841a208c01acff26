"""
Caricatures and accentuation
============================

A caricature starts at the photograph and exaggerates whatever a layer already sees in it: it pushes the
code :math:`\\Phi_L(x)` further along the photograph's own code :math:`\\Phi_0 = \\Phi_L(x_0)`,

.. math:: \\min_x \\; -\\frac{\\langle \\Phi_0, \\Phi_L(x) \\rangle}{\\lVert \\Phi_0 \\rVert^2} + R(x),

so shallow layers sharpen edges and textures while deep layers sprout the eyes, ears and fur the network
uses to recognise a cat (Mahendran & Vedaldi IJCV'16). *Accentuation* (Hamblin et al. 2024) asks a
pointed question instead: what in this picture would read as another class, if we stay close to the
picture at a lower layer?
"""

# %%
import matplotlib.pyplot as plt

import cnnscope

layers = ["stage2", "stage4", "stage6"]
caricatures = cnnscope.caricature("efficientnet_lite0", "sample:chelsea", layers, size=128, iters=100)
for layer, r in zip(layers, caricatures):
    print(f"{layer}: <Phi0, Phi(x)> / |Phi0|^2 = {r.relative_response:.2f} (1 at the photograph)")

# %%
# Accentuate the cat towards "tiger": stay close to the photograph at a lower layer (the anchor) while
# pushing the class up. ``start_activation`` and ``final_activation`` are the class logit before and after.
accent = cnnscope.accentuate("efficientnet_lite0", "sample:chelsea", classes="tiger", size=128, iters=100)
print(f"tiger logit: {accent.start_activation[0]:.2f} -> {accent.final_activation[0]:.2f}; "
      f"anchor layer {accent.anchor_layer}")

# %%
original = cnnscope.load_image("sample:chelsea")
fig, axes = plt.subplots(1, 5, figsize=(12, 2.9))
for ax in axes:
    ax.axis("off")
axes[0].imshow(original.permute(1, 2, 0).numpy())
axes[0].set_title("photograph")
for ax, layer, r in zip(axes[1:4], layers, caricatures):
    ax.imshow(r.images[0])
    ax.set_title(f"{layer}: response x{r.relative_response:.2f}")
axes[4].imshow(accent.images[0])
axes[4].set_title("accentuated: tiger")
fig.tight_layout()
plt.show()

# %%
# How to read it: a caricature shows what the layer *uses* of this picture, amplified; the deeper the
# layer, the more the additions are object parts rather than edges. It is not a heat map: parts appear
# where the optimiser could add them, not only where they were.
