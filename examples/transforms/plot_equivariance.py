"""
Equivariance to a vertical flip
===============================

Is the representation of a flipped picture a predictable function of the original's? Lenc & Vedaldi test
:math:`\\Phi(gx) \\approx M_g \\Phi(x)`: after layer :math:`L` the network is given the spatial inverse of
:math:`g` and then a learned map :math:`M_g` (here an :math:`m \\times m` convolution across channels), and
the rest of the network runs on. If the compensated network predicts as well on flipped pictures as the
original does on upright ones, layer :math:`L` is equivariant to :math:`g`. :math:`M_g \\approx I` means
*invariant*.

The map is fitted in closed form (ridge regression on the fit pictures), its support and ridge chosen by
the network's own predictions on a held-back part.
"""

# %%
# Without a labelled folder the error is the disagreement with the network's own prediction on the upright
# picture (here: random crops of the bundled photographs). ``cnnscope equivariance --transform vflip
# --images FOLDER`` with a ``labels.csv`` measures top-1 error instead.
import matplotlib.pyplot as plt

import cnnscope

layers = ["stem", "stage2", "stage4"]
rows = cnnscope.equivariance("efficientnet_lite0", layers, "vflip", limit=40)
base = rows[0].baseline
print(f"no transform {base['no_transform']:.3f}, flipped and uncompensated {base['uncompensated']:.3f}")
print(f"{'layer':8} {'spatial inverse':>16} {'+ permutation':>14} {'+ learned M_g':>14} {'map':>9} {'R2':>6}")
for r in rows:
    row = r.row
    print(f"{row['layer']:8} {row['spatial_only']:16.3f} {row['permutation']:14.3f} {row['learned']:14.3f} "
          f"{row['map']:>9} {row['learned_r2']:6.2f}")

# %%
# The chart of the talk: error by layer for the original, the uncompensated flip and each compensation.
xs = range(len(rows))
fig, ax = plt.subplots(figsize=(6.5, 3.6))
for key, label in (("spatial_only", "spatial inverse only"), ("permutation", "+ channel permutation"),
                   ("learned", "+ learned map M_g")):
    ax.plot(xs, [r.row[key] for r in rows], marker="o", label=label)
ax.axhline(base["no_transform"], color="#555", ls=":", label="original")
ax.axhline(base["uncompensated"], color="#a33", ls="--", label="flipped, uncompensated")
ax.set_xticks(list(xs), layers)
ax.set_ylim(-0.02, 1.02)
ax.set_ylabel(rows[0].metric.replace("_", " "))
ax.legend(fontsize=7)
fig.tight_layout()
plt.show()

# %%
# How to read it: the learned map recovers much of the gap between the flipped and the original picture
# at every layer, where a spatial flip alone (invariance) does not. The number of test pictures is small
# here (one picture is a step of 1/8); the ordering, not the third digit, is the finding. Each row's
# ``invariant_channels`` counts channels whose row of M_g is the identity, against a random map's count.
print("invariant channels (vs a random orthogonal map):",
      {r.row["layer"]: (r.row["invariant_channels"], r.row["null_invariant_channels"]) for r in rows})
