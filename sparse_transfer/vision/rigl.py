"""RigL (Evci et al.): a random sparse start with uniform or ERK layer budgets; every
`update_every` epochs each layer drops its smallest-magnitude active weights and grows
as many inactive ones with the largest dense gradient, the fraction decaying as
alpha/2 * (1 + cos(pi t / T)); the mask is fixed for the last `fixed_fraction`.
Layer counts never change, so the sparsity is exact throughout."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from sparse_transfer.pruning import count_masks, pruned_count
from sparse_transfer.vision.masked_training import MaskedTraining
from sparse_transfer.vision.sparsity import erk_pruned_counts


class RigL(MaskedTraining):
    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        weights: dict[str, nn.Parameter],
        epochs: int,
        sparsity: float,
        dense_gradients: Callable[[], None],
        distribution: str = "erk",
        alpha: float = 0.3,
        update_every: int = 1,
        fixed_fraction: float = 0.25,
        seed: int = 0,
    ):
        super().__init__(model, optimizer, weights)
        if distribution == "erk":
            self.pruned = erk_pruned_counts({name: w.shape for name, w in weights.items()}, sparsity)
        elif distribution == "uniform":
            self.pruned = {name: pruned_count(w.numel(), sparsity) for name, w in weights.items()}
        else:
            raise ValueError(f"RigL layer budgets are 'uniform' or 'erk', not {distribution!r}")
        self.dense_gradients = dense_gradients  # runs forward + backward on one batch
        self.alpha = alpha
        self.update_every = update_every
        self.end = epochs - round(fixed_fraction * epochs)
        self.seed = seed

    def drop_fraction(self, epoch: int) -> float:
        return self.alpha / 2 * (1 + math.cos(math.pi * epoch / self.end))

    def on_epoch_start(self, epoch: int) -> None:
        if epoch == 0:
            generator = torch.Generator().manual_seed(self.seed)  # the same mask on every process
            scores = {name: torch.rand(w.shape, generator=generator) for name, w in self.masked.weights().items()}
            self.enforce(count_masks(scores, self.pruned))
        elif epoch % self.update_every == 0 and epoch < self.end:
            self.update(self.drop_fraction(epoch))

    @torch.no_grad()
    def update(self, fraction: float) -> None:
        gradients = self._dense_gradients()
        new_masks = {}
        for name, weight in self.masked.weights().items():
            mask = self.masked.masks[name]
            moved = round(fraction * (weight.numel() - self.pruned[name]))
            # drop: the smallest active magnitudes (inactive ones rank below every active one)
            drop_scores = torch.where(mask, weight.abs().float(), -1.0)
            kept = count_masks({name: drop_scores}, {name: self.pruned[name] + moved})[name]
            # grow: the largest dense gradients among what is now inactive
            grow_scores = torch.where(kept, -1.0, gradients[name].abs().float())
            grown = count_masks({name: grow_scores}, {name: weight.numel() - moved})[name]
            new_masks[name] = kept | grown
        changed = {name: new_masks[name] != self.masked.masks[name] for name in new_masks}
        self.enforce(new_masks)  # grown weights start at zero, as in RigL
        self.reset_momentum(where=changed)

    def _dense_gradients(self) -> dict[str, torch.Tensor]:
        """Gradients at every position, pruned ones included: unhook the masks for one
        backward pass (the pruned weights are zero, so the forward is the sparse one)."""
        self.masked.detach()
        self.optimizer.zero_grad()
        with torch.enable_grad():
            self.dense_gradients()
        gradients = {name: w.grad.detach().clone() for name, w in self.masked.weights().items()}
        self.optimizer.zero_grad()
        self.masked.attach(self.optimizer)
        return gradients
