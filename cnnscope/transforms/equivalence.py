"""Equivalence by stitching (Lenc & Vedaldi CVPR'15 / IJCV'18): the front of network A up to layer L_A,
a learned linear map E, then the rest of network B from L_B on — a "Franken-net". If it classifies as well
as B, the two representations are equivalent at that depth up to E.

E is a 1x1 convolution with bias (optionally preceded by batch normalisation, or m x m), with bilinear
resampling when A's and B's grids differ. It is fitted by closed-form least squares Phi_B ~ E Phi_A over all
positions (regression) and/or by the task loss through frozen B (cross-entropy to labels if given, else KL to
B's own predictions). Baselines: identity ("naive"), random E, and a channel permutation found by matching.

The rest of B is run by replacing L_B's output with a forward hook; B's own front then runs on a small dummy
input (its result is discarded), which is exact whenever B after L_B depends on L_B's output alone (true at
block boundaries of sequential networks such as Lite's stages; checked by the A->A identity test).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CnnscopeError
from ..layers import Capture, get_layer, resolve
from ..memory import check_bytes
from ..models import Model
from ..progress import iterate
from .ridge import Moments, choose_ridge


class Stitch(nn.Module):
    def __init__(self, c_in: int, c_out: int, out_hw: tuple[int, int] | None = None, kernel: int = 1,
                 batchnorm: bool = False):
        super().__init__()
        self.out_hw = out_hw
        self.bn = nn.BatchNorm2d(c_in) if batchnorm else None
        self.conv = nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        if self.out_hw is not None and tuple(f.shape[-2:]) != tuple(self.out_hw):
            f = F.interpolate(f, size=self.out_hw, mode="bilinear", align_corners=False)
        if self.bn is not None:
            f = self.bn(f)
        return self.conv(f)

    def set_conv(self, weight: torch.Tensor, bias: torch.Tensor) -> Stitch:
        """weight [C_out, C_in, m, m] (this stitch's kernel), bias [C_out]."""
        with torch.no_grad():
            self.conv.weight.copy_(weight.to(self.conv.weight))
            self.conv.bias.copy_(bias.to(self.conv.bias))
        return self

    def set_linear(self, weight: torch.Tensor, bias: torch.Tensor) -> Stitch:
        """weight [C_out, C_in], bias [C_out] (a 1x1 map; larger kernels get it at their centre)."""
        with torch.no_grad():
            self.conv.weight.zero_()
            k = self.conv.kernel_size[0] // 2
            self.conv.weight[:, :, k, k] = weight.to(self.conv.weight)
            self.conv.bias.copy_(bias)
        return self


def features(model: Model, layer: str, batch: torch.Tensor, chunk: int = 16) -> torch.Tensor:
    """Activations of a preprocessed batch at `layer`, computed in chunks without gradients."""
    out = []
    with torch.no_grad(), Capture(model, [layer]) as phi:
        for i in range(0, batch.shape[0], chunk):
            out.append(phi(batch[i:i + chunk])[layer])
    return torch.cat(out)


def check_grids(fa: torch.Tensor, fb: torch.Tensor, resample: bool) -> tuple[int, int] | None:
    if fa.dim() != 4 or fb.dim() != 4:
        raise CnnscopeError("stitching needs convolutional layers (N, C, H, W) on both sides")
    if tuple(fa.shape[-2:]) != tuple(fb.shape[-2:]):
        if not resample:
            raise CnnscopeError(f"grids differ: A gives {tuple(fa.shape[-2:])}, B expects {tuple(fb.shape[-2:])}; "
                                "pass resample=True (--resample) to resample A's features bilinearly")
        return tuple(fb.shape[-2:])
    return None


def fit_regression(fa: torch.Tensor, fb: torch.Tensor, ridge: float | None = None, resample: bool = False,
                   towards_identity: bool = False, kernel: int = 1) -> Stitch:
    """Closed-form least squares Phi_B(u) ~ W Phi_A(N_m(u)) + b over all images and positions u, N_m the m x m
    neighbourhood (`kernel`; see `ridge.Moments`). ridge None: the strength (of RIDGES) that predicts the first
    fifth of the images best from the rest (wide layers with few images overfit otherwise), then refitted on
    all."""
    out_hw = check_grids(fa, fb, resample)
    if out_hw is not None:
        fa = F.interpolate(fa, size=out_hw, mode="bilinear", align_corners=False)
    n_val = len(fa) // 5
    c_a, c_b = fa.shape[1], fb.shape[1]
    if ridge is None and n_val:
        held = Moments(c_a, c_b, kernel).add(fa[:n_val], fb[:n_val])
        rest = Moments(c_a, c_b, kernel).add(fa[n_val:], fb[n_val:])
        ridge = choose_ridge(rest, held, towards_identity)
        moments = rest + held
    else:
        ridge = 1e-4 if ridge is None else ridge
        moments = Moments(c_a, c_b, kernel).add(fa, fb)
    weight, bias = moments.solve(ridge, towards_identity)
    stitch = Stitch(c_a, c_b, out_hw, kernel).to(fa.device).set_conv(moments.as_conv(weight).float(), bias.float())
    stitch.ridge = ridge
    return stitch


def fit_permutation(fa: torch.Tensor, fb: torch.Tensor, resample: bool = False) -> Stitch:
    """Channel i of B <- the channel of A it correlates with most, as a one-to-one matching."""
    out_hw = check_grids(fa, fb, resample)
    if fa.shape[1] != fb.shape[1]:
        raise CnnscopeError(f"a permutation needs equal widths ({fa.shape[1]} vs {fb.shape[1]} channels)")
    if out_hw is not None:
        fa = F.interpolate(fa, size=out_hw, mode="bilinear", align_corners=False)
    return permutation_stitch(Moments(fa.shape[1], fb.shape[1]).add(fa, fb).correlation(), out_hw)


def permutation_stitch(correlation: torch.Tensor, out_hw: tuple[int, int] | None = None) -> Stitch:
    """The one-to-one channel matching that maximises the total [C_B, C_A] correlation, as a stitch."""
    from scipy.optimize import linear_sum_assignment  # heavy (0.4 s): only when a permutation is fitted

    c_b, c_a = correlation.shape
    rows, cols = linear_sum_assignment(-correlation.cpu().numpy())
    w = torch.zeros(c_b, c_a)
    w[torch.as_tensor(rows), torch.as_tensor(cols)] = 1.0
    return Stitch(c_a, c_b, out_hw).set_linear(w, torch.zeros(c_b))


def identity_stitch(fa: torch.Tensor, fb: torch.Tensor) -> Stitch:
    if fa.shape[1:] != fb.shape[1:]:
        raise CnnscopeError(f"naive stitching needs equal shapes ({tuple(fa.shape[1:])} vs {tuple(fb.shape[1:])})")
    c = fa.shape[1]
    return Stitch(c, c).set_linear(torch.eye(c), torch.zeros(c))


def random_stitch(fa: torch.Tensor, fb: torch.Tensor, seed: int = 0, resample: bool = False) -> Stitch:
    out_hw = check_grids(fa, fb, resample)
    torch.manual_seed(seed)
    return Stitch(fa.shape[1], fb.shape[1], out_hw)


class RestOfNetwork:
    """Runs B from layer L_B on, given L_B's activation (its own front runs on a dummy input)."""

    def __init__(self, model: Model, layer: str):
        self.model, self.layer = model, resolve(model, layer)
        if "#" in self.layer or self.layer.endswith(")"):
            raise CnnscopeError(f"stitching into {layer}: the B side must be a module layer (first call)")
        self.module = model.net.get_submodule(self.layer)
        self.replacement: torch.Tensor | None = None

    def _hook(self, module, args, out):
        return self.replacement

    def __call__(self, activation: torch.Tensor) -> torch.Tensor:
        self.replacement = activation
        handle = self.module.register_forward_hook(self._hook)
        try:
            dummy = torch.zeros(activation.shape[0], 3, 32, 32, device=activation.device)
            try:
                return self.model.net(dummy)
            except RuntimeError:  # the front cannot take a small input: run it at full size (same result)
                s = self.model.input_size
                return self.model.net(torch.zeros(activation.shape[0], 3, s, s, device=activation.device))
        finally:
            handle.remove()
            self.replacement = None


def predict_through(rest: RestOfNetwork, stitch: nn.Module, fa: torch.Tensor, chunk: int = 16) -> torch.Tensor:
    stitch.to(fa.device)
    outs = []
    with torch.no_grad():
        for i in range(0, fa.shape[0], chunk):
            outs.append(rest(stitch(fa[i:i + chunk])).cpu())
    return torch.cat(outs)


def task_loss(out: torch.Tensor, labels: torch.Tensor | None, b_logits: torch.Tensor | None) -> torch.Tensor:
    """Cross-entropy to labels if given, else KL to B's predictions."""
    if labels is not None:
        return F.cross_entropy(out, labels.to(out.device))
    return F.kl_div(out.log_softmax(1), b_logits.to(out.device).log_softmax(1), log_target=True,
                    reduction="batchmean")


def validation_loss(stitch: nn.Module, rest: RestOfNetwork, fa: torch.Tensor, labels: torch.Tensor | None,
                    b_logits: torch.Tensor | None) -> float:
    out = predict_through(rest, stitch, fa)
    return float(task_loss(out, labels, b_logits))


def fit_task(stitch: Stitch, rest: RestOfNetwork, fa: torch.Tensor, labels: torch.Tensor | None,
             b_logits: torch.Tensor | None, epochs: int = 8, lr: float | None = None, batch: int = 16, seed: int = 0,
             progress: bool = True, validation: tuple | None = None) -> Stitch:
    """Train E on B's task with B frozen: cross-entropy to labels if given, else KL to B's predictions.

    Adam moves every weight by about lr per step, so a map with C_in inputs changes its outputs ~C_in times
    faster: the default lr (1e-3 at 32 inputs) is scaled by 32 / C_in to keep wide layers stable.
    validation = (features, labels, b_logits) of held-back images: E is the one of the epoch (0 = as given)
    with the lowest loss there (`stitch.validation_losses`, `stitch.best_epoch` say which)."""
    if lr is None:
        lr = 1e-3 * min(1.0, 32.0 / fa.shape[1])
    if labels is None and b_logits is None:
        raise CnnscopeError("the task loss needs labels or B's predictions")
    gen = torch.Generator().manual_seed(seed)
    stitch.to(fa.device)
    opt = torch.optim.Adam(stitch.parameters(), lr=lr)
    n = fa.shape[0]
    losses, best_state, best_epoch = [], None, 0
    if validation is not None:
        stitch.eval()
        losses.append(validation_loss(stitch, rest, *validation))
        best_state = {k: v.detach().clone() for k, v in stitch.state_dict().items()}
    for epoch in iterate(range(1, epochs + 1), "task-loss stitch", "epoch", show=progress):
        stitch.train()
        order = torch.randperm(n, generator=gen)
        for i in range(0, n, batch):
            idx = order[i:i + batch]
            loss = task_loss(rest(stitch(fa[idx])), labels[idx] if labels is not None else None,
                             b_logits[idx] if b_logits is not None else None)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if validation is not None:
            stitch.eval()
            losses.append(validation_loss(stitch, rest, *validation))
            if losses[-1] < min(losses[:-1]):
                best_state = {k: v.detach().clone() for k, v in stitch.state_dict().items()}
                best_epoch = epoch
    if best_state is not None:
        stitch.load_state_dict(best_state)
    stitch.eval()
    stitch.validation_losses, stitch.best_epoch = losses, best_epoch if validation is not None else epochs
    return stitch


def error_rates(logits: torch.Tensor, labels: torch.Tensor | None, b_pred: torch.Tensor) -> dict:
    pred = logits.argmax(1).cpu()
    out = {"disagreement_with_b": float((pred != b_pred).float().mean())}
    if labels is not None:
        out["top1_error"] = float((pred != labels).float().mean())
    return out


@dataclass(frozen=True)
class StitchFit:
    """How `stitch_experiment` fits its stitches.

    Attributes
    ----------
    task_epochs : int
        Epochs of B's task loss for the "task" stitch (started from the regression one; 0: no task stitch).
    resample : bool
        Resample A's grid to B's when they differ (else refuse).
    kernel : int
        The stitches' m x m support (regression and task; default 1, Lenc & Vedaldi's 1 x 1 map).
    batchnorm : bool
        Batch norm before the task stitch's map.
    seed : int
        Seeds the random stitch and the task training.
    progress : bool
        Show progress bars.
    """

    task_epochs: int = 8
    resample: bool = True
    kernel: int = 1
    batchnorm: bool = False
    seed: int = 0
    progress: bool = True


def _check_memory(model_a: Model, model_b: Model, layers, fit_images: torch.Tensor, test_images: torch.Tensor) -> None:
    """Refuse, before any forward, a stitch whose held tensors exceed the memory budget: both networks'
    normalised copies of the pictures, and per layer pair A's features of every picture and B's of the fit
    ones (float32)."""
    n_fit, n_test = len(fit_images), len(test_images)
    pictures = 2 * (fit_images.numel() + test_images.numel())
    per_pair = []
    for item in layers:
        la, lb = item if isinstance(item, tuple) else (item, item)
        size_a, size_b = math.prod(get_layer(model_a, la).shape), math.prod(get_layer(model_b, lb).shape)
        per_pair.append((n_fit + n_test) * size_a + n_fit * size_b)
    check_bytes(4 * (pictures + max(per_pair, default=0)), f"stitching on {n_fit + n_test} images",
                "fewer with --limit N")


def stitch_experiment(model_a: Model, model_b: Model, layers: Sequence[str | tuple[str, str]],
                      fit_images: torch.Tensor, test_images: torch.Tensor, fit_labels: torch.Tensor | None = None,
                      test_labels: torch.Tensor | None = None, how: StitchFit = StitchFit()) -> dict:
    """Equivalence by stitching (Lenc & Vedaldi): A's front, a learned map E, B's rest, per layer pair.

    Parameters
    ----------
    model_a, model_b : Model
    layers : sequence of str or (str, str)
        Layer names present in both, or (layer of A, layer of B) pairs.
    fit_images, test_images : Tensor
        [N,3,S,S] in [0,1]; both networks see them at the same size (grids then match when strides do).
    fit_labels, test_labels : Tensor, optional
        Class labels; without them the task loss is KL to B's predictions and the error is disagreement
        with B.
    how : StitchFit
        Task epochs, resampling, the maps' support, batch norm, seed.

    Returns
    -------
    dict
        ``baseline`` (A's and B's own errors) and ``rows``: per pair the error of the naive (identity),
        random, permutation, regression and task stitches, and the fitted modules (``_stitches``).
    """
    _check_memory(model_a, model_b, layers, fit_images, test_images)
    xa_fit, xa_test = model_a.preprocess.normalize(fit_images), model_a.preprocess.normalize(test_images)
    xb_fit, xb_test = model_b.preprocess.normalize(fit_images), model_b.preprocess.normalize(test_images)
    with torch.no_grad():
        a_logits = torch.cat([model_a(xa_test[i:i + 16]).cpu() for i in range(0, len(xa_test), 16)])
        b_fit_logits = torch.cat([model_b(xb_fit[i:i + 16]).cpu() for i in range(0, len(xb_fit), 16)])
        b_logits = torch.cat([model_b(xb_test[i:i + 16]).cpu() for i in range(0, len(xb_test), 16)])
    b_pred = b_logits.argmax(1)
    rows = []
    baseline = {"A": error_rates(a_logits, test_labels, b_pred), "B": error_rates(b_logits, test_labels, b_pred)}
    for item in iterate(layers, "stitch layers", "layer", show=how.progress):
        la, lb = item if isinstance(item, tuple) else (item, item)
        fa_fit, fa_test = features(model_a, la, xa_fit), features(model_a, la, xa_test)
        fb_fit = features(model_b, lb, xb_fit)
        rest = RestOfNetwork(model_b, lb)
        row = {"layer_a": la, "layer_b": lb, "shape_a": list(fa_fit.shape[1:]), "shape_b": list(fb_fit.shape[1:])}
        stitches: dict[str, nn.Module] = {}
        if fa_fit.shape[1:] == fb_fit.shape[1:]:
            stitches["naive"] = identity_stitch(fa_fit, fb_fit)
        stitches["random"] = random_stitch(fa_fit, fb_fit, how.seed, how.resample)
        if fa_fit.shape[1] == fb_fit.shape[1]:
            stitches["permutation"] = fit_permutation(fa_fit, fb_fit, how.resample)
        stitches["regression"] = fit_regression(fa_fit, fb_fit, resample=how.resample, kernel=how.kernel)
        reg = stitches["regression"]
        if how.task_epochs:
            task = Stitch(fa_fit.shape[1], fb_fit.shape[1], reg.out_hw, how.kernel, how.batchnorm)
            # start from the regression solution (with --batchnorm, behind a fresh BN that training adapts)
            task.set_conv(reg.conv.weight, reg.conv.bias)
            stitches["task"] = fit_task(task, rest, fa_fit, fit_labels,
                                        None if fit_labels is not None else b_fit_logits, epochs=how.task_epochs,
                                        seed=how.seed, progress=how.progress)
        for name, s in stitches.items():
            row[name] = error_rates(predict_through(rest, s, fa_test), test_labels, b_pred)
        row["regression_ridge"] = stitches["regression"].ridge
        row["_stitches"] = stitches
        rows.append(row)
    return {"baseline": baseline, "rows": rows}
