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
from ..layers import Capture, get_layer, pictures_per_pass, resolve
from ..memory import budget_gb, headroom_bytes, process_rss_bytes
from ..models import Model
from ..models.folding import for_optimisation
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


def features(model: Model, layer: str, batch: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """Activations of a preprocessed batch at `layer`, computed in chunks (default `pictures_per_pass`) without
    gradients."""
    chunk = chunk or pictures_per_pass(model)
    out = []
    with torch.no_grad(), Capture(model, [layer]) as phi:
        for i in range(0, batch.shape[0], chunk):
            out.append(phi(batch[i:i + chunk])[layer])
    return torch.cat(out)


class StreamedFeatures:
    """Features of a set of pictures, computed a chunk at a time when sliced or indexed (`compute` maps a batch of
    pictures to them): the fits and evaluations stream them instead of keeping every picture's features, so memory
    does not grow with the number of pictures.

    Parameters
    ----------
    compute : callable
        [n,3,S,S] pictures in [0,1] -> [n,C,H,W] features (no gradients needed).
    images : Tensor
        [N,3,S,S] in [0,1].
    """

    def __init__(self, compute, images: torch.Tensor):
        if not len(images):
            raise CnnscopeError("no images to compute features of")
        self.compute, self.images = compute, images
        with torch.no_grad():
            first = compute(images[:1])
        self.shape, self.device = (len(images), *first.shape[1:]), first.device

    @classmethod
    def at(cls, model: Model, layer: str, images: torch.Tensor) -> StreamedFeatures:
        """`model`'s activations at `layer` (computed with its BatchNorms folded, unless `layer` is a folded
        convolution: the same values to float precision, in 0.74x the time)."""
        folded = for_optimisation(model, [layer])
        return cls(lambda x: features(folded, layer, folded.preprocess.normalize(x)), images)

    def dim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> torch.Tensor:
        pictures = self.images[index]
        with torch.no_grad():
            return torch.cat([self.compute(pictures[i:i + CHUNK]) for i in range(0, len(pictures), CHUNK)])


CHUNK = 16  # pictures per pass


def _sums(fa, fb, start: int, stop: int, kernel: int, out_hw: tuple[int, int] | None) -> Moments:
    """The regression's sums over pictures start..stop, a chunk at a time (A's grid resampled to B's)."""
    sums = Moments(fa.shape[1], fb.shape[1], kernel)
    for i in range(start, stop, CHUNK):
        a = fa[i:min(i + CHUNK, stop)]
        if out_hw is not None:
            a = F.interpolate(a, size=out_hw, mode="bilinear", align_corners=False)
        sums.add(a, fb[i:min(i + CHUNK, stop)])
    return sums


def check_grids(fa: torch.Tensor, fb: torch.Tensor, resample: bool) -> tuple[int, int] | None:
    if fa.dim() != 4 or fb.dim() != 4:
        raise CnnscopeError("stitching needs convolutional layers (N, C, H, W) on both sides")
    if tuple(fa.shape[-2:]) != tuple(fb.shape[-2:]):
        if not resample:
            raise CnnscopeError(f"grids differ: A gives {tuple(fa.shape[-2:])}, B expects {tuple(fb.shape[-2:])}; "
                                "pass resample=True (--resample) to resample A's features bilinearly")
        return tuple(fb.shape[-2:])
    return None


def fit_regression(fa, fb, ridge: float | None = None, resample: bool = False, towards_identity: bool = False,
                   kernel: int = 1) -> Stitch:
    """Closed-form least squares Phi_B(u) ~ W Phi_A(N_m(u)) + b over all images and positions u, N_m the m x m
    neighbourhood (`kernel`; see `ridge.Moments`). ridge None: the strength (of RIDGES) that predicts the first
    fifth of the images best from the rest (wide layers with few images overfit otherwise), then refitted on
    all. fa, fb: [N,C,H,W] tensors or `StreamedFeatures` (summed a chunk at a time)."""
    out_hw = check_grids(fa, fb, resample)
    n_val = len(fa) // 5
    if ridge is None and n_val:
        held = _sums(fa, fb, 0, n_val, kernel, out_hw)
        moments = _sums(fa, fb, n_val, len(fa), kernel, out_hw)
        ridge = choose_ridge(moments, held, towards_identity)
        moments.absorb(held)
    else:
        ridge = 1e-4 if ridge is None else ridge
        moments = _sums(fa, fb, 0, len(fa), kernel, out_hw)
    weight, bias = moments.solve(ridge, towards_identity)
    stitch = Stitch(fa.shape[1], fb.shape[1], out_hw, kernel).to(fa.device)
    stitch.set_conv(moments.as_conv(weight).float(), bias.float())
    stitch.ridge = ridge
    # a 1x1 fit's sums hold the channel correlations too: a permutation needs no second pass over the features
    stitch.correlation = moments.correlation() if kernel == 1 and fa.shape[1] == fb.shape[1] else None
    return stitch


def fit_permutation(fa, fb, resample: bool = False) -> Stitch:
    """Channel i of B <- the channel of A it correlates with most, as a one-to-one matching."""
    out_hw = check_grids(fa, fb, resample)
    if fa.shape[1] != fb.shape[1]:
        raise CnnscopeError(f"a permutation needs equal widths ({fa.shape[1]} vs {fb.shape[1]} channels)")
    return permutation_stitch(_sums(fa, fb, 0, len(fa), 1, out_hw).correlation(), out_hw)


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
        self.layer = resolve(model, layer)
        if "#" in self.layer or self.layer.endswith(")"):
            raise CnnscopeError(f"stitching into {layer}: the B side must be a module layer (first call)")
        # its BatchNorms folded into their convolutions (same values to float precision, fewer passes over memory)
        self.model = for_optimisation(model, [layer])
        self.module = self.model.net.get_submodule(self.layer)
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


def predict_through(rest: RestOfNetwork, stitch: nn.Module, fa, chunk: int | None = None) -> torch.Tensor:
    return predict_all(rest, {"": stitch}, fa, chunk)[""]


def predict_all(rest: RestOfNetwork, stitches: dict, fa, chunk: int | None = None) -> dict:
    """name -> B's logits finishing on each stitch's map of A's features, in one pass over them (`chunk` pictures
    at a time, default `pictures_per_pass` of B)."""
    chunk = chunk or pictures_per_pass(rest.model)
    outs = {name: [] for name in stitches}
    with torch.no_grad():
        for i in range(0, fa.shape[0], chunk):
            a = fa[i:i + chunk]
            for name, stitch in stitches.items():
                outs[name].append(rest(stitch.to(a.device)(a)).cpu())
    return {name: torch.cat(v) for name, v in outs.items()}


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
    # a stitch with its own BatchNorm needs the whole batch in one pass (its statistics are the batch's)
    micro = batch if getattr(stitch, "bn", None) is not None else min(batch, pictures_per_pass(rest.model))
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
            a = fa[idx]
            opt.zero_grad(set_to_none=True)
            for part in torch.arange(len(idx)).split(micro):  # the batch's gradient, a pass at a time
                loss = task_loss(rest(stitch(a[part])), labels[idx[part]] if labels is not None else None,
                                 b_logits[idx[part]] if b_logits is not None else None)
                (loss * (len(part) / len(idx))).backward()  # the losses are means: weighted, the batch's mean
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
    compare : bool
        Also the naive, random and permutation stitches (False: the learned ones alone, e.g. for a null model).
    """

    task_epochs: int = 8
    resample: bool = True
    kernel: int = 1
    batchnorm: bool = False
    seed: int = 0
    progress: bool = True
    compare: bool = True


# the networks' passes over a chunk of pictures and their features (measured: 0.86 GB in all for Lite0 -> Lite1
# at stem, stage6 and head without training, 0.52 GB of it the two models); training B's rest adds its backward
PASS_ALLOWANCE, TRAINING_ALLOWANCE = 256 * 2 ** 20, 256 * 2 ** 20


def check_fits(model_a: Model, model_b: Model, layers, kernel: int = 1, task_epochs: int = 0) -> None:
    """Refuse, before any forward, a stitch whose fit would take the process over the memory budget: the
    regression's held-back and fit sums and a solve's two copies of the widest layer pair, and the passes over a
    chunk (features are streamed, so nothing grows with the number of pictures)."""
    widest = 0
    for item in layers:
        la, lb = item if isinstance(item, tuple) else (item, item)
        c_a, c_b = get_layer(model_a, la).shape[0], get_layer(model_b, lb).shape[0]
        widest = max(widest, Moments.nbytes(c_a, c_b, kernel))
    need = 4 * widest + PASS_ALLOWANCE + (TRAINING_ALLOWANCE if task_epochs else 0)
    if need > headroom_bytes():
        total = (need + process_rss_bytes()) / 2 ** 30
        raise CnnscopeError(f"stitching would need about {total:.1f} GB with what this process holds, over the "
                            f"memory budget of {budget_gb():g} GB (a smaller --kernel, or --max-memory "
                            f"{math.ceil(total * 10) / 10:g})")


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
    check_fits(model_a, model_b, layers, how.kernel, how.task_epochs)

    def logits(model, x):
        net, step = for_optimisation(model, []), pictures_per_pass(model)
        with torch.no_grad():
            return torch.cat([net(model.preprocess.normalize(x[i:i + step])).cpu() for i in range(0, len(x), step)])

    a_logits, b_fit_logits, b_logits = logits(model_a, test_images), logits(model_b, fit_images), \
        logits(model_b, test_images)
    b_pred = b_logits.argmax(1)
    rows = []
    baseline = {"A": error_rates(a_logits, test_labels, b_pred), "B": error_rates(b_logits, test_labels, b_pred)}
    for item in iterate(layers, "stitch layers", "layer", show=how.progress):
        la, lb = item if isinstance(item, tuple) else (item, item)
        # streamed: each pass computes a chunk's features (never every picture's at once)
        fa_fit, fa_test = StreamedFeatures.at(model_a, la, fit_images), StreamedFeatures.at(model_a, la, test_images)
        fb_fit = StreamedFeatures.at(model_b, lb, fit_images)
        rest = RestOfNetwork(model_b, lb)
        row = {"layer_a": la, "layer_b": lb, "shape_a": list(fa_fit.shape[1:]), "shape_b": list(fb_fit.shape[1:])}
        stitches: dict[str, nn.Module] = {}
        if how.compare and fa_fit.shape[1:] == fb_fit.shape[1:]:
            stitches["naive"] = identity_stitch(fa_fit, fb_fit)
        if how.compare:
            stitches["random"] = random_stitch(fa_fit, fb_fit, how.seed, how.resample)
        reg = fit_regression(fa_fit, fb_fit, resample=how.resample, kernel=how.kernel)
        if how.compare and fa_fit.shape[1] == fb_fit.shape[1]:
            stitches["permutation"] = (fit_permutation(fa_fit, fb_fit, how.resample) if reg.correlation is None
                                       else permutation_stitch(reg.correlation, reg.out_hw))
        stitches["regression"] = reg
        if how.task_epochs:
            task = Stitch(fa_fit.shape[1], fb_fit.shape[1], reg.out_hw, how.kernel, how.batchnorm)
            # start from the regression solution (with --batchnorm, behind a fresh BN that training adapts)
            task.set_conv(reg.conv.weight, reg.conv.bias)
            stitches["task"] = fit_task(task, rest, fa_fit, fit_labels,
                                        None if fit_labels is not None else b_fit_logits, epochs=how.task_epochs,
                                        seed=how.seed, progress=how.progress)
        for name, out in predict_all(rest, stitches, fa_test).items():
            row[name] = error_rates(out, test_labels, b_pred)
        row["regression_ridge"] = stitches["regression"].ridge
        row["_stitches"] = stitches
        rows.append(row)
    return {"baseline": baseline, "rows": rows}
