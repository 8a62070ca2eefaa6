"""AC/DC: alternating compressed (sparse) and decompressed (dense) phases.

At each sparse phase start the mask is the magnitude top-k of the current weights;
pruned weights are zeroed and kept zero for the phase. At each dense phase start the
mask is lifted (or relaxed to a lower "decompression" sparsity, AC/DC++ section 4)
and SGD momentum is reset, since weights that were pruned would otherwise resume with
stale momentum (AC/DC paper, section 3).
"""

from __future__ import annotations

import torch
from torch import nn

from .masked_training import MaskedTraining
from .schedule import SPARSE, Phase, phase_at
from .sparsity import target_masks


class ACDC(MaskedTraining):
    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        weights: dict[str, nn.Parameter],
        phases: list[Phase],
        sparsity: float,
        distribution: str = "global",
        decompression_sparsity: float = 0.0,
        reset_momentum: bool = True,
    ):
        super().__init__(model, optimizer, weights)
        self.phases = phases
        self.sparsity = sparsity
        self.distribution = distribution
        self.decompression_sparsity = decompression_sparsity
        self.reset_momentum_on_decompression = reset_momentum

    def dense_phase(self, epoch: int) -> bool:
        return phase_at(self.phases, epoch).kind != SPARSE

    def on_epoch_start(self, epoch: int) -> None:
        phase = phase_at(self.phases, epoch)
        if epoch != phase.start:
            return
        weights = self.masked.weights()
        if phase.kind == SPARSE:
            self.enforce(target_masks(weights, self.sparsity, self.distribution))
            return
        if epoch == 0:  # the warm-up: nothing to lift yet
            return
        if self.decompression_sparsity > 0:
            self.enforce(target_masks(weights, self.decompression_sparsity, self.distribution), compression=False)
        else:
            self.lift()
        if self.reset_momentum_on_decompression:
            self.reset_momentum()
