"""Which vision weights are pruned and how the sparsity is spread over them.

Conv2d and Linear weights are prunable (never biases or BatchNorm); "first and last
layer dense" (FLD) leaves the stem convolution and the classifier out of the selection.
A distribution turns one target sparsity into masks: `global` magnitude top-k,
`uniform` per-layer top-k, `erk` (Erdos-Renyi-Kernel layer budgets, RigL), and the
`2:4` and `block4` patterns.
"""

from __future__ import annotations

import math
import re

import torch
from torch import nn

from sparse_transfer.pruning import (
    count_masks,
    magnitude_masks,
    n_m_masks,
    pruned_count,
)
from sparse_transfer.selection import Selection

DISTRIBUTIONS = ("global", "uniform", "erk", "2:4", "block4")


def prunable_weights(model: nn.Module, first_last_dense: bool = False) -> dict[str, nn.Parameter]:
    weights = Selection(["Conv2d", "Linear"]).select(model)
    if first_last_dense and len(weights) > 2:
        first, *_, last = (name.removesuffix(".weight") for name in weights)
        keep_dense = [f"^{re.escape(first)}$", f"^{re.escape(last)}$"]
        weights = Selection(["Conv2d", "Linear"], exclude=keep_dense).select(model)
    return weights


def erk_pruned_counts(shapes: dict[str, torch.Size], sparsity: float) -> dict[str, int]:
    """Per-layer pruned counts of the ERK distribution, summing exactly to
    round(sparsity * total): a layer's density is proportional to
    sum(shape) / prod(shape); layers that would exceed density 1 stay dense."""
    numels = {name: math.prod(shape) for name, shape in shapes.items()}
    raw = {name: sum(shape) / numels[name] for name, shape in shapes.items()}
    dense: set[str] = set()
    while True:
        budget = sum((1 - sparsity) * n for name, n in numels.items() if name not in dense)
        budget -= sum(sparsity * n for name, n in numels.items() if name in dense)
        scale = budget / sum(raw[name] * numels[name] for name in numels if name not in dense)
        too_dense = {name for name in numels if name not in dense and raw[name] * scale > 1}
        if not too_dense:
            break
        dense |= too_dense
    exact = {name: 0.0 if name in dense else numels[name] * (1 - raw[name] * scale) for name in numels}
    return _largest_remainder(exact, pruned_count(sum(numels.values()), sparsity))


def _largest_remainder(shares: dict[str, float], total: int) -> dict[str, int]:
    """Integer counts with the given total, each the floor or ceiling of its share."""
    counts = {name: math.floor(share) for name, share in shares.items()}
    by_fraction = sorted(shares, key=lambda name: counts[name] - shares[name])  # stable: model order on ties
    for name in by_fraction[: total - sum(counts.values())]:
        counts[name] += 1
    return counts


def target_masks(
    weights: dict[str, torch.Tensor], sparsity: float, distribution: str = "global"
) -> dict[str, torch.Tensor]:
    """Magnitude masks over `weights` for one target (2:4 is always 50%)."""
    if distribution == "global":
        return magnitude_masks(weights, sparsity, scope="global")
    if distribution == "uniform":
        return magnitude_masks(weights, sparsity, scope="per-layer")
    if distribution == "erk":
        counts = erk_pruned_counts({name: w.shape for name, w in weights.items()}, sparsity)
        return count_masks({name: w.detach().abs() for name, w in weights.items()}, counts)
    if distribution == "2:4":
        return n_m_masks(weights, 2, 4)
    if distribution == "block4":
        return magnitude_masks(weights, sparsity, block=4)
    raise ValueError(f"unknown sparsity distribution {distribution!r}; use one of {DISTRIBUTIONS}")
