"""A small CNN family trained here from scratch in seconds, on two procedural datasets, for the
equivalence questions that need many networks: different seeds (before/after training), different data.

Datasets (10 classes, 32x32 RGB, generated from a seed, nothing downloaded):
  shapes   — a filled shape (disk, square, diamond, ring, cross, bars, triangle, X, two dots) at a random
             place, size, colour and contrast on a noisy background;
  textures — an oriented grating (10 orientations) with random frequency, phase, colour and noise.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import CnnscopeError
from ..models import Model, small_model
from ..models.small import PREPROCESS, SIZE, SMALL_FORMAT, SmallCNN, load_small
from ..progress import iterate
from ..store import save_tensors
from .equivalence import StitchFit, stitch_experiment

DATASETS = ("shapes", "textures")


def _shape_mask(k: int, xx, yy, cx, cy, r):
    dx, dy = xx - cx, yy - cy
    ax, ay = dx.abs(), dy.abs()
    d = (dx ** 2 + dy ** 2).sqrt()
    return [
        d < r, (ax < r) & (ay < r), ax + ay < r, (d < r) & (d > r / 2),
        ((ax < r / 3) & (ay < r)) | ((ay < r / 3) & (ax < r)), (ax < r) & (ay < r / 3), (ay < r) & (ax < r / 3),
        (dy < r) & (dy > 2 * ax - r), ((ax - ay).abs() < r / 4) & (ax < r),
        (((dx - r / 2) ** 2 + dy ** 2).sqrt() < r / 3) | (((dx + r / 2) ** 2 + dy ** 2).sqrt() < r / 3),
    ][k]


def make_dataset(name: str, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n images [n,3,32,32] in [0,1] and labels [n]."""
    if name not in DATASETS:
        raise CnnscopeError(f"unknown dataset '{name}' ({', '.join(DATASETS)})")
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(SIZE, dtype=torch.float32), torch.arange(SIZE, dtype=torch.float32),
                            indexing="ij")
    labels = torch.randint(10, (n,), generator=g)
    images = torch.empty(n, 3, SIZE, SIZE)
    for i in range(n):
        k = int(labels[i])
        u = torch.rand(8, generator=g)
        fg, bg = torch.rand(3, generator=g), torch.rand(3, generator=g) * 0.5
        if name == "shapes":
            r = 5 + 6 * float(u[0])
            cx, cy = r + (SIZE - 2 * r) * float(u[1]), r + (SIZE - 2 * r) * float(u[2])
            mask = _shape_mask(k, xx, yy, cx, cy, r).float()
            img = bg.view(3, 1, 1) * (1 - mask) + fg.view(3, 1, 1) * mask
        else:
            theta = math.pi * (k + 0.3 * (float(u[0]) - 0.5)) / 10
            freq = 0.25 + 0.5 * float(u[1])
            wave = torch.sin(freq * (xx * math.cos(theta) + yy * math.sin(theta)) + 2 * math.pi * float(u[2]))
            img = bg.view(3, 1, 1) + (fg - bg).view(3, 1, 1) * (0.5 + 0.5 * wave)
        images[i] = (img + 0.08 * torch.randn(3, SIZE, SIZE, generator=g)).clamp(0, 1)
    return images, labels


def train_small(data: str, seed: int, epochs: int = 8, n_train: int = 4000, n_test: int = 1000,
                progress: bool = True) -> tuple[SmallCNN, dict]:
    """Train one SmallCNN (seed fixes initialisation and batch order; data is generated from its own seed)."""
    x, y = make_dataset(data, n_train, seed=1)
    xt, yt = make_dataset(data, n_test, seed=2)
    torch.manual_seed(seed)
    net = SmallCNN()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    xn, xtn = PREPROCESS.normalize(x), PREPROCESS.normalize(xt)
    history = []
    for _ in iterate(range(epochs), f"train-small {data} seed {seed}", "epoch", show=progress):
        net.train()
        order = torch.randperm(n_train, generator=g)
        for i in range(0, n_train, 64):
            idx = order[i:i + 64]
            loss = F.cross_entropy(net(xn[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            history.append(float(loss.detach()))
    net.eval()
    with torch.no_grad():
        acc = float((net(xtn).argmax(1) == yt).float().mean())
    return net, {"data": data, "seed": seed, "epochs": epochs, "test_accuracy": acc, "final_loss": history[-1]}


def save_small(net: SmallCNN, info: dict, path: str | Path) -> None:
    save_tensors(net.state_dict(), path, SMALL_FORMAT, info=json.dumps(info))


def untrained(seed: int) -> SmallCNN:
    torch.manual_seed(seed)
    return SmallCNN().eval().requires_grad_(False)


def seed_data_experiment(folder: Path, epochs: int = 8, n_images: int = 600, task_epochs: int = 4,
                         progress: bool = True) -> dict:
    """Stitching tables for: same data, different seeds, before and after training; and different data.
    Networks are trained (or reused from `folder`) and evaluated on held-out `shapes` images."""
    folder.mkdir(parents=True, exist_ok=True)

    def trained(data: str, seed: int) -> Model:
        path = folder / f"small_{data}_seed{seed}.safetensors"
        if path.is_file():
            net, _ = load_small(path)
        else:
            net, info = train_small(data, seed, epochs, progress=progress)
            save_small(net, info, path)
        return small_model(net, f"{data}/seed{seed}")

    images, labels = make_dataset("shapes", n_images, seed=3)
    n_fit = n_images * 4 // 5
    layers = ["block1", "block2", "block3", "block4"]
    cases = {
        "same data, different seeds, after training": (trained("shapes", 0), trained("shapes", 1), labels),
        "same data, different seeds, before training": (small_model(untrained(0), "init/seed0"),
                                                        small_model(untrained(1), "init/seed1"), None),
        "different data (textures -> shapes)": (trained("textures", 0), trained("shapes", 1), labels),
    }
    out = {}
    for case, (a, b, lab) in cases.items():
        res = stitch_experiment(a, b, layers, images[:n_fit], images[n_fit:],
                                lab[:n_fit] if lab is not None else None, lab[n_fit:] if lab is not None else None,
                                StitchFit(task_epochs, progress=progress))
        out[case] = {"a": a.name, "b": b.name, "result": res,
                     "metric": "top1_error" if lab is not None else "disagreement_with_b"}
    return out
