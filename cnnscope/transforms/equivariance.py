"""Equivariance and invariance of CNN layers (Lenc & Vedaldi CVPR'15 / IJCV'18): does Phi(g x) = M_g Phi(x)?

For a layer L and a transformation g, a map is inserted after L: the spatial inverse of g (on the layer's own
grid), then (a) nothing, (b) a channel permutation found by matching, or (c) a learned linear map M_g. The
network then finishes on the compensated code, and its error on transformed images says how well M_g exists.

M_g is an m x m convolution from the layer's D channels to D: each compensated cell reads the m x m neighbourhood of
its back-projected place. Spatial support matters: with TF-"SAME" (asymmetric) padding and stride-2 convolutions,
the features of a flipped image land a fraction of a cell away from the flipped grid, which a 1 x 1 channel map
cannot undo. Each candidate is fitted in closed form — streaming ridge regression of Phi(x) on the unfolded
neighbourhoods of the spatially inverted Phi(gx) (`Moments`: only the Gram matrix is kept) over valid positions of
the fit images and random rescaled crops of them, pulled towards the identity at the centre tap. At a layer wider
than REDUCE_ABOVE channels the map is reduced: the centre tap reads every channel and the other taps only the
layer's top REDUCED_DIRECTIONS principal directions (`principal_directions`), so Lite0's head 3x3 map has 2,305
inputs, not 11,521 (the sums' size falls 25 times, the solve's cost 110 times, and the map overfits less). The fit's
peak (`fit_bytes`: the sums of every candidate, twice, a solve's two copies and the candidate maps) is estimated
before any sum is allocated and kept within the one memory budget (`--max-memory`, less what the process already
holds): the widest supports that do not fit are left out, and the row says so. Pictures and features are streamed a
chunk at a time (the image set itself lives in a temporary file, `data.ImageSet`), so memory does not grow with the
number of images; without a task to judge by, `fit_layers` fills the sums of several layers and transforms from the
same passes of the network. The support m (of `neighbourhoods`) and the ridge are then **chosen by the task**: the
top-1 error (with labels; else disagreement with the untransformed prediction, cross-entropy breaking ties) of the
network finishing on the compensated code of a held-back fifth of the fit images, with the spatial inverse alone among
the candidates — so the reported map is never worse than it on that split, and where nothing beats it the row says so.
Optionally the map is then refined by the network's own loss (kept only if that lowers the held-back loss).
Invariance is read off M_g: a channel is invariant when its row is the identity at the centre tap and zero
elsewhere, scored per channel as the share of its (variance-weighted) row on its own centre tap times the fraction
of its variance the map explains on held-out images; a random orthogonal 1 x 1 map gives the null.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..data import subset, with_crops
from ..errors import CnnscopeError
from ..layers import Capture, get_layer, pictures_per_pass
from ..memory import budget_gb, headroom_bytes, process_rss_bytes
from ..models import Model
from ..models.folding import for_optimisation
from .equivalence import (
    RestOfNetwork,
    Stitch,
    StreamedFeatures,
    error_rates,
    features,
    fit_task,
    permutation_stitch,
)
from .ridge import RIDGES, Moments
from .transform import Transform

INVARIANCE_THRESHOLD = 0.5  # a channel is called invariant when its score reaches this
POSITIONS = 60_000  # positions per layer to fit, and to judge a fit by (sampled evenly over images): plenty, C <= 1280
NEIGHBOURHOODS = (1, 3)  # the candidate supports m of M_g (the spatial inverse alone is always a candidate; 5x5 did
# not beat 3x3 on Lite0 at any stage, so it is asked for with --neighbourhood 1,3,5)
MAX_NEIGHBOURHOOD = 9  # the largest support one may ask for: its sums grow as m^4 (the budget skips what is over)
TASK_RIDGES = (1e-2, 1e-1, 1.0)  # ridge strengths tried by the task, per support


def _metric(logits, labels, ref_pred) -> float:
    e = error_rates(logits, labels, ref_pred)
    return e["top1_error"] if labels is not None else e["disagreement_with_b"]


def channel_correlation(f: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Per channel Pearson correlation between two [N,C,H,W] maps over images and positions."""
    a = f.transpose(0, 1).reshape(f.shape[1], -1).double()
    b = h.transpose(0, 1).reshape(h.shape[1], -1).double()
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-12)


def invariance_scores(weight: torch.Tensor, input_variance: torch.Tensor, r2: torch.Tensor,
                      centre: torch.Tensor | None = None) -> torch.Tensor:
    """Per output channel c of a map f ~ W h (W [C, C m^2], inputs = channels x taps): W_{c,centre(c)}^2
    var(h_{centre(c)}) / sum_d W_cd^2 var(h_d) (how much of the row is its own channel at the centre tap), times
    max(R^2_c, 0) (how well the map explains the channel). 1 for an identity row of a map that explains the
    channel; about 1/(C m^2) for a random row; 0 where nothing is explained."""
    energy = weight.double() ** 2 * input_variance.double()[None]
    centre = torch.arange(len(weight)) if centre is None else centre
    share = energy[torch.arange(len(weight)), centre.to(energy.device)] / energy.sum(1).clamp_min(1e-30)
    return share * r2.double().clamp_min(0)


def random_orthogonal(c: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(c, c, generator=gen, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))[None]


@dataclass
class LayerFit:
    """What one layer's fit leaves: the chosen map (an m x m conv; the spatial inverse's identity when nothing
    beat it), the permutation, and the statistics for the table."""

    learned: Stitch
    permutation: Stitch
    ridge: float | None
    refined: bool
    fit_moments: Moments
    test_moments: Moments
    kernel: int = 1
    validation: dict | None = None  # candidate label -> its task metric on the held-back fit images
    skipped: list | None = None  # supports left out, and why (memory)
    curve: dict | None = None  # the best learned map's held-back error fitted on 50, 75 and 100% of the fit images

    def weight(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(W [C, C m^2], b) of the map in the sums' layout."""
        w = self.learned.conv.weight.detach().double()
        return w.reshape(w.shape[0], -1), self.learned.conv.bias.detach().double()

    def invariance(self, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Per channel invariance scores of the learned map, and of a random orthogonal null map at the centre
        tap (its bias fitted, so only the mixing differs) — see `invariance_scores`."""
        weight, bias = self.weight()
        var = self.fit_moments.input_variance()
        centre = self.fit_moments.centre()
        scores = invariance_scores(weight, var, self.test_moments.r2(weight, bias), centre)
        c = len(weight)
        q = random_orthogonal(c, seed).to(var.device)
        q_full = torch.zeros_like(weight)
        q_full[:, centre] = q
        mean_x, mean_y = self.fit_moments.input_mean(), self.fit_moments.xy[-1] / self.fit_moments.count
        q_bias = mean_y - q_full @ mean_x
        return scores, invariance_scores(q_full, var, self.test_moments.r2(q_full, q_bias), centre)


def require_grid(model: Model, layer: str):
    """`layer`'s table row, or the error that it has no spatial map with a known stride to transform."""
    info = get_layer(model, layer)
    if not info.has_grid or info.stride is None:
        raise CnnscopeError(f"layer {layer} has no spatial grid (shape {info.shape}); choose a convolutional layer")
    return info


class _Pairs:
    """Phi(x) and the spatially inverted Phi(gx) at one layer, a chunk of images at a time."""

    def __init__(self, model: Model, layer: str, transform: Transform):
        info = require_grid(model, layer)
        # the passes run with the BatchNorms folded into their convolutions (the layer is never one of those)
        self.model, self.layer, self.transform, self.inverse = (for_optimisation(model, [layer]), layer, transform,
                                                                transform.inverse())
        self.stride, self.offset, self.size = info.stride[0], info.offset[0], model.input_size
        self.shape = info.shape
        self.chunk = pictures_per_pass(self.model)  # pictures per pass
        self.mask = self.inverse.valid_cells(info.shape[1:], self.stride, self.offset, self.size)

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = features(self.model, self.layer, self.model.preprocess.normalize(images))
        return f, self.moved(images)

    def moved(self, images: torch.Tensor) -> torch.Tensor:
        """The spatially inverted Phi(gx) alone: the compensation's input."""
        moved = features(self.model, self.layer, self.model.preprocess.normalize(self.transform.image(images)))
        return self.inverse.features(moved, self.stride, self.offset, self.size, padding="border")


class _Views:
    """Phi(x) at several layers and, for each of several transforms g, the spatially inverted Phi(gx) there, from one
    pass of the network per view of a chunk of pictures: the transforms share Phi(x), and every layer's features
    come from the same passes (`pairs[i]` describes the i-th (layer, transform))."""

    def __init__(self, model: Model, keys: Sequence[tuple[str, Transform]]):
        self.pairs = [_Pairs(model, layer, transform) for layer, transform in keys]
        self.layers = list(dict.fromkeys(layer for layer, _ in keys))
        self.transforms = {t.label: t for _, t in keys}
        self.model = for_optimisation(model, self.layers)
        self.chunk = pictures_per_pass(self.model)

    def __call__(self, images: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        norm = self.model.preprocess.normalize
        with torch.no_grad(), Capture(self.model, self.layers) as phi:
            f = phi(norm(images))
            moved = {label: phi(norm(t.image(images))) for label, t in self.transforms.items()}
        return [(f[p.layer], p.inverse.features(moved[p.transform.label][p.layer], p.stride, p.offset, p.size,
                                                padding="border")) for p in self.pairs]


def _per_image(pictures: int) -> int:
    """Positions sampled per picture so that POSITIONS are summed over all of them (the held-out sums too: an R2
    needs no more, and a wide grid's every cell would cost its whole unfolding)."""
    return max(1, POSITIONS // max(pictures, 1))


def _chunks(x: torch.Tensor, size: int):
    for i in range(0, len(x), size):
        yield x[i:i + size]


REDUCE_ABOVE = 256  # a layer wider than this reads only REDUCED_DIRECTIONS at the off-centre taps (`Moments`)
# K, measured (benchmarks/wide_maps.py, Lite0's head, vflip, 60 fit pictures of the ImageNet sample): the 3x3 map's
# held-out R2 at its best ridge is -0.193 / -0.248 / -0.253 / -0.276 with 128 / 256 / 512 directions / dense on
# split 0, and -0.178 / -0.237 / -0.239 / -0.261 on the held-back split 1: fewer directions overfit less
REDUCED_DIRECTIONS = 128
PILOT_IMAGES = 96  # the first fit images whose features give those directions


def principal_directions(pairs: _Pairs, images: torch.Tensor, k: int = REDUCED_DIRECTIONS) -> torch.Tensor | None:
    """[C, k]: the top-k principal directions of the map's inputs (the spatially inverted Phi(gx), valid cells) over
    the first PILOT_IMAGES images; None where the layer has no more than k channels."""
    c = pairs.shape[0]
    if c <= k:
        return None
    gram, total, n = torch.zeros(c, c, dtype=torch.float64), torch.zeros(c, dtype=torch.float64), 0
    for chunk in _chunks(images[:PILOT_IMAGES], pairs.chunk):
        h = pairs.moved(chunk)
        x = h.permute(0, 2, 3, 1)[:, pairs.mask.to(h.device)].reshape(-1, c).double().cpu()
        gram.addmm_(x.T, x)
        total += x.sum(0)
        n += len(x)
    cov = gram / max(n, 1) - torch.outer(total, total) / max(n, 1) ** 2
    return torch.linalg.eigh(cov)[1][:, -k:].flip(1).contiguous()  # eigh sorts ascending


def _moments(views: _Views, images: torch.Tensor, positions: int | None, gens: Sequence[torch.Generator],
             kernels: Sequence[Sequence[int]], bases: Sequence[torch.Tensor | None], snapshots: Sequence[int] = ()
             ) -> tuple[list[dict[int, Moments]], dict[int, list[dict[int, Moments]]]]:
    """For each of the views' (layer, transform), sums for each of its supports m from one pass over the images
    (the same sampled positions for every m, drawn from its own generator), and a copy of them all after each share
    (in %) of the images in `snapshots` — the learning curve's sums, for no extra pass."""
    out = [{m: Moments(p.shape[0], p.shape[0], m, basis) for m in ms}
           for p, ms, basis in zip(views.pairs, kernels, bases)]
    copies, start = {}, 0
    for share in (*snapshots, 100):
        stop = max(start, len(images) * share // 100)
        for chunk in _chunks(subset(images, slice(start, stop)), views.chunk):
            for (f, h), p, sums, gen in zip(views(chunk), views.pairs, out, gens):
                state = gen.get_state()
                for m in sums:
                    gen.set_state(state)
                    sums[m].add(h, f, p.mask, positions, gen)
        if share < 100:
            copies[share] = [{m: s.copy() for m, s in sums.items()} for sums in out]
        start = stop
    return out, copies


PASS_ALLOWANCE = 512 * 2 ** 20  # the network's passes over a chunk of 16 pictures and their features, beside the sums


def fit_bytes(channels: int, kernels: Sequence[int]) -> int:
    """Peak bytes of `fit_layer` for these supports, beyond what the process holds: the fit and held-back sums of
    every support and their two learning-curve copies, a solve's two transient copies of the widest (the
    regularised matrix and its factorisation; the test sums later take the place of the held-back ones), every
    candidate map being judged at once (float32 conv weights, and a solution in float64), and the network's
    passes."""
    reduced = REDUCED_DIRECTIONS if channels > REDUCE_ABOVE else None
    sums = [Moments.nbytes(channels, channels, m, reduced) for m in kernels]
    maps = sum(len(TASK_RIDGES) * 4 * channels * channels * m * m for m in kernels)
    solution = max((8 * channels * channels * m * m for m in kernels), default=0)
    return 4 * sum(sums) + 3 * max(sums, default=0) + maps + solution + PASS_ALLOWANCE

def check_fits(model: Model, layers: Sequence[str], neighbourhoods: Sequence[int]) -> None:
    """Refuse, before any work, a layer where not even the smallest support fits the memory budget."""
    for layer in layers:
        c = require_grid(model, layer).shape[0]
        if not supports(c, neighbourhoods)[0]:
            _refuse(layer, c, neighbourhoods)


def _refuse(layer: str, channels: int, neighbourhoods: Sequence[int]):
    m = min(neighbourhoods)
    need = fit_bytes(channels, [m]) + process_rss_bytes()
    raise CnnscopeError(f"no map fits the memory budget at {layer}: the smallest ({m}x{m} at {channels} channels) "
                        f"needs about {need / 2 ** 30:.1f} GB with what this process holds, over the budget of "
                        f"{budget_gb():g} GB (--max-memory {math.ceil(need / 2 ** 30 * 10) / 10:g} would fit)")


def supports(channels: int, neighbourhoods: Sequence[int], budget: float | None = None
             ) -> tuple[list[int], list[str]]:
    """The widest candidate supports whose fit stays within `budget` bytes (default: the memory budget less what
    this process holds), and a line for each one left out."""
    budget = headroom_bytes() if budget is None else budget
    kept = sorted(dict.fromkeys(neighbourhoods))
    skipped = []
    while kept and fit_bytes(channels, kept) > budget:
        m = kept.pop()
        skipped.append(f"{m}x{m} left out: with it the fit would need {fit_bytes(channels, [*kept, m]) / 2 ** 30:.1f} "
                       f"GB at {channels} channels, over the {max(budget, 0) / 2 ** 30:.1f} GB the memory budget "
                       f"leaves ({budget_gb():g} GB; --max-memory)")
    return kept, skipped



def _task_scores(stitches: dict, rest: RestOfNetwork, pairs: _Pairs, images: torch.Tensor, labels,
                 ref_logits) -> dict:
    """label -> (top-1 error or disagreement, cross-entropy) of the network finishing on each stitch's
    compensated code of `images`, streamed a chunk at a time (the features are never kept)."""
    logits = {k: [] for k in stitches}
    with torch.no_grad():
        for chunk in _chunks(images, pairs.chunk):
            h = pairs.moved(chunk)
            for k, stitch in stitches.items():
                logits[k].append(rest(stitch.to(h.device)(h)).cpu())
    target = labels if labels is not None else ref_logits.argmax(1)
    out = {}
    for k, v in logits.items():
        v = torch.cat(v).float()
        out[k] = (_metric(v, labels, ref_logits.argmax(1)), float(torch.nn.functional.cross_entropy(v, target)))
    return out


def _stitch(sums: Moments, ridge: float) -> Stitch:
    weight, bias = sums.solve(ridge, towards_identity=True)
    c = sums.c_in
    return Stitch(c, c, kernel=sums.kernel).set_conv(sums.as_conv(weight).float(), bias.float())


def _fit_sets(fit_images: torch.Tensor, crops: int, size: int, gen: torch.Generator):
    """(order, n_val, [fit set, held-back set]): a held-back fifth by source image (a crop never validates the
    image it was cut from), each set with its crops, the fit set in a seeded order (any prefix of it is a random
    share: the learning curve's)."""
    order = torch.randperm(len(fit_images), generator=gen)
    n_val = len(fit_images) // 5 if len(fit_images) >= 5 else 0
    sets = [subset(fit_images, order[n_val:]), subset(fit_images, order[:n_val])]
    sets = [with_crops(x, crops * len(x), size, gen) for x in sets]
    sets[0] = subset(sets[0], torch.randperm(len(sets[0]), generator=gen))
    return order, n_val, sets


def _by_feature_error(train: dict, held: dict, kernels: Sequence[int], ridge: float | None):
    """(validation, choice): with no network output to judge by (a representation without a classifier, or the
    invariance fits), each candidate's error on the held-back features relative to the spatial inverse's; choice
    (m, ridge), or None where the spatial inverse is best."""
    base = float(held[kernels[0]].squared_error(*held[kernels[0]].identity()).sum())
    scores = {"identity": (1.0, 0, 0.0)}
    for m in kernels:
        for r in (RIDGES if ridge is None else (ridge,)):
            err = float(held[m].squared_error(*train[m].solve(r, towards_identity=True)).sum())
            scores[f"{m}x{m} ridge {r:g}"] = (round(err / max(base, 1e-30), 6), m, -r)
    best = min(scores, key=scores.__getitem__)
    return {k: v[0] for k, v in scores.items()}, None if best == "identity" else (scores[best][1], -scores[best][2])


def _chosen(train: dict, held: dict | None, kernels: Sequence[int], choice: tuple | None, c: int):
    """(m, ridge, the fit's sums, the map): the chosen map refitted on every fit image, or the spatial inverse
    (the identity at the centre tap) where nothing beat it."""
    m, chosen_ridge = ((1 if 1 in kernels else kernels[0]), None) if choice is None else choice
    fit = train[m].absorb(held[m]) if held is not None else train[m]
    learned = (Stitch(c, c, kernel=m).set_linear(torch.eye(c), torch.zeros(c)) if choice is None
               else _stitch(fit, chosen_ridge))
    return m, chosen_ridge, fit, learned


def _basis(pairs: _Pairs, kernels: Sequence[int], images: torch.Tensor) -> torch.Tensor | None:
    return principal_directions(pairs, images) if max(kernels) > 1 and pairs.shape[0] > REDUCE_ABOVE else None


def fit_layer(model: Model, layer: str, transform: Transform, fit_images: torch.Tensor,
              test_images: torch.Tensor | None, fit_targets: tuple, *, crops: int = 1, ridge: float | None = None,
              task_epochs: int = 0, seed: int = 0, progress: bool = False,
              neighbourhoods: Sequence[int] = NEIGHBOURHOODS) -> LayerFit:
    """The learned M_g at one layer (see the module docstring). fit_targets = (labels, reference logits);
    test_images None leaves `test_moments` empty for the caller to fill. `ridge` fixes the ridge strength
    (else chosen by the task with the support). Without reference logits it is `fit_layers`' fit."""
    labels, ref = fit_targets
    if ref is None:
        return fit_layers(model, [layer], [transform], fit_images, test_images, crops=crops, ridge=ridge, seed=seed,
                          neighbourhoods=neighbourhoods)[layer, transform.label]
    views = _Views(model, [(layer, transform)])
    pairs = views.pairs[0]
    c = pairs.shape[0]
    kernels, skipped = supports(c, neighbourhoods)
    if not kernels:
        _refuse(layer, c, neighbourhoods)
    gen = torch.Generator().manual_seed(seed)
    order, n_val, sets = _fit_sets(fit_images, crops, model.input_size, gen)
    per_image = _per_image(len(fit_images) * (1 + crops))
    basis = _basis(pairs, kernels, sets[0])
    by_task = bool(n_val)
    train, shares = _moments(views, sets[0], per_image, [gen], [kernels], [basis], (50, 75) if by_task else ())
    train = train[0]
    held = _moments(views, sets[1], per_image, [gen], [kernels], [basis])[0][0] if n_val else None
    validation, choice, curve = None, (kernels[0], ridge if ridge is not None else 0.1), None
    if by_task:  # by the task: the network finishing on the compensated held-back code
        val_images = subset(fit_images, order[:n_val])
        held_back = (val_images, labels[order[:n_val]] if labels is not None else None, ref[order[:n_val]])
        rest = RestOfNetwork(model, layer)
        # every candidate judged in one pass over the held-back images
        candidates = {"identity": (Stitch(c, c).set_linear(torch.eye(c), torch.zeros(c)), 0, 0.0)}
        for m in kernels:
            for r in (TASK_RIDGES if ridge is None else (ridge,)):
                candidates[f"{m}x{m} ridge {r:g}"] = (_stitch(train[m], r), m, -r)
        judged = _task_scores({k: v[0] for k, v in candidates.items()}, rest, pairs, *held_back)
        # ties: the lower cross-entropy, then the simpler map (smaller support, stronger ridge)
        scores = {k: (*judged[k], m, r) for k, (_, m, r) in candidates.items()}
        candidates = None
        best = min(scores, key=scores.__getitem__)
        validation = {k: round(v[0], 4) for k, v in scores.items()}
        choice = None if best == "identity" else (scores[best][2], -scores[best][3])
        best_map = min((k for k in scores if k != "identity"), key=scores.__getitem__)
        m, r = scores[best_map][2], -scores[best_map][3]
        # the learning curve: the same map fitted on the first 50 and 75% of the fit pictures (copies of the sums)
        curve = {f"{share}%": round(score[0], 4) for share, score in _task_scores(
            {share: _stitch(sums[0][m], r) for share, sums in shares.items()}, rest, pairs, *held_back).items()}
        curve["100%"] = round(scores[best_map][0], 4)
        shares = None  # the curve's copies go before the final solve
    m, chosen_ridge, fit, learned = _chosen(train, held, kernels, choice, c)
    refined = False
    if task_epochs:
        refined = _refine(learned, pairs, fit_images, fit_targets, task_epochs, seed, progress)
    train = held = None  # the other supports' sums go before the test sums come
    test = (_moments(views, test_images, _per_image(len(test_images)), [gen], [(m,)], [fit.basis])[0][0][m]
            if test_images is not None else Moments(c, c, m, fit.basis))
    permutation = permutation_stitch(fit.correlation())
    return LayerFit(learned, permutation, chosen_ridge, refined, fit, test, m, validation, skipped, curve)


def joint_bytes(channels: Sequence[int], kernels: Sequence[Sequence[int]]) -> int:
    """Peak bytes of `fit_layers` fitting these (layer, transform)s in one pass, beyond what the process holds: the
    fit and held-back sums of each one's supports, a solve's two transient copies of the widest with its solution,
    and the network's passes."""
    sums = [[Moments.nbytes(c, c, m, REDUCED_DIRECTIONS if c > REDUCE_ABOVE else None) for m in ms]
            for c, ms in zip(channels, kernels)]
    widest = max(max(x) for x in sums)
    solution = max(8 * c * c * m * m for c, ms in zip(channels, kernels) for m in ms)
    return 2 * sum(map(sum, sums)) + 2 * widest + solution + PASS_ALLOWANCE


def fit_layers(model: Model, layers: Sequence[str], transforms: Sequence[Transform], fit_images: torch.Tensor,
               test_images: torch.Tensor | None, *, crops: int = 1, ridge: float | None = None, seed: int = 0,
               neighbourhoods: Sequence[int] = NEIGHBOURHOODS) -> dict[tuple[str, str], LayerFit]:
    """The learned M_g at every layer for every transform, each chosen by its error on the held-back features (no
    network output judges them: the invariance fits, a representation without a classifier), with as few passes of
    the network as the memory budget allows: the transforms share Phi(x), and the layers' sums fill from the same
    passes (as many (layer, transform)s at a time as `joint_bytes` fits). Returns (layer, transform label) ->
    LayerFit; test_images None leaves `test_moments` empty."""
    keys = [(layer, t) for layer in layers for t in transforms]
    channels = [require_grid(model, layer).shape[0] for layer, _ in keys]
    plans = [supports(c, neighbourhoods) for c in channels]
    for (layer, _), c, (kernels, _) in zip(keys, channels, plans):
        if not kernels:
            _refuse(layer, c, neighbourhoods)
    groups, budget = [[]], headroom_bytes()
    for i in range(len(keys)):
        if groups[-1] and joint_bytes([channels[j] for j in (*groups[-1], i)],
                                      [plans[j][0] for j in (*groups[-1], i)]) > budget:
            groups.append([])
        groups[-1].append(i)
    out = {}
    for group in groups:
        out |= _fit_jointly(model, [keys[i] for i in group], [plans[i] for i in group], fit_images, test_images,
                            crops, ridge, seed)
    return out


def _fit_jointly(model: Model, keys, plans, fit_images, test_images, crops, ridge, seed) -> dict:
    views = _Views(model, keys)
    gen = torch.Generator().manual_seed(seed)
    _, n_val, sets = _fit_sets(fit_images, crops, model.input_size, gen)
    per_image = _per_image(len(fit_images) * (1 + crops))
    kernels = [k for k, _ in plans]
    bases = [_basis(p, k, sets[0]) for p, k in zip(views.pairs, kernels)]
    gens = [torch.Generator().manual_seed(seed) for _ in keys]  # each (layer, transform) samples its own cells
    train = _moments(views, sets[0], per_image, gens, kernels, bases)[0]
    held = _moments(views, sets[1], per_image, gens, kernels, bases)[0] if n_val else [None] * len(keys)
    fits = []
    for p, ms, t, h in zip(views.pairs, kernels, train, held):
        validation, choice = (_by_feature_error(t, h, ms, ridge) if h is not None
                              else (None, (ms[0], ridge if ridge is not None else 0.1)))
        fits.append((validation, *_chosen(t, h, ms, choice, p.shape[0])))
    train = held = None  # the other supports' sums go before the test sums come
    if test_images is not None:
        tests = [sums[m] for sums, (_, m, _, fit, _) in zip(
            _moments(views, test_images, _per_image(len(test_images)), gens, [(f[1],) for f in fits],
                     [f[3].basis for f in fits])[0], fits)]
    else:
        tests = [Moments(p.shape[0], p.shape[0], f[1], f[3].basis) for p, f in zip(views.pairs, fits)]
    return {(layer, t.label): LayerFit(learned, permutation_stitch(fit.correlation()), r, False, fit, test, m,
                                       validation, skipped)
            for (layer, t), (_, skipped), (validation, m, r, fit, learned), test in zip(keys, plans, fits, tests)}


def curve_trend(curve: dict | None, held_back: int) -> str | None:
    """"falling" when the map fitted on all the fit images does better on the held-back ones than the map fitted on
    half of them by more than one picture (more images would still help: the fit, not the network, is the limit);
    else "flat"."""
    if not curve or held_back <= 0:
        return None
    return "falling" if curve["50%"] - curve["100%"] > 1.0 / held_back + 1e-9 else "flat"


def _refine(learned: Stitch, pairs: _Pairs, images: torch.Tensor, targets: tuple, epochs: int, seed: int,
            progress: bool) -> bool:
    """The network's own loss from the ridge map, with the map of the epoch (0 = the ridge map) that does best
    on a held-back fifth of the fit images. True if training moved it."""
    n_val = len(images) // 5
    if n_val == 0:
        return False
    labels, ref = targets

    def pick(t, part):
        return t[part] if t is not None else None

    tr, va = slice(n_val, None), slice(0, n_val)
    rest = RestOfNetwork(pairs.model, pairs.layer)
    # the compensation's inputs are streamed: each epoch computes them a batch at a time, none are kept
    moved = [StreamedFeatures(pairs.moved, subset(images, part)) for part in (tr, va)]
    held_back = (moved[1], pick(labels, va), pick(ref, va) if labels is None else None)
    fit_task(learned, rest, moved[0], pick(labels, tr),
             pick(ref, tr) if labels is None else None, epochs=epochs, seed=seed, progress=progress,
             validation=held_back)
    return learned.best_epoch > 0


@dataclass(frozen=True)
class EquivarianceFit:
    """How `equivariance_experiment` fits M_g.

    Attributes
    ----------
    task_epochs : int
        Epochs of the network's own loss refining the closed-form map (0: closed form only).
    seed : int
        Seeds the crops, the position sampling, the refinement and the null map.
    ridge : float, optional
        Ridge strength towards M = I (None: chosen with the support by the task on a held-back fifth).
    crops : int
        Random rescaled crops per fit image added to the regression's samples.
    neighbourhoods : tuple of int
        Candidate supports m of the m x m map (the spatial inverse alone is always a candidate).
    progress : bool
        Show progress bars.
    """

    task_epochs: int = 0
    seed: int = 0
    ridge: float | None = None
    crops: int = 1
    neighbourhoods: tuple[int, ...] = NEIGHBOURHOODS
    progress: bool = True


def equivariance_experiment(model: Model, layers: Sequence[str], transform: Transform, fit_images: torch.Tensor,
                            test_images: torch.Tensor, fit_labels: torch.Tensor | None = None,
                            test_labels: torch.Tensor | None = None, how: EquivarianceFit = EquivarianceFit()
                            ) -> dict:
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
    how : EquivarianceFit
        Support candidates, ridge, crops, refinement epochs, seed.

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
    norm, net = model.preprocess.normalize, for_optimisation(model, [])
    chunk = pictures_per_pass(net)
    with torch.no_grad():
        ref_fit = torch.cat([net(norm(c)).cpu() for c in _chunks(fit_images, chunk)])
        ref_test = torch.cat([net(norm(c)).cpu() for c in _chunks(test_images, chunk)])
        g_test = torch.cat([net(norm(transform.image(c))).cpu() for c in _chunks(test_images, chunk)])
    ref_pred = ref_test.argmax(1)
    baseline = {"no_transform": _metric(ref_test, test_labels, ref_pred),
                "uncompensated": _metric(g_test, test_labels, ref_pred)}
    rows, maps = [], {}
    gen = torch.Generator().manual_seed(how.seed)  # the test cells summed for the held-out R2
    for layer in layers:
        # test images: their features give both the errors below and the map's held-out R^2 (one pass)
        fit = fit_layer(model, layer, transform, fit_images, None, (fit_labels, ref_fit), crops=how.crops,
                        ridge=how.ridge, task_epochs=how.task_epochs, seed=how.seed, progress=how.progress,
                        neighbourhoods=how.neighbourhoods)
        pairs = _Pairs(model, layer, transform)
        rest = RestOfNetwork(model, layer)
        c = pairs.shape[0]
        spatial = Stitch(c, c).set_linear(torch.eye(c), torch.zeros(c))
        logits = {"spatial_only": [], "permutation": [], "learned": []}
        with torch.no_grad():
            for chunk in _chunks(test_images, pairs.chunk):
                f, h = pairs(chunk)
                fit.test_moments.add(h, f, pairs.mask, _per_image(len(test_images)), gen)
                for name, stitch in (("spatial_only", spatial), ("permutation", fit.permutation),
                                     ("learned", fit.learned)):
                    logits[name].append(rest(stitch.to(h.device)(h)).cpu())
        weight, bias = fit.weight()
        scores, null = fit.invariance(how.seed)
        row = {"layer": layer, "channels": c, "stride": pairs.stride,
               **{k: _metric(torch.cat(v), test_labels, ref_pred) for k, v in logits.items()},
               "learned_r2": round(fit.test_moments.pooled_r2(weight, bias), 4),
               "spatial_r2": round(fit.test_moments.pooled_r2(*fit.test_moments.identity()), 4),
               "map": "spatial inverse only" if fit.ridge is None else f"{fit.kernel}x{fit.kernel} conv",
               "kernel": fit.kernel, "fit_positions": fit.fit_moments.count,
               # positions per parameter of one output channel's row (its inputs and a bias)
               "positions_per_parameter": round(fit.fit_moments.count / (fit.fit_moments.inputs + 1), 2),
               "reduced": None if fit.fit_moments.basis is None else fit.fit_moments.basis.shape[1],
               "learning_curve": fit.curve, "curve": curve_trend(fit.curve, len(fit_images) // 5),
               "validation": fit.validation, "skipped": fit.skipped or [],
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
