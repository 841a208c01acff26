"""
Inversion across depth
======================

What does a layer keep of the picture? Mahendran & Vedaldi's pre-image answers by optimisation: start from
noise and look for an image :math:`x` whose code :math:`\\Phi_L(x)` at layer :math:`L` matches the code
:math:`\\Phi_0 = \\Phi_L(x_0)` of a photograph,

.. math:: \\min_x \\; \\frac{\\lVert \\Phi_L(x) - \\Phi_0 \\rVert^2}{\\lVert \\Phi_0 \\rVert^2} + R(x).

Deeper codes keep less of the photograph, and what they drop can be filled in many ways: two pre-images of
the same code, started from different noise, drift apart with depth (the *restart ambiguity*). Here both are
measured on EfficientNet-Lite0 (real ImageNet weights) for the bundled photograph of a cat.
"""

# %%
# One call inverts the cat at four depths, two pre-images per code (``restarts=2``). Small pictures and a
# short run keep the gallery quick; ``cnnscope invert sample:chelsea --layer stages`` is the full figure.
import matplotlib.pyplot as plt

import cnnscope

layers = ["stem", "stage2", "stage4", "stage6"]
results = cnnscope.invert("efficientnet_lite0", "sample:chelsea", layers, restarts=2, size=128, iters=120)

# %%
# Each result holds the pictures and the numbers. M&V report the error as
# :math:`100 \cdot \sqrt{\lVert \Phi(x^*) - \Phi_0 \rVert^2 / \lVert \Phi_0 \rVert^2}`; the ambiguity is the
# RMS pixel distance between the two restarts (pixels in [0, 1]).
print(f"{'layer':8} {'M&V error':>10} {'ambiguity':>10}")
for layer, r in zip(layers, results):
    mv_error = 100 * r.normalised_error[0] ** 0.5
    print(f"{layer:8} {mv_error:10.1f} {r.ambiguity['mean_mutual_rms_distance']:10.3f}")

# %%
# The picture: the photograph's code at each depth, reconstructed twice. The stem keeps the picture nearly
# exactly; by stage 6 the cat's parts (eyes, fur, whiskers) are there, but where they go is free, and the
# two restarts disagree.
original = cnnscope.load_image("sample:chelsea")
fig, axes = plt.subplots(2, len(layers) + 1, figsize=(10, 4.4))
for ax in axes.flat:
    ax.axis("off")
axes[0, 0].imshow(original.permute(1, 2, 0).numpy())
axes[0, 0].set_title("photograph")
for col, (layer, r) in enumerate(zip(layers, results), start=1):
    for row in range(2):
        axes[row, col].imshow(r.images[row])
    axes[0, col].set_title(f"{layer}\nM&V error {100 * r.normalised_error[0] ** 0.5:.0f}")
fig.tight_layout()
plt.show()

# %%
# How to read it: the error is what the optimiser reached, not what the layer can keep; a high error at
# the stem means the run was too short. The spread between restarts is the finding: it grows with depth.
