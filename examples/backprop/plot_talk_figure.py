"""
SaliNet, DeConvNet and DeSaliNet
================================

Backpropagation induces a *reversed network*: the same convolutions transposed, run from a target back to
the pixels. What differs between the three classic visualisations is only the backward rule of the
nonlinearities (and of max-pool). With backward signal :math:`g` at an activation with input :math:`x`:

* **SaliNet** (the gradient, Simonyan et al. 2014): :math:`g \\cdot f'(x)`;
* **DeConvNet** (Zeiler & Fergus 2014): rectify the signal and ignore the forward pass, :math:`\\max(g, 0)`;
* **DeSaliNet** (Mahendran & Vedaldi ECCV'16, = guided backprop): both, :math:`\\max(g, 0) \\cdot f'(x)`.

This is the talk's figure: for a class of each picture, the three maps side by side.
"""

# %%
import matplotlib.pyplot as plt

import cnnscope

pictures = ["sample:chelsea", "sample:coffee", "sample:astronaut"]
results = cnnscope.saliency("efficientnet_lite0", pictures)
for r in results:
    print(" | ".join(row["target"] for row in r.rows))
print("note:", results[0].notes[0])

# %%
# ``pictures()`` gives, per target, the picture as the network saw it and each method's map (signed:
# red positive, blue negative).
# Each picture has two targets (the last stage's whole code and the top class); the class is shown.
fig, axes = plt.subplots(len(results), 4, figsize=(9.5, 2.5 * len(results)))
for row, r in zip(axes, results):
    for ax, (tensor, caption) in zip(row, r.pictures()[4:8]):
        ax.imshow(tensor.permute(1, 2, 0).numpy())
        ax.set_title(caption, fontsize=8)
        ax.axis("off")
fig.tight_layout()
plt.show()

# %%
# How to read it: SaliNet's map is the gradient, speckled and faint; DeSaliNet's is a crisp outline of the
# object. DeConvNet's is nearly the same pattern for every picture (a checkerboard of the strides): with no
# max-pool switches to carry the picture's layout back (EfficientNet-Lite0 has none; the note says so), the
# rectified backward pass ignores the forward one and keeps no image information, which is the
# ``deconvnet-image-information`` finding of ``cnnscope reproduce``. The crispness of DeSaliNet is the rule's
# doing, not the class's: see the selectivity example, where its map hardly changes with the neuron.
