"""
Activation maximisation, with diversity
=======================================

What excites a unit? Activation maximisation looks for the picture that drives one unit of the network as
high as it goes,

.. math:: \\min_\\theta \\; -\\frac{\\langle e_k, \\Phi_L(T(x(\\theta))) \\rangle}{Z} \\; (+\\, R(x)),

where :math:`x(\\theta)` is the picture's parametrisation (Fourier coefficients with decorrelated colour,
after Olah et al. 2017), :math:`T` a random jitter, scale and rotation drawn each step (transformation
robustness) and :math:`Z` the unit's largest response to natural images. A class picture is then *judged*
by networks that never saw the optimisation (EfficientNet-Lite1 and Lite2): if they too see the class, the
picture is about the class, not about Lite0's quirks.
"""

# %%
# Two classes, one picture each. ``judge_rank`` is the class's rank under each judge (0 = its top class).
import matplotlib.pyplot as plt

import cnnscope

classes = cnnscope.maximize("efficientnet_lite0", classes=["goldfinch", "volcano"], iters=128)
for name, ranks in zip(["goldfinch", "volcano"], classes.judge_rank):
    print(f"{name:10} rank under each judge (0 = its top class): {ranks}")

# %%
# A channel of stage 5, three pictures pushed apart by Lucid's diversity term (a penalty on the similarity
# of their Gram matrices): one channel can respond to several different things.
diverse = cnnscope.maximize("efficientnet_lite0", "stage5", 7, where="channel", batch=3, diversity=0.5, iters=128)
print("activation over the natural-image maximum:", [round(a, 1) for a in diverse.activation_ratio])

# %%
fig, axes = plt.subplots(1, 5, figsize=(12, 2.9))
for ax in axes:
    ax.axis("off")
for ax, picture, name in zip(axes[:2], classes.images, ["goldfinch", "volcano"]):
    ax.imshow(picture)
    ax.set_title(f"class {name}")
for ax, picture in zip(axes[2:], diverse.images):
    ax.imshow(picture)
axes[3].set_title("stage5 channel 7: three diverse pictures")
fig.tight_layout()
plt.show()

# %%
# How to read it: the class pictures show the class's parts (a goldfinch's yellow and black wing bars, a
# volcano's cone and glow) scattered over the frame, since nothing asked for one object. A picture with a
# high ``activation_ratio`` but a poor judge rank excites Lite0 without looking like the class to others.
# ``cnnscope maximize --class goldfinch`` and ``cnnscope maximize --layer stage5 --channel 7 --where channel
# --batch 3 --diversity 0.5`` make the same pictures from the command line.
