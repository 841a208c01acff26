"""Equivariance and invariance of CNN layers (Lenc & Vedaldi CVPR'15 / IJCV'18): does Phi(g x) = M_g Phi(x)?

For a layer L and a transformation g, a map is inserted after L: the spatial inverse of g (on the layer's own
grid), then (a) nothing, (b) a channel permutation found by matching, or (c) a learned linear channel map
trained with every network weight frozen (regression, then the network's own loss: cross-entropy to labels if
given, else KL to its predictions on the untransformed images). The network then finishes on the compensated
code, and its error on transformed images says how well M_g exists. Invariance: how many channels can keep
M_g's row at the identity before accuracy drops by more than 5% (relative); a per-channel correlation
between Phi(x) and the spatially inverted Phi(gx) is the cheap proxy that orders them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from tqdm import tqdm

from ..errors import CnnscopeError
from ..layers import get_layer
from ..models import Model
from .equivalence import (
    RestOfNetwork,
    error_rates,
    features,
    fit_permutation,
    fit_regression,
    fit_task,
    identity_stitch,
    predict_through,
    validation_loss,
)
from .transform import Transform


def _accuracy_metric(logits, labels, ref_pred) -> float:
    e = error_rates(logits, labels, ref_pred)
    return e["top1_error"] if labels is not None else e["disagreement_with_b"]


def channel_correlation(f: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Per channel Pearson correlation between two [N,C,H,W] maps over images and positions."""
    a = f.transpose(0, 1).reshape(f.shape[1], -1).double()
    b = h.transpose(0, 1).reshape(h.shape[1], -1).double()
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-12)


def invariant_channels(learned: nn.Module, rest: RestOfNetwork, h_test: torch.Tensor, labels, ref_pred,
                       order: torch.Tensor, tolerance: float = 0.05) -> int:
    """Largest k such that setting M_g's rows of the k channels first in `order` to the identity keeps
    accuracy within `tolerance` (relative) of the learned map's."""
    base_acc = 1 - _accuracy_metric(predict_through(rest, learned, h_test), labels, ref_pred)
    weight = learned.conv.weight.detach().clone()
    bias = learned.conv.bias.detach().clone()
    c = weight.shape[0]
    k_mid = weight.shape[-1] // 2
    best = 0
    lo, hi = 0, c
    while lo < hi:  # accuracy falls (roughly) monotonically with k: bisect
        k = (lo + hi + 1) // 2
        w, b = weight.clone(), bias.clone()
        idx = order[:k]
        w[idx] = 0
        w[idx, idx, k_mid, k_mid] = 1.0
        b[idx] = 0
        with torch.no_grad():
            learned.conv.weight.copy_(w)
            learned.conv.bias.copy_(b)
        acc = 1 - _accuracy_metric(predict_through(rest, learned, h_test), labels, ref_pred)
        if acc >= (1 - tolerance) * base_acc:
            best, lo = k, k
        else:
            hi = k - 1
    with torch.no_grad():
        learned.conv.weight.copy_(weight)
        learned.conv.bias.copy_(bias)
    return best


def _learned_map(h_fit, f_fit, rest, fit_labels, ref_fit, ridge, epochs, seed, progress):
    """M_g: ridge regression towards M = I, then the network's own loss with early stopping on a fifth of the
    fit images held back (wide late layers have more weights than 80 images pin down: without the check the
    map overfits and does worse than the identity). The identity itself stays a candidate."""
    n = len(h_fit)
    n_val = n // 5 if n >= 10 else 0
    tr, va = slice(n_val, None), slice(0, n_val)
    targets = (fit_labels, None) if fit_labels is not None else (None, ref_fit)
    train_targets = tuple(t[tr] if t is not None else None for t in targets)
    learned = fit_regression(h_fit[tr], f_fit[tr], ridge=ridge, towards_identity=True)
    if not n_val:
        learned = fit_task(learned, rest, h_fit, *targets, epochs=epochs, seed=seed, progress=progress)
        return learned, {"learned_epochs": epochs}
    val = (h_fit[va], *(t[va] if t is not None else None for t in targets))
    learned = fit_task(learned, rest, h_fit[tr], *train_targets, epochs=epochs, seed=seed, progress=progress,
                       validation=val)
    identity = identity_stitch(h_fit, h_fit)
    identity_loss = validation_loss(identity, rest, *val)
    info = {"learned_epochs": learned.best_epoch, "validation_loss_learned": min(learned.validation_losses),
            "validation_loss_identity": identity_loss}
    if identity_loss < min(learned.validation_losses):
        info["learned_epochs"] = "identity"
        return identity, info
    return learned, info


def equivariance_experiment(model: Model, layers: Sequence[str], transform: Transform, fit_images: torch.Tensor,
                            test_images: torch.Tensor, fit_labels: torch.Tensor | None = None,
                            test_labels: torch.Tensor | None = None, *, task_epochs: int = 8, seed: int = 0,
                            ridge: float = 0.1, progress: bool = True) -> dict:
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
        Epochs of the network's own loss for the learned map (after ridge regression towards M = I).
    seed : int
    ridge : float
    progress : bool

    Returns
    -------
    dict
        ``baseline`` (errors without g and with g uncompensated), ``rows`` per layer (errors compensated by
        the spatial inverse only, plus a channel permutation, plus the learned map; invariant channels;
        mean channel correlation), ``maps`` (layer -> learned map module), ``metric``, ``transform``.
    """
    size = model.input_size
    if fit_images.shape[-1] != size or fit_images.shape[-2] != size:
        raise CnnscopeError(f"images must be {size}x{size} (the model's input size)")
    norm = model.preprocess.normalize
    x_fit, x_test = norm(fit_images), norm(test_images)
    gx_fit, gx_test = norm(transform.image(fit_images)), norm(transform.image(test_images))
    with torch.no_grad():
        ref_fit = torch.cat([model.net(x_fit[i:i + 16]) for i in range(0, len(x_fit), 16)])
        ref_test = torch.cat([model.net(x_test[i:i + 16]) for i in range(0, len(x_test), 16)])
        g_test = torch.cat([model.net(gx_test[i:i + 16]) for i in range(0, len(gx_test), 16)])
    ref_pred = ref_test.argmax(1)
    baseline = {"no_transform": _accuracy_metric(ref_test, test_labels, ref_pred),
                "uncompensated": _accuracy_metric(g_test, test_labels, ref_pred)}
    inverse = transform.inverse()
    rows, maps = [], {}
    for layer in tqdm(layers, desc=f"equivariance {transform.label}", disable=None if progress else True):
        info = get_layer(model, layer)
        if info.stride is None or len(info.shape) != 3:
            raise CnnscopeError(f"layer {layer} has no spatial grid (shape {info.shape}); choose a convolutional layer")
        stride, offset = info.stride[0], info.offset[0]
        f_fit = features(model, layer, x_fit)
        h_fit = inverse.features(features(model, layer, gx_fit), stride, offset, size)
        h_test = inverse.features(features(model, layer, gx_test), stride, offset, size)
        rest = RestOfNetwork(model, layer)
        spatial = identity_stitch(h_fit, h_fit)
        perm = fit_permutation(h_fit, f_fit)
        learned, choice = _learned_map(h_fit, f_fit, rest, fit_labels, ref_fit, ridge, task_epochs, seed, progress)
        corr = channel_correlation(f_fit, h_fit)
        order = torch.argsort(corr, descending=True)
        n_inv = invariant_channels(learned, rest, h_test, test_labels, ref_pred, order)
        row = {"layer": layer, "channels": info.shape[0], "stride": stride,
               "spatial_only": _accuracy_metric(predict_through(rest, spatial, h_test), test_labels, ref_pred),
               "permutation": _accuracy_metric(predict_through(rest, perm, h_test), test_labels, ref_pred),
               "learned": _accuracy_metric(predict_through(rest, learned, h_test), test_labels, ref_pred),
               "invariant_channels": n_inv, "mean_channel_correlation": float(corr.mean()), **choice}
        rows.append(row)
        maps[layer] = learned
    return {"transform": transform.label, "baseline": baseline, "rows": rows, "maps": maps,
            "metric": "top1_error" if test_labels is not None else "disagreement_with_reference"}
