"""Equivariance and invariance of CNN layers (Lenc & Vedaldi CVPR'15 / IJCV'18): does Phi(g x) = M_g Phi(x)?

For a layer L and a transformation g, a map is inserted after L: the spatial inverse of g (on the layer's own
grid), then (a) nothing, (b) a channel permutation found by matching, or (c) a learned linear channel map.
The network then finishes on the compensated code, and its error on transformed images says how well M_g
exists.

The learned map is fitted in closed form — ridge regression of Phi(x) on the spatially inverted Phi(gx) over
all valid positions of the fit images and random rescaled crops of them (tens of thousands of samples even
on a 7x7 grid), pulled towards M = I, with the ridge strength chosen on a held-back fifth — and then, if
asked, refined by the network's own loss (kept only if that lowers the held-back loss). Invariance is read
off the learned map: a channel is invariant when its row of M_g is the identity row, scored per channel as
the share of its (variance-weighted) row on its own channel times the fraction of its variance the map
explains on held-out images; a random orthogonal map gives the null.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..data import random_crops
from ..errors import CnnscopeError
from ..layers import get_layer
from ..models import Model
from .equivalence import (
    Moments,
    RestOfNetwork,
    Stitch,
    choose_ridge,
    error_rates,
    features,
    fit_task,
    permutation_stitch,
)
from .transform import Transform

INVARIANCE_THRESHOLD = 0.5  # a channel is called invariant when its score reaches this
POSITIONS = 60_000  # positions per layer used to fit (sampled evenly over images): plenty for C <= 1280


def _metric(logits, labels, ref_pred) -> float:
    e = error_rates(logits, labels, ref_pred)
    return e["top1_error"] if labels is not None else e["disagreement_with_b"]


def channel_correlation(f: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Per channel Pearson correlation between two [N,C,H,W] maps over images and positions."""
    a = f.transpose(0, 1).reshape(f.shape[1], -1).double()
    b = h.transpose(0, 1).reshape(h.shape[1], -1).double()
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-12)


def invariance_scores(weight: torch.Tensor, input_variance: torch.Tensor, r2: torch.Tensor) -> torch.Tensor:
    """Per output channel c of a map f ~ W h: W_cc^2 var(h_c) / sum_d W_cd^2 var(h_d) (how much of the row
    is its own channel), times max(R^2_c, 0) (how well the map explains the channel). 1 for an identity row of
    a map that explains the channel; about 1/C for a random orthogonal row; 0 where nothing is explained."""
    energy = weight.double() ** 2 * input_variance.double()[None]
    share = torch.diagonal(energy) / energy.sum(1).clamp_min(1e-30)
    return share * r2.double().clamp_min(0)


def random_orthogonal(c: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(c, c, generator=gen, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))[None]


@dataclass
class LayerFit:
    """What one layer's fit leaves: the learned map, the permutation, and the statistics for the table."""

    learned: Stitch
    permutation: Stitch
    ridge: float
    refined: bool
    fit_moments: Moments
    test_moments: Moments

    def invariance(self, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Per channel invariance scores of the learned map, and of a random orthogonal null map (its bias
        fitted, so only the mixing differs) — see `invariance_scores`."""
        weight = self.learned.conv.weight[:, :, 0, 0].detach().double()
        bias = self.learned.conv.bias.detach().double()
        var = self.fit_moments.input_variance()
        scores = invariance_scores(weight, var, self.test_moments.r2(weight, bias))
        q = random_orthogonal(len(weight), seed).to(var.device)
        q_bias = (self.fit_moments.xy[-1] - q @ self.fit_moments.xx[-1, :-1]) / self.fit_moments.count
        return scores, invariance_scores(q, var, self.test_moments.r2(q, q_bias))


class _Pairs:
    """Phi(x) and the spatially inverted Phi(gx) at one layer, a chunk of images at a time."""

    def __init__(self, model: Model, layer: str, transform: Transform):
        info = get_layer(model, layer)
        if info.stride is None or len(info.shape) != 3:
            raise CnnscopeError(f"layer {layer} has no spatial grid (shape {info.shape}); choose a convolutional layer")
        self.model, self.layer, self.transform, self.inverse = model, layer, transform, transform.inverse()
        self.stride, self.offset, self.size = info.stride[0], info.offset[0], model.input_size
        self.shape = info.shape
        self.mask = self.inverse.valid_cells(info.shape[1:], self.stride, self.offset, self.size)

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        norm = self.model.preprocess.normalize
        f = features(self.model, self.layer, norm(images))
        moved = features(self.model, self.layer, norm(self.transform.image(images)))
        return f, self.inverse.features(moved, self.stride, self.offset, self.size, padding="border")


def _chunks(x: torch.Tensor, size: int = 16):
    for i in range(0, len(x), size):
        yield x[i:i + size]


def _moments(pairs: _Pairs, images: torch.Tensor, positions: int | None, gen: torch.Generator) -> Moments:
    c = pairs.shape[0]
    m = Moments(c, c)
    for chunk in _chunks(images):
        f, h = pairs(chunk)
        m.add(h, f, pairs.mask, positions, gen)
    return m


def fit_layer(model: Model, layer: str, transform: Transform, fit_images: torch.Tensor,
              test_images: torch.Tensor | None, fit_targets: tuple, *, crops: int = 1, ridge: float | None = None,
              task_epochs: int = 0, seed: int = 0, progress: bool = False) -> LayerFit:
    """The learned M_g at one layer (see the module docstring). fit_targets = (labels, reference logits);
    test_images None leaves `test_moments` empty for the caller to fill."""
    pairs = _Pairs(model, layer, transform)
    gen = torch.Generator().manual_seed(seed)
    # held-back fifth by source image (a crop never validates the image it was cut from)
    order = torch.randperm(len(fit_images), generator=gen)
    n_val = len(fit_images) // 5 if len(fit_images) >= 5 else 0
    sets = [fit_images[order[n_val:]], fit_images[order[:n_val]]]
    if crops:
        sets = [torch.cat([s, random_crops(list(s), crops * len(s), model.input_size, gen)]) if len(s) else s
                for s in sets]
    per_image = max(1, POSITIONS // (len(fit_images) * (1 + crops)))
    train = _moments(pairs, sets[0], per_image, gen)
    held = _moments(pairs, sets[1], per_image, gen) if n_val else None
    if ridge is None:
        ridge = choose_ridge(train, held, towards_identity=True) if held is not None else 0.1
    fit = train + held if held is not None else train
    weight, bias = fit.solve(ridge, towards_identity=True)
    c = pairs.shape[0]
    learned = Stitch(c, c).to(weight.device).set_linear(weight.float(), bias.float())
    refined = False
    if task_epochs:
        refined = _refine(learned, pairs, fit_images, fit_targets, task_epochs, seed, progress)
    test = _moments(pairs, test_images, None, gen) if test_images is not None else Moments(c, c)
    return LayerFit(learned, permutation_stitch(fit.correlation()), ridge, refined, fit, test)


def _refine(learned: Stitch, pairs: _Pairs, images: torch.Tensor, targets: tuple, epochs: int, seed: int,
            progress: bool) -> bool:
    """The network's own loss from the ridge map, with the map of the epoch (0 = the ridge map) that does best
    on a held-back fifth of the fit images. True if training moved it."""
    h = torch.cat([pairs(chunk)[1] for chunk in _chunks(images)])
    n_val = len(h) // 5
    if n_val == 0:
        return False
    labels, ref = targets

    def pick(t, part):
        return t[part] if t is not None else None

    tr, va = slice(n_val, None), slice(0, n_val)
    rest = RestOfNetwork(pairs.model, pairs.layer)
    fit_task(learned, rest, h[tr], pick(labels, tr), pick(ref, tr) if labels is None else None, epochs=epochs,
             seed=seed, progress=progress,
             validation=(h[va], pick(labels, va), pick(ref, va) if labels is None else None))
    return learned.best_epoch > 0


def equivariance_experiment(model: Model, layers: Sequence[str], transform: Transform, fit_images: torch.Tensor,
                            test_images: torch.Tensor, fit_labels: torch.Tensor | None = None,
                            test_labels: torch.Tensor | None = None, *, task_epochs: int = 0, seed: int = 0,
                            ridge: float | None = None, crops: int = 1, progress: bool = True) -> dict:
    """Is Phi(gx) = M_g Phi(x)? Compensate g inside the network after each layer and measure its error.

    Parameters
    ----------
    model : Model
    layers : sequence of str
        Convolutional layers (with a spatial grid).
    transform : Transform
        g, acting on images and (through each layer's stride and offset) on feature maps.
    fit_images, test_images : Tensor
        [N,3,S,S] in [0,1] at the model's input size.
    fit_labels, test_labels : Tensor, optional
        Class labels; without them the error is disagreement with the untransformed prediction.
    task_epochs : int
        Epochs of the network's own loss refining the closed-form map (0: closed form only).
    seed : int
        Seeds the crops, the position sampling, the refinement and the null map.
    ridge : float, optional
        Ridge strength towards M = I (None: chosen on a held-back fifth of the fit set).
    crops : int
        Random rescaled crops per fit image added to the regression's samples.
    progress : bool

    Returns
    -------
    dict
        ``baseline`` (errors without g and with g uncompensated), ``rows`` per layer (errors compensated by
        the spatial inverse only, plus a channel permutation, plus the learned map; held-out R^2 of the
        learned map and of the spatial inverse alone; the invariance scores per channel, how many reach
        INVARIANCE_THRESHOLD, and the same for the null map), ``maps`` (layer -> learned map module),
        ``metric``, ``transform``.
    """
    size = model.input_size
    for name, x in (("fit", fit_images), ("test", test_images)):
        if x.dim() != 4 or x.shape[-1] != size or x.shape[-2] != size:
            raise CnnscopeError(f"{name} images must be [N,3,{size},{size}] (the model's input size)")
    norm = model.preprocess.normalize
    with torch.no_grad():
        ref_fit = torch.cat([model(norm(c)).cpu() for c in _chunks(fit_images)])
        ref_test = torch.cat([model(norm(c)).cpu() for c in _chunks(test_images)])
        g_test = torch.cat([model(norm(transform.image(c))).cpu() for c in _chunks(test_images)])
    ref_pred = ref_test.argmax(1)
    baseline = {"no_transform": _metric(ref_test, test_labels, ref_pred),
                "uncompensated": _metric(g_test, test_labels, ref_pred)}
    rows, maps = [], {}
    for layer in layers:
        # test images: their features give both the errors below and the map's held-out R^2 (one pass)
        fit = fit_layer(model, layer, transform, fit_images, None, (fit_labels, ref_fit), crops=crops,
                        ridge=ridge, task_epochs=task_epochs, seed=seed, progress=progress)
        pairs = _Pairs(model, layer, transform)
        rest = RestOfNetwork(model, layer)
        c = pairs.shape[0]
        spatial = Stitch(c, c).set_linear(torch.eye(c), torch.zeros(c))
        logits = {"spatial_only": [], "permutation": [], "learned": []}
        with torch.no_grad():
            for chunk in _chunks(test_images):
                f, h = pairs(chunk)
                fit.test_moments.add(h, f, pairs.mask)
                for name, stitch in (("spatial_only", spatial), ("permutation", fit.permutation),
                                     ("learned", fit.learned)):
                    logits[name].append(rest(stitch.to(h.device)(h)).cpu())
        weight = fit.learned.conv.weight[:, :, 0, 0].detach().double()
        bias = fit.learned.conv.bias.detach().double()
        scores, null = fit.invariance(seed)
        eye = torch.eye(c, dtype=torch.float64)
        row = {"layer": layer, "channels": c, "stride": pairs.stride,
               **{k: _metric(torch.cat(v), test_labels, ref_pred) for k, v in logits.items()},
               "learned_r2": round(fit.test_moments.pooled_r2(weight, bias), 4),
               "spatial_r2": round(fit.test_moments.pooled_r2(eye, torch.zeros(c, dtype=torch.float64)), 4),
               "ridge": fit.ridge, "refined": fit.refined,
               "invariant_channels": int((scores >= INVARIANCE_THRESHOLD).sum()),
               "null_invariant_channels": int((null >= INVARIANCE_THRESHOLD).sum()),
               "mean_invariance": round(float(scores.mean()), 4), "null_mean_invariance": round(float(null.mean()), 4),
               "invariance": [round(float(v), 4) for v in scores]}
        rows.append(row)
        maps[layer] = fit.learned
    return {"transform": transform.label, "baseline": baseline, "rows": rows, "maps": maps,
            "metric": "top1_error" if test_labels is not None else "disagreement_with_reference",
            "invariance_threshold": INVARIANCE_THRESHOLD}
