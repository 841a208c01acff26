"""Linear centred kernel alignment (Kornblith et al. 2019), biased and debiased, from example-by-example
Gram matrices — so layers with hundreds of thousands of features cost only N x N."""

from __future__ import annotations

import math

import torch

from ..errors import CnnscopeError
from ..layers import get_layer
from ..memory import budget_gb, headroom_bytes, process_rss_bytes


def example_gram(x: torch.Tensor, block: int = 2 ** 16) -> torch.Tensor:
    """The N x N Gram matrix (float64) of N examples' flattened representations: all CKA needs of them. Summed
    over blocks of features, so the float64 copy is of one block, not of the whole representation."""
    x = x.reshape(x.shape[0], -1)
    gram = torch.zeros(len(x), len(x), dtype=torch.float64, device=x.device)
    for i in range(0, x.shape[1], block):
        part = x[:, i:i + block].double()
        gram.addmm_(part, part.T)
    return gram


def cka_bytes(n: int, feature_sizes: list[int], grams: int) -> int:
    """Peak bytes of CKA over n examples: the largest layer's features (float32) and a float64 block of them
    beside the `grams` N x N Gram matrices kept."""
    return 4 * n * max(feature_sizes, default=0) + 8 * n * 2 ** 16 + 8 * n * n * grams


_gram = example_gram


def _center(k: torch.Tensor) -> torch.Tensor:
    n = k.shape[0]
    h = torch.eye(n, dtype=k.dtype, device=k.device) - 1.0 / n
    return h @ k @ h


def _hsic_unbiased(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    """Song et al.'s unbiased HSIC estimator (diagonals zeroed)."""
    n = k.shape[0]
    k = k - torch.diag(torch.diag(k))
    l = l - torch.diag(torch.diag(l))
    kl = k @ l
    return (torch.trace(kl) + k.sum() * l.sum() / ((n - 1) * (n - 2)) - 2 * kl.sum() / (n - 2)) / (n * (n - 3))


def linear_cka(x: torch.Tensor, y: torch.Tensor, debiased: bool = False) -> float:
    """Linear CKA (Kornblith et al. 2019) between two representations of the same N examples.

    Parameters
    ----------
    x, y : Tensor
        [N, ...] each (flattened per example).
    debiased : bool
        The unbiased HSIC estimator (needs N >= 4); default the biased one.

    Returns
    -------
    float
        In [0, 1] (biased); 1 when the representations agree up to rotation and isotropic scale.
    """
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"CKA needs the same examples: {x.shape[0]} vs {y.shape[0]}")
    return cka_of_grams(_gram(x), _gram(y), debiased)


def cka_of_grams(k: torch.Tensor, l: torch.Tensor, debiased: bool = False) -> float:
    """`linear_cka` from the two representations' `example_gram` matrices (so a layer's features need not be
    kept once its Gram matrix is made)."""
    if k.shape != l.shape:
        raise ValueError(f"CKA needs the same examples: {k.shape[0]} vs {l.shape[0]}")
    if debiased:
        if k.shape[0] < 4:
            raise ValueError("debiased CKA needs at least 4 examples")
        num = _hsic_unbiased(k, l)
        den = torch.sqrt(_hsic_unbiased(k, k) * _hsic_unbiased(l, l))
    else:
        kc, lc = _center(k), _center(l)
        num = (kc * lc).sum()
        den = torch.sqrt((kc * kc).sum() * (lc * lc).sum())
    return float(num / den.clamp_min(1e-30))


def cka_permutation_test(x: torch.Tensor, y: torch.Tensor, permutations: int = 200,
                         seed: int = 0) -> tuple[float, float]:
    """Biased linear CKA and its permutation p-value: the chance that pairing the examples at random gives a
    CKA at least as high — (1 + #{CKA(x, y[perm]) >= CKA(x, y)}) / (1 + permutations).

    Parameters
    ----------
    x, y : Tensor
        [N, ...] representations of the same N examples.
    permutations : int
    seed : int

    Returns
    -------
    (float, float)
        CKA and p-value.
    """
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"CKA needs the same examples: {x.shape[0]} vs {y.shape[0]}")
    kc, lc = _center(_gram(x)), _center(_gram(y))
    norm = torch.sqrt((kc * kc).sum() * (lc * lc).sum()).clamp_min(1e-30)
    observed = float((kc * lc).sum() / norm)
    gen = torch.Generator().manual_seed(seed)
    hits = 0
    for _ in range(permutations):
        p = torch.randperm(x.shape[0], generator=gen)
        hits += float((kc * lc[p][:, p]).sum() / norm) >= observed
    return observed, (1 + hits) / (1 + permutations)


def check_cka_fits(model_a, model_b, layers_a, layers_b, n: int) -> None:
    """Refuse, before any features are computed, CKA over n pictures that would take the process over the memory
    budget (saying how many would fit)."""
    sizes = [math.prod(get_layer(model_a, x).shape) for x in layers_a] + \
        [math.prod(get_layer(model_b, y).shape) for y in layers_b]
    grams = len(layers_a) + len(layers_b)
    if cka_bytes(n, sizes, grams) > headroom_bytes():
        fits = n
        while fits > 4 and cka_bytes(fits, sizes, grams) > headroom_bytes():
            fits = fits * 9 // 10
        need = math.ceil((cka_bytes(n, sizes, grams) + process_rss_bytes()) / 2 ** 30 * 10) / 10
        raise CnnscopeError(f"CKA over {n} images would need about {need:g} GB with what this process holds, over "
                            f"the memory budget of {budget_gb():g} GB (--limit {fits} would fit, or --max-memory GB)")
