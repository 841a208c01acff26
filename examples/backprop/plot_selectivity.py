"""
Are the maps selective?
=======================

A visualisation of *one* neuron should change when we ask about another. Mahendran & Vedaldi (ECCV'16)
measured it: backpropagate from the most active neuron of a layer and from random neurons, and correlate
the maps. High correlation means the map shows the picture, not the neuron.
"""

# %%
import matplotlib.pyplot as plt

import cnnscope

r = cnnscope.selectivity("efficientnet_lite0", "stage6", limit=6)
methods = list(r.correlations)
print(f"{'method':10}", *[f"{k:>24}" for k in r.correlations[methods[0]]])
for m in methods:
    print(f"{m:10}", *[f"{v:24.3f}" for v in r.correlations[m].values()])

# %%
# Correlation between maps of different neurons, per method (6 bundled photographs).
kinds = list(r.correlations[methods[0]])
fig, ax = plt.subplots(figsize=(7, 3.2))
width = 0.8 / len(kinds)
for i, kind in enumerate(kinds):
    ax.bar([j + i * width for j in range(len(methods))], [r.correlations[m][kind] for m in methods], width,
           label=kind)
ax.set_xticks([j + width * (len(kinds) - 1) / 2 for j in range(len(methods))], methods)
ax.set_ylabel("map correlation")
ax.axhline(0, color="black", linewidth=0.5)
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %%
# How to read it: DeConvNet and DeSaliNet give nearly the same map whichever neuron they start from
# (correlation near 1): they are not neuron-selective. SaliNet's maps differ (near 0).
