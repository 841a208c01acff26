"""
HOG: a hand-crafted representation, inverted and rotated
========================================================

The same questions apply to a representation nobody trained. cnnscope's HOG is the UoCTTI variant (as
VLFeat's ``vl_hog``) written as a differentiable module, so the pre-image optimiser inverts it as it
inverts a CNN (Mahendran & Vedaldi's HOGb pre-image), and rotation equivariance
:math:`\\mathrm{HOG}(gx) \\approx M_g\\, \\mathrm{HOG}(x)` can be fitted by ridge regression.
"""

# %%
import matplotlib.pyplot as plt

import cnnscope

glyphs = cnnscope.hog("sample:astronaut", size=256)
print("HOG features:", glyphs.features_shape, "for a picture of", glyphs.image_shape)

# %%
# The pre-image of HOG with bilinear binning (``hogb``): M&V's method, pixels with a TV prior.
preimage = cnnscope.invert("hogb", "sample:astronaut", size=160, iters=150)
print(f"normalised error {preimage.normalised_error[0]:.3f}")

# %%
fig, axes = plt.subplots(1, 3, figsize=(10, 3.5))
for ax in axes:
    ax.axis("off")
axes[0].imshow(cnnscope.load_image("sample:astronaut").permute(1, 2, 0).numpy())
axes[0].set_title("photograph")
axes[1].imshow(glyphs.images[0])
axes[1].set_title("HOG glyphs")
axes[2].imshow(preimage.images[0])
axes[2].set_title("HOG pre-image")
fig.tight_layout()
plt.show()

# %%
# Rotation by 45°: the relative error :math:`\lVert M_g \Phi(x) - \Phi(gx) \rVert / \lVert \Phi(gx) \rVert`
# on held-out pictures, for no compensation, the rotation of the cells alone, and a learned 3×3 map.
rot = cnnscope.equivariance("hog", None, "rotate:45", limit=24, neighbourhood="1,3")
for method, error in rot.relative_error.items():
    if not method.endswith("_fit"):
        print(f"{method:24} {error:.3f}")
print(f"({rot.test} held-out pictures, {rot.valid_cells} of {rot.cells} cells inside the rotated picture)")

# %%
# How to read it: the pre-image keeps edges and their orientations but loses colour and fine texture,
# which HOG never had. A learned map compensates the rotation much better than rotating the cells alone,
# because the orientation bins must be permuted and mixed too.
