"""
Your own model: a plain nn.Module and a Hugging Face CNN
========================================================

Every method takes any ``torch.nn.Module``. cnnscope analyses a frozen copy in eval mode, so nothing it
does changes your network (its training flag, BatchNorm statistics, ``requires_grad`` and hooks stay as
they were). Here: a small CNN written and trained in this example, then a Hugging Face ``transformers``
ResNet (random weights: the hub is not reachable here, and the architecture is what matters).
"""

# %%
# A plain module, trained for a few seconds on cnnscope's procedural shapes (ten classes: disc, square,
# diamond, ring, cross, …, 32 px pictures).
import matplotlib.pyplot as plt
import torch
from torch import nn

import cnnscope
from cnnscope.transforms.smallnets import make_dataset

SHAPES = ["disc", "square", "diamond", "ring", "cross", "bar", "column", "triangle", "x", "pair"]


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU())
        self.classifier = nn.Linear(64, 10)

    def forward(self, x):
        return self.classifier(self.features(x).mean((2, 3)))


torch.manual_seed(0)
net = TinyNet()
images, labels = make_dataset("shapes", 4000, seed=1)
optimiser = torch.optim.Adam(net.parameters(), lr=3e-3)
for _ in range(6):  # epochs
    for i in range(0, len(images), 64):
        loss = nn.functional.cross_entropy(net((images[i:i + 64] - 0.5) / 0.25), labels[i:i + 64])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
test_x, test_y = make_dataset("shapes", 500, seed=2)
net.eval()
with torch.no_grad():
    print(f"test accuracy {(net((test_x - 0.5) / 0.25).argmax(1) == test_y).float().mean():.2f}")

# %%
# Give cnnscope its preprocessing and class names once; every verb then takes the model.
model = cnnscope.load_model(net, preprocess={"input_size": 32, "mean": (0.5,) * 3, "std": (0.25,) * 3},
                            classes=SHAPES)
for row in cnnscope.list_layers(model)[:12:2]:
    print(f"{row.name:14} {str(row.shape):16} receptive field {row.rf}  stride {row.stride}")

# %%
# This net has max-pool, so DeConvNet and DeSaliNet use its switches: their maps follow the cross's arms.
# Class pictures of a 32 px network trained for seconds are coarse: colour blocks in the class's layout.
picture = test_x[0]
maps = cnnscope.saliency(model, picture, classes=int(test_y[0]))
crosses = cnnscope.maximize(model, classes=["cross", "ring"], size=32, iters=128)
fig, axes = plt.subplots(1, 6, figsize=(12, 2.4))
for ax, (tensor, caption) in zip(axes, maps.pictures()):
    ax.imshow(tensor.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set_title(caption.replace("\n", " "), fontsize=7)
for ax, img, name in zip(axes[4:], crosses.images, ["cross", "ring"]):
    ax.imshow(img, interpolation="nearest")
    ax.set_title(f"class {name}", fontsize=8)
for ax in axes:
    ax.axis("off")
fig.tight_layout()
plt.show()

# %%
# A Hugging Face CNN. Its forward returns an output object with ``.logits``, which cnnscope reads; it
# names no stages, so cnnscope finds them from the structure (``stage1`` …, ``head``, ``logits``).
import transformers  # noqa: E402  (a test-only extra of cnnscope's; any HF image classifier works alike)

transformers.logging.set_verbosity_error()
torch.manual_seed(0)
resnet = transformers.ResNetForImageClassification(transformers.ResNetConfig(
    embedding_size=16, hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1], num_labels=10)).eval()
hf = cnnscope.load_model(resnet, preprocess={"input_size": 96})
print("stages found:", dict(hf.aliases))

# %%
# The compatibility notes: which nonlinearities the backward rules reach, and what cannot apply.
s = cnnscope.saliency(hf, "sample:chelsea", classes=3)
print("coverage:", s.coverage["summary"])
print("notes:", s.notes or "none")
inv = cnnscope.invert(hf, "sample:chelsea", "stage2", size=96, iters=60)
print(f"inversion at stage2: normalised error {inv.normalised_error[0]:.3f}")
fig, axes = plt.subplots(1, 5, figsize=(11, 2.5))
for ax, (tensor, caption) in zip(axes, [*s.pictures()[:4], (inv.tensors[0], "pre-image, stage2")]):
    ax.imshow(tensor.permute(1, 2, 0).numpy())
    ax.set_title(caption.replace("\n", " "), fontsize=7)
    ax.axis("off")
fig.tight_layout()
plt.show()

# %%
# What each method needs: layer names are ``named_modules()`` names; pre-images and transformation
# analysis need only a differentiable forward; class pictures, sanity, equivariance and stitching need
# logits (a tensor, an object or dict with ``logits``, or a tuple whose first element is them);
# DeConvNet and DeSaliNet need to see the nonlinearities (a TorchScript model hides them, and they refuse
# it in one line rather than return the gradient under another name).
