"""Gradual magnitude pruning (Zhu & Gupta): sparsity rises from 0 to the target with
the cubic law, one pruning step every `prune_every` epochs; the mask is fixed for the
last `fixed_fraction` of training (AC/DC++ appendix B)."""

from __future__ import annotations

import torch
from torch import nn

from .masked_training import MaskedTraining
from .sparsity import target_masks


def cubic_sparsity(step: float, target: float) -> float:
    """Sparsity after a fraction `step` in [0, 1] of the pruning period."""
    return target * (1 - (1 - min(max(step, 0.0), 1.0)) ** 3)


class GMP(MaskedTraining):
    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        weights: dict[str, nn.Parameter],
        epochs: int,
        sparsity: float,
        distribution: str = "global",
        prune_every: int = 5,
        fixed_fraction: float = 0.25,
    ):
        super().__init__(model, optimizer, weights)
        self.sparsity = sparsity
        self.distribution = distribution
        self.last_prune = epochs - round(fixed_fraction * epochs)  # reaches the target here
        if self.last_prune < 1:
            raise ValueError(f"{epochs} epochs leave no time to prune before the fixed-mask {fixed_fraction:.0%}")
        steps = list(range(prune_every, self.last_prune, prune_every)) + [self.last_prune]
        self.targets = {epoch: cubic_sparsity(epoch / self.last_prune, sparsity) for epoch in steps}

    def on_epoch_start(self, epoch: int) -> None:
        if epoch in self.targets:
            self.enforce(target_masks(self.masked.weights(), self.targets[epoch], self.distribution))
