"""Gradual magnitude pruning (Zhu & Gupta): sparsity rises from 0 to the target with
the cubic law, one pruning step every `prune_every` epochs; the mask is fixed for the
last `fixed_fraction` of training (AC/DC++ appendix B)."""

from __future__ import annotations

import torch
from torch import nn

from sparse_transfer.schedules import PruningSteps
from sparse_transfer.vision.masked_training import MaskedTraining
from sparse_transfer.vision.sparsity import target_masks


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
        steps = PruningSteps.cubic(epochs, 0, self.last_prune, prune_every, sparsity)
        self.targets = {epoch: target for epoch, target in steps.targets.items() if target > 0}

    def on_epoch_start(self, epoch: int) -> None:
        if epoch in self.targets:
            self.enforce(target_masks(self.masked.weights(), self.targets[epoch], self.distribution))
